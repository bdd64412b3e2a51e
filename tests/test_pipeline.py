"""The whole pipeline on the smoke profile through papermill (issue 7): a killed `reproduce`
resumes without redoing finished runs, and the tables it writes are complete and consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mgelib import io, stats
from mgelib.metrics import TOPOMETRICS
from mgelib.notebooks import load_profile
from mgelib.runner import expand_grid, run_complete, stages_for

pytestmark = [pytest.mark.notebooks, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Run `invoke reproduce --profile smoke`, kill it once a run is finished, run it again."""
    base = tmp_path_factory.mktemp("smoke")
    env = dict(os.environ, MGELIB_RUNS=str(base / "runs"), MGELIB_REPORTS=str(base / "reports"))
    env["MGELIB_QUIET"] = "1"
    cmd = [sys.executable, "-m", "invoke", "reproduce", "--profile", "smoke"]
    grid = base / "runs" / "smoke"
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = None
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        done = [d for s, d in io.iter_runs(grid) if not s.dense and run_complete(s, grid)]
        if done:
            first = done[0]
            break
        time.sleep(1)
    assert first is not None, (
        f"no run finished before the kill:\n{proc.communicate()[0] if proc.poll() is not None else ''}"
    )
    stamp = (first / "metrics.parquet").stat().st_mtime_ns
    os.killpg(proc.pid, signal.SIGKILL)  # kill the driver and its workers mid-grid
    proc.wait()
    t0 = time.time()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return {
        "grid": grid,
        "reports": base / "reports" / "smoke",
        "first": first,
        "stamp": stamp,
        "log": out.stdout,
        "seconds": time.time() - t0,
    }


def test_restart_does_not_redo_finished_runs(smoke):
    assert (smoke["first"] / "metrics.parquet").stat().st_mtime_ns == smoke["stamp"]
    specs = expand_grid(load_profile("smoke")["grid"])
    assert all(run_complete(s, smoke["grid"]) for s in specs)


def test_runs_table(smoke):
    runs = pd.read_parquet(smoke["reports"] / "30_collect_runs" / "runs.parquet")
    specs = expand_grid(load_profile("smoke")["grid"])
    assert len(runs) == len(specs)
    sparse = runs[runs["pruner"] != "dense"]
    assert np.allclose(sparse["sparsity_realised"], sparse["sparsity"], atol=1e-5)
    assert runs["accuracy"].between(0, 1).all() and runs["acc_dense"].notna().all()
    for col in [
        "accuracy_drop",
        "relative_drop",
        *TOPOMETRICS,
        "rolled__k-core__mean",
        "rolled_channel__spectral_gap__wmean",
        "degree_bound__mean",
        "density_realised",
    ]:
        assert col in runs.columns, col
    # Graph metrics are measured on the sparse runs (a dense baseline is only trained).
    assert sparse[list(TOPOMETRICS)].notna().all().all(), sparse[list(TOPOMETRICS)].isna().sum()


def test_per_run_products_and_executed_notebooks(smoke):
    for spec, d in io.iter_runs(smoke["grid"]):
        for stage in stages_for(spec):
            for f in io.STAGE_PRODUCTS[stage]:
                assert (d / f).exists(), f"{spec}: {f}"
            assert (d / "notebooks" / f"{stage}.ipynb").exists()
            # per-run HTML is off for grid runs (profile `run_html`), checkpoints are dropped
            assert not (d / "notebooks" / f"{stage}.html").exists()
        assert not (d / "checkpoint.pt").exists()
        layers = pd.read_parquet(d / "layers.parquet")
        assert abs(1 - layers["kept"].sum() / layers["weights"].sum() - spec.sparsity) < 1e-5
        if not spec.dense:
            ram = pd.read_parquet(d / "ramanujan.parquet")
            assert ram["no_weights"].sum() == layers["kept"].sum()


def test_analysis_notebooks_and_figures(smoke):
    for stem in (
        "30_collect_runs",
        "40_ramanujan_vs_density",
        "50_predict_accuracy_drop",
        "55_rank_pruners",
        "60_mge_figures",
    ):
        d = smoke["reports"] / stem
        assert (d / "notebooks" / f"{stem}.ipynb").exists(), stem
        assert list(d.rglob("*.png")), f"{stem} drew no figure"
    for stem in ("40_ramanujan_vs_density", "50_predict_accuracy_drop", "55_rank_pruners"):
        claims = pd.read_csv(smoke["reports"] / stem / "claims.csv")
        assert list(claims.columns) == list(stats.CLAIMS_COLUMNS)  # rule + verdict per row


def test_dst_run_keeps_its_masks_and_trajectory(smoke):
    dst_runs = [(s, d) for s, d in io.iter_runs(smoke["grid"]) if s.pruner == "rigl"]
    assert dst_runs, "the smoke profile has one RigL run"
    for spec, d in dst_runs:
        for f in ("masks.npz", "final_masks.npz", "topology_trajectory.parquet"):
            assert (d / f).exists(), f"{spec}: {f}"
        traj = pd.read_parquet(d / "topology_trajectory.parquet")
        assert list(traj["kind"]) == ["init", "update", "update", "final"]  # every 4 of 11 steps
        assert traj["exploration"].iloc[-1] > 1 - spec.sparsity
        assert traj[list(TOPOMETRICS)].iloc[[0, -1]].notna().all().all()
        initial, final = io.load_masks(d / "masks.npz"), io.load_masks(d / "final_masks.npz")
        assert sum(int(m.sum()) for m in initial.values()) == sum(
            int(m.sum()) for m in final.values()
        )
    d = smoke["reports"] / "25_topology_during_training"
    assert (d / "notebooks" / "25_topology_during_training.ipynb").exists()
    assert len(list((d / "figures").glob("*.png"))) == 3
