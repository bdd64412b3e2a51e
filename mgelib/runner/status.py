"""``grid_status``: one row per run of a grid, from the run store and SLURM."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from mgelib import io
from mgelib.notebooks import load_profile
from mgelib.runner.grid import PIPELINE, expand_grid, prepare_profile, run_complete
from mgelib.runner.slurm import _SLURM_ACTIVE, _read_slurm_record, _slurm_states, _slurm_word

__all__ = ["grid_status"]


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

    prof = prepare_profile(load_profile(profile))  # its pythonpath: the grid's specs import
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
