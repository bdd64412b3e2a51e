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
from mgelib.notebooks import load_profile, run_notebook
from mgelib.runner.grid import RunStatus, grid_names, pending_runs, stages_for, user_pythonpath

__all__ = ["run_one", "run_chunk", "stage_params", "lock_owner", "wait_for_locked"]


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


def lock_owner(run_dir: str | os.PathLike) -> str | None:
    """``"host:pid"`` of the process holding a run's lock, or ``None`` when it is free (no lock,
    or a lock left by a dead process on this host, which :func:`run_one` would take over)."""
    lock = Path(run_dir) / ".lock"
    try:
        owner = lock.read_text().strip()
    except (FileNotFoundError, IsADirectoryError):
        return None
    host, _, pid = owner.partition(":")
    if host == socket.gethostname() and pid.isdigit() and not _alive(int(pid)):
        return None
    return owner or "unknown"


def wait_for_locked(
    specs: Sequence[io.RunSpec],
    root: str | os.PathLike,
    *,
    timeout_s: float | None = 3600.0,
    poll_s: float = 5.0,
    message_every_s: float = 60.0,
    echo: Callable[[str], None] = print,
) -> list[io.RunSpec]:
    """Wait while runs of ``specs`` are locked by another process (a second ``invoke
    reproduce``, a SLURM job); return the runs still locked when ``timeout_s`` runs out.

    A progress line (how many runs, held by whom) is printed at once and every
    ``message_every_s`` seconds. Runs that are free but unfinished are not waited for (the
    caller runs them or reports them). ``timeout_s=None`` waits as long as it takes.
    """
    t0 = time.monotonic()
    last = -float("inf")
    while True:
        held = {s: lock_owner(s.dir(root)) for s in pending_runs(specs, root)}
        held = {s: o for s, o in held.items() if o is not None}
        if not held:
            return []
        waited = time.monotonic() - t0
        if timeout_s is not None and waited >= timeout_s:
            return list(held)
        if waited - last >= message_every_s:
            owners = sorted(set(held.values()))
            echo(
                f"waiting for {len(held)} run(s) locked by another process "
                f"({', '.join(owners[:3])}{' …' if len(owners) > 3 else ''}), e.g. {next(iter(held))}; "
                f"{waited:.0f} s so far"
                + (f", giving up after {timeout_s:.0f} s" if timeout_s is not None else "")
            )
            last = waited
        time.sleep(poll_s if timeout_s is None else max(0.0, min(poll_s, timeout_s - waited)))


def stage_params(
    spec: io.RunSpec, run_dir: Path, profile: str | Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The per-run parameters every pipeline notebook takes; a model or pruner label of the
    profile's grid is passed as the name or spec it stands for."""
    names = grid_names(load_profile(profile).get("grid") or {}, check=False) if profile else {}
    return {
        "model": names.get("model", {}).get(spec.model, spec.model),
        "dataset": spec.dataset,
        "pruner": names.get("pruner", {}).get(spec.pruner, spec.pruner),
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
        prof = load_profile(profile)
        with user_pythonpath(prof):
            for stage in stages:
                if not force and io.stage_done(run_dir, stage, executed=True):
                    continue
                run_notebook(stage, stage_params(spec, run_dir, prof), prof, output_dir=run_dir)
    return RunStatus(spec, "done", seconds=time.perf_counter() - t0)


TaskFn = Callable[..., RunStatus]


def run_chunk(
    specs: Sequence[io.RunSpec],
    profile: str | Mapping[str, Any],
    root: str | os.PathLike,
    force: bool = False,
    task: TaskFn | None = None,
) -> list[RunStatus]:
    """Run several cells one after the other; a failing run is recorded (``error.txt`` in its
    folder, with the path of the failed notebook) and the next one starts."""
    task = task or run_one
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
