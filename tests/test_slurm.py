"""The grid on a live SLURM cluster (``.ci/slurm.sh start``; ``.ci/run`` starts one for CI).

Skipped when no SLURM is reachable (no ``sinfo``, or no node that takes jobs); with
``MGELIB_REQUIRE_SLURM=1`` (set by ``.ci/run``) they fail instead, so CI cannot skip them silently.
Accounting (``sacct``) is disabled on the test cluster: states come from squeue and the run store.

The per-run functions below stand in for the notebooks where the test is about the runner, not the
pipeline (cancellation, failures): they write the same products through ``mgelib.io`` in seconds.
They live in this module, which the SLURM jobs cannot import, so cloudpickle ships them by value.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from mgelib import io, runner
from mgelib.runner import RunStatus, grid_status, run, run_grid, slurm

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
cloudpickle.register_pickle_by_value(sys.modules[__name__])

STAGE = ("10_prune_and_train",)  # what the stand-in tasks below write
REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 900  # per wait: generous, the tests share a 2-CPU node and queue behind each other


def _slurm_problem() -> str | None:
    """Why SLURM cannot run the tests here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo/sbatch) on PATH; start a test cluster: .ci/slurm.sh start"
    try:
        proc = subprocess.run(
            ["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True, timeout=30
        )
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 30 s"
    if proc.returncode != 0:
        return f"SLURM does not answer: {proc.stderr.strip() or proc.stdout.strip()}"
    states = [s.strip().rstrip("*~#$@^-") for s in proc.stdout.split()]
    if not any(s in ("idle", "mix", "alloc") for s in states):
        return f"no SLURM node takes jobs (sinfo states: {states or 'none'})"
    return None


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster() -> None:
    problem = _slurm_problem()
    if problem is None:
        return
    if os.environ.get("MGELIB_REQUIRE_SLURM") == "1":
        pytest.fail(f"MGELIB_REQUIRE_SLURM=1 but {problem}")
    pytest.skip(problem)


# --------------------------------------------------------------------------- helpers
def _profile(name: str, grid: dict, **notebooks) -> dict:
    return {"name": name, "grid": {"models": ["conv6"], "datasets": ["digits"], **grid},
            "notebooks": notebooks}  # fmt: skip


def _squeue() -> str:
    return subprocess.run(
        ["squeue", "--array", "--states=all"], capture_output=True, text=True
    ).stdout


def _wait_for_grid(
    profile: dict, root: Path, stages=STAGE, deadline_s: float = DEADLINE_S, executed: bool = True
):
    """Poll grid_status until no run is pending or running; fail with the queue and logs.
    ``executed=False`` for grids of a custom task, which saves no executed notebook."""
    t0 = time.monotonic()
    while True:
        st = grid_status(profile, root, stages=stages, executed=executed)
        if not st["state"].isin(["pending", "running"]).any():
            return st
        if time.monotonic() - t0 > deadline_s:
            logs = "\n".join(
                f"--- {p}\n{Path(p).read_text()[-2000:]}"
                for p in st["log"]
                if p and Path(p).is_file()
            )
            slurm._scancel(j for j in st["job_id"] if j)
            pytest.fail(
                f"grid under {root} not finished after {deadline_s} s:\n{st.to_string()}\n"
                f"squeue:\n{_squeue()}\n{logs}"
            )
        time.sleep(0.5)


def _product_files(root: Path) -> list[Path]:
    return [
        p
        for p in root.glob("model=*/**/*")
        if p.suffix in (".parquet", ".npz") and not p.name.startswith(".")
    ]


def _assert_products_read_back(root: Path) -> int:
    files = _product_files(root)
    for p in files:
        if p.suffix == ".parquet":
            pd.read_parquet(p)
        else:
            with np.load(p) as z:
                [z[k] for k in z.files]
    return len(files)


def _executions(root: Path) -> dict[str, int]:
    log = root / "executions.log"
    lines = log.read_text().split() if log.exists() else []
    return {k: lines.count(k) for k in sorted(set(lines))}


# --------------------------------------------------------------------------- stand-in tasks
def _fake_stage(spec, profile, root, force=False) -> RunStatus:  # noqa: ANN001
    """Write the products of 10_prune_and_train through mgelib.io, under the run lock; log each
    execution. If ``<root>/HANG`` exists, runs above sparsity 0.55 stop midway: in the middle of
    an atomic write, after two products, for a minute."""
    run_dir = spec.dir(root)
    t0 = time.perf_counter()
    with run._run_lock(run_dir) as locked:
        if not locked:
            return RunStatus(spec, "locked")
        with open(Path(root) / "executions.log", "a") as fh:
            fh.write(f"{spec.relpath.as_posix()}\n")
        rng = np.random.default_rng(spec.seed)
        io.save_masks({"w": rng.random((64, 32)) > spec.sparsity}, run_dir / "masks.npz")
        io.write_table(pd.DataFrame({"layer": ["w"], "density": [1 - spec.sparsity]}),
                       run_dir / "layers.parquet")  # fmt: skip
        with io.atomic_path(run_dir / "history.parquet") as tmp:
            pd.DataFrame({"epoch": [1], "loss": [1.0]}).to_parquet(tmp)
            (Path(root) / f"midway-{spec.sparsity}").touch()
            if (Path(root) / "HANG").exists() and spec.sparsity > 0.55:
                time.sleep(60)
        io.write_table(pd.DataFrame({"accuracy": [1 - spec.sparsity]}), run_dir / "result.parquet")
    return RunStatus(spec, "done", seconds=time.perf_counter() - t0)


def _flaky_stage(spec, profile, root, force=False) -> RunStatus:  # noqa: ANN001
    """Raise for sparsity 0.7 (an error the task reports), die hard for 0.8 (a crash SLURM
    reports), else write the products."""
    if spec.sparsity == 0.7:
        raise ValueError(f"unknown model 'conv7' in cell {spec}")
    if spec.sparsity == 0.8:
        os._exit(3)
    return _fake_stage(spec, profile, root, force)


# --------------------------------------------------------------------------- tests
@pytest.mark.notebooks
def test_grid_through_slurm_matches_local(tmp_path: Path) -> None:
    """A 4-run grid of the whole per-run pipeline (10_prune_and_train then 20_graph_metrics; the
    smoke profile's model and data, 1 epoch; the dense baseline and three pruners, one of them
    random) as one job array gives the local executor's masks, accuracies and graph metrics."""
    smoke = _profile(
        "slurm-smoke",
        {"pruners": ["snip", "uniform", "er"], "sparsities": [0.9], "seeds": [0], "dense": True},
        **{"10_prune_and_train": {"epochs": 1, "threads": 1}, "20_graph_metrics": {"threads": 1}},
    )
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    report = run_grid(smoke, executor="slurm", root=on_slurm, wait=False)
    assert report.submitted == 4
    assert len({j.split("_")[0] for j in report.job_ids}) == 1, report.job_ids  # one array
    assert (on_slurm / "_submitit").is_dir()
    # resubmitting at once submits nothing: every run has a pending or running job
    again = run_grid(smoke, executor="slurm", root=on_slurm, wait=False)
    assert again.submitted == 0, again.job_ids
    assert {s.status for s in again.statuses} <= {"pending", "running", "skipped"}

    run_grid(smoke, executor="local", root=local, workers=2, progress=False)
    st = _wait_for_grid(smoke, on_slurm, stages=runner.PIPELINE)
    assert (st["state"] == "done").all(), st.to_string()

    for spec in runner.expand_grid(smoke["grid"]):
        a, b = (
            io.load_masks(spec.dir(on_slurm) / "masks.npz"),
            io.load_masks(spec.dir(local) / "masks.npz"),
        )
        assert a.keys() == b.keys() and all(bool((a[k] == b[k]).all()) for k in a), spec
        ra = io.read_table(spec.dir(on_slurm) / "result.parquet")
        rb = io.read_table(spec.dir(local) / "result.parquet")
        assert ra["accuracy"].tolist() == rb["accuracy"].tolist(), spec
        for stage in runner.stages_for(spec):
            assert (spec.dir(on_slurm) / "notebooks" / f"{stage}.ipynb").is_file(), (spec, stage)
        if spec.pruner != "dense":  # the dense baseline is only trained
            ma = io.read_table(spec.dir(on_slurm) / "metrics.parquet")
            mb = io.read_table(spec.dir(local) / "metrics.parquet")
            pd.testing.assert_frame_equal(ma, mb, obj=str(spec))
    # every task's log is under the grid root
    assert len(list((on_slurm / "_submitit").glob("*_log.err"))) == 4


def test_scancel_midway_then_resubmit(tmp_path: Path) -> None:
    """scancel while a run is halfway through an atomic write: every product reads back, the
    half-written run does not count as done, and resubmitting runs only the unfinished runs —
    even when the killed task's lock looks as if it came from another node."""
    prof = _profile(
        "slurm-cancel",
        {"pruners": ["snip"], "sparsities": [0.5, 0.6, 0.7, 0.8], "seeds": [0], "dense": False},
    )
    root = tmp_path / "grid"
    root.mkdir()
    (root / "HANG").touch()
    task = _fake_stage
    report = run_grid(
        prof, executor="slurm", root=root, wait=False, stages=STAGE, task=task,
        slurm={"array_parallelism": 1},
    )  # fmt: skip
    assert report.submitted == 4
    specs = runner.expand_grid(prof["grid"])
    first, second = specs[0], specs[1]
    t0 = time.monotonic()
    while not (io.run_done(first.dir(root), STAGE) and (root / "midway-0.6").exists()):
        if time.monotonic() - t0 > DEADLINE_S:
            slurm._scancel(report.job_ids)
            pytest.fail(f"the array did not reach its second run in {DEADLINE_S} s:\n{_squeue()}")
        time.sleep(0.2)
    subprocess.run(["scancel", report.job_ids[0].split("_")[0]], check=True)
    st = _wait_for_grid(prof, root, executed=False)

    assert st["state"].tolist() == ["done", "failed", "failed", "failed"], st.to_string()
    assert set(st["slurm_state"][1:]) == {"CANCELLED"}, st.to_string()
    assert all(Path(p).parent == root / "_submitit" for p in st["log"][1:])
    assert _executions(root) == {first.relpath.as_posix(): 1, second.relpath.as_posix(): 1}
    half = second.dir(root)
    assert (half / "masks.npz").exists() and (half / "layers.parquet").exists()
    assert not io.stage_done(half, STAGE[0])  # the temporary file is no product
    assert list(half.glob(".history.parquet.*.tmp")), sorted(p.name for p in half.iterdir())
    assert _assert_products_read_back(root) == 4 + 2
    # as if the killed task had run on another node: its pid cannot be checked from here
    (half / ".lock").write_text("node-b:4242")
    io.update_json(half / ".lock.slurm", "owner", "node-b:4242")

    (root / "HANG").unlink()
    again = run_grid(
        prof, executor="slurm", root=root, wait=False, stages=STAGE, task=task,
        slurm={"array_parallelism": 2},
    )  # fmt: skip
    assert again.submitted == 3
    st = _wait_for_grid(prof, root, executed=False)
    assert (st["state"] == "done").all(), st.to_string()
    counts = _executions(root)
    assert counts == {s.relpath.as_posix(): 1 + (s == second) for s in specs}, counts
    assert _assert_products_read_back(root) == 4 * 4
    assert not list(root.glob("model=*/**/.*.tmp")) and not list(root.glob("model=*/**/.lock"))
    # a finished grid submits nothing
    assert run_grid(prof, executor="slurm", root=root, wait=False, stages=STAGE).submitted == 0


def test_failures_are_reported_with_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run raises, one dies; the others finish, and both the waiting report and grid_status
    name the failed runs with a log that exists. MaxArraySize 3 makes the 5 runs two arrays."""
    prof = _profile(
        "slurm-fail",
        {"pruners": ["snip"], "sparsities": [0.5, 0.6, 0.7, 0.8, 0.9], "seeds": [0],
         "dense": False},
    )  # fmt: skip
    root = tmp_path / "grid"
    monkeypatch.setattr(slurm, "_max_array_size", lambda: 3)
    out: dict = {}

    def submit_and_wait() -> None:
        try:
            out["report"] = run_grid(
                prof, executor="slurm", root=root, wait=True, stages=STAGE, task=_flaky_stage,
                progress=False, poll_s=0.5,
            )  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            out["error"] = exc

    waiter = threading.Thread(target=submit_and_wait, daemon=True)
    waiter.start()
    waiter.join(DEADLINE_S)
    if waiter.is_alive():
        slurm._scancel(j["job_id"] for j in slurm._read_slurm_record(root)["jobs"].values())
        pytest.fail(f"run_grid(wait=True) did not return in {DEADLINE_S} s:\n{_squeue()}")
    if "error" in out:
        raise out["error"]
    report = out["report"]
    assert len({j.split("_")[0] for j in report.job_ids}) == 2, report.job_ids
    failed = {s.spec.sparsity: s for s in report.failed}
    assert sorted(failed) == [0.7, 0.8], report.summary()
    assert "conv7" in failed[0.7].error and Path(failed[0.7].log).name == "error.json"
    assert "without a result" in failed[0.8].error and failed[0.8].log.endswith("_log.err")
    assert all(Path(s.log).is_file() for s in report.failed)
    assert len(report.executed) == 3

    st = grid_status(prof, root, stages=STAGE, executed=False).set_index("sparsity")
    assert st["state"].to_dict() == {0.5: "done", 0.6: "done", 0.7: "failed", 0.8: "failed",
                                     0.9: "done"}  # fmt: skip
    assert "conv7" in st.loc[0.7, "error"] and Path(st.loc[0.7, "log"]).is_file()
    assert st.loc[0.8, "slurm_state"] == "FAILED" and Path(st.loc[0.8, "log"]).is_file()
    assert "conv7" in Path(st.loc[0.7, "log"]).read_text()


def test_invoke_grid_submits_and_returns(tmp_path: Path) -> None:
    """`invoke grid --executor slurm` returns right after submitting one array of the real
    pipeline; `invoke grid-status` shows the runs queued, then (after scancel) failed with logs."""
    import yaml

    name = "slurm-cli"
    prof = _profile(
        name,
        {"pruners": ["snip"], "sparsities": [0.9], "seeds": [0, 1], "dense": False},
        **{"10_prune_and_train": {"epochs": 1, "threads": 1}},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(prof))
    env = {**os.environ, "MGELIB_RUNS": str(tmp_path / "runs")}
    invoke = functools.partial(
        subprocess.run, cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    t0 = time.monotonic()
    sub = invoke([sys.executable, "-m", "invoke", "grid", "--profile", str(path), "--executor",
                  "slurm", "--time", "10", "--array-parallelism", "1"])  # fmt: skip
    took = time.monotonic() - t0
    assert sub.returncode == 0, sub.stdout + sub.stderr
    assert "submitted 2 runs as SLURM job array" in sub.stdout, sub.stdout
    assert took < 60, f"invoke grid --executor slurm took {took:.0f} s: it must not wait"
    root = tmp_path / "runs" / name
    jobs = slurm._read_slurm_record(root)["jobs"]
    array = {j["job_id"].split("_")[0] for j in jobs.values()}
    assert len(jobs) == 2 and len(array) == 1
    status = invoke([sys.executable, "-m", "invoke", "grid-status", "--profile", str(path)])
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"queued or running in SLURM job array {array.pop()}" in status.stdout, status.stdout

    slurm._scancel(j["job_id"] for j in jobs.values())
    _wait_for_grid(prof, root)
    status = invoke([sys.executable, "-m", "invoke", "grid-status", "--profile", str(path)])
    assert "2 failed" in status.stdout and "CANCELLED" in status.stdout, status.stdout
    assert str(root / "_submitit") in status.stdout and "resubmit" in status.stdout


@pytest.mark.notebooks
def test_invoke_grid_runs_user_code_locally_and_on_slurm(tmp_path: Path) -> None:
    """A user profile outside the repository — a user model by module spec, importable only
    through the profile's ``pythonpath`` (not the caller's PYTHONPATH), and a user pruner by
    file spec, plain and ``+shuffle`` — runs through `invoke grid` locally and on SLURM: the
    same run folders, the same masks, graph metrics for every run."""
    import yaml
    from user_code import write_user_code

    user = write_user_code(tmp_path / "user")
    prof = {
        "description": "a user's own model and pruner",
        "pythonpath": [str(user)],
        "grid": {"models": ["mymodels:tiny_vgg"], "datasets": ["digits"],
                 "pruners": [f"{user}/mypruners.py:magnitude",
                             f"{user}/mypruners.py:magnitude+shuffle"],
                 "sparsities": [0.9], "seeds": [0], "dense": False},
        "notebooks": {"10_prune_and_train": {"epochs": 1, "threads": 1},
                      "20_graph_metrics": {"threads": 1, "motif_budget": 1e7}},
    }  # fmt: skip
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(prof))
    roots = {}
    for executor in ("local", "slurm"):
        env = {**os.environ, "MGELIB_RUNS": str(tmp_path / executor)}
        assert str(user) not in env.get("PYTHONPATH", "")
        proc = subprocess.run(
            [sys.executable, "-m", "invoke", "grid", "--profile", str(path), "--executor",
             executor, "--wait", "--time", "15"],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=DEADLINE_S,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        roots[executor] = tmp_path / executor / "mine"
    runs = {executor: sorted(io.iter_runs(root)) for executor, root in roots.items()}
    labels = [spec.pruner for spec, _ in runs["slurm"]]
    assert len(labels) == 2 and labels[1] == labels[0] + "+shuffle", labels
    assert [s for s, _ in runs["local"]] == [s for s, _ in runs["slurm"]]
    for (spec, local), (_, on_slurm) in zip(runs["local"], runs["slurm"]):
        assert spec.model == "mymodels.tiny_vgg"
        assert io.run_done(local) and io.run_done(on_slurm), spec
        a, b = io.load_masks(local / "masks.npz"), io.load_masks(on_slurm / "masks.npz")
        assert all(np.array_equal(a[k], b[k]) for k in a), spec
        prov = io.read_json(on_slurm / "provenance.json")["10_prune_and_train"]["specs"]
        assert prov["model"]["file"] == str(user / "mymodels.py")
        assert prov["pruner"]["file"] == str(user / "mypruners.py")
