"""mgelib.stats: folds, learners, honest out-of-fold scores, inference, ranking, claims.

All on synthetic data with known answers (fast, no files).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mgelib import stats as st

PRUNERS = ["snip", "grasp", "synflow", "prospr", "uniform", "er", "erk"]


def _networks(n_per: int = 3, seed: int = 0, groups: int = 2) -> pd.DataFrame:
    """Networks of `groups` (model, dataset) × 7 pruners × 4 sparsities × n_per seeds."""
    rng = np.random.default_rng(seed)
    rows = [
        (f"m{g}", "d", p, s, k)
        for g in range(groups)
        for p in PRUNERS
        for s in (0.6, 0.8, 0.9, 0.98)
        for k in range(n_per)
    ]
    df = pd.DataFrame(rows, columns=["model", "dataset", "pruner", "sparsity", "seed"])
    n = len(df)
    df["x1"] = rng.normal(size=n)
    df["x2"] = rng.normal(size=n)
    df["noise1"] = rng.normal(size=n)
    df["noise2"] = rng.normal(size=n)
    df["signal"] = 2 * df["x1"] - df["x2"] + 1e-3 * rng.normal(size=n)
    df["random"] = rng.normal(size=n)
    return df


# --------------------------------------------------------------------------- folds
def test_kfold_partitions_rows_and_is_deterministic():
    df = pd.DataFrame({"x": range(23)})
    folds = st.kfold_splits(df, k=5, seed=3)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(23))
    for tr, te in folds:
        assert not set(tr) & set(te) and len(tr) + len(te) == 23
    again = st.kfold_splits(df, k=5, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = st.kfold_splits(df, k=5, seed=4)
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_grouped_kfold_keeps_groups_together():
    df = _networks()
    config = ["model", "pruner", "sparsity"]
    folds = st.kfold_splits(df, k=5, seed=0, groups=config)
    label = df[config].astype(str).agg("/".join, axis=1).to_numpy()
    for tr, te in folds:
        assert not set(label[tr]) & set(label[te])
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(len(df)))


def test_kfold_errors():
    with pytest.raises(ValueError, match="k ≤ n"):
        st.kfold_splits(pd.DataFrame({"x": range(3)}), k=5)
    with pytest.raises(ValueError, match="empty"):
        st.kfold_splits(pd.DataFrame({"x": []}))
    with pytest.raises(ValueError, match="not in the frame"):
        st.kfold_splits(pd.DataFrame({"x": range(10)}), groups="nope")


def test_leave_one_pruner_out_never_trains_on_the_held_out_pruner():
    df = _networks()
    folds = st.leave_one_pruner_out(df)
    assert len(folds) == len(PRUNERS)
    held = []
    for tr, te in folds:
        test_pruners = set(df["pruner"].iloc[te])
        assert len(test_pruners) == 1
        assert not test_pruners & set(df["pruner"].iloc[tr])
        held += list(test_pruners)
    assert held == sorted(PRUNERS)
    # and through evaluate: every OOF fold of the lopo scheme holds a single pruner
    _, oof = st.evaluate(
        df,
        {"x": ["x1"]},
        "signal",
        folds="lopo",
        learners=("ridge",),
        n_boot=50,
        return_oof=True,
        progress=False,
    )
    assert (oof.groupby(["scope", "model", "fold"])["pruner"].nunique() == 1).all()


def test_leave_one_pruner_out_errors():
    with pytest.raises(ValueError, match="no pruner column"):
        st.leave_one_pruner_out(pd.DataFrame({"x": [1, 2]}))
    with pytest.raises(ValueError, match="need ≥ 2 pruners"):
        st.leave_one_pruner_out(pd.DataFrame({"pruner": ["snip", "snip"]}))


# --------------------------------------------------------------------------- learners
def test_ridge_without_penalty_matches_statsmodels_ols():
    import statsmodels.formula.api as smf

    df = _networks(groups=1)
    tr, te = df.iloc[:60], df.iloc[60:]
    # test rows inside the training box: no clipping, so the fit alone is compared
    feats = ["x1", "x2", "noise1"]
    inside = (te[feats] >= tr[feats].min()).all(axis=1) & (te[feats] <= tr[feats].max()).all(axis=1)
    te = te[inside]
    pred, info = st.fit_predict(tr, te, feats, "random", "ridge", alpha=0.0)
    ref = smf.ols("random ~ x1 + x2 + noise1", tr).fit().predict(te)
    np.testing.assert_allclose(pred, ref.to_numpy(), rtol=1e-8, atol=1e-10)
    assert info["logged"] == [] and info["n_train"] == 60 and info["clipped_test"] == 0


def test_ridge_matches_sklearn_for_a_fixed_penalty_and_inner_cv_shrinks_noise():
    from sklearn.linear_model import Ridge

    df = _networks(groups=1)
    tr, te = df.iloc[:60], df.iloc[60:62]
    feats = ["x1", "x2", "noise1"]
    mu, sd = tr[feats].mean(), tr[feats].std(ddof=0)
    ref = Ridge(alpha=7.0).fit((tr[feats] - mu) / sd, tr["signal"])
    te = te.assign(**{f: tr[f].median() for f in feats})  # inside the box
    pred, _ = st.fit_predict(tr, te, feats, "signal", alpha=7.0)
    np.testing.assert_allclose(pred, ref.predict((te[feats] - mu) / sd), rtol=1e-10)
    # pure noise: the inner CV picks a penalty large enough to predict ≈ the training mean
    _, info = st.fit_predict(tr, te, ["noise1", "noise2"], "random")
    assert info["alpha"] / 60 >= 0.1
    _, info = st.fit_predict(tr, te, feats, "signal")
    assert info["alpha"] / 60 <= 1e-2  # a planted signal: barely penalised


def test_ridge_does_not_extrapolate_beyond_the_training_box():
    df = _networks(groups=1)
    tr = df.iloc[:60]
    far = pd.DataFrame({"x1": [1e6], "x2": [0.0]})
    pred, info = st.fit_predict(tr, far, ["x1", "x2"], "signal")
    top = tr["x1"].max() + st.BOX_SLACK * (tr["x1"].max() - tr["x1"].min())
    edge, _ = st.fit_predict(tr, far.assign(x1=top), ["x1", "x2"], "signal")
    assert pred[0] == pytest.approx(edge[0]) and info["clipped_test"] == 1


def test_log_rule_is_decided_on_the_training_fold():
    rng = np.random.default_rng(0)
    tr = pd.DataFrame(
        {
            "skewed": rng.lognormal(0, 1, 200),
            "with_zero": np.r_[0.0, rng.lognormal(0, 1, 199)],
            "normal": rng.normal(size=200),
        }
    )
    tr["y"] = np.log(tr["skewed"])
    te = pd.DataFrame({"skewed": [-1.0, 1.0], "with_zero": [1.0, 1.0], "normal": [0.0, 0.0]})
    pred, info = st.fit_predict(tr, te, ["skewed", "with_zero", "normal"], "y", alpha=0.0)
    assert info["logged"] == ["skewed"]
    assert info["clipped_test"] == 1  # −1 < training minimum: clipped before the log
    assert pred[1] == pytest.approx(0.0, abs=1e-8)  # y = log(skewed) recovered exactly
    _, info_gbt = st.fit_predict(tr, te, ["skewed"], "y", "gbt")
    assert info_gbt["logged"] == []  # trees are invariant to monotone transforms


def test_constant_features_dropped_and_nan_imputed_with_training_median():
    tr = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0, 5.0], "c": 3.0, "allnan": np.nan})
    tr["y"] = [1.0, 2.0, 3.0, 4.0, 5.0]
    te = pd.DataFrame({"x": [np.nan, 10.0], "c": [3.0, 7.0], "allnan": [1.0, 2.0]})
    pred, info = st.fit_predict(tr, te, ["x", "c", "allnan"], "y")
    assert info["dropped_constant"] == ["c"] and info["dropped_all_nan"] == ["allnan"]
    assert info["features_used"] == ["x"]
    assert info["imputed_train"] == 1 and info["imputed_test"] == 1
    # the NaN test row is predicted at the training median of x (3.0)
    pred_med, _ = st.fit_predict(tr, te.assign(x=[3.0, 10.0]), ["x", "c", "allnan"], "y")
    assert pred[0] == pytest.approx(pred_med[0])
    only_const, info2 = st.fit_predict(tr, te, ["c"], "y")
    np.testing.assert_allclose(only_const, tr["y"].mean())
    assert info2["features_used"] == []


def test_fit_predict_errors():
    df = _networks(groups=1)
    with pytest.raises(ValueError, match="nope"):
        st.fit_predict(df, df, ["x1", "nope"], "signal")
    with pytest.raises(ValueError, match="unknown learner"):
        st.fit_predict(df, df, ["x1"], "signal", "forest")
    with pytest.raises(ValueError, match="NaN/inf"):
        st.fit_predict(df.assign(signal=np.nan), df, ["x1"], "signal")


# --------------------------------------------------------------------------- evaluate
@pytest.fixture(scope="module")
def evaluated():
    df = _networks()
    sets = {"signal": ["x1", "x2"], "noise": ["noise1", "noise2"], "part": ["x1"]}
    scores, oof = st.evaluate(
        df,
        sets,
        "signal",
        folds=("kfold", "lopo"),
        by_sparsity=True,
        n_boot=300,
        return_oof=True,
        progress=False,
        min_group_size=10,
    )
    return df, sets, scores, oof


def test_planted_linear_relation_gives_r2_near_one(evaluated):
    _, _, scores, _ = evaluated
    s = scores[(scores["feature_set"] == "signal") & (scores["learner"] == "ridge")]
    # ridge with an inner-CV penalty and clipping to the training box: nearly exact, not exactly
    big = s["scope"] != "per_sparsity"
    assert (s.loc[big, "r2"] > 0.995).all() and (s.loc[~big, "r2"] > 0.9).all()
    assert ((s.loc[big, "r2_hi"] - s.loc[big, "r2_lo"]) < 0.02).all()
    assert (s["r2_lo"] <= s["r2"]).all() and (s["r2"] <= s["r2_hi"]).all()
    g = scores[(scores["feature_set"] == "signal") & (scores["learner"] == "gbt")]
    assert (g.loc[g["scope"] != "per_sparsity", "r2"] > 0.8).all()


def test_pure_noise_gives_r2_at_most_zero_out_of_fold(evaluated):
    _, _, scores, _ = evaluated
    s = scores[scores["feature_set"] == "noise"]
    big = s[s["scope"] != "per_sparsity"]  # 84–168 networks per unit
    assert (big["r2"] <= 0).all() and (big["r2_hi"] < 0.1).all()
    # 21-network units: chance alone lifts a few above 0, but no CI excludes 0 from above
    small = s[s["scope"] == "per_sparsity"]
    assert (small["r2_lo"] < 0).all() and small["r2"].median() < 0


def test_evaluate_output_is_tidy(evaluated):
    df, sets, scores, oof = evaluated
    assert list(scores.columns[:14]) == [
        "scope",
        "model",
        "dataset",
        "sparsity",
        "feature_set",
        "learner",
        "folds",
        "n",
        "r2",
        "r2_lo",
        "r2_hi",
        "mae",
        "mae_lo",
        "mae_hi",
    ]
    assert set(scores["scope"]) == set(st.SCOPES)
    n_units = {"pooled": 1, "per_group": 2, "per_sparsity": 8}
    for scope, n_u in n_units.items():
        assert len(scores[scores["scope"] == scope]) == n_u * len(sets) * 2 * 2
        assert len(oof[oof["scope"] == scope]) == len(df) * len(sets) * 2 * 2
    pooled = scores[scores["scope"] == "pooled"]
    assert set(pooled["model"]) == {"all"} and pooled["sparsity"].isna().all()
    ps = scores[scores["scope"] == "per_sparsity"]
    assert set(ps["sparsity"]) == {0.6, 0.8, 0.9, 0.98}
    assert {"row", "fold", "y", "y_pred", "pruner", "seed"} <= set(oof.columns)
    assert oof["y_pred"].notna().all()
    # OOF rows point back to df
    one = oof[(oof["scope"] == "per_group") & (oof["feature_set"] == "part")]
    one = one[(one["learner"] == "ridge") & (one["folds"] == "kfold")]
    np.testing.assert_allclose(one["y"], df.loc[one["row"], "signal"])


def test_evaluate_is_deterministic():
    df = _networks(groups=1)
    a = st.evaluate(df, {"s": ["x1"]}, "signal", n_boot=100, progress=False)
    b = st.evaluate(df, {"s": ["x1"]}, "signal", n_boot=100, progress=False)
    pd.testing.assert_frame_equal(a, b)


def test_evaluate_errors():
    df = _networks(groups=1)
    with pytest.raises(
        ValueError, match=r"feature set 'bad' names unknown feature\(s\) \['nope'\]"
    ):
        st.evaluate(df, {"bad": ["nope"]}, "signal", progress=False)
    with pytest.raises(ValueError, match="empty frame"):
        st.evaluate(df.iloc[:0], {"s": ["x1"]}, "signal")
    with pytest.raises(ValueError, match="pruner column"):
        st.evaluate(df.drop(columns="pruner"), {"s": ["x1"]}, "signal", folds="lopo")
    with pytest.raises(ValueError, match="unknown learner"):
        st.evaluate(df, {"s": ["x1"]}, "signal", learners=("svm",))
    with pytest.raises(ValueError, match="unknown fold scheme"):
        st.evaluate(df, {"s": ["x1"]}, "signal", folds="loo")
    with pytest.raises(ValueError, match="is empty"):
        st.evaluate(df, {"s": []}, "signal")
    with pytest.raises(ValueError, match="no group has"):
        st.evaluate(df.iloc[:5], {"s": ["x1"]}, "signal", progress=False)


# --------------------------------------------------------------------------- bootstrap, compare
def test_bootstrap_is_deterministic_for_a_seed():
    rng = np.random.default_rng(0)
    y = rng.normal(size=100)
    p = y + rng.normal(size=100)
    a = st.bootstrap_scores(y, p, n_boot=500, seed=7)
    b = st.bootstrap_scores(y, p, n_boot=500, seed=7)
    c = st.bootstrap_scores(y, p, n_boot=500, seed=8)
    assert a == b
    assert a["r2_lo"] != c["r2_lo"] and a["r2"] == c["r2"]
    assert a["r2_lo"] < a["r2"] < a["r2_hi"] and a["mae_lo"] < a["mae"] < a["mae_hi"]


def test_compare_is_paired_and_signed(evaluated):
    _, _, _, oof = evaluated
    sel = (oof["scope"] == "per_group") & (oof["learner"] == "ridge") & (oof["folds"] == "kfold")
    a = oof[sel & (oof["feature_set"] == "signal")]
    b = oof[sel & (oof["feature_set"] == "noise")]
    r = st.compare(a, b, strata=("model", "dataset"), n_boot=300)
    assert r["estimate"] > 0.9 and r["ci_low"] > 0.9 and r["n_strata"] == 2
    assert r["estimate"] == pytest.approx(r["a"] - r["b"])
    same = st.compare(a, a, n_boot=100)
    assert same["estimate"] == 0 and same["ci_low"] == 0 and same["ci_high"] == 0
    mae = st.compare(a, b, metric="mae", n_boot=100)
    assert mae["ci_high"] < 0
    with pytest.raises(ValueError, match="same rows"):
        st.compare(a, b.iloc[1:], n_boot=10)
    with pytest.raises(ValueError, match="repeated rows"):
        st.compare(oof, b, n_boot=10)


# --------------------------------------------------------------------------- ranking
def test_kendall_tau_identical_and_reversed_rankings():
    cells = []
    for cell in range(3):
        for i, p in enumerate(PRUNERS):
            for seed in range(2):
                cells.append(
                    {
                        "model": "m",
                        "dataset": "d",
                        "sparsity": cell,
                        "pruner": p,
                        "seed": seed,
                        "y": i + 0.1 * seed,
                        "same": 10 * i,
                        "rev": -i,
                    }
                )
    df = pd.DataFrame(cells)
    same = st.rank_agreement(df, "y", "same")
    rev = st.rank_agreement(df, "y", "rev")
    assert same["tau"].tolist() == [1.0, 1.0, 1.0] and rev["tau"].tolist() == [-1.0] * 3
    assert (same["n_items"] == 7).all()
    summ = st.rank_summary(same, n_boot=100)
    assert summ[["tau_mean", "ci_low", "ci_high"]].iloc[0].tolist() == [1.0, 1.0, 1.0]
    d = st.compare_tau(same, rev, n_boot=100)
    assert d["estimate"] == 2.0 and d["n_cells"] == 3
    few = st.rank_agreement(df[df["pruner"].isin(["snip", "grasp"])], "y", "same")
    assert few["tau"].isna().all() and few["note"].str.contains("items").all()


# --------------------------------------------------------------------------- inference
def test_vif_of_orthogonal_features_is_one_and_collinear_is_large():
    x = np.tile([1.0, -1.0], 50)
    z = np.repeat([1.0, -1.0], 50)
    df = pd.DataFrame({"a": x, "b": z, "c": x * z})  # exactly orthogonal, zero-mean columns
    np.testing.assert_allclose(st.vif(df, ["a", "b", "c"])["vif"], 1.0, atol=1e-12)
    rng = np.random.default_rng(0)
    df2 = pd.DataFrame({"a": rng.normal(size=200)})
    df2["b"] = df2["a"] + 0.01 * rng.normal(size=200)
    assert (st.vif(df2, ["a", "b"])["vif"] > 100).all()
    with pytest.raises(ValueError, match="two features"):
        st.vif(df, ["a"])


def test_coefficients_recover_a_planted_effect():
    df = _networks(groups=1, n_per=3)
    df["y"] = 3 * df["x1"] + 0.01 * df["noise1"]
    sd = df["x1"].std(ddof=0)
    ols = st.coefficients(df, ["x1", "x2"], "y")
    x1 = ols.set_index("feature").loc["x1"]
    assert x1["coef"] == pytest.approx(3 * sd, rel=1e-3)
    assert x1["ci_low"] < 3 * sd < x1["ci_high"]
    assert abs(ols.set_index("feature").loc["x2", "coef"]) < 0.01
    cl = st.coefficients(df, ["x1", "x2"], "y", cluster="config")
    assert set(cl["method"]) == {"ols-cluster"} and (cl["n_groups"] == 28).all()
    mx = st.coefficients(df, ["x1", "x2"], "y", mixed=True)
    assert set(mx["method"]) == {"mixedlm"}
    assert mx.set_index("feature").loc["x1", "coef"] == pytest.approx(3 * sd, rel=1e-2)
    with pytest.raises(ValueError, match="unknown column"):
        st.coefficients(df, ["nope"], "y")


def test_permutation_importance_ranks_the_informative_feature_first():
    df = _networks(groups=1)
    imp = st.permutation_importance_oof(df, ["noise1", "x1", "noise2"], "signal", n_repeats=3)
    assert imp["feature"].iloc[0] == "x1" and imp["rank"].tolist() == [1, 2, 3]
    assert imp["ci_low"].iloc[0] > 0 and (imp["n_folds"] == 5).all()
    lopo = st.permutation_importance_oof(
        df, ["x1", "noise1"], "signal", learner="ridge", folds="lopo", n_repeats=2
    )
    assert lopo["feature"].iloc[0] == "x1" and (lopo["n_folds"] == 7).all()


# --------------------------------------------------------------------------- claims
def test_claims_from_evaluate_and_rank_outputs():
    df = _networks(groups=2)
    sets = {
        "mge": ["x1", "x2"],
        "rolled": ["noise1"],
        "rolled_channel": ["noise2"],
        "ramanujan": ["x1"],
        "density": ["x1"],
    }
    _, oof = st.evaluate(
        df, sets, "signal", learners=("ridge",), n_boot=200, return_oof=True, progress=False
    )
    rows = st.claim_mge_vs_bge(oof, n_boot=200)
    assert len(rows) == 2 and all(r["verdict"] == "supported" for r in rows)
    rows2 = st.claim_ramanujan_vs_density(oof, n_boot=200)
    assert rows2[0]["estimate"] == pytest.approx(0) and rows2[0]["verdict"] == "supported"
    tau = st.rank_agreement(oof[oof["scope"] == "per_group"])
    rows3 = st.claim_ranking(tau, mixture="mge", ramanujan="rolled", n_boot=200)
    assert rows3[0]["verdict"] == "supported" and rows3[0]["estimate"] > 0
    table = st.claims_table(rows + rows2 + rows3)
    assert list(table.columns[:9]) == list(st.CLAIMS_COLUMNS)
    assert set(table["claim"]) == set(st.CLAIMS.values())
    assert table["verdict"].isin(st.VERDICTS).all() and table["rule"].str.len().gt(10).all()
    with pytest.raises(ValueError, match="lacks"):
        st.claims_table([{"claim": "x"}])
    with pytest.raises(st.InsufficientData, match="no OOF rows for scope"):
        st.claim_mge_vs_bge(oof, scope="per_sparsity")
    with pytest.raises(ValueError, match="'mgee' is not in the OOF table") as err:
        st.claim_mge_vs_bge(oof, mge="mgee")  # a typo is a bug, never "insufficient data"
    assert not isinstance(err.value, st.InsufficientData)


def test_equivalence_needs_the_ci_inside_the_margin():
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    a = pd.DataFrame(
        {
            "scope": "pooled",
            "feature_set": "ramanujan",
            "learner": "ridge",
            "folds": "kfold",
            "row": range(40),
            "y": y,
            "y_pred": y + rng.normal(size=40),
        }
    )
    b = a.assign(feature_set="density", y_pred=y + rng.normal(size=40))
    oof = pd.concat([a, b])
    row = st.claim_ramanujan_vs_density(oof, scope="pooled", n_boot=300)[0]
    # a wide CI that contains 0 shows no difference: it never supports "only as good as"
    assert row["ci_low"] < 0 < row["ci_high"] and row["ci_high"] - row["ci_low"] > 0.1
    assert row["verdict"] == "no difference shown" and "TOST" in row["rule"]


@pytest.mark.parametrize(
    "ci, sup, eq",
    [
        ((0.1, 0.3), "supported", "contradicted"),
        ((-0.3, -0.1), "contradicted", "contradicted"),
        ((-0.02, 0.03), "no difference shown", "supported"),
        ((-0.2, 0.3), "no difference shown", "no difference shown"),
        ((0.01, 0.08), "supported", "no difference shown"),
    ],
)
def test_verdict_rules(ci, sup, eq):
    assert st.superiority(*ci)[0] == sup
    assert st.equivalence(*ci, margin=0.05)[0] == eq
    with pytest.raises(st.InsufficientData):
        st.superiority(np.nan, 0.1)
