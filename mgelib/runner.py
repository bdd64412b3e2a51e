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
import re
import signal
import socket
import subprocess
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
    "run_complete",
    "stages_for",
    "run_one",
    "run_chunk",
    "run_grid",
    "grid_status",
]

PIPELINE = ("10_prune_and_train", "20_graph_metrics")


def stages_for(spec: io.RunSpec) -> tuple[str, ...]:
    """The pipeline stages of a run. A dense baseline is only trained: its accuracy is the
    reference of the accuracy drop (SPEC §1), no analysis uses its graph, and the graph of an
    unpruned network is the most expensive one to measure (its motif enumeration alone can take
    hours)."""
    return PIPELINE[:1] if spec.dense else PIPELINE


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
    specs: Iterable[io.RunSpec],
    root: str | os.PathLike,
    stages: Sequence[str] | None = None,
    *,
    executed: bool = True,
) -> list[io.RunSpec]:
    """The runs whose products are not all there yet."""
    return [s for s in specs if not run_complete(s, root, stages, executed=executed)]


def run_complete(
    spec: io.RunSpec,
    root: str | os.PathLike,
    stages: Sequence[str] | None = None,
    *,
    executed: bool = True,
) -> bool:
    """Whether a run has the products of ``stages`` (default: its own :func:`stages_for`) and,
    with ``executed``, the executed notebook of each (what a notebook run leaves last)."""
    wanted = stages_for(spec) if stages is None else [s for s in stages if s in stages_for(spec)]
    return io.run_done(spec.dir(root), wanted, executed=executed)


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
    """One SLURM array task = one run.

    A task that SLURM killed (``scancel``, time limit, node failure) leaves its lock, maybe a
    temporary file and an old ``error.json`` behind; the run's next task clears them first
    (:func:`_claim_run_dir`) — the submitter never submits a run whose job is still queued or
    running, so nobody else is working on it.
    """
    if os.environ.get("SLURM_JOB_ID"):
        _claim_run_dir(spec.dir(root))
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
    if "name" in opts:
        params["name"] = str(opts.pop("name"))
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


def _bar(total: int, initial: int, progress: bool | None):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="runs", unit="run", disable=not show_progress(progress)
    )


@contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt while waiting, so a killed driver cancels its jobs."""

    def on_term(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _advance(bar, finished: int) -> None:  # noqa: ANN001
    """Move a progress bar to ``finished`` (only when it changed: no log spam)."""
    if finished != bar.n:
        bar.update(finished - bar.n)


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


# --------------------------------------------------------------------------- SLURM
# Job states as squeue prints them (%T). Accounting (sacct) may be disabled on a cluster, and
# submitit's own state queries rely on it (without it every job reads "UNKNOWN" and a killed job
# never counts as done), so this module asks squeue — which still lists jobs that ended less than
# MinJobAge ago (300 s by default) — then sacct where it answers, and else the run store.
_SLURM_PENDING = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "REQUEUED",
        "REQUEUE_FED",
        "REQUEUE_HOLD",
        "RESV_DEL_HOLD",
        "SPECIAL_EXIT",
    }
)
_SLURM_RUNNING = frozenset(
    {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED", "STOPPED"}
)
_SLURM_ACTIVE = _SLURM_PENDING | _SLURM_RUNNING
_SLURM_RECORD = "_slurm_jobs.json"  # under the grid root: the latest job of every submitted run
_DEFAULT_MAX_ARRAY = 1001  # SLURM's default MaxArraySize


def _slurm_word(state: str) -> str:
    """``pending`` or ``running`` for an active SLURM state."""
    return "pending" if state in _SLURM_PENDING else "running"


def _slurm_cmd(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess | None:
    """Run a SLURM client command; ``None`` when it cannot be run at all."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def _slurm_states(job_ids: Iterable[str]) -> dict[str, str] | None:
    """SLURM's state of each job id (``123`` or ``123_4``) that it still knows.

    squeue first (pending, running and recently ended jobs), then sacct, where accounting is
    enabled, for the jobs squeue has forgotten. Ids SLURM no longer knows are left out;
    ``None`` means SLURM does not answer (no squeue here, controller down).
    """
    ids = sorted(set(job_ids))
    if not ids:
        return {}
    arrays = sorted({i.split("_", 1)[0] for i in ids})
    found: dict[str, str] = {}
    for k in range(0, len(arrays), 100):
        proc = _slurm_cmd(
            [
                "squeue",
                "--array",
                "--states=all",
                "--noheader",
                "--format=%i|%T",
                f"--jobs={','.join(arrays[k : k + 100])}",
            ]
        )
        if proc is None:
            return None
        if proc.returncode != 0:
            if "invalid job id" in proc.stderr.lower():
                continue  # every id of this batch is forgotten
            return None
        for line in proc.stdout.splitlines():
            job_id, _, state = line.strip().partition("|")
            if job_id and state:
                found[job_id] = state.split()[0]
    missing = [i for i in ids if i not in found]
    if missing:
        found.update(_sacct_states(missing))
    return {i: found[i] for i in ids if i in found}


