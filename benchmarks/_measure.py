"""Measure one function call: wall time and peak resident memory growth, in a fresh process.

Peak RSS is per *process*, so a benchmark that wants the peak of one case runs that case in its own
subprocess (:func:`run_isolated`) and, inside it, brackets the call with :func:`measure`:

>>> from _measure import measure  # run from benchmarks/
>>> result, m = measure(lambda: bytearray(50 * 2**20))
>>> m["seconds"] >= 0 and m["peak_growth_mib"] >= 0
True

On Linux the peak is ``VmHWM`` of ``/proc/self/status``, reset to the current RSS just before the
call (writing ``5`` to ``/proc/self/clear_refs``), so the growth is the call's own. Where that is
not possible it falls back to ``ru_maxrss`` before and after, which underestimates the growth when
the process had already peaked higher.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["rss_kib", "peak_kib", "reset_peak", "measure", "run_isolated"]

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    try:
        match = re.search(rf"^{field}:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_kib() -> int:
    """Current resident set size (KiB); the peak so far where the current value is unknown."""
    now = _status_kib("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_kib() -> int:
    """Peak resident set size of this process (KiB), since the last :func:`reset_peak`."""
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak() -> bool:
    """Reset the peak to the current RSS (Linux ``clear_refs``); ``False`` where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure(fn: Callable[[], Any]) -> tuple[Any, dict[str, float]]:
    """Call ``fn()`` and return its result and ``{"seconds", "peak_growth_mib", "exact_peak"}``:
    wall time and how far the peak RSS rose above the RSS just before the call."""
    exact = reset_peak()
    base = rss_kib() if exact else peak_kib()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    growth = max(0, peak_kib() - base) / 1024
    return result, {"seconds": seconds, "peak_growth_mib": growth, "exact_peak": exact}


def run_isolated(argv: Sequence[str], timeout: float | None = None) -> dict[str, Any]:
    """Run ``python argv…`` in a fresh interpreter; its last stdout line must be a JSON object,
    which is returned with ``process_seconds`` (wall time of the whole subprocess) added. A
    failing process gives ``{"error": <last stderr lines>}``."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "process_seconds": timeout}
    elapsed = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"exit {proc.returncode}: {tail}", "process_seconds": elapsed}
    out = json.loads(lines[-1])
    out["process_seconds"] = elapsed
    return out


FIXTURES = {"conv6": "conv6_erk_s0.98", "resnet20": "resnet20_erk_s0.98"}


def benchmark_network(name: str, sparsity: float):  # noqa: ANN201 - torch is imported lazily
    """The network the benchmarks time: CIFAR shape, seed 0; at s = 0.98 the authors' fixture
    masks where they exist (``tests/fixtures``), else ERK masks (seed 0). Returns
    ``(model, source)`` with the masks applied, in eval mode."""
    import numpy as np

    from mgelib import models, paths
    from mgelib.masks import apply_masks, masks_from_weights
    from mgelib.pruning import erk

    model = models.build(name, 3, 10, 32, seed=0)
    npz = paths.fixtures_dir() / FIXTURES.get(name, "-") / "masked_weights.npz"
    if abs(float(sparsity) - 0.98) < 1e-12 and npz.is_file():
        with np.load(npz) as arrays:
            masks = masks_from_weights(model, dict(arrays))
        source = "fixture"
    else:
        masks, source = erk(model, float(sparsity), seed=0), "erk"
    return apply_masks(model, masks).eval(), source
