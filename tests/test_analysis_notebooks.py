"""The study notebooks 40/50/55 run end to end through `run_notebook` (each in its own process):
on the `ci` subset of the authors' tables, on a tiny synthetic runs.parquet shaped like the
smoke profile's (2 pruners × 2 sparsities × 1 seed: nothing can be estimated, every claim must
say "insufficient data"), and on a small synthetic grid where everything can be estimated."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from mgelib import analysis, io, paths, stats
from mgelib.notebooks import run_notebook

pytestmark = pytest.mark.notebooks

STEMS = ("40_ramanujan_vs_density", "50_predict_accuracy_drop", "55_rank_pruners")
PAPER = paths.paper_data_dir()
#: Lighter settings than the defaults (the notebooks' logic is the same).
FAST = {"n_boot": 200}
FAST_50 = {"importance_repeats": 3}
#: The figure each notebook draws from the data alone (so even on tiny data).
FIRST_FIGURE = {
    "40_ramanujan_vs_density": "correlations",
    "50_predict_accuracy_drop": "overview",
    "55_rank_pruners": "true_ranks",
}


def _params(stem: str, **kw) -> dict:
    return {**FAST, **(FAST_50 if stem.startswith("50") else {}), **kw}


def _check_outputs(out: Path, stem: str, *, decided: bool) -> pd.DataFrame:
    executed = out / "notebooks" / f"{stem}.ipynb"
    assert executed.exists() and executed.with_suffix(".html").exists()
    nb = nbformat.read(executed, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert "all checks passed" in "".join(
        o.get("text", "") for o in nb.cells[-1].get("outputs", [])
    )
    claims = analysis.check_claims(out)  # columns, rules, verdicts, finite decided rows
    ok = claims["verdict"] != stats.INSUFFICIENT
    assert ok.any() if decided else not ok.any()
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert " nan" not in text.lower().replace("nan]", ""), "a NaN was named in the prose"
    first = out / "figures" / FIRST_FIGURE[stem]
    assert first.with_suffix(".png").exists() and first.with_suffix(".pdf").exists()
    assert (out / "params.json").exists() and (out / "provenance.json").exists()
    return claims


# --------------------------------------------------------------------------- the authors' tables
@pytest.mark.paperdata
@pytest.mark.skipif(
    not (PAPER / "graph_metrics").is_dir(),
    reason=f"the authors' tables are not at {PAPER} (set MGELIB_PAPER_DATA)",
)
@pytest.mark.parametrize("stem", STEMS)
def test_paper_ci_subset(stem, tmp_path):
    out = tmp_path / stem
    run_notebook(stem, _params(stem, source="paper", paper_subset="ci", output_dir=str(out)),
                 output_dir=out)  # fmt: skip
    claims = _check_outputs(out, stem, decided=True)
    assert claims["verdict"].ne(stats.INSUFFICIENT).all()
    figures = {p.stem for p in (out / "figures").glob("*.png")}
    assert len(figures) >= 3, figures
    assert not list(out.glob("oof*.parquet")), "the authors' accuracies must not be copied out"


# --------------------------------------------------------------------------- our runs
def _grid_with_layers(root: Path, runs: pd.DataFrame, n_layers: int = 3) -> Path:
    """Per-run `ramanujan.parquet` (what 20_graph_metrics writes) with a planted signal."""
    rng = np.random.default_rng(1)
    for r in runs.itertuples():
        d = io.RunSpec(r.model, r.dataset, r.pruner, r.sparsity, r.seed).dir(root)
        d.mkdir(parents=True, exist_ok=True)
        signal = r.accuracy_drop
        layer = pd.DataFrame(
            {
                "layer_name": [f"l{i}" for i in range(n_layers)],
                "layer_id": range(n_layers),
                "degree_bound": signal + 0.01 * rng.normal(size=n_layers),
                "iterative_spectral_gap": 1 + rng.normal(size=n_layers),
                "iterative_degree_bound": rng.normal(size=n_layers),
                "layer_density": (1 - r.sparsity) * (1 + 0.05 * rng.normal(size=n_layers)),
                "density": 1 - r.sparsity,
            }
        )
        io.write_table(layer, d / "ramanujan.parquet")
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Like the smoke profile: 2 pruners × 2 sparsities × 1 seed + a dense run."""
    base = tmp_path_factory.mktemp("tiny")
    runs = analysis.synthetic_runs(n_pruners=2, sparsities=(0.6, 0.9), seeds=(0,))
    io.write_table(runs, base / "runs.parquet")
    return base, _grid_with_layers(base / "grid", runs[runs["pruner"] != "dense"])


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """7 pruners × 3 sparsities × 2 seeds: every analysis can be estimated."""
    base = tmp_path_factory.mktemp("small")
    runs = analysis.synthetic_runs(n_pruners=7, sparsities=(0.6, 0.9, 0.98), seeds=(0, 1))
    # +shuffle twins of two pruners (the null model): same drop, topology redrawn
    twins = runs[runs["pruner"].isin(["snip", "grasp"])].copy()
    twins["pruner"] += "+shuffle"
    twins["sink_nodes"] = twins["sink_nodes"].mean()
    runs = pd.concat([runs, twins], ignore_index=True)
    io.write_table(runs, base / "runs.parquet")
    return base, _grid_with_layers(base / "grid", runs[runs["pruner"] != "dense"])


