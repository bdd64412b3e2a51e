"""mgelib.analysis: what the study notebooks 40/50/55 share — sources, feature sets, evaluation
that skips what tiny data cannot estimate, claims tables, summaries and figures.

Synthetic runs (no files needed) except the tests marked ``paperdata``.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from mgelib import analysis, io, paperdata, paths, stats

PAPER = paths.paper_data_dir()
needs_paper = pytest.mark.skipif(
    not (PAPER / "graph_metrics").is_dir(),
    reason=f"the authors' tables are not at {PAPER} (set MGELIB_PAPER_DATA)",
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def runs() -> pd.DataFrame:
    return analysis.synthetic_runs(n_pruners=7, sparsities=(0.6, 0.9, 0.98), seeds=(0, 1))


@pytest.fixture(scope="module")
def evaluated(runs):
    nets = runs[runs["pruner"] != "dense"]
    sets, _ = analysis.select_feature_sets(nets, ["sparsity", "rolled", "mge", "density"])
    scores, oof, reasons = analysis.evaluate_or_skip(
        nets, sets, "accuracy_drop", folds=("kfold", "lopo"), learners=("ridge",), n_boot=100,
        progress=False, by_sparsity=True,
    )  # fmt: skip
    return nets, sets, scores, oof, reasons


def _write_runs(tmp_path, runs):
    path = tmp_path / "runs.parquet"
    io.write_table(runs, path)
    return path


# --------------------------------------------------------------------------- data
def test_parse_list_and_target_column():
    assert analysis.parse_list(" ridge,gbt ", stats.LEARNERS, "learners") == ["ridge", "gbt"]
    with pytest.raises(ValueError, match="learners.*svm"):
        analysis.parse_list("ridge,svm", stats.LEARNERS, "learners")
    with pytest.raises(ValueError, match="not allowed"):
        analysis.parse_list("", stats.LEARNERS, "learners")
    assert analysis.target_column("paper") == "accuracy"
    assert analysis.target_column("runs") == "accuracy_drop"
    with pytest.raises(ValueError, match="source must be one of"):
        analysis.target_column("mine")


def test_resolve_output_dir_defaults_to_the_profile_report_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("MGELIB_REPORTS", str(tmp_path / "reports"))
    out = analysis.resolve_output_dir("", "smoke", "40_x")
    assert out == tmp_path / "reports" / "smoke" / "40_x" and out.is_dir()
    assert analysis.resolve_output_dir(str(tmp_path / "o"), "smoke", "40_x") == tmp_path / "o"


def test_synthetic_runs_have_the_collected_schema(runs):
    sets = paperdata.feature_sets(aggregations=("mean", "wmean"))
    needed = {c for cols in sets.values() for c in cols}
    needed |= {*paperdata.KEY, "accuracy", "accuracy_drop", "relative_drop", "acc_dense"}
    assert needed <= set(runs.columns)
    dense = runs[runs["pruner"] == "dense"]
    assert len(dense) == 2 and (dense["sparsity"] == 0).all()
    np.testing.assert_allclose(runs["accuracy_drop"], runs["acc_dense"] - runs["accuracy"])
    assert abs(dense["accuracy_drop"].mean()) < 1e-12  # the reference is the dense mean


def test_load_networks_from_runs_drops_dense_and_filters_pruners(tmp_path, runs):
    path = _write_runs(tmp_path, runs.assign(accuracy_drop=runs["accuracy_drop"].where(
        runs.index != 5)))  # fmt: skip
    nets = analysis.load_networks("runs", collected=str(path))
    assert "dense" not in set(nets["pruner"]) and len(nets) == len(runs) - 2 - 1
    few = analysis.load_networks("runs", collected=str(path), pruners="snip,grasp")
    assert set(few["pruner"]) == {"snip", "grasp"}
    with pytest.raises(ValueError, match="pruners"):
        analysis.load_networks("runs", collected=str(path), pruners="snip,bogus")
    with pytest.raises(FileNotFoundError, match="30_collect_runs"):
        analysis.load_networks("runs", collected=str(tmp_path / "none.parquet"))
    with pytest.raises(ValueError, match="paper_subset"):
        analysis.load_networks("runs", collected=str(path), paper_subset="all")


def test_load_networks_default_path_follows_the_profile(tmp_path, monkeypatch, runs):
    monkeypatch.setenv("MGELIB_REPORTS", str(tmp_path))
    (tmp_path / "smoke" / "30_collect_runs").mkdir(parents=True)
    io.write_table(runs, tmp_path / "smoke" / "30_collect_runs" / "runs.parquet")
    assert len(analysis.load_networks("runs", profile="smoke")) == len(runs) - 2


@pytest.mark.paperdata
@needs_paper
def test_paper_ci_subset_is_small_and_deterministic():
    nets = analysis.load_networks("paper", paper_subset="ci")
    groups = set(map(tuple, nets[["model", "dataset"]].drop_duplicates().to_numpy()))
    assert groups == set(analysis.CI_SUBSET["groups"])
    assert set(nets["pruner"]) == set(paperdata.PAI_PRUNERS)
    assert set(nets["sparsity"]) == set(analysis.CI_SUBSET["sparsities"])
    assert len(nets) == 84
    pd.testing.assert_frame_equal(nets, analysis.load_networks("paper", paper_subset="ci"))
    layers = analysis.load_layers("paper", nets)
    assert set(map(tuple, layers[list(paperdata.KEY)].drop_duplicates().to_numpy())) <= set(
        map(tuple, nets[list(paperdata.KEY)].to_numpy())
    )
    assert {"layer_name", "layer_id", "degree_bound", "layer_density", "accuracy"} <= set(layers)


def test_load_layers_from_a_grid(tmp_path, runs):
    grid = tmp_path / "grid"
    nets = runs[runs["pruner"] != "dense"].reset_index(drop=True)
    for r in nets.head(4).itertuples():
        d = io.RunSpec(r.model, r.dataset, r.pruner, r.sparsity, r.seed).dir(grid)
        d.mkdir(parents=True)
        layer = pd.DataFrame(
            {
                "layer_name": ["a", "b"],
                "layer_id": [0, 1],
                "degree_bound": [0.1, 0.2],
                "iterative_spectral_gap": [1.0, np.nan],
                "iterative_degree_bound": [0.3, 0.4],
                "layer_density": [0.5, 0.4],
                "density": [0.5, 0.4],  # the per-layer density of ramanujan(): not the target
            }
        )
        io.write_table(layer, d / "ramanujan.parquet")
    layers = analysis.load_layers("runs", nets, grid_dir=str(grid))
    assert len(layers) == 8 and "accuracy_drop" in layers and "density" not in layers
    empty = analysis.load_layers("runs", nets, grid_dir=str(tmp_path / "nothing"))
    assert len(empty) == 0 and "layer_density" in empty.columns


def test_select_feature_sets_drops_missing_columns_with_a_note(runs):
    df = runs.drop(columns=["sink_nodes"]).assign(
        **{c: np.nan for c in paperdata.feature_sets()["rolled"]}
    )
    sets, notes = analysis.select_feature_sets(df, ["mge", "rolled", "sparsity"])
    assert "sink_nodes" not in sets["mge"] and len(sets["mge"]) == 15
    assert "rolled" not in sets and sets["sparsity"] == ["sparsity"]
    assert any("sink_nodes" in n for n in notes) and any("rolled: no usable" in n for n in notes)
    with pytest.raises(ValueError, match="unknown feature set 'mgee'"):  # a typo raises
        analysis.select_feature_sets(df, ["mgee"])
    layered, _ = analysis.select_feature_sets(
        df, ["layer_density", "mge+layer_density"], layer_density=["sparsity"]
    )
    assert (
        layered["layer_density"] == ["sparsity"] and layered["mge+layer_density"][-1] == "sparsity"
    )


# --------------------------------------------------------------------------- evaluation
def test_evaluate_or_skip_returns_reasons_instead_of_raising(runs, capsys):
    tiny = runs[(runs["pruner"].isin(["snip", "synflow"])) & (runs["seed"] == 0)].head(4)
    scores, oof, reasons = analysis.evaluate_or_skip(tiny, {"s": ["sparsity"]}, "accuracy_drop")
    assert len(scores) == len(oof) == 0 and "4 rows < 10" in reasons[0]
    assert "skipped: 4 rows" in capsys.readouterr().out
    _, _, none = analysis.evaluate_or_skip(runs, {}, "accuracy_drop")
    assert "no feature set" in none[0]
    one = runs[runs["pruner"] == "snip"]  # a single pruner: lopo is skipped, kfold runs
    scores, _, reasons = analysis.evaluate_or_skip(
        one, {"s": ["sparsity"]}, "accuracy_drop", folds=("kfold", "lopo"), learners=("ridge",),
        n_boot=50, progress=False, min_group_size=5,
    )  # fmt: skip
    assert set(scores["folds"]) == {"kfold"} and any("single pruner" in r for r in reasons)


def test_evaluate_or_skip_recovers_the_planted_signal(evaluated):
    _, sets, scores, _, reasons = evaluated
    assert reasons == [] or all("pooled" not in r for r in reasons)
    pg = scores[(scores["scope"] == "per_group") & (scores["folds"] == "kfold")]
    r2 = pg.set_index("feature_set")["r2"]
    assert r2["mge"] > 0.9 and r2["mge"] > r2["rolled"] and r2["mge"] > r2["density"]
    assert set(sets) == {"sparsity", "rolled", "mge", "density"}


def test_claims_rows_and_claims_csv(evaluated, tmp_path):
    _, _, _, oof, _ = evaluated
    rows = analysis.safe_claim(
        stats.claim_mge_vs_bge, oof, claim="mge_vs_bge", comparison="mge − rolled",
        statistic="ΔR²", bge=["rolled"], n_boot=100, subset="pai",
    )  # fmt: skip
    assert len(rows) == 2 and all(r["verdict"] == "supported" for r in rows)  # kfold, lopo
    with pytest.raises(ValueError, match="'not_a_set' is not in the OOF table"):
        analysis.safe_claim(  # a typo in a feature-set name is a bug: it raises
            stats.claim_mge_vs_bge, oof, claim="mge_vs_bge", comparison="mge − x",
            statistic="ΔR²", bge=["not_a_set"],
        )  # fmt: skip
    rows += analysis.safe_claim(  # too little data: the one way to "insufficient data"
        stats.claim_mge_vs_bge, oof, claim="mge_vs_bge", comparison="mge − rolled",
        statistic="ΔR²", bge=["rolled"], scope="per_nothing", subset="pai",
    )  # fmt: skip
    rows += analysis.safe_claim(
        stats.claim_ranking, pd.DataFrame(), claim="ranking", comparison="a − b", statistic="Δτ"
    )
    table = analysis.write_claims(rows, tmp_path)
    written = analysis.check_claims(tmp_path)
    assert list(written.columns) == list(stats.CLAIMS_COLUMNS) == list(table.columns[:9])
    assert written["verdict"].tolist() == [
        "supported", "supported", stats.INSUFFICIENT, stats.INSUFFICIENT
    ]  # fmt: skip
    assert "not estimable" in written["statistic"].iloc[2]
    assert written["claim"].iloc[3] == stats.CLAIMS["ranking"]
    assert written["rule"].str.contains("superiority").iloc[0]
    detail = pd.read_parquet(tmp_path / "claims_detail.parquet")
    assert {"scope", "learner", "folds", "rule", "verdict"} <= set(detail.columns)
    with pytest.raises(ValueError, match="decided"):  # a decided row needs a finite CI
        analysis.write_claims([{**rows[0], "estimate": np.nan}], tmp_path)


def test_claims_table_rejects_an_unknown_verdict_and_a_missing_rule():
    row = dict(zip(stats.CLAIMS_COLUMNS, ["c", "", "a − b", "s", 0.1, 0.0, 0.2, "r", "maybe"]))
    with pytest.raises(ValueError, match="maybe"):
        stats.claims_table([row])
    with pytest.raises(ValueError, match="no decision rule"):
        stats.claims_table([{**row, "verdict": "supported", "rule": " "}])


def test_group_summary_and_pooled_within_r2():
    scores = pd.DataFrame(
        {"scope": "per_group", "feature_set": "a", "learner": "ols", "folds": "kfold",
         "r2": [0.9, 0.8, -50.0], "mae": [0.1, 0.2, 0.3]}
    )  # fmt: skip
    s = analysis.group_summary(scores).iloc[0]
    assert s["n_units"] == 3 and s["r2_median"] == 0.8 and s["r2_mean"] < -10
    g = np.repeat(["a", "b"], 10)
    x = np.tile(np.arange(10.0), 2)
    y = np.where(g == "a", 0.0, 100.0) + x
    oof = pd.DataFrame({"scope": "pooled", "feature_set": "f", "learner": "ols",
                        "folds": "kfold", "model": g, "dataset": "d", "y": y})  # fmt: skip
    exact = analysis.pooled_within_r2(oof.assign(y_pred=y))
    means = analysis.pooled_within_r2(oof.assign(y_pred=np.where(g == "a", 4.5, 104.5)))
    assert exact["r2_within"].iloc[0] == pytest.approx(1.0)
    assert means["r2_within"].iloc[0] == pytest.approx(0.0)  # the fixed effect alone: 0 within


def test_paired_differences(evaluated):
    _, _, _, oof, _ = evaluated
    d = analysis.paired_differences(oof, [("mge", "sparsity"), ("mge", "absent")], n_boot=50)
    assert set(d["comparison"]) == {"mge − sparsity"} and len(d) == 2  # kfold and lopo
    assert (d["estimate"] > 0).all()
    assert analysis.paired_differences(oof.iloc[:0], [("mge", "sparsity")]).empty


def test_coefficients_importance_and_vif_by_unit(evaluated):
    nets, sets, *_ = evaluated
    feats = sets["mge"][:4]
    coefs, notes = analysis.coefficients_by(nets, feats, "accuracy_drop")
    assert set(coefs["kind"]) == {"sparsity", "architecture"}
    assert set(coefs["unit"]) == {"s = 0.6", "s = 0.9", "s = 0.98", "conv6"}
    assert (coefs.groupby("unit")["feature"].nunique() == 4).all()
    imp, _ = analysis.importance_by(nets, feats, "accuracy_drop", n_repeats=2, k=3)
    arch = imp[imp["kind"] == "architecture"]
    assert "sparsity" in set(arch["feature"]) and "sparsity" not in set(
        imp[imp["kind"] == "sparsity"]["feature"]
    )
    vifs, _ = analysis.vif_by_group(nets, feats)
    assert len(vifs) == 4 and (vifs["vif"] >= 1 - 1e-9).all()
    tiny = nets.head(3)
    c2, reasons = analysis.coefficients_by(tiny, feats, "accuracy_drop")
    assert c2.empty and reasons
    v2, reasons = analysis.vif_by_group(tiny, feats)
    assert v2.empty and "VIF" in reasons[0]


def test_feature_correlations_and_resolve_jobs(runs):
    nets = runs[runs["pruner"] != "dense"]
    corr = analysis.feature_correlations(
        nets, ["sparsity", "density", "sink_nodes"], "accuracy_drop"
    )
    assert corr.index.tolist() == ["conv6 · digits"]
    assert corr.loc["conv6 · digits", "sparsity"] == pytest.approx(
        -corr.loc["conv6 · digits", "density"]
    )
    const = analysis.feature_correlations(nets.assign(c=1.0), ["c"], "accuracy_drop")
    assert const.isna().all().all()
    assert analysis.resolve_jobs(3, 10) == 3 and analysis.resolve_jobs(0, 10) == 1
    assert 1 <= analysis.resolve_jobs(0, 10_000) <= 4
    with pytest.raises(ValueError, match="n_jobs"):
        analysis.resolve_jobs(-1, 10)


def test_fmt_ci_and_record_params(tmp_path):
    assert analysis.fmt_ci(np.nan, 0, 1) == "n/a"
    assert analysis.fmt_ci(0.12345, 0.1, 0.2, 3) == "0.123 [0.100, 0.200]"
    analysis.record_params(tmp_path, {"source": "runs", "n_boot": 10})
    assert io.read_json(tmp_path / "params.json") == {"n_boot": 10, "source": "runs"}
    assert "git_sha" in io.read_json(tmp_path / "provenance.json")


# --------------------------------------------------------------------------- figures
def test_figures_are_drawn(evaluated, tmp_path):
    nets, sets, scores, oof, _ = evaluated
    order = list(sets)
    fig = analysis.plot_overview(nets, "accuracy_drop")
    assert len(fig.axes) == 1 and fig.axes[0].get_xscale() == "logit"
    pg = scores[scores["scope"] == "per_group"]
    assert len(analysis.plot_scores(pg, order).axes) == 2  # ridge × (kfold, lopo)
    wild = pg.assign(r2=np.where(pg["feature_set"] == "mge", -40.0, pg["r2"]))
    fig = analysis.plot_scores(wild, order)
    assert fig.axes[0].get_ylim()[0] >= -1.1  # clipped at −1 …
    notes = [t.get_text() for t in fig.axes[0].texts]
    assert any("▼ 1 value with R² < -1" in t for t in notes)  # … with a visible mark
    ps = scores[scores["scope"] == "per_sparsity"]
    assert len(analysis.plot_scores_by_sparsity(ps, order).axes) == 2
    layer_scores = pg.assign(layer_name="l0", layer_id=0)
    assert len(analysis.plot_layer_scores(layer_scores, "mge", "density").axes) == 1
    corr = analysis.feature_correlations(nets, ["sparsity", "sink_nodes"], "accuracy_drop")
    assert len(analysis.plot_correlations(corr).axes) == 2  # heatmap + colour bar
    fig = analysis.plot_ranks(nets, "accuracy_drop", higher_is_better=False)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == [p for p in ("snip", "grasp", "synflow", "prospr", "uniform", "er", "erk")]
    coefs, _ = analysis.coefficients_by(nets, sets["mge"][:3], "accuracy_drop")
    assert len(analysis.plot_coefficients(coefs).axes) == coefs["unit"].nunique()
    imp, _ = analysis.importance_by(nets, sets["mge"][:3], "accuracy_drop", n_repeats=2, k=3)
    fig = analysis.plot_importance(imp[imp["kind"] == "sparsity"])
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [
        "s = 0.6",
        "s = 0.9",
        "s = 0.98",
    ]
    # an undefined importance is written "undefined" with its reason, never as a value
    undefined = imp.assign(importance=np.where(imp["unit"] == "s = 0.6", np.nan, imp["importance"]))
    undefined.loc[undefined["unit"] == "s = 0.6", "reason"] = "no variance"
    fig = analysis.plot_importance(undefined[undefined["kind"] == "sparsity"])
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert cells.count("undefined") == 3 and "nan" not in " ".join(cells)
    assert any("no variance" in t.get_text() for t in fig.texts)
    tau = stats.rank_agreement(oof[oof["scope"] == "per_group"])
    fig = analysis.plot_tau(tau, stats.rank_summary(tau, n_boot=50), order)
    assert len(fig.axes) == 2
    from mgelib.plotting import save_figure

    paths_ = save_figure(fig, tmp_path, "tau")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths_)
