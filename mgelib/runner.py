"""Grids of runs, executed through submitit — locally (N worker processes) or on SLURM (one job
array) — with the same code path.

A grid (model × dataset × pruner × sparsity × seed, plus one dense baseline per (model, dataset,
seed)) expands into :class:`~mgelib.io.RunSpec` s. Each run executes the per-run notebooks
(``10_prune_and_train`` then ``20_graph_metrics``) into its run folder; a stage whose products
exist is skipped, so an interrupted grid resumes where it stopped. Failures are reported per run
(with the log/notebook to read), never swallowed: the other runs still finish.

Only this module knows about executors.

Examples
--------
>>> specs = expand_grid({"models": ["conv6"], "datasets": ["digits"], "pruners": ["snip"],
...                      "sparsities": [0.9], "seeds": [0, 1], "dense": True})
>>> [str(s) for s in specs]  # doctest: +NORMALIZE_WHITESPACE
['conv6/digits/dense/s=0/seed=0', 'conv6/digits/snip/s=0.9/seed=0',
 'conv6/digits/dense/s=0/seed=1', 'conv6/digits/snip/s=0.9/seed=1']
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgelib import io, paths
from mgelib.masks import check_sparsity
from mgelib.notebooks import load_profile, run_notebook
from mgelib.progress import show_progress

__all__ = [
    "PIPELINE",
    "EXECUTORS",
    "RunStatus",
    "GridReport",
    "GridError",
    "expand_grid",
    "pending_runs",
    "run_one",
    "run_chunk",
    "run_grid",
    "grid_status",
]

PIPELINE = ("10_prune_and_train", "20_graph_metrics")
EXECUTORS = ("local", "slurm", "debug")
_SUBMITIT = "_submitit"


class GridError(RuntimeError):
    """Some runs of a grid failed; ``.report`` lists them with their logs."""

    def __init__(self, report: GridReport) -> None:
        lines = [f"{len(report.failed)} of {report.total} runs failed:"]
        for st in report.failed[:20]:
            lines.append(f"  {st.spec}: {st.error_line} (log: {st.log})")
        super().__init__("\n".join(lines))
        self.report = report


@dataclass
class RunStatus:
    spec: io.RunSpec
    status: str  # "done", "skipped", "failed", "locked"
    seconds: float = 0.0
    error: str | None = None
    log: str | None = None

    @property
    def error_line(self) -> str:
        return (self.error or "").strip().splitlines()[-1] if self.error else ""


@dataclass
class GridReport:
    root: Path
    total: int
    statuses: list[RunStatus] = field(default_factory=list)
    submitted: int = 0
    job_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RunStatus]:
        return [s for s in self.statuses if s.status == "failed"]

    @property
    def executed(self) -> list[RunStatus]:
        return [s for s in self.statuses if s.status == "done"]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for s in self.statuses:
            counts[s.status] = counts.get(s.status, 0) + 1
        parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        return f"{self.total} runs under {self.root}: {parts or 'nothing to do'}"

    def raise_for_failures(self) -> GridReport:
        if self.failed:
            raise GridError(self)
        return self


# --------------------------------------------------------------------------- grid
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    return list(value)


def expand_grid(grid: Mapping[str, Any]) -> list[io.RunSpec]:
    """The runs of a grid: every (model, dataset, pruner, sparsity, seed), and with
    ``dense: true`` one dense baseline (``pruner="dense"``, sparsity 0) per (model, dataset, seed).

    Keys: ``models``, ``datasets``, ``pruners``, ``sparsities``, ``seeds``, ``dense``.
    """
    from mgelib.data import DATASETS
    from mgelib.models import MODELS
    from mgelib.pruning import PRUNERS

    known = {"models", "datasets", "pruners", "sparsities", "seeds", "dense"}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise ValueError(f"unknown grid keys {unknown}; a grid has {sorted(known)}")
    models = _as_list(grid.get("models"))
    datasets = _as_list(grid.get("datasets"))
    pruners = _as_list(grid.get("pruners"))
    sparsities = [check_sparsity(s) for s in _as_list(grid.get("sparsities"))]
    seeds = [int(s) for s in _as_list(grid.get("seeds", [0]))]
    for name, values, allowed in (
        ("model", models, MODELS),
        ("dataset", datasets, DATASETS),
        ("pruner", pruners, tuple(PRUNERS)),
    ):
        if not values:
            raise ValueError(f"the grid names no {name}s")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"unknown {name}(s) {bad}; choose from {list(allowed)}")
    if pruners and not sparsities:
        raise ValueError("the grid names pruners but no sparsities")
    specs: list[io.RunSpec] = []
    for model in models:
        for dataset in datasets:
            for seed in seeds:
                if grid.get("dense", True):
                    specs.append(io.RunSpec(model, dataset, "dense", 0.0, seed))
                for pruner in pruners:
                    for s in sparsities:
                        if s == 0.0:
                            continue  # the dense baseline covers it
                        specs.append(io.RunSpec(model, dataset, pruner, s, seed))
    return specs


def pending_runs(
    specs: Iterable[io.RunSpec], root: str | os.PathLike, stages: Sequence[str] = PIPELINE
) -> list[io.RunSpec]:
    """The runs whose products are not all there yet."""
    return [s for s in specs if not io.run_done(s.dir(root), stages)]


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
    stages: Sequence[str] = PIPELINE,
) -> RunStatus:
    """Execute the pipeline notebooks of one run into its folder (finished stages skipped)."""
    run_dir = spec.dir(root)
    t0 = time.perf_counter()
    if not force and io.run_done(run_dir, stages):
        return RunStatus(spec, "skipped")
    with _run_lock(run_dir) as locked:
        if not locked:
            return RunStatus(spec, "locked", log=str(run_dir / ".lock"))
        (run_dir / "error.txt").unlink(missing_ok=True)
        for stage in stages:
            if not force and io.stage_done(run_dir, stage):
                continue
            run_notebook(stage, stage_params(spec, run_dir), profile, output_dir=run_dir)
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


def _run_task(spec, profile, root, force, task=None) -> RunStatus:  # noqa: ANN001
    """One SLURM array task = one run."""
    return _guarded(task or run_one, spec, profile, root, force)


# --------------------------------------------------------------------------- executors
def _chunks(items: Sequence[Any], n: int) -> list[list[Any]]:
    n = max(1, min(n, len(items)))
    return [list(items[i::n]) for i in range(n)]


def _local_executor(folder: Path, timeout_min: int):  # noqa: ANN202
    import submitit

    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=timeout_min)
    return ex


def _slurm_executor(folder: Path, options: Mapping[str, Any]):  # noqa: ANN202
    import submitit

    opts = dict(options)
    ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params: dict[str, Any] = {
        "timeout_min": int(opts.pop("timeout_min", opts.pop("time", 24 * 60))),
        "slurm_array_parallelism": int(opts.pop("array_parallelism", 64)),
    }
    if "partition" in opts:
        params["slurm_partition"] = opts.pop("partition")
    if "gpus_per_job" in opts:
        params["gpus_per_node"] = int(opts.pop("gpus_per_job"))
    if "cpus_per_task" in opts:
        params["cpus_per_task"] = int(opts.pop("cpus_per_task"))
    if "mem_gb" in opts:
        params["mem_gb"] = float(opts.pop("mem_gb"))
    params.update({f"slurm_{k}" if not k.startswith("slurm_") else k: v for k, v in opts.items()})
    ex.update_parameters(**params)
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
) -> GridReport:
    """Run every unfinished run of a profile's grid.

    Parameters
    ----------
    profile : str or mapping
        A profile (``notebooks/params/<name>.yaml``) with a ``grid`` section.
    executor : {"local", "slurm", "debug"}
        ``local``: submitit's local executor, ``workers`` processes (default: the profile's
        ``executor.workers``, else 1), each taking a share of the runs; ``slurm``: one job array,
        one task per run, options in ``slurm`` (partition, gpus_per_job, time/timeout_min,
        array_parallelism, cpus_per_task, mem_gb); ``debug``: in this process, one after another.
    root : path, optional
        The grid root (default ``runs_dir()/<profile name>``).
    wait : bool
        Wait for the runs (``False`` returns right after submission — the SLURM use).
    task : callable, optional
        Replace the per-run function (tests).

    Returns
    -------
    GridReport
        Per-run statuses; call ``.raise_for_failures()`` to turn failures into an exception.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    prof = load_profile(profile)
    if "grid" not in prof:
        raise ValueError(f"profile {prof['name']!r} has no 'grid' section")
    root = io.grid_root(prof["name"], root)
    root.mkdir(parents=True, exist_ok=True)
    specs = expand_grid(prof["grid"])
    todo = specs if force else pending_runs(specs, root)
    report = GridReport(root=root, total=len(specs))
    todo_set = set(todo)
    report.statuses = [RunStatus(s, "skipped") for s in specs if s not in todo_set]
    if not todo:
        return report
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
    else:
        ex = _slurm_executor(folder, {**(prof.get("slurm") or {}), **(slurm or {})})
        fn = functools.partial(_run_task, profile=prof, root=str(root), force=force, task=task)
        jobs = ex.map_array(fn, todo)
        io.write_json(
            {
                "profile": prof["name"],
                "jobs": [
                    {"job_id": j.job_id, "run": str(s), "path": str(s.relpath)}
                    for j, s in zip(jobs, todo)
                ],
                "submitted": time.time(),
            },
            root / "_slurm_jobs.json",
        )
    report.submitted = len(todo)
    report.job_ids = [j.job_id for j in jobs]
    if not wait:
        return report
    report.statuses.extend(_wait(jobs, todo, specs, root, progress, poll_s))
    return report