def _run_on_runs(stem: str, base: Path, grid: Path, out: Path) -> None:
    params = _params(stem, source="runs", collected=str(base / "runs.parquet"), output_dir=str(out))
    if not stem.startswith("55"):
        params["grid_dir"] = str(grid)
    run_notebook(stem, params, output_dir=out)


@pytest.mark.parametrize("stem", STEMS)
def test_tiny_runs_end_with_insufficient_data(stem, tiny, tmp_path):
    base, grid = tiny
    out = tmp_path / stem
    _run_on_runs(stem, base, grid, out)
    claims = _check_outputs(out, stem, decided=False)
    assert (claims["verdict"] == stats.INSUFFICIENT).all()
    assert claims["statistic"].str.contains("not estimable").all()


@pytest.mark.parametrize("stem", STEMS)
def test_small_runs_are_estimated(stem, small, tmp_path):
    base, grid = small
    out = tmp_path / stem
    _run_on_runs(stem, base, grid, out)
    _check_outputs(out, stem, decided=True)
    scores = pd.read_parquet(
        out / ("scores_network.parquet" if stem.startswith("40") else "scores.parquet")
    )
    assert set(scores["folds"]) == {"kfold", "lopo"} and set(scores["learner"]) == {"ridge", "gbt"}
    oof = pd.read_parquet(next(out.glob("oof*.parquet")))  # our own runs: predictions kept
    assert np.isfinite(oof["y_pred"]).all()
    if stem.startswith("40"):
        layer = pd.read_parquet(out / "scores_layer.parquet")
        assert set(layer["layer_name"]) == {"l0", "l1", "l2"}
    if stem.startswith("50"):
        claims = pd.read_csv(out / "claims.csv")
        r2 = claims[claims["statistic"].str.startswith("ΔR², mean")]
        r2 = r2[r2["statistic"].str.contains("per_group, kfold, ridge")]
        assert (r2["estimate"] > 0).all()  # the planted signal: MGE beats BGE
        survival = pd.read_parquet(out / "shuffle_survival.parquet").set_index("quantity")
        assert survival.loc["sink_nodes", "n_pruners"] == 2
        assert abs(survival.loc["sink_nodes", "survival"]) < 0.2  # shuffling erased it
        assert "layer_density" in set(scores["feature_set"])
    if stem.startswith("55"):
        tau = pd.read_parquet(out / "tau_summary.parquet").set_index(
            ["feature_set", "folds", "learner"]
        )
        assert (
            tau.loc[("mge", "lopo", "ridge"), "tau_mean"]
            > tau.loc[("ramanujan", "lopo", "ridge"), "tau_mean"]
        )
