"""Planted datasets where the truth is known: each claim of method §8 must get the right verdict.

Topology adds signal → "supported"; it adds none → "no difference shown"; two feature sets that
carry the same information → equivalence "supported"; one that is clearly worse →
"contradicted"; too little data → "insufficient data" (and only then); a typo raises; a NaN
importance is never ranked; the +shuffle null model recovers a planted survival.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mgelib import analysis, stats

PRUNERS = ["snip", "grasp", "synflow", "prospr", "uniform", "er", "erk"]
N_BOOT = 300


def _planted(seed: int = 0, groups: int = 2, seeds: int = 3) -> pd.DataFrame:
    """Networks whose accuracy is sparsity + a pruner quality q; feature columns:

    ``topo1..3`` carry q (topology), ``bge1..3`` and ``noise1..3`` carry nothing, ``dens`` is
    the density, ``ram_same`` is the density plus a negligible jitter (same information)."""
    rng = np.random.default_rng(seed)
    q = dict(zip(PRUNERS, rng.normal(size=len(PRUNERS))))
    rows = [
        (f"m{g}", "d", p, s, k)
        for g in range(groups)
        for p in PRUNERS
        for s in (0.6, 0.8, 0.9, 0.98)
        for k in range(seeds)
    ]
    df = pd.DataFrame(rows, columns=["model", "dataset", "pruner", "sparsity", "seed"])
    n = len(df)
    qq = df["pruner"].map(q).to_numpy()
    s = df["sparsity"].to_numpy()
    df["accuracy"] = 0.9 - 0.3 * s + 0.05 * qq + 0.005 * rng.normal(size=n)
    for i in range(1, 4):
        df[f"topo{i}"] = rng.uniform(0.5, 2) * qq + 0.05 * rng.normal(size=n)
        df[f"bge{i}"] = rng.normal(size=n)
        df[f"noise{i}"] = rng.normal(size=n)
    df["dens"] = 1 - s
    df["ram_same"] = df["dens"] * (1 + 1e-6 * rng.normal(size=n))
    return df


SETS = {
    "mge": ["topo1", "topo2", "topo3", "dens"],  # topology + density
    "rolled": ["bge1", "bge2", "bge3", "dens"],  # density only (noise besides)
    "noise_a": ["noise1"],  # no information at all
    "noise_b": ["noise2"],
    "density": ["dens"],
    "ramanujan": ["ram_same"],  # the same information as density
    "ram_worse": ["noise3"],  # clearly worse than density
}


@pytest.fixture(scope="module")
def oof() -> pd.DataFrame:
    df = _planted()
    _, oof = stats.evaluate(
        df,
        SETS,
        "accuracy",
        folds=("kfold", "lopo"),
        learners=("ridge",),
        n_boot=N_BOOT,
        return_oof=True,
        progress=False,
    )
    return oof


def _verdicts(rows):
    return {(r["folds"], r["feature_set_or_comparison"]): r["verdict"] for r in rows}


def test_topology_that_adds_signal_is_supported(oof):
    rows = stats.claim_mge_vs_bge(oof, bge=["rolled"], n_boot=N_BOOT)
    assert set(_verdicts(rows).values()) == {stats.SUPPORTED}
    assert all(r["ci_low"] > 0 and "superiority" in r["rule"] for r in rows)


def test_topology_that_adds_nothing_shows_no_difference(oof):
    rows = stats.claim_mge_vs_bge(oof, mge="noise_a", bge=["noise_b"], n_boot=N_BOOT)
    for r in rows:
        assert r["ci_low"] <= 0 <= r["ci_high"]
        assert r["verdict"] == stats.NO_DIFFERENCE  # never "supported", never "contradicted"


def test_reversed_superiority_is_contradicted(oof):
    rows = stats.claim_mge_vs_bge(oof, mge="rolled", bge=["mge"], n_boot=N_BOOT)
    assert set(_verdicts(rows).values()) == {stats.CONTRADICTED}


def test_equivalence_holds_when_the_information_is_the_same(oof):
    rows = stats.claim_ramanujan_vs_density(oof, margin=0.05, n_boot=N_BOOT)
    assert set(_verdicts(rows).values()) == {stats.SUPPORTED}
    assert all(-0.05 < r["ci_low"] and r["ci_high"] < 0.05 and "TOST" in r["rule"] for r in rows)


def test_equivalence_is_contradicted_when_one_set_is_clearly_worse(oof):
    rows = stats.claim_ramanujan_vs_density(oof, ramanujan="ram_worse", n_boot=N_BOOT)
    assert set(_verdicts(rows).values()) == {stats.CONTRADICTED}


def test_a_wide_interval_around_zero_does_not_support_equivalence():
    rng = np.random.default_rng(3)
    y = rng.normal(size=30)
    base = {"scope": "per_group", "learner": "ridge", "folds": "kfold", "model": "m"}
    a = pd.DataFrame({**base, "dataset": "d", "feature_set": "ramanujan", "row": range(30),
                      "y": y, "y_pred": y + rng.normal(size=30)})  # fmt: skip
    b = a.assign(feature_set="density", y_pred=y + rng.normal(size=30))
    row = stats.claim_ramanujan_vs_density(pd.concat([a, b]), n_boot=N_BOOT)[0]
    assert row["ci_low"] < 0 < row["ci_high"] and row["verdict"] == stats.NO_DIFFERENCE


def test_ranking_claim_on_planted_rankings(oof):
    tau = stats.rank_agreement(oof[oof["scope"] == "per_group"])
    good = stats.claim_ranking(tau, mixture="mge", ramanujan="rolled", n_boot=N_BOOT)
    assert {r["verdict"] for r in good} == {stats.SUPPORTED}
    bad = stats.claim_ranking(tau, mixture="rolled", ramanujan="mge", n_boot=N_BOOT)
    assert {r["verdict"] for r in bad} == {stats.CONTRADICTED}


def test_only_insufficient_data_gives_insufficient_data(oof):
    tiny = _planted(groups=1, seeds=1).head(6)
    _, _, reasons = analysis.evaluate_or_skip(tiny, {"d": ["dens"]}, "accuracy")
    assert reasons  # too few rows: reported, not raised
    rows = analysis.safe_claim(
        stats.claim_ramanujan_vs_density, oof, claim="ramanujan_vs_density",
        comparison="r − d", statistic="ΔR²", scope="per_sparsity",
    )  # fmt: skip
    assert [r["verdict"] for r in rows] == [stats.INSUFFICIENT]
    with pytest.raises(ValueError, match="densty"):  # a typo is a bug: it raises
        analysis.safe_claim(
            stats.claim_ramanujan_vs_density, oof, claim="ramanujan_vs_density",
            comparison="r − d", statistic="ΔR²", density="densty",
        )  # fmt: skip
    with pytest.raises(ValueError, match="names unknown feature"):
        analysis.evaluate_or_skip(_planted(), {"d": ["dense"]}, "accuracy")


def test_a_nan_importance_is_never_ranked():
    df = _planted(groups=1)
    df.loc[df["sparsity"] == 0.6, "accuracy"] = 0.5  # no variance at s = 0.6
    imp, reasons = analysis.importance_by(df, ["topo1", "noise1"], "accuracy", n_repeats=2, k=3)
    at = imp[imp["unit"] == "s = 0.6"]
    assert at["importance"].isna().all() and at["rank"].isna().all()
    assert (at["status"] == "undefined").all() and at["reason"].str.contains("variance").all()
    assert any("undefined" in r for r in reasons)
    ok = imp[imp["unit"] == "s = 0.9"]
    assert ok["rank"].tolist() == [1, 2] and ok["feature"].iloc[0] == "topo1"
    assert ok["ci_low"].iloc[0] > 0  # bootstrap CI of the informative feature excludes 0
    analysis.check_importance(imp)
    with pytest.raises(AssertionError, match="NaN importance was ranked"):
        analysis.check_importance(imp.assign(rank=1))


def test_ridge_never_blows_up_on_an_outlying_held_out_pruner():
    df = _planted(groups=1)
    # one pruner's topometric lies 1000 SDs away (as SynFlow's can on the authors' tables)
    df.loc[df["pruner"] == "synflow", "topo1"] += 1e3
    scores = stats.evaluate(
        df, {"mge": SETS["mge"]}, "accuracy", folds="lopo", learners=("ridge",), n_boot=50,
        progress=False, by_sparsity=True,
    )  # fmt: skip
    analysis.check_scores(scores)
    assert scores["r2"].min() > -5
    with pytest.raises(AssertionError, match="blew up"):
        analysis.check_scores(scores.assign(r2=-100.0))


def test_shuffle_survival_recovers_planted_truth():
    rng = np.random.default_rng(0)
    rows = []
    for p, q in zip(PRUNERS[:4], rng.normal(size=4)):
        for s in (0.8, 0.9, 0.95):
            for k in range(3):
                for twin in (False, True):
                    rows.append(
                        {
                            "model": "m", "dataset": "d", "sparsity": s, "seed": k,
                            "pruner": p + ("+shuffle" if twin else ""),
                            # layer-wise density sets the drop: identical for the twin
                            "accuracy_drop": s * (1 + 0.2 * q) + 0.001 * rng.normal(),
                            # topology: erased by shuffling
                            "topo": (0.0 if twin else q) + 0.01 * rng.normal(),
                        }
                    )  # fmt: skip
    nets = pd.DataFrame(rows)
    out = analysis.shuffle_survival(nets, ["accuracy_drop", "topo"], n_boot=200)
    drop, topo = out.set_index("quantity").loc[["accuracy_drop", "topo"]].itertuples(index=False)
    assert drop.ci_low < 1 < drop.ci_high and abs(drop.survival - 1) < 0.05
    assert abs(topo.survival) < 0.1 and drop.n_pruners == 4 and drop.n_cells == 3
    assert analysis.shuffle_survival(nets[~nets["pruner"].str.contains("shuffle")], ["topo"]).empty


def test_pruner_subsets_handle_dst_and_shuffle_labels():
    nets = pd.DataFrame({"pruner": ["snip", "erk", "rigl", "set", "snip+shuffle", "rigl+shuffle"]})
    subsets, notes = analysis.pruner_subsets(nets)
    assert sorted(subsets["pai"]["pruner"]) == ["erk", "snip"]
    assert sorted(subsets["dst"]["pruner"]) == ["rigl", "set"]
    assert len(subsets["all"]) == 4 and notes == []
    only_pai, notes = analysis.pruner_subsets(nets.iloc[:2])
    assert list(only_pai) == ["pai"] and len(notes) == 2
    with pytest.raises(ValueError, match="unknown pruner subset"):
        analysis.pruner_subsets(nets, ["pai", "dts"])
