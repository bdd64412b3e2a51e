"""The SLURM executor: job arrays through submitit, the record of each run's latest job, job
states from squeue (sacct where accounting answers), cancellation, and the clean-up a run's next
task does after a killed one."""

from __future__ import annotations

import functools
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mgelib import io
from mgelib.runner.grid import (
    _SUBMITIT,
    GridReport,
    RunStatus,
    _advance,
    _bar,
    _sigterm_as_interrupt,
    run_complete,
)
from mgelib.runner.run import TaskFn, _guarded, run_one

__all__: list[str] = []  # used through run_grid and grid_status

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
