"""Out-of-fold prediction of accuracy from topology, honestly scored (SPEC §8).

The workflow of the analysis notebooks, in four calls:

1. :func:`evaluate` — out-of-fold (OOF) predictions of a target from several feature sets, with
   two learners (``"ols"``, ``"gbt"``) and two fold schemes (random K-fold, the paper's setting,
   and leave-one-pruner-out), per (model, dataset), optionally per sparsity level, and pooled
   with (model, dataset) fixed effects; scored by R² and MAE with percentile bootstrap CIs.
2. :func:`compare` — paired bootstrap of a score difference between two feature sets on the same
   rows (same folds, same resamples).
3. :func:`rank_agreement` / :func:`rank_summary` — Kendall τ between the pruner ranking by true
   and by predicted accuracy, per (model, dataset, sparsity) cell, averaged with a CI.
4. :func:`claim_mge_vs_bge`, :func:`claim_ramanujan_vs_density`, :func:`claim_ranking` →
   :func:`claims_table` — the evidence for each claim of SPEC §8 in one tidy table.

Plus inference: :func:`coefficients` (standardised OLS coefficients, clustered SEs or a mixed
model), :func:`permutation_importance_oof` and :func:`vif`.

==================================  ==========================================================
module                              what
==================================  ==========================================================
:mod:`mgelib.stats.folds`           random K-fold, leave-one-pruner-out
:mod:`mgelib.stats.learners`        fold-local preprocessing, OLS and gradient-boosted trees
:mod:`mgelib.stats.scores`          R²/MAE with bootstrap CIs, paired comparisons
:mod:`mgelib.stats.evaluate`        out-of-fold scores of feature sets × learners × folds
:mod:`mgelib.stats.inference`       coefficients, permutation importance, VIF
:mod:`mgelib.stats.ranking`         Kendall τ of pruner rankings
:mod:`mgelib.stats.claims`          the paper's claims as table rows with decision rules
==================================  ==========================================================

Preprocessing is fitted on the training fold only: NaN features are imputed with the training
median; features constant on the training fold are dropped; for ``"ols"`` a feature with
skewness > 1 and all training values > 0 is log-transformed (test values are clipped to the
training minimum first), then features are standardised. Every decision is reported.
The OOF ``"ols"`` fit is a least-squares fit (LAPACK ``lstsq``) — the same predictions as
statsmodels OLS, tested against it, at a fraction of the cost; statsmodels is used where
inference is needed (:func:`coefficients`, :func:`vif`). ``"gbt"`` is scikit-learn's
``HistGradientBoostingRegressor`` with a fixed ``random_state``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.normal(size=60), "pruner": np.repeat(list("abc"), 20)})
>>> df["y"] = 2 * df["x"] + 0.01 * rng.normal(size=60)
>>> scores = evaluate(df, {"x": ["x"]}, "y", group_cols=(), learners=("ols",), n_boot=200)
>>> round(float(scores["r2"].iloc[0]), 3)
1.0
"""

from __future__ import annotations

from mgelib.stats.claims import (
    CLAIMS,
    CLAIMS_COLUMNS,
    INSUFFICIENT,
    claim_mge_vs_bge,
    claim_ramanujan_vs_density,
    claim_ranking,
    claims_table,
)
from mgelib.stats.evaluate import SCOPES, evaluate
from mgelib.stats.folds import FOLD_SCHEMES, kfold_splits, leave_one_pruner_out
from mgelib.stats.inference import coefficients, permutation_importance_oof, vif
from mgelib.stats.learners import LEARNERS, fit_predict
from mgelib.stats.ranking import compare_tau, rank_agreement, rank_summary
from mgelib.stats.scores import bootstrap_scores, compare

__all__ = [
    "LEARNERS",
    "FOLD_SCHEMES",
    "SCOPES",
    "CLAIMS",
    "CLAIMS_COLUMNS",
    "INSUFFICIENT",
    "kfold_splits",
    "leave_one_pruner_out",
    "fit_predict",
    "bootstrap_scores",
    "evaluate",
    "compare",
    "coefficients",
    "permutation_importance_oof",
    "vif",
    "rank_agreement",
    "rank_summary",
    "compare_tau",
    "claim_mge_vs_bge",
    "claim_ramanujan_vs_density",
    "claim_ranking",
    "claims_table",
]
