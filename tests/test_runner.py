"""The grid runner: expansion, resume after an interruption, per-run failures, locks."""

from __future__ import annotations

import os
import sys

import cloudpickle
import pandas as pd
import pytest

from mgelib import io, runner
from mgelib.runner import run

# submitit pickles the task with cloudpickle; the test module is not importable in the worker.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

GRID = {
    "models": ["conv6"],
    "datasets": ["digits"],
    "pruners": ["snip", "er"],
    "sparsities": [0.5, 0.9],
    "seeds": [0],
    "dense": True,
}


def profile(**grid):
    return {"name": "unit", "grid": {**GRID, **grid}, "executor": {"workers": 2}}


def fake_task(spec, profile, root, *, force=False):
    """Stands in for the notebooks: writes every product, logs the execution."""
    d = spec.dir(root)
    with open(os.path.join(root, "executions.log"), "a") as fh:
        fh.write(f"{spec}\n")
    if spec.pruner == "er" and spec.sparsity == 0.9 and profile.get("fail"):
        raise RuntimeError(f"bad parameter in {spec}")
    for stage in runner.stages_for(spec):
        for f in (*io.STAGE_PRODUCTS[stage], f"notebooks/{stage}.ipynb"):
            io.write_table(pd.DataFrame({"accuracy": [1 - spec.sparsity]}), d / f)
    return runner.RunStatus(spec, "done")


def executions(root):
    path = root / "executions.log"
    return path.read_text().splitlines() if path.exists() else []


def test_expand_grid_adds_one_dense_baseline_per_model_dataset_seed():
    specs = runner.expand_grid({**GRID, "seeds": [0, 1]})
    assert len(specs) == 2 * (1 + 2 * 2)
    assert sum(s.pruner == "dense" for s in specs) == 2
    assert all(s.sparsity == 0 for s in specs if s.pruner == "dense")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": ["vgg"]}, "unknown model"),
        ({"pruners": ["magic"]}, "unknown pruner"),
        ({"sparsities": [1.0]}, r"\[0, 1\)"),
        ({"colour": "red"}, "unknown grid keys"),
        ({"datasets": []}, "names no datasets"),
    ],
)
def test_expand_grid_rejects_bad_grids(change, message):
    with pytest.raises(ValueError, match=message):
        runner.expand_grid({**GRID, **change})


@pytest.mark.parametrize("executor", ["debug", "local"])
def test_interrupted_grid_resumes_only_the_remaining_runs(tmp_path, executor):
    specs = runner.expand_grid(GRID)
    n, k = len(specs), 2
    for spec in specs[:k]:  # a grid interrupted after k of n runs
        fake_task(spec, {}, tmp_path)
    assert len(runner.pending_runs(specs, tmp_path)) == n - k
    report = runner.run_grid(
        profile(), executor=executor, root=tmp_path, task=fake_task, progress=False, poll_s=0.1
    )
    assert report.total == n and report.submitted == n - k
    assert len(executions(tmp_path)) == n  # k before + n − k now, none twice
    assert len(set(executions(tmp_path))) == n
    assert not report.failed and len(report.executed) == n - k
    again = runner.run_grid(
        profile(), executor=executor, root=tmp_path, task=fake_task, progress=False
    )
    assert again.submitted == 0 and len(executions(tmp_path)) == n


def test_failures_are_reported_per_run_and_others_finish(tmp_path):
    prof = {**profile(), "fail": True}
    report = runner.run_grid(
        prof, executor="local", root=tmp_path, task=fake_task, progress=False, poll_s=0.1
    )
    assert [str(s.spec) for s in report.failed] == ["conv6/digits/er/s=0.9/seed=0"]
    assert "bad parameter" in report.failed[0].error
    assert report.failed[0].log.endswith("error.json")
    assert len(report.executed) == report.total - 1
    with pytest.raises(runner.GridError, match="1 of 5 runs failed"):
        report.raise_for_failures()
    status = runner.grid_status(prof, root=tmp_path)
    assert status.set_index("pruner").loc["er"].query("sparsity == 0.9")["state"].item() == "failed"
    assert (status["state"] == "done").sum() == 4


def test_a_run_locked_by_a_live_process_is_not_run_twice(tmp_path):
    spec = runner.expand_grid(GRID)[1]
    d = spec.dir(tmp_path)
    d.mkdir(parents=True)
    import socket

    (d / ".lock").write_text(f"{socket.gethostname()}:{os.getpid()}")  # held by this process
    assert runner.run_one(spec, profile(), tmp_path).status == "locked"
    (d / ".lock").write_text(f"{socket.gethostname()}:999999999")  # a dead process: taken over
    with run._run_lock(d) as ok:
        assert ok
    assert not (d / ".lock").exists()


def test_grid_status_counts_a_run_done_only_once_its_notebooks_are_saved(tmp_path):
    """Tables written, executed notebook not yet saved (still saving, or killed meanwhile): the
    runner would redo the stage, so grid_status must not call the run done either."""
    prof = profile(pruners=["snip"], sparsities=[0.9], dense=False)
    (spec,) = runner.expand_grid(prof["grid"])
    fake_task(spec, prof, tmp_path)
    for nb in (spec.dir(tmp_path) / "notebooks").glob("*.ipynb"):
        nb.unlink()
    st = runner.grid_status(prof, root=tmp_path)
    assert st["state"].item() == "missing" and "no executed notebook" in st["error"].item()
    assert runner.pending_runs([spec], tmp_path) == [spec]
    assert runner.grid_status(prof, root=tmp_path, executed=False)["state"].item() == "done"
