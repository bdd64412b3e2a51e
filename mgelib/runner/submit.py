"""``run_grid``: the unfinished runs of a grid handed to submitit — the local executor (N worker
processes), SLURM (:mod:`mgelib.runner.slurm`) or this process (``debug``) — and, when asked,
the wait for them."""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mgelib import io
from mgelib.notebooks import load_profile
from mgelib.runner.grid import (
    _SUBMITIT,
    EXECUTORS,
    PIPELINE,
    GridReport,
    RunStatus,
    _advance,
    _bar,
    _sigterm_as_interrupt,
    check_profile,
    expand_grid,
    pending_runs,
    prepare_profile,
    run_complete,
)
from mgelib.runner.run import TaskFn, _guarded, run_chunk, run_one
from mgelib.runner.slurm import _submit_slurm

__all__ = ["run_grid"]


# --------------------------------------------------------------------------- executors
def _chunks(items: Sequence[Any], n: int) -> list[list[Any]]:
    n = max(1, min(n, len(items)))
    return [list(items[i::n]) for i in range(n)]


def _local_executor(folder: Path, timeout_min: int):  # noqa: ANN202
    import submitit

    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=timeout_min)
    return ex


def run_grid(
    profile: str | Mapping[str, Any],
    *,
    executor: str = "local",
    workers: int | None = None,
    root: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool | None = None,
    wait: bool = True,
    slurm: Mapping[str, Any] | None = None,
    task: TaskFn | None = None,
    poll_s: float = 1.0,
    stages: Sequence[str] = PIPELINE,
) -> GridReport:
    """Run every unfinished run of a profile's grid.

    Parameters
    ----------
    profile : str or mapping
        A profile (``notebooks/params/<name>.yaml``) with a ``grid`` section.
    executor : {"local", "slurm", "debug"}
        ``local``: submitit's local executor, ``workers`` processes (default: the profile's
        ``executor.workers``, else 1), each taking a share of the runs; ``slurm``: one job array,
        one task per run, options in ``slurm`` over the profile's ``slurm`` section (partition,
        gpus_per_job, time/timeout_min, array_parallelism, cpus_per_task, mem_gb); runs whose
        job is still pending or running are not submitted again, and a grid larger than the
        cluster's ``MaxArraySize`` goes out as several arrays sharing ``array_parallelism``;
        ``debug``: in this process, one after another.
    root : path, optional
        The grid root (default ``runs_dir()/<profile name>``).
    wait : bool
        Wait for the runs (``False`` returns right after submission — the SLURM use; follow
        the runs with :func:`grid_status`). Interrupting the wait cancels the jobs.
    task : callable, optional
        Replace the per-run function (tests).
    stages : sequence of str
        The notebooks a run must have finished to count as done (default: the whole
        :data:`PIPELINE`); the default task then runs only these.

    Returns
    -------
    GridReport
        Per-run statuses; call ``.raise_for_failures()`` to turn failures into an exception.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    prof = load_profile(profile)
    check_profile(prof, allow_unknown=task is not None)  # a custom task may read its own keys
    prof = prepare_profile(prof)  # user specs made portable to the workers
    if "grid" not in prof:
        raise ValueError(f"profile {prof['name']!r} has no 'grid' section")
    root = io.grid_root(prof["name"], root)
    root.mkdir(parents=True, exist_ok=True)
    specs = expand_grid(prof["grid"])
    stages = tuple(stages)
    if task is None and stages != PIPELINE:
        task = functools.partial(run_one, stages=stages)
    # A custom task (tests) leaves products but no executed notebooks.
    executed = task is None
    todo = specs if force else pending_runs(specs, root, stages, executed=executed)
    report = GridReport(root=root, total=len(specs))
    todo_set = set(todo)
    report.statuses = [RunStatus(s, "skipped") for s in specs if s not in todo_set]
    if not todo:
        return report
    if executor == "slurm":
        options = {**(prof.get("slurm") or {}), **(slurm or {})}
        return _submit_slurm(
            prof,
            specs,
            todo,
            report,
            options,
            force=force,
            task=task,
            wait=wait,
            progress=progress,
            poll_s=poll_s,
            stages=stages,
        )
    folder = root / _SUBMITIT
    if executor == "debug":
        bar = _bar(len(specs), len(specs) - len(todo), progress)
        for spec in todo:
            report.statuses.append(_guarded(task or run_one, spec, prof, root, force))
            bar.update(1)
        bar.close()
        report.submitted = len(todo)
        return report
    if executor == "local":
        n = workers or int((prof.get("executor") or {}).get("workers", 1))
        ex = _local_executor(
            folder, int((prof.get("executor") or {}).get("timeout_min", 7 * 24 * 60))
        )
        fn = functools.partial(run_chunk, profile=prof, root=str(root), force=force, task=task)
        jobs = ex.map_array(fn, _chunks(todo, n))
    report.submitted = len(todo)
    report.job_ids = [j.job_id for j in jobs]
    if not wait:
        return report
    report.statuses.extend(_wait(jobs, todo, specs, root, progress, poll_s))
    return report


def _wait(jobs, todo, specs, root, progress, poll_s) -> list[RunStatus]:  # noqa: ANN001
    """Poll the run store for progress, cancel the jobs if interrupted, collect statuses."""
    bar = _bar(len(specs), len(specs) - len(todo), progress)
    done_before = len(specs) - len(todo)
    try:
        with _sigterm_as_interrupt():
            while not all(j.done() for j in jobs):
                _advance(bar, sum(run_complete(s, root) for s in todo) + done_before)
                time.sleep(poll_s)
    except KeyboardInterrupt:
        for j in jobs:
            try:
                j.cancel(check=False)
            except Exception:  # noqa: BLE001
                pass
        bar.close()
        raise
    _advance(bar, len(specs) - len([s for s in todo if not run_complete(s, root)]))
    bar.close()
    statuses: list[RunStatus] = []
    for job, chunk in zip(jobs, _job_specs(jobs, todo)):
        try:
            result = job.result()
            statuses.extend(result if isinstance(result, list) else [result])
        except Exception as exc:  # noqa: BLE001 - the whole job died (killed, OOM, timeout)
            log = str(job.paths.stderr)
            for spec in chunk:
                statuses.append(
                    RunStatus(spec, "failed", error=f"{type(exc).__name__}: {exc}", log=log)
                )
    return statuses


def _job_specs(jobs, todo) -> list[list[io.RunSpec]]:  # noqa: ANN001
    if len(jobs) == len(todo):
        return [[s] for s in todo]
    return _chunks(todo, len(jobs))