def _bar(total: int, initial: int, progress: bool | None):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="runs", unit="run", disable=not show_progress(progress)
    )


def _wait(jobs, todo, specs, root, progress, poll_s) -> list[RunStatus]:  # noqa: ANN001
    """Poll the run store for progress, cancel the jobs if interrupted, collect statuses."""
    bar = _bar(len(specs), len(specs) - len(todo), progress)
    done_before = len(specs) - len(todo)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        previous = None
    try:
        while not all(j.done() for j in jobs):
            finished = sum(io.run_done(s.dir(root)) for s in todo) + done_before
            bar.n = finished
            bar.refresh()
            time.sleep(poll_s)
    except KeyboardInterrupt:
        for j in jobs:
            try:
                j.cancel(check=False)
            except Exception:  # noqa: BLE001
                pass
        bar.close()
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    bar.n = len(specs) - len([s for s in todo if not io.run_done(s.dir(root))])
    bar.refresh()
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


def grid_status(profile: str | Mapping[str, Any], root: str | os.PathLike | None = None):  # noqa: ANN201
    """A table of every run of a profile's grid: ``done``, ``failed`` (with the log), ``running``
    / ``pending`` (from SLURM, when a submission is recorded), or ``missing``."""
    import pandas as pd

    prof = load_profile(profile)
    root = io.grid_root(prof["name"], root)
    specs = expand_grid(prof["grid"])
    states: dict[str, tuple[str, str]] = {}
    sub = io.read_json(root / "_slurm_jobs.json", default=None)
    if sub:
        states = _slurm_states(sub["jobs"], root)
    rows = []
    for spec in specs:
        d = spec.dir(root)
        err = io.read_json(d / "error.json", default=None)
        if io.run_done(d):
            state, log = "done", ""
        elif str(spec.relpath) in states and states[str(spec.relpath)][0] in (
            "RUNNING",
            "PENDING",
            "COMPLETING",
            "CONFIGURING",
        ):
            state, log = states[str(spec.relpath)][0].lower(), states[str(spec.relpath)][1]
        elif err is not None:
            state, log = "failed", err.get("log") or str(d / "error.json")
        elif str(spec.relpath) in states and states[str(spec.relpath)][0] not in (
            "COMPLETED",
            "UNKNOWN",
        ):
            state, log = "failed", states[str(spec.relpath)][1]
        else:
            state, log = "missing", ""
        rows.append({**spec.as_dict(), "state": state, "log": log})
    return pd.DataFrame(rows)


def _slurm_states(jobs: list[dict], root: Path) -> dict[str, tuple[str, str]]:
    import submitit

    folder = root / _SUBMITIT
    out = {}
    for j in jobs:
        try:
            job = submitit.SlurmJob(folder=folder, job_id=j["job_id"])
            out[j["path"]] = (job.state, str(job.paths.stderr))
        except Exception:  # noqa: BLE001 - no SLURM here: state unknown
            out[j["path"]] = ("UNKNOWN", "")
    return out


def default_root(profile: str) -> Path:
    return paths.runs_dir() / profile
