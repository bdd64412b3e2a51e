"""One run: its notebooks executed into its folder under an exclusive lock, failures recorded per
run (``error.json`` naming the log to read) so the other runs of a chunk still execute."""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mgelib import io
from mgelib.notebooks import run_notebook
from mgelib.runner.grid import RunStatus, stages_for

__all__ = ["run_one", "run_chunk", "stage_params", "pin_cores"]


# --------------------------------------------------------------------------- one run
@contextmanager
def _run_lock(run_dir: Path):
    """An exclusive lock file per run, so two workers never run the same cell at once. A lock
    left by a dead process on this host is taken over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    me = f"{socket.gethostname()}:{os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else ""
            host, _, pid = owner.partition(":")
            if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
                lock.unlink(missing_ok=True)
                continue
            yield False
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stage_params(spec: io.RunSpec, run_dir: Path) -> dict[str, Any]:
    """The per-run parameters every pipeline notebook takes."""
    return {
        "model": spec.model,
        "dataset": spec.dataset,
        "pruner": spec.pruner,
        "sparsity": spec.sparsity,
        "seed": spec.seed,
        "run_dir": str(run_dir),
    }


def run_one(
    spec: io.RunSpec,
    profile: str | Mapping[str, Any],
    root: str | os.PathLike,
    *,
    force: bool = False,
    stages: Sequence[str] | None = None,
) -> RunStatus:
    """Execute the pipeline notebooks of one run into its folder (finished stages skipped)."""
    run_dir = spec.dir(root)
    stages = stages_for(spec) if stages is None else stages
    t0 = time.perf_counter()
    if not force and io.run_done(run_dir, stages, executed=True):
        return RunStatus(spec, "skipped")
    with _run_lock(run_dir) as locked:
        if not locked:
            return RunStatus(spec, "locked", log=str(run_dir / ".lock"))
        (run_dir / "error.txt").unlink(missing_ok=True)
        for stage in stages:
            if not force and io.stage_done(run_dir, stage, executed=True):
                continue
            run_notebook(stage, stage_params(spec, run_dir), profile, output_dir=run_dir)
    return RunStatus(spec, "done", seconds=time.perf_counter() - t0)


TaskFn = Callable[..., RunStatus]


#: Thread-count variables of the libraries a notebook kernel loads (BLAS, OpenMP, numba).
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def pin_cores(cores: int) -> None:
    """Give this worker process (and the notebook kernels it starts) ``cores`` threads:
    ``MGELIB_CORES`` (what ``n_jobs=0`` / ``threads=0`` resolve to,
    :func:`mgelib.metrics.available_cores`) and the BLAS/OpenMP/numba thread variables, so that
    N workers on a machine never run more than its cores' worth of threads."""
    cores = max(1, int(cores))
    os.environ["MGELIB_CORES"] = str(cores)
    for name in THREAD_VARIABLES:
        os.environ[name] = str(cores)


def run_chunk(
    specs: Sequence[io.RunSpec],
    profile: str | Mapping[str, Any],
    root: str | os.PathLike,
    force: bool = False,
    task: TaskFn | None = None,
    cores: int | None = None,
) -> list[RunStatus]:
    """Run several cells one after the other; a failing run is recorded (``error.txt`` in its
    folder, with the path of the failed notebook) and the next one starts. ``cores``: this
    worker's share of the machine (:func:`pin_cores`), set before the first run."""
    task = task or run_one
    if cores is not None:
        pin_cores(cores)
    out = []
    for spec in specs:
        out.append(_guarded(task, spec, profile, root, force))
    return out


def _guarded(task: TaskFn, spec, profile, root, force) -> RunStatus:  # noqa: ANN001
    t0 = time.perf_counter()
    try:
        return task(spec, profile, root, force=force)
    except Exception as exc:  # noqa: BLE001 - report per run, keep going
        run_dir = spec.dir(root)
        err = "".join(traceback.format_exception(exc))
        log = getattr(exc, "executed", None)
        try:
            io.write_json(
                {"error": err, "log": str(log) if log else None, "time": time.time()},
                run_dir / "error.json",
            )
        except OSError:
            pass
        return RunStatus(
            spec, "failed", time.perf_counter() - t0, err, str(log or run_dir / "error.json")
        )
