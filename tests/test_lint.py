"""ruff check and ruff format --check are clean (notebooks included) — CI runs them through the
test suite, so the README's one test command covers lint too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run([*cmd, *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize(
    "args", [("check", "."), ("format", "--check", ".")], ids=["check", "format"]
)
def test_ruff_is_clean(args):
    out = _ruff(*args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_metrics_kernels_run_side_by_side():
    """Every parallel kernel of ``mgelib.metrics`` is a ``kernels.parallel_kernel`` (it has a
    serial twin for metrics running side by side: two threads launching numba's workqueue at
    once abort the process), and every compiled kernel there releases the GIL."""
    import re

    offenders = []
    for path in sorted((ROOT / "mgelib" / "metrics").glob("*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            stripped = line.strip()
            if not stripped.startswith("@njit("):
                continue
            if "parallel=True" in stripped or not re.search(r"nogil=True|inline=", stripped):
                offenders.append(f"{path.name}:{n}: {stripped}")
    assert not offenders, offenders