def _sacct_states(ids: Sequence[str]) -> dict[str, str]:
    """States from accounting; empty where sacct is absent or accounting disabled."""
    arrays = sorted({i.split("_", 1)[0] for i in ids})
    proc = _slurm_cmd(
        ["sacct", "--noheader", "--parsable2", "--format=JobID,State", "--jobs", ",".join(arrays)]
    )
    if proc is None or proc.returncode != 0:
        return {}
    wanted = set(ids)
    out = {}
    for line in proc.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id in wanted and state:
            out[job_id] = state.split()[0]
    return out


def _this_slurm_job() -> str:
    """The id of the SLURM job this process runs in, as squeue prints it (``123_4``)."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


def _claim_run_dir(run_dir: Path) -> None:
    """Clear what a killed SLURM task of this run left behind, then sign the run as ours.

    The lock of a task that SLURM killed on *another* node cannot be checked by pid, so each
    task writes ``.lock.slurm`` (its ``host:pid``, as in the lock, and its job id): a lock whose
    job SLURM reports as ended (or as this very job, requeued) is stale. A lock that is not a
    SLURM task's, or whose job may still run, is left to :func:`_run_lock`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    lock, sidecar = run_dir / ".lock", run_dir / ".lock.slurm"
    me = _this_slurm_job()
    if lock.exists():
        try:
            owner = lock.read_text().strip()
            previous = io.read_json(sidecar, default=None) or {}
        except (OSError, ValueError):
            return
        job = previous.get("job_id")
        if previous.get("owner") != owner or not job:
            return
        if job != me:
            states = _slurm_states([job])
            if states is None or states.get(job) in _SLURM_ACTIVE:
                return
        lock.unlink(missing_ok=True)
    # nobody works on this run now: temporary files are leftovers of a killed writer
    for pattern in (".*.tmp", "*/.*.tmp", "notebooks/.*.running.ipynb"):
        for leftover in run_dir.glob(pattern):
            leftover.unlink(missing_ok=True)
    (run_dir / "error.json").unlink(missing_ok=True)
    io.write_json({"owner": f"{socket.gethostname()}:{os.getpid()}", "job_id": me}, sidecar)


def _job_log(root: Path, job_id: str) -> str:
    """The stderr file submitit gives a job (``<root>/_submitit/<job>_0_log.err``)."""
    from submitit.core.utils import JobPaths

    return str(JobPaths(root / _SUBMITIT, job_id=job_id, task_id=0).stderr)


def _read_slurm_record(root: Path) -> dict[str, Any]:
    """The submissions recorded under a grid root: ``jobs`` maps each run's relative path to
    its latest job (``job_id``, ``log``, ``submitted``); ``arrays`` lists the job arrays."""
    data = io.read_json(root / _SLURM_RECORD, default=None) or {}
    jobs = data.get("jobs") or {}
    if isinstance(jobs, list):  # the first format: a list of {job_id, run, path}
        jobs = {j["path"]: j for j in jobs if "path" in j and "job_id" in j}
    for entry in jobs.values():
        entry.setdefault("log", _job_log(root, entry["job_id"]))
        entry.setdefault("submitted", data.get("submitted", 0.0))
    return {"profile": data.get("profile"), "jobs": jobs, "arrays": list(data.get("arrays") or [])}


def _record_submission(
    root: Path,
    profile: str,
    specs: Sequence[io.RunSpec],
    jobs: Sequence[Any],
    now: float,
) -> None:
    """Record the jobs of one array; ``now`` is taken before sbatch, so that an ``error.json``
    written by one of them is never older than its submission."""
    record = _read_slurm_record(root)
    for spec, job in zip(specs, jobs):
        record["jobs"][str(spec.relpath)] = {
            "job_id": job.job_id,
            "run": str(spec),
            "log": str(job.paths.stderr),
            "submitted": now,
        }
    array_id = jobs[0].job_id.split("_", 1)[0]
    record["arrays"].append({"job_id": array_id, "runs": len(specs), "submitted": now})
    record["profile"] = profile
    io.write_json(record, root / _SLURM_RECORD)


