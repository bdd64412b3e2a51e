"""Out-of-fold prediction of accuracy from topology, honestly scored (method §8).

The workflow of the analysis notebooks, in four calls:

1. :func:`evaluate` — out-of-fold (OOF) predictions of a target from several feature sets, with
   two learners (``"ridge"``, ``"gbt"``) and two fold schemes (random K-fold, the paper's setting,
   and leave-one-pruner-out), per (model, dataset), optionally per sparsity level, and pooled
   with (model, dataset) fixed effects; scored by R² and MAE with percentile bootstrap CIs.
2. :func:`compare` — paired bootstrap of a score difference between two feature sets on the same
   rows (same folds, same resamples).
3. :func:`rank_agreement` / :func:`rank_summary` — Kendall τ between the pruner ranking by true
   and by predicted accuracy, per (model, dataset, sparsity) cell, averaged with a CI.
4. :func:`claim_mge_vs_bge`, :func:`claim_ramanujan_vs_density`, :func:`claim_ranking` →
   :func:`claims_table` — the evidence for each claim of method §8 in one tidy table, each row
   with its decision rule and a verdict in :data:`VERDICTS` (superiority: the CI above 0;
   equivalence: TOST, the CI inside ±margin; "insufficient data" only from
   :class:`InsufficientData`).

Plus inference: :func:`coefficients` (standardised OLS coefficients, clustered SEs or a mixed
model), :func:`permutation_importance_oof` and :func:`vif`.

==================================  ==========================================================
module                              what
==================================  ==========================================================
:mod:`mgelib.stats.folds`           random K-fold, leave-one-pruner-out
:mod:`mgelib.stats.learners`        fold-local preprocessing, ridge (inner CV) and boosted trees
:mod:`mgelib.stats.scores`          R²/MAE with bootstrap CIs, paired comparisons
:mod:`mgelib.stats.evaluate`        out-of-fold scores of feature sets × learners × folds
:mod:`mgelib.stats.inference`       coefficients, permutation importance, VIF
:mod:`mgelib.stats.ranking`         Kendall τ of pruner rankings
:mod:`mgelib.stats.claims`          the paper's claims as table rows with decision rules
==================================  ==========================================================

Preprocessing is fitted on the training fold only: NaN features are imputed with the training
median; features constant on the training fold are dropped; for ``"ridge"`` a feature with
skewness > 1 and all training values > 0 is log-transformed (test values are clipped to the
training minimum first), then features are standardised and held-out values clipped to the
training range (widened by :data:`BOX_SLACK` of its span). Every decision is reported. The
ridge penalty is chosen by an inner CV on the training fold that mirrors the outer scheme;
with ``alpha=0`` the fit is least squares (tested against statsmodels OLS). OLS itself is not
a prediction learner (it extrapolates without bound for an unseen pruner); statsmodels OLS and
MixedLM serve inference (:func:`coefficients`, :func:`vif`). ``"gbt"`` is scikit-learn's
``HistGradientBoostingRegressor`` with a fixed ``random_state``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.normal(size=60), "pruner": np.repeat(list("abc"), 20)})
>>> df["y"] = 2 * df["x"] + 0.01 * rng.normal(size=60)
>>> scores = evaluate(df, {"x": ["x"]}, "y", group_cols=(), learners=("ridge",), n_boot=200)
>>> round(float(scores["r2"].iloc[0]), 2)
1.0
"""

from __future__ import annotations

from mgelib.stats import claims as _claims
from mgelib.stats import evaluate as _evaluate
from mgelib.stats import folds as _folds
from mgelib.stats import inference as _inference
from mgelib.stats import learners as _learners
from mgelib.stats import ranking as _ranking
from mgelib.stats import scores as _scores
from mgelib.stats.claims import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.stats.evaluate import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.stats.folds import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.stats.inference import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.stats.learners import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.stats.ranking import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.stats.scores import *  # noqa: F403 - re-exported, listed in __all__ below

# The package's API is its modules' APIs: derived, not listed twice.
__all__ = [
    *_claims.__all__,
    *_evaluate.__all__,
    *_folds.__all__,
    *_inference.__all__,
    *_learners.__all__,
    *_ranking.__all__,
    *_scores.__all__,
]