def _max_array_size() -> int:
    """The cluster's MaxArraySize (an array's indices run from 0 to MaxArraySize - 1)."""
    proc = _slurm_cmd(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", proc.stdout if proc else "", flags=re.M)
    return int(match.group(1)) if match else _DEFAULT_MAX_ARRAY


def _arrays(
    todo: Sequence[io.RunSpec], parallelism: int, max_size: int
) -> list[tuple[list[io.RunSpec], int]]:
    """Split the runs into as few equal job arrays as MaxArraySize allows, sharing the
    parallelism (the paper's 1,296 runs exceed SLURM's default of 1,001)."""
    n = -(-len(todo) // max(1, max_size))
    size = -(-len(todo) // n)
    chunks = [list(todo[i : i + size]) for i in range(0, len(todo), size)]
    return [(c, max(1, parallelism // n + (i < parallelism % n))) for i, c in enumerate(chunks)]


def _submit_slurm(
    prof: Mapping[str, Any],
    specs: list[io.RunSpec],
    todo: list[io.RunSpec],
    report: GridReport,
    options: Mapping[str, Any],
    *,
    force: bool,
    task: TaskFn | None,
    wait: bool,
    progress: bool | None,
    poll_s: float,
    stages: Sequence[str],
) -> GridReport:
    """Submit the unfinished runs that have no queued or running job as one job array."""
    root = report.root
    record = _read_slurm_record(root)
    recorded = {
        str(s.relpath): record["jobs"][str(s.relpath)]
        for s in todo
        if str(s.relpath) in record["jobs"]
    }
    states = _slurm_states(j["job_id"] for j in recorded.values())
    if states is None:
        raise RuntimeError(
            "cannot read the state of this grid's SLURM jobs (squeue fails or is absent); "
            "nothing submitted, so that no run is submitted twice. Check `squeue` and retry."
        )
    queued = set()
    for spec in todo:
        entry = recorded.get(str(spec.relpath))
        state = states.get(entry["job_id"], "") if entry else ""
        if state in _SLURM_ACTIVE:
            report.statuses.append(RunStatus(spec, _slurm_word(state), log=entry["log"]))
            queued.add(spec)
    todo = [s for s in todo if s not in queued]
    if not todo:
        return report
    opts = dict(options)
    parallelism = int(opts.pop("array_parallelism", 64))
    opts.setdefault("name", f"mgelib-{prof['name']}")
    fn = functools.partial(_run_task, profile=prof, root=str(root), force=force, task=task)
    jobs: list[Any] = []
    for chunk, share in _arrays(todo, parallelism, _max_array_size()):
        ex = _slurm_executor(root / _SUBMITIT, {**opts, "array_parallelism": share})
        now = time.time()
        chunk_jobs = ex.map_array(fn, chunk)
        _record_submission(root, prof["name"], chunk, chunk_jobs, now)  # before the next sbatch
        jobs.extend(chunk_jobs)
    report.submitted = len(todo)
    report.job_ids = [j.job_id for j in jobs]
    if wait:
        report.statuses.extend(_wait_slurm(jobs, todo, specs, root, progress, poll_s, stages))
    return report


def _scancel(job_ids: Iterable[str]) -> None:
    arrays = sorted({i.split("_", 1)[0] for i in job_ids})
    if arrays:
        _slurm_cmd(["scancel", *arrays])


def _wait_slurm(jobs, todo, specs, root, progress, poll_s, stages) -> list[RunStatus]:  # noqa: ANN001
    """Poll squeue (not submitit, whose states need sacct) until no job is queued or running,
    then read each task's result; a task without one was killed (its log says why)."""
    bar = _bar(len(specs), len(specs) - len(todo), progress)
    done_before = len(specs) - len(todo)
    ids = [j.job_id for j in jobs]
    t0, silent, states = time.monotonic(), 0, {}
    try:
        with _sigterm_as_interrupt():
            while True:
                answer = _slurm_states(ids)
                silent = 0 if answer is not None else silent + 1
                if silent > 10:
                    raise RuntimeError(
                        "SLURM stopped answering (squeue fails) while waiting for the grid; the jobs "
                        f"{sorted({i.split('_')[0] for i in ids})} may still run: see `grid_status`"
                    )
                states = answer if answer is not None else states
                _advance(bar, done_before + sum(run_complete(s, root, stages) for s in todo))
                if answer is not None and not any(states.get(i) in _SLURM_ACTIVE for i in ids):
                    break
                # poll quickly at first, then at most once a minute
                time.sleep(min(60.0, max(poll_s, 0.05 * (time.monotonic() - t0))))
    except KeyboardInterrupt:
        _scancel(ids)
        bar.close()
        raise
    bar.close()
    if not all(j.paths.result_pickle.exists() for j in jobs):
        time.sleep(2)  # a shared file system may show a just-written result late
    statuses: list[RunStatus] = []
    for job, spec in zip(jobs, todo):
        log = str(job.paths.stderr)
        if not job.paths.result_pickle.exists():
            state = states.get(job.job_id, "ended")
            error = f"SLURM job {job.job_id} {state} without a result (cancelled, timed out, out of memory?)"
            statuses.append(RunStatus(spec, "failed", error=error, log=log))
            continue
        try:
            statuses.append(job.result())
        except Exception as exc:  # noqa: BLE001 - the task itself raised outside _guarded
            statuses.append(
                RunStatus(spec, "failed", error=f"{type(exc).__name__}: {exc}", log=log)
            )
    return statuses


def grid_status(
    profile: str | Mapping[str, Any],
    root: str | os.PathLike | None = None,
    stages: Sequence[str] = PIPELINE,
    *,
    executed: bool = True,
):  # noqa: ANN201
    """A table of every run of a profile's grid, from the run store and SLURM.

    ``state`` is ``done`` (every product of ``stages`` exists and — with ``executed``, the
    default, as the runner judges it — the executed notebook of each stage, which a notebook run
    saves last), ``pending`` / ``running`` (its SLURM job, as squeue reports it), ``failed``
    (``error.json`` in the run folder, or a SLURM job that ended before the run finished:
    cancelled, timed out, killed), ``unknown`` (submitted but SLURM does not answer) or
    ``missing`` (never submitted, run locally and unfinished, or killed after its tables but
    before its executed notebook was saved: ``error`` says so, and a rerun redoes that stage).
    ``executed=False`` counts products alone (grids run with a custom ``task``).
    ``log`` is the file to read for a failed run (the failed notebook, else the job's stderr);
    ``job_id`` and ``slurm_state`` are the latest SLURM job of the run, if any.
    """
    import pandas as pd

    prof = load_profile(profile)
    root = io.grid_root(prof["name"], root)
    specs = expand_grid(prof["grid"])
    jobs = _read_slurm_record(root)["jobs"]
    done = {s: run_complete(s, root, stages, executed=executed) for s in specs}
    asked = [
        jobs[str(s.relpath)]["job_id"] for s in specs if not done[s] and str(s.relpath) in jobs
    ]
    states = _slurm_states(asked)
    rows = []
    for spec in specs:
        d = spec.dir(root)
        entry = jobs.get(str(spec.relpath))
        job_id = entry["job_id"] if entry else ""
        slurm_state = (states or {}).get(job_id, "") if entry else ""
        err = None if done[spec] else io.read_json(d / "error.json", default=None)
        if err is not None and entry and float(err.get("time", 0)) < float(entry["submitted"]):
            err = None  # an error from before the latest submission
        log = error = ""
        if done[spec]:
            state = "done"
        elif slurm_state in _SLURM_ACTIVE:
            state, log = _slurm_word(slurm_state), entry["log"]
        elif err is not None:
            state, log = "failed", err.get("log") or str(d / "error.json")
            error = (err.get("error") or "").strip().splitlines()[-1:] or [""]
            error = error[0]
        elif entry and states is None:
            state, log, error = "unknown", entry["log"], "SLURM does not answer (squeue)"
        elif entry:
            state, log = "failed", entry["log"]
            ended = slurm_state or "ended (no longer known to SLURM)"
            error = f"SLURM job {job_id} {ended} before the run finished"
        else:
            state = "missing"
            if executed and run_complete(spec, root, stages, executed=False):
                error = "tables written but no executed notebook (killed while saving it?): rerun"
        rows.append(
            {
                **spec.as_dict(),
                "state": state,
                "job_id": job_id,
                "slurm_state": slurm_state,
                "log": log,
                "error": error,
            }
        )
    columns = [*io.KEYS, "state", "job_id", "slurm_state", "log", "error"]
    return pd.DataFrame(rows, columns=columns)


def default_root(profile: str) -> Path:
    return paths.runs_dir() / profile
