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

Preprocessing is fitted on the training fold only: NaN features are imputed with the training
median; features constant on the training fold are dropped; for ``"ols"`` a feature with
skewness > 1 and all training values > 0 is log-transformed (test values are clipped to the
training minimum first), then features are standardised. Every decision is reported.
The OOF ``"ols"`` fit is a least-squares fit (scikit-learn ``LinearRegression``, i.e. LAPACK
``lstsq``) — the same predictions as statsmodels OLS, tested against it, at a fraction of the
cost; statsmodels is used where inference is needed (:func:`coefficients`, :func:`vif`).
``"gbt"`` is scikit-learn's ``HistGradientBoostingRegressor`` with a fixed ``random_state``.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"x": rng.normal(size=60), "pruner": np.repeat(list("abc"), 20)})
>>> df["y"] = 2 * df["x"] + 0.01 * rng.normal(size=60)
>>> scores = evaluate(df, {"x": ["x"]}, "y", group_cols=(), learners=("ols",), n_boot=200)
>>> round(float(scores["r2"].iloc[0]), 3)
1.0
"""

from __future__ import annotations

import logging
import os
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor

__all__ = [
    "LEARNERS",
    "FOLD_SCHEMES",
    "SCOPES",
    "CLAIMS",
    "CLAIMS_COLUMNS",
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

logger = logging.getLogger(__name__)

LEARNERS: tuple[str, ...] = ("ols", "gbt")
FOLD_SCHEMES: tuple[str, ...] = ("kfold", "lopo")
#: ``per_group``: one fit per (model, dataset); ``per_sparsity``: per (model, dataset, sparsity);
#: ``pooled``: all rows, (model, dataset) as a categorical (fixed effects).
SCOPES: tuple[str, ...] = ("per_group", "per_sparsity", "pooled")
#: The three claims of the paper (SPEC §8, end).
CLAIMS: dict[str, str] = {
    "mge_vs_bge": "MGE metrics predict the accuracy drop much better than BGE metrics",
    "ramanujan_vs_density": "Ramanujan metrics are only as good as density",
    "ranking": "A mixture of topometrics ranks PaI algorithms better than Ramanujan metrics",
}
CLAIMS_COLUMNS: tuple[str, ...] = (
    "claim",
    "feature_set_or_comparison",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "supported",
)
_SCORE_COLUMNS = ("n", "r2", "r2_lo", "r2_hi", "mae", "mae_lo", "mae_hi")
Split = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------- folds
def _as_labels(df: pd.DataFrame, groups: Any) -> np.ndarray:
    if isinstance(groups, str):
        groups = [groups]
    if isinstance(groups, (list, tuple)):
        missing = [c for c in groups if c not in df.columns]
        if missing:
            raise ValueError(f"group column(s) {missing} not in the frame")
        return df.groupby(list(groups), sort=True, dropna=False).ngroup().to_numpy()
    labels = np.asarray(groups)
    if labels.shape[0] != len(df):
        raise ValueError(f"groups has {labels.shape[0]} labels for {len(df)} rows")
    return pd.factorize(labels, sort=True)[0]


def kfold_splits(
    df: pd.DataFrame, k: int = 5, seed: int = 0, groups: str | Sequence[str] | Any = None
) -> list[Split]:
    """Random K-fold splits (positions into ``df``), optionally keeping groups together.

    Parameters
    ----------
    df : DataFrame
        The rows to split.
    k : int
        Number of folds, 2 ≤ k ≤ number of rows (or of groups).
    seed : int
        Seed of the shuffle.
    groups : str, sequence of str or array-like, optional
        Column(s) or labels whose rows must share a fold — e.g.
        ``("model", "dataset", "pruner", "sparsity")`` keeps the seeds of a configuration
        together. Whole groups are shuffled and dealt into ``k`` folds of near-equal group count.

    Returns
    -------
    list of (train_positions, test_positions)
        Every row is in exactly one test fold.

    Examples
    --------
    >>> folds = kfold_splits(pd.DataFrame({"x": range(10)}), k=5, seed=0)
    >>> sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(10))
    True
    """
    n = len(df)
    if n == 0:
        raise ValueError("kfold_splits: empty frame")
    rng = np.random.default_rng(seed)
    if groups is None:
        if not 2 <= k <= n:
            raise ValueError(f"kfold_splits: need 2 ≤ k ≤ n rows, got k={k}, n={n}")
        chunks = np.array_split(rng.permutation(n), k)
        tests = [np.sort(c) for c in chunks]
    else:
        labels = _as_labels(df, groups)
        n_groups = int(labels.max()) + 1
        if not 2 <= k <= n_groups:
            raise ValueError(f"kfold_splits: need 2 ≤ k ≤ n groups, got k={k}, {n_groups} groups")
        fold_of_group = np.empty(n_groups, dtype=int)
        for f, chunk in enumerate(np.array_split(rng.permutation(n_groups), k)):
            fold_of_group[chunk] = f
        fold = fold_of_group[labels]
        tests = [np.flatnonzero(fold == f) for f in range(k)]
    everything = np.arange(n)
    return [(np.setdiff1d(everything, te, assume_unique=True), te) for te in tests]


def leave_one_pruner_out(df: pd.DataFrame, pruner_col: str = "pruner") -> list[Split]:
    """One fold per pruner: train on all other pruners, test on the held-out one.

    Parameters
    ----------
    df : DataFrame
        Must contain ``pruner_col``.
    pruner_col : str
        Column naming the pruning algorithm.

    Returns
    -------
    list of (train_positions, test_positions)
        In sorted pruner order; a test fold holds exactly one pruner, absent from its training set.

    Examples
    --------
    >>> df = pd.DataFrame({"pruner": ["snip", "grasp", "snip", "erk"]})
    >>> [df["pruner"].iloc[te].unique().tolist() for _, te in leave_one_pruner_out(df)]
    [['erk'], ['grasp'], ['snip']]
    """
    if pruner_col not in df.columns:
        raise ValueError(f"leave_one_pruner_out: no pruner column {pruner_col!r} in the frame")
    values = df[pruner_col].to_numpy()
    if pd.isna(values).any():
        raise ValueError(f"leave_one_pruner_out: {pruner_col!r} has missing values")
    pruners = sorted(pd.unique(values))
    if len(pruners) < 2:
        raise ValueError(f"leave_one_pruner_out: need ≥ 2 pruners, found {pruners}")
    return [(np.flatnonzero(values != p), np.flatnonzero(values == p)) for p in pruners]


def _splits(
    df: pd.DataFrame, scheme: str, k: int, seed: int, fold_groups: Any, pruner_col: str
) -> list[Split]:
    if scheme == "kfold":
        return kfold_splits(df, k=k, seed=seed, groups=fold_groups)
    if scheme == "lopo":
        return leave_one_pruner_out(df, pruner_col)
    raise ValueError(f"unknown fold scheme {scheme!r}; use one of {FOLD_SCHEMES}")


# --------------------------------------------------------------------------- preprocessing
def _prep_fit(
    A: np.ndarray, *, log_skewed: bool, standardise: bool, skew_threshold: float = 1.0
) -> dict[str, Any]:
    """Fit the preprocessing on a training matrix (rows × features, NaN allowed).

    Impute (training median) → drop constant / all-NaN columns → log columns with skewness
    > ``skew_threshold`` and all observed values > 0 → standardise. Vectorised over columns:
    this runs once per fold and feature set, thousands of times in :func:`evaluate`.
    """
    nan = np.isnan(A)
    cnt = (~nan).sum(axis=0)
    all_nan = cnt == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.where(all_nan, 0.0, np.nanmedian(A, axis=0) if A.size else 0.0)
    F = np.where(nan, med, A)
    span = F.max(axis=0, initial=-np.inf) - F.min(axis=0, initial=np.inf)
    scale = np.maximum(np.abs(F).max(axis=0, initial=0.0), 1e-300)
    constant = (span <= 1e-12 * scale) & ~all_nan
    keep = ~all_nan & ~constant
    logged = np.zeros(A.shape[1], dtype=bool)
    if log_skewed and keep.any():
        # Biased sample skewness of the observed values (scipy.stats.skew's default).
        c = np.maximum(cnt, 1)
        mean = np.where(nan, 0.0, A).sum(axis=0) / c
        d = np.where(nan, 0.0, A - mean)
        m2 = (d**2).sum(axis=0) / c
        m3 = (d**3).sum(axis=0) / c
        with np.errstate(divide="ignore", invalid="ignore"):
            skew = np.where(m2 > 0, m3 / m2**1.5, 0.0)
        positive = np.where(nan, 1.0, A).min(axis=0, initial=np.inf) > 0
        logged = keep & positive & (cnt > 2) & (skew > skew_threshold)
    state = {"med": med, "keep": keep, "logged": logged, "min": F.min(axis=0, initial=np.inf)}
    state["all_nan"], state["constant"] = all_nan, constant
    state["imputed"] = int(nan[:, keep].sum())
    B = _prep_numeric(state, F)
    if standardise:
        sd = B.std(axis=0)
        state["mean"], state["sd"] = B.mean(axis=0), np.where(sd > 0, sd, 1.0)
    return state


def _prep_numeric(state: dict[str, Any], F: np.ndarray) -> np.ndarray:
    lg = state["logged"]
    if lg.any():
        F = F.copy()
        # Clip to the training minimum so log stays defined on unseen (≤ 0) test values.
        F[:, lg] = np.log(np.maximum(F[:, lg], state["min"][lg]))
    return F[:, state["keep"]]


def _prep_apply(state: dict[str, Any], A: np.ndarray) -> tuple[np.ndarray, int, int]:
    nan = np.isnan(A)
    lg = state["logged"]
    clipped = int((A[:, lg] < state["min"][lg]).sum())
    B = _prep_numeric(state, np.where(nan, state["med"], A))
    if "mean" in state:
        B = (B - state["mean"]) / state["sd"]
    return B, int(nan[:, state["keep"]].sum()), clipped


def _dummies(values: np.ndarray, levels: Sequence[str]) -> np.ndarray:
    # Drop the first level (absorbed by the intercept); an unseen level gets all zeros.
    return (values[:, None] == np.asarray(levels[1:], dtype=object)[None, :]).astype(float)


def _regressor(learner: str, n_train: int, random_state: int, gbt_params: Mapping | None) -> Any:
    if learner == "gbt":
        # sklearn's default min_samples_leaf=20 cannot split a 24-row per-sparsity training fold;
        # scale it with the fold (≥ 5, ≤ 20).
        params: dict[str, Any] = {
            "random_state": random_state,
            "min_samples_leaf": int(np.clip(n_train // 10, 5, 20)),
        }
        params.update(gbt_params or {})
        return HistGradientBoostingRegressor(**params)
    raise ValueError(f"unknown learner {learner!r}; use one of {LEARNERS}")


def _fit_arrays(
    A: np.ndarray,
    y: np.ndarray,
    D: np.ndarray | None,
    learner: str,
    *,
    log_skewed: bool = True,
    random_state: int = 0,
    gbt_params: Mapping | None = None,
) -> dict[str, Any]:
    """Fit preprocessing + learner on arrays; ``D`` = fixed-effect dummies (not transformed)."""
    if learner not in LEARNERS:
        raise ValueError(f"unknown learner {learner!r}; use one of {LEARNERS}")
    linear = learner == "ols"
    # Trees are invariant to monotone transforms and to scale: no log, no standardisation.
    st = _prep_fit(A, log_skewed=log_skewed and linear, standardise=linear)
    B = _prep_numeric(st, np.where(np.isnan(A), st["med"], A))
    if linear:
        B = (B - st["mean"]) / st["sd"]
    if D is not None and D.shape[1]:
        dkeep = D.std(axis=0) > 0  # a level absent from the training fold: no column
        B = np.hstack([B, D[:, dkeep]])
    else:
        dkeep = None
    st["dkeep"] = dkeep
    if linear:
        # Least squares with an intercept (min-norm solution under collinearity, like pinv).
        X1 = np.column_stack([np.ones(len(B)), B])
        st["beta"] = np.linalg.lstsq(X1, y, rcond=None)[0]
    else:
        Xg = B if B.shape[1] else np.zeros((len(B), 1))
        st["gbt"] = _regressor(learner, len(y), random_state, gbt_params).fit(Xg, y)
    st["learner"] = learner
    return st


def _predict_arrays(st: dict[str, Any], A: np.ndarray, D: np.ndarray | None) -> tuple:
    B, imputed, clipped = _prep_apply(st, A)
    if st["dkeep"] is not None and D is not None:
        B = np.hstack([B, D[:, st["dkeep"]]])
    if st["learner"] == "ols":
        pred = st["beta"][0] + B @ st["beta"][1:]
    else:
        pred = st["gbt"].predict(B if B.shape[1] else np.zeros((len(B), 1)))
    return np.asarray(pred, dtype=float), imputed, clipped


def _info(st: dict[str, Any], features: Sequence[str]) -> dict[str, Any]:
    pick = lambda m: [f for f, b in zip(features, m) if b]  # noqa: E731
    return {
        "features_used": pick(st["keep"]),
        "dropped_constant": pick(st["constant"]),
        "dropped_all_nan": pick(st["all_nan"]),
        "logged": pick(st["logged"]),
        "imputed_train": st["imputed"],
    }


class _Model(RegressorMixin, BaseEstimator):
    """sklearn wrapper of the same preprocessing + learner (for ``permutation_importance``)."""

    def __init__(
        self,
        features: Sequence[str] = (),
        categoricals: Sequence[str] = (),
        learner: str = "gbt",
        log_skewed: bool = True,
        random_state: int = 0,
        gbt_params: Mapping[str, Any] | None = None,
    ):
        self.features = features
        self.categoricals = categoricals
        self.learner = learner
        self.log_skewed = log_skewed
        self.random_state = random_state
        self.gbt_params = gbt_params

    def _dummies(self, X: pd.DataFrame) -> np.ndarray | None:
        if not self.categoricals:
            return None
        blocks = [
            _dummies(X[c].astype(str).to_numpy(dtype=object), lv)
            for c, lv in zip(self.categoricals, self.levels_)
        ]
        return np.hstack(blocks)

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Model:
        self.levels_ = [sorted(pd.unique(X[c].astype(str))) for c in self.categoricals]
        A = X[list(self.features)].to_numpy(dtype=float)
        self.state_ = _fit_arrays(
            A,
            np.asarray(y, dtype=float),
            self._dummies(X),
            self.learner,
            log_skewed=self.log_skewed,
            random_state=self.random_state,
            gbt_params=self.gbt_params,
        )
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        A = X[list(self.features)].to_numpy(dtype=float)
        return _predict_arrays(self.state_, A, self._dummies(X))[0]


def _single_thread() -> Any:
    """Limit OpenMP/BLAS to one thread: the fits here are tiny, and on a busy machine the
    tree model's OpenMP threads can spin for seconds (oversubscription) on a 100-row fit."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _check_columns(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"unknown {what} {missing}; not a column of the frame")


def fit_predict(
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    features: Sequence[str],
    target: str,
    learner: Literal["ols", "gbt"] = "ols",
    *,
    categoricals: Sequence[str] = (),
    log_skewed: bool = True,
    random_state: int = 0,
    gbt_params: Mapping[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit on ``train_df`` (preprocessing included), predict ``test_df``.

    ``"ols"``: training-median imputation, constant features dropped, log of skewed positive
    features (skewness > 1, all > 0, decided on ``train_df``), standardisation with the training
    mean and SD, then least squares with an intercept (``numpy.linalg.lstsq``; the same fit as
    statsmodels OLS). ``"gbt"``: imputation and constant-dropping only, then
    ``HistGradientBoostingRegressor(random_state=random_state)`` with ``min_samples_leaf``
    scaled to the training size (n/10, clipped to [5, 20]).

    Parameters
    ----------
    train_df, test_df : DataFrame
        Training and test rows; ``target`` must be finite on the training rows.
    features : sequence of str
        Numeric feature columns.
    target : str
        Target column.
    learner : {"ols", "gbt"}
        The learner.
    categoricals : sequence of str
        Columns one-hot encoded with the training levels (fixed effects); unseen levels → 0.
    log_skewed : bool
        ``ols`` only: apply the log rule above.
    random_state : int
        Seed of the tree model.
    gbt_params : mapping, optional
        Overrides of ``HistGradientBoostingRegressor`` parameters.

    Returns
    -------
    y_pred : ndarray
        Predictions for ``test_df``.
    info : dict
        ``features_used``, ``dropped_constant``, ``dropped_all_nan``, ``logged``,
        ``imputed_train``, ``imputed_test`` (NaN cells filled with the training median),
        ``clipped_test`` (test values below the training minimum of a logged feature),
        ``n_train``, ``n_test``.

    Examples
    --------
    >>> tr = pd.DataFrame({"x": [0.0, 1, 2, 3], "c": 1.0, "y": [1.0, 3, 5, 7]})
    >>> te = pd.DataFrame({"x": [10.0], "c": 1.0})
    >>> pred, info = fit_predict(tr, te, ["x", "c"], "y")
    >>> float(pred[0].round(6)), info["dropped_constant"]
    (21.0, ['c'])
    """
    features = list(features)
    if not features:
        raise ValueError("fit_predict: empty feature list")
    if learner not in LEARNERS:
        raise ValueError(f"fit_predict: unknown learner {learner!r}; use one of {LEARNERS}")
    _check_columns(train_df, [*features, target, *categoricals], "column(s) in train_df:")
    _check_columns(test_df, [*features, *categoricals], "column(s) in test_df:")
    if len(train_df) == 0 or len(test_df) == 0:
        raise ValueError("fit_predict: empty training or test set")
    y = train_df[target].to_numpy(dtype=float)
    if not np.isfinite(y).all():
        raise ValueError(f"fit_predict: target {target!r} has NaN/inf on training rows; drop them")
    model = _Model(features, list(categoricals), learner, log_skewed, random_state, gbt_params)
    with _single_thread():
        model.fit(train_df, y)
        pred, imputed, clipped = _predict_arrays(
            model.state_, test_df[features].to_numpy(dtype=float), model._dummies(test_df)
        )
    info = _info(model.state_, features)
    info.update(
        imputed_test=imputed, clipped_test=clipped, n_train=len(train_df), n_test=len(test_df)
    )
    return pred, info


# --------------------------------------------------------------------------- scores
def _boot_idx(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int32 if n < 2**31 else np.int64)


def _r2_rows(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    ss_res = ((Y - P) ** 2).sum(axis=-1)
    ss_tot = ((Y - Y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def _metric_rows(metric: str, Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    if metric == "r2":
        return _r2_rows(Y, P)
    if metric == "mae":
        return np.abs(Y - P).mean(axis=-1)
    raise ValueError(f"unknown metric {metric!r}; use 'r2' or 'mae'")


def _pct(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (np.nan, np.nan)
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)


def bootstrap_scores(
    y: np.ndarray,
    y_pred: np.ndarray,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    idx: np.ndarray | None = None,
) -> dict[str, float]:
    """R² and MAE of ``(y, y_pred)`` with percentile bootstrap CIs (vectorised).

    The pairs are resampled with replacement ``n_boot`` times (one ``(n_boot, n)`` index array);
    point estimates are computed on the full sample.

    Parameters
    ----------
    y, y_pred : array-like
        Observed and (out-of-fold) predicted values.
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed (same seed ⇒ same CIs).
    level : float
        Confidence level.
    idx : ndarray, optional
        Pre-drawn ``(n_boot, n)`` resample indices (to pair several predictions).

    Returns
    -------
    dict
        ``n``, ``r2``, ``r2_lo``, ``r2_hi``, ``mae``, ``mae_lo``, ``mae_hi``.

    Examples
    --------
    >>> s = bootstrap_scores(np.arange(10.0), np.arange(10.0), n_boot=100)
    >>> s["r2"], s["r2_lo"], s["mae"]
    (1.0, 1.0, 0.0)
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(y_pred, dtype=float)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError("bootstrap_scores: y and y_pred must be 1-D of the same length")
    n = y.size
    if n < 2:
        raise ValueError("bootstrap_scores: need at least 2 pairs")
    if idx is None:
        idx = _boot_idx(n, n_boot, np.random.default_rng(seed))
    Y, P = y[idx], p[idx]
    r2b = _r2_rows(Y, P)
    maeb = np.abs(Y - P).mean(axis=1)
    r2_lo, r2_hi = _pct(r2b, level)
    mae_lo, mae_hi = _pct(maeb, level)
    return {
        "n": int(n),
        "r2": float(_r2_rows(y, p)),
        "r2_lo": r2_lo,
        "r2_hi": r2_hi,
        "mae": float(np.abs(y - p).mean()),
        "mae_lo": mae_lo,
        "mae_hi": mae_hi,
    }


def _unit_rng(seed: int, label: str) -> np.random.Generator:
    # Stable per unit, whatever else is evaluated: the same rows get the same resamples in every
    # call, so feature sets, learners and fold schemes are paired.
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


# --------------------------------------------------------------------------- evaluate
def _progress(progress: bool | None) -> bool:
    if progress is None:
        return os.environ.get("MGELIB_QUIET", "") in ("", "0")
    return progress


def _run_unit(
    unit: dict[str, Any],
    sub: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    schemes: Sequence[str],
    learners: Sequence[str],
    k: int,
    fold_groups: Any,
    pruner_col: str,
    categoricals: Sequence[str],
    n_boot: int,
    seed: int,
    level: float,
    keep_cols: Sequence[str],
    gbt_params: Mapping | None,
) -> tuple[list[dict[str, Any]], list[pd.DataFrame]]:
    rows: list[dict[str, Any]] = []
    oofs: list[pd.DataFrame] = []
    y = sub[target].to_numpy(dtype=float)
    n = len(sub)
    idx = _boot_idx(n, n_boot, _unit_rng(seed, unit["label"]))
    # Arrays once per unit: the fold loop below runs thousands of times (no pandas inside).
    arrays = {name: sub[list(feats)].to_numpy(dtype=float) for name, feats in feature_sets.items()}
    D = None
    if categoricals:
        D = np.hstack(
            [
                _dummies(v, sorted(pd.unique(v)))
                for v in (sub[c].astype(str).to_numpy(dtype=object) for c in categoricals)
            ]
        )
    base = sub[list(keep_cols)].copy()
    base.insert(0, "row", sub.index.to_numpy())
    base.insert(0, "scope", unit["keys"]["scope"])
    with _single_thread():
        for scheme in schemes:
            if scheme == "lopo" and sub[pruner_col].nunique() < 2:
                logger.warning("%s: a single pruner, leave-one-pruner-out skipped", unit["label"])
                continue
            try:
                splits = _splits(sub, scheme, k, seed, fold_groups, pruner_col)
            except ValueError as err:
                logger.warning("%s: %s folds skipped (%s)", unit["label"], scheme, err)
                continue
            fold_id = np.empty(n, dtype=int)
            for f, (_, te) in enumerate(splits):
                fold_id[te] = f
            for fs_name, feats in feature_sets.items():
                A = arrays[fs_name]
                for learner in learners:
                    pred = np.full(n, np.nan)
                    logged: set[str] = set()
                    dropped: set[str] = set()
                    imputed = 0
                    for tr, te in splits:
                        st = _fit_arrays(
                            A[tr],
                            y[tr],
                            None if D is None else D[tr],
                            learner,
                            random_state=seed,
                            gbt_params=gbt_params,
                        )
                        pred[te], n_imp, _ = _predict_arrays(
                            st, A[te], None if D is None else D[te]
                        )
                        info = _info(st, feats)
                        logged.update(info["logged"])
                        dropped.update(info["dropped_constant"] + info["dropped_all_nan"])
                        imputed += n_imp
                    sc = bootstrap_scores(y, pred, idx=idx, level=level)
                    rows.append(
                        {
                            **unit["keys"],
                            "feature_set": fs_name,
                            "learner": learner,
                            "folds": scheme,
                            **sc,
                            "n_folds": len(splits),
                            "n_features": len(feats),
                            "logged": ",".join(sorted(logged)),
                            "dropped": ",".join(sorted(dropped)),
                            "n_imputed": imputed,
                        }
                    )
                    oofs.append(
                        base.assign(
                            feature_set=fs_name,
                            learner=learner,
                            folds=scheme,
                            fold=fold_id,
                            y=y,
                            y_pred=pred,
                        )
                    )
    return rows, oofs


def evaluate(
    df: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    *,
    folds: str | Sequence[str] = "kfold",
    learners: Sequence[str] = LEARNERS,
    group_cols: Sequence[str] = ("model", "dataset"),
    by_sparsity: bool = False,
    per_group: bool = True,
    pooled: bool = True,
    k: int = 5,
    fold_groups: str | Sequence[str] | None = None,
    sparsity_col: str = "sparsity",
    pruner_col: str = "pruner",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    min_group_size: int = 10,
    return_oof: bool = False,
    n_jobs: int = 1,
    progress: bool | None = None,
    gbt_params: Mapping[str, Any] | None = None,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Out-of-fold R² and MAE (with bootstrap CIs) of each feature set × learner × fold scheme.

    Scopes (see :data:`SCOPES`): ``per_group`` fits each (``group_cols``) group separately;
    ``per_sparsity`` (``by_sparsity=True``) each group × sparsity level; ``pooled`` fits all rows
    at once with the groups as one categorical (fixed effects, so between-group differences are
    absorbed; the sparsity-only baseline shows what that alone explains). Within a unit, every
    feature set and learner sees the same folds and the same bootstrap resamples, so their
    scores are paired (:func:`compare`).

    Parameters
    ----------
    df : DataFrame
        One row per network. Rows with a NaN target are dropped (logged).
    feature_sets : mapping name -> list of column names
        E.g. :func:`mgelib.paperdata.feature_sets`.
    target : str
        What is predicted (e.g. ``"accuracy"``; within a group the accuracy drop is affine in
        it, see :func:`mgelib.paperdata.add_accuracy_drop`).
    folds : {"kfold", "lopo"} or a sequence of them
        Random K-fold (the paper's setting) and/or leave-one-pruner-out.
    learners : sequence of {"ols", "gbt"}
        Learners.
    group_cols : sequence of str
        Grouping of the ``per_group`` scope (``()`` = a single group).
    by_sparsity, per_group, pooled : bool
        Which scopes to run (``pooled`` needs ≥ 2 groups, else it is skipped).
    k : int
        Folds of K-fold.
    fold_groups : str or sequence of str, optional
        Keep these groups within one K-fold fold (e.g. the configuration, so seeds stay
        together); default the paper's plain random K-fold.
    sparsity_col, pruner_col : str
        Column names.
    n_boot, seed, level : int, int, float
        Bootstrap resamples, seed (folds and resamples), confidence level.
    min_group_size : int
        Units with fewer rows are skipped (logged).
    return_oof : bool
        Also return the out-of-fold predictions.
    n_jobs : int
        Processes (joblib) over units; fits inside a unit run single-threaded.
    progress : bool, optional
        tqdm bar; default on unless ``MGELIB_QUIET=1``.
    gbt_params : mapping, optional
        Overrides for the tree model.

    Returns
    -------
    scores : DataFrame
        ``scope``, ``group_cols``…, ``sparsity_col``, ``feature_set``, ``learner``, ``folds``,
        ``n``, ``r2``, ``r2_lo``, ``r2_hi``, ``mae``, ``mae_lo``, ``mae_hi``, ``n_folds``,
        ``n_features``, ``logged`` (features log-transformed in some fold), ``dropped``
        (constant/all-NaN in some fold), ``n_imputed`` (test cells imputed). Group columns are
        ``"all"`` in the pooled scope; ``sparsity_col`` is NaN outside ``per_sparsity``.
    oof : DataFrame, only with ``return_oof``
        One row per (unit, feature set, learner, scheme, network): ``scope``, ``row`` (index
        label in ``df``), ``group_cols``, ``sparsity_col``, ``pruner_col``, ``seed`` (when
        present), ``feature_set``, ``learner``, ``folds``, ``fold``, ``y``, ``y_pred``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"g": np.repeat(["a", "b"], 40), "pruner": np.tile(list("pqrs"), 20),
    ...                    "x": rng.normal(size=80)})
    >>> df["y"] = df["x"] + 0.1 * rng.normal(size=80)
    >>> s = evaluate(df, {"x": ["x"]}, "y", folds=("kfold", "lopo"), group_cols=("g",),
    ...              learners=("ols",), n_boot=100)
    >>> s[["scope", "g", "folds"]].drop_duplicates().shape[0]
    6
    """
    if len(df) == 0:
        raise ValueError("evaluate: empty frame")
    if not feature_sets:
        raise ValueError("evaluate: no feature sets")
    schemes = [folds] if isinstance(folds, str) else list(folds)
    bad = [s for s in schemes if s not in FOLD_SCHEMES]
    if bad or not schemes:
        raise ValueError(f"evaluate: unknown fold scheme(s) {bad}; use {FOLD_SCHEMES}")
    bad = [lr for lr in learners if lr not in LEARNERS]
    if bad or not learners:
        raise ValueError(f"evaluate: unknown learner(s) {bad}; use {LEARNERS}")
    _check_columns(df, [target], "target")
    group_cols = list(group_cols)
    _check_columns(df, group_cols, "group column(s)")
    for name, feats in feature_sets.items():
        if not list(feats):
            raise ValueError(f"evaluate: feature set {name!r} is empty")
        missing = [c for c in feats if c not in df.columns]
        if missing:
            raise ValueError(f"evaluate: feature set {name!r} names unknown feature(s) {missing}")
    if "lopo" in schemes:
        _check_columns(df, [pruner_col], "pruner column (needed for leave-one-pruner-out)")
    if by_sparsity:
        _check_columns(df, [sparsity_col], "sparsity column")
    bad_y = ~np.isfinite(df[target].to_numpy(dtype=float))
    if bad_y.any():
        logger.warning("evaluate: %d rows with a NaN/inf target dropped", int(bad_y.sum()))
        df = df[~bad_y]
        if len(df) == 0:
            raise ValueError(f"evaluate: every {target!r} is NaN")

    keep_cols = [c for c in dict.fromkeys([*group_cols, sparsity_col, pruner_col, "seed"])]
    keep_cols = [c for c in keep_cols if c in df.columns]
    units: list[tuple[dict[str, Any], pd.DataFrame, list[str]]] = []
    grouped = list(df.groupby(group_cols, sort=True, dropna=False)) if group_cols else [((), df)]
    if pooled and len(grouped) > 1:
        pdf = df.copy()
        pdf["__group__"] = pdf[group_cols].astype(str).agg("/".join, axis=1)
        keys = {"scope": "pooled", **{c: "all" for c in group_cols}, sparsity_col: np.nan}
        units.append(({"label": "pooled", "keys": keys}, pdf, ["__group__"]))
    elif pooled:
        logger.info("evaluate: a single group, pooled scope skipped")
    for gkey, gdf in grouped:
        gkey = gkey if isinstance(gkey, tuple) else (gkey,)
        gvals = dict(zip(group_cols, gkey))
        if per_group:
            keys = {"scope": "per_group", **gvals, sparsity_col: np.nan}
            units.append(({"label": f"per_group/{gkey}", "keys": keys}, gdf, []))
        if by_sparsity:
            for s, sdf in gdf.groupby(sparsity_col, sort=True):
                keys = {"scope": "per_sparsity", **gvals, sparsity_col: s}
                units.append(({"label": f"per_sparsity/{gkey}/{s!r}", "keys": keys}, sdf, []))
    runnable = []
    for unit, sub, cats in units:
        if len(sub) < min_group_size:
            logger.warning(
                "evaluate: %s has %d rows < %d, skipped", unit["label"], len(sub), min_group_size
            )
            continue
        runnable.append((unit, sub, cats))
    if not runnable:
        raise ValueError(f"evaluate: no group has ≥ {min_group_size} rows")

    args = dict(
        feature_sets={k_: list(v) for k_, v in feature_sets.items()},
        target=target,
        schemes=schemes,
        learners=list(learners),
        k=k,
        fold_groups=fold_groups,
        pruner_col=pruner_col,
        n_boot=n_boot,
        seed=seed,
        level=level,
        keep_cols=keep_cols,
        gbt_params=gbt_params,
    )
    show = _progress(progress)
    if n_jobs == 1:
        from tqdm.auto import tqdm

        results = [
            _run_unit(u, s, categoricals=c, **args)
            for u, s, c in tqdm(runnable, desc="evaluate", disable=not show)
        ]
    else:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=n_jobs)(
            delayed(_run_unit)(u, s, categoricals=c, **args) for u, s, c in runnable
        )
    score_rows = [r for rows, _ in results for r in rows]
    scores = pd.DataFrame(score_rows)
    order = ["scope", *group_cols, sparsity_col, "feature_set", "learner", "folds", *_SCORE_COLUMNS]
    scores = scores[order + [c for c in scores.columns if c not in order]]
    if not return_oof:
        return scores
    oof = pd.concat([o for _, oofs in results for o in oofs], ignore_index=True)
    return scores, oof


# --------------------------------------------------------------------------- comparisons
def _oof_arrays(oof: pd.DataFrame, name: str) -> pd.DataFrame:
    _check_columns(oof, ["row", "y", "y_pred"], f"column(s) of {name}:")
    if oof["row"].duplicated().any():
        raise ValueError(
            f"compare: {name} has repeated rows; filter it to one scope, feature set, learner "
            "and fold scheme first"
        )
    return oof.set_index("row")


def compare(
    oof_a: pd.DataFrame,
    oof_b: pd.DataFrame,
    *,
    metric: Literal["r2", "mae"] = "r2",
    strata: Sequence[str] | None = None,
    agg: Literal["mean", "median"] = "mean",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.Series:
    """Paired bootstrap of ``metric(a) − metric(b)`` on the same rows.

    Both OOF frames (from :func:`evaluate`, each filtered to one scope, feature set, learner and
    fold scheme) must hold the same rows. The same resample indices are applied to ``a`` and
    ``b``. With ``strata`` (e.g. ``("model", "dataset")``), the metric is computed within each
    stratum, the statistic is the mean over strata of the per-stratum difference, and rows are
    resampled within strata (a stratified paired bootstrap). ``agg="median"`` takes the median
    over strata instead — robust to one stratum where a learner extrapolates wildly (OLS on a
    held-out pruner can predict accuracies far outside [0, 1], e.g. CONV-6 without SynFlow).

    Parameters
    ----------
    oof_a, oof_b : DataFrame
        Columns ``row``, ``y``, ``y_pred`` (+ ``strata``).
    metric : {"r2", "mae"}
        Score; for MAE lower is better, so a negative difference favours ``a``.
    strata : sequence of str, optional
        Columns defining strata.
    agg : {"mean", "median"}
        How per-stratum differences (and scores) are combined.
    n_boot, seed, level : int, int, float
        Bootstrap settings.

    Returns
    -------
    Series
        ``metric``, ``agg``, ``a``, ``b`` (point scores, combined over strata with ``agg``),
        ``estimate`` (the combined per-stratum difference; = a − b for ``mean``), ``ci_low``,
        ``ci_high``, ``p_le_0`` (bootstrap fraction of differences ≤ 0), ``n``, ``n_strata``.

    Examples
    --------
    >>> y = np.linspace(0, 1, 50)
    >>> a = pd.DataFrame({"row": range(50), "y": y, "y_pred": y})
    >>> b = a.assign(y_pred=0.5)
    >>> r = compare(a, b, n_boot=200)
    >>> r["estimate"] > 0 and r["ci_low"] > 0
    True
    """
    A = _oof_arrays(oof_a, "oof_a")
    B = _oof_arrays(oof_b, "oof_b")
    if set(A.index) != set(B.index):
        raise ValueError("compare: oof_a and oof_b must hold the same rows (same scope and data)")
    B = B.loc[A.index]
    if not np.allclose(A["y"].to_numpy(float), B["y"].to_numpy(float), equal_nan=True):
        raise ValueError("compare: the two frames disagree on y for the same rows")
    if strata:
        _check_columns(A.reset_index(), strata, "strata column(s)")
        labels = A.groupby(list(strata), sort=True, dropna=False).ngroup().to_numpy()
    else:
        labels = np.zeros(len(A), dtype=int)
    y = A["y"].to_numpy(float)
    pa, pb = A["y_pred"].to_numpy(float), B["y_pred"].to_numpy(float)
    rng = np.random.default_rng(seed)
    est_a, est_b, boot_d, n_used = [], [], [], 0
    for s in np.unique(labels):
        pos = np.flatnonzero(labels == s)
        if pos.size < 3:
            logger.warning("compare: a stratum with %d rows skipped", pos.size)
            continue
        n_used += pos.size
        idx = pos[_boot_idx(pos.size, n_boot, rng)]
        ma = _metric_rows(metric, y[pos], pa[pos])
        mb = _metric_rows(metric, y[pos], pb[pos])
        est_a.append(float(ma))
        est_b.append(float(mb))
        boot_d.append(_metric_rows(metric, y[idx], pa[idx]) - _metric_rows(metric, y[idx], pb[idx]))
    if not boot_d:
        raise ValueError("compare: no stratum with ≥ 3 rows")
    if agg not in ("mean", "median"):
        raise ValueError(f"compare: agg must be 'mean' or 'median', got {agg!r}")
    combine = np.nanmean if agg == "mean" else np.nanmedian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = combine(np.vstack(boot_d), axis=0)
    lo, hi = _pct(d, level)
    a_, b_ = float(combine(est_a)), float(combine(est_b))
    return pd.Series(
        {
            "metric": metric,
            "agg": agg,
            "a": a_,
            "b": b_,
            "estimate": float(combine(np.subtract(est_a, est_b))),
            "ci_low": lo,
            "ci_high": hi,
            "p_le_0": float(np.mean(d[np.isfinite(d)] <= 0)) if np.isfinite(d).any() else np.nan,
            "n": n_used,
            "n_strata": len(boot_d),
        }
    )


# --------------------------------------------------------------------------- inference
def _config_labels(df: pd.DataFrame, spec: Any, config_cols: Sequence[str]) -> np.ndarray:
    if isinstance(spec, str) and spec == "config":
        cols = [c for c in config_cols if c in df.columns]
        if not cols:
            raise ValueError(f"no configuration column among {list(config_cols)}")
        return _as_labels(df, cols)
    return _as_labels(df, spec)


def coefficients(
    df: pd.DataFrame,
    features: Sequence[str],
    target: str,
    *,
    cluster: str | Sequence[str] | None = None,
    mixed: bool = False,
    mixed_groups: str | Sequence[str] = "config",
    fixed_effects: Sequence[str] = (),
    log_skewed: bool = True,
    standardise_target: bool = False,
    config_cols: Sequence[str] = ("model", "dataset", "pruner", "sparsity"),
    level: float = 0.95,
) -> pd.DataFrame:
    """Standardised OLS coefficients with CIs (statsmodels formula API), one row per feature.

    Features are preprocessed as in :func:`fit_predict` (fitted on all rows): constant ones
    dropped, skewed positive ones logged, all standardised — a coefficient is the change in the
    target per standard deviation of the feature (of the target too with
    ``standardise_target``). Rows with a NaN target or feature are dropped (complete cases).
    Seeds repeat each configuration, so naive SEs are too small: use ``cluster="config"``
    (cluster-robust SEs by ``config_cols``) or ``mixed=True`` (a random intercept per
    ``mixed_groups`` — by default the configuration, whose replicates are the seeds; pass
    ``"seed"`` for a random intercept per seed instead).

    Parameters
    ----------
    df : DataFrame
        One row per network.
    features : sequence of str
        Predictors.
    target : str
        Response.
    cluster : "config", column name(s) or None
        Cluster-robust covariance by these groups.
    mixed : bool
        Fit ``MixedLM`` instead of OLS.
    mixed_groups : "config" or column name(s)
        Groups of the random intercept.
    fixed_effects : sequence of str
        Categorical columns added as ``C(col)`` (e.g. ``("model", "dataset")`` when pooled).
    log_skewed, standardise_target : bool
        Preprocessing options.
    config_cols : sequence of str
        What "config" means.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        ``feature``, ``coef``, ``se``, ``ci_low``, ``ci_high``, ``p_value``, ``logged``, ``n``,
        ``n_groups``, ``method`` (``ols``, ``ols-cluster``, ``mixedlm``), ``r2`` (OLS),
        ``converged`` (MixedLM), plus ``dropped`` features.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"x": rng.normal(size=100), "z": rng.normal(size=100)})
    >>> df["y"] = 3 * df["x"] + 0.1 * rng.normal(size=100)
    >>> coefficients(df, ["x", "z"], "y")["feature"].tolist()
    ['x', 'z']
    """
    import statsmodels.formula.api as smf

    features = list(features)
    if not features:
        raise ValueError("coefficients: no features")
    _check_columns(df, [*features, target, *fixed_effects], "column(s)")
    data = df[np.isfinite(df[[*features, target]].to_numpy(float)).all(axis=1)]
    if len(data) < len(features) + 2:
        raise ValueError(f"coefficients: {len(data)} complete rows for {len(features)} features")
    A = data[features].to_numpy(dtype=float)
    prep = _prep_fit(A, log_skewed=log_skewed, standardise=True)
    Z = _prep_apply(prep, A)[0]
    info = _info(prep, features)
    used = info["features_used"]
    if not used:
        raise ValueError("coefficients: every feature is constant")
    safe = [f"x{i}" for i in range(len(used))]
    design = pd.DataFrame(Z, columns=safe, index=data.index)
    y = data[target].to_numpy(float)
    if standardise_target:
        y = (y - y.mean()) / (y.std() or 1.0)
    design["y"] = y
    rhs = list(safe)
    for i, c in enumerate(fixed_effects):
        design[f"fe{i}"] = data[c].astype(str).to_numpy()
        if design[f"fe{i}"].nunique() > 1:
            rhs.append(f"C(fe{i})")
    formula = "y ~ " + " + ".join(rhs)
    alpha = 1.0 - level
    extra: dict[str, Any] = {}
    if mixed:
        groups = _config_labels(data, mixed_groups, config_cols)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = smf.mixedlm(formula, design, groups=groups).fit(reml=True)
        extra["converged"] = bool(res.converged) and not any(
            "converge" in str(w.message).lower() for w in caught
        )
        method, n_groups = "mixedlm", int(len(np.unique(groups)))
    elif cluster is not None:
        groups = _config_labels(data, cluster, config_cols)
        res = smf.ols(formula, design).fit(cov_type="cluster", cov_kwds={"groups": groups})
        method, n_groups = "ols-cluster", int(len(np.unique(groups)))
        extra["r2"] = float(res.rsquared)
    else:
        res = smf.ols(formula, design).fit()
        method, n_groups = "ols", len(design)
        extra["r2"] = float(res.rsquared)
    ci = res.conf_int(alpha=alpha)
    out = pd.DataFrame(
        {
            "feature": used,
            "coef": [float(res.params[s]) for s in safe],
            "se": [float(res.bse[s]) for s in safe],
            "ci_low": [float(ci.loc[s, 0]) for s in safe],
            "ci_high": [float(ci.loc[s, 1]) for s in safe],
            "p_value": [float(res.pvalues[s]) for s in safe],
            "logged": [f in info["logged"] for f in used],
        }
    )
    out["n"] = len(design)
    out["n_groups"] = n_groups
    out["method"] = method
    for k_, v in extra.items():
        out[k_] = v
    out["dropped"] = ",".join(info["dropped_constant"] + info["dropped_all_nan"])
    return out


def permutation_importance_oof(
    df: pd.DataFrame,
    features: Sequence[str],
    target: str,
    *,
    learner: Literal["ols", "gbt"] = "gbt",
    folds: Literal["kfold", "lopo"] = "kfold",
    k: int = 5,
    seed: int = 0,
    fold_groups: str | Sequence[str] | None = None,
    pruner_col: str = "pruner",
    categoricals: Sequence[str] = (),
    n_repeats: int = 10,
    level: float = 0.95,
) -> pd.DataFrame:
    """Permutation importance on held-out folds (``sklearn.inspection.permutation_importance``).

    For each fold, the model (preprocessing included) is fitted on the training rows and each
    feature is permuted ``n_repeats`` times in the held-out rows; importance = drop in R².
    The CI is a t-interval over the fold means (folds are the independent replicates).

    Parameters
    ----------
    df : DataFrame
        Rows with a finite target.
    features : sequence of str
        Features (all are scored).
    target : str
        Response.
    learner : {"gbt", "ols"}
        Model.
    folds : {"kfold", "lopo"}
        Fold scheme.
    k, seed, fold_groups, pruner_col : see :func:`evaluate`
    categoricals : sequence of str
        Fixed-effect columns (not scored).
    n_repeats : int
        Permutations per feature and fold.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        ``feature``, ``importance``, ``ci_low``, ``ci_high``, ``sd_folds``, ``n_folds``,
        ``n_repeats``, ``rank`` (1 = most important), sorted by importance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    >>> df["y"] = df["a"] + 0.1 * rng.normal(size=120)
    >>> permutation_importance_oof(df, ["a", "b"], "y", n_repeats=3)["feature"].iloc[0]
    'a'
    """
    from sklearn.inspection import permutation_importance

    features = list(features)
    _check_columns(df, [*features, target, *categoricals], "column(s)")
    df = df[np.isfinite(df[target].to_numpy(float))]
    if len(df) == 0:
        raise ValueError("permutation_importance_oof: no row with a finite target")
    splits = _splits(df, folds, k, seed, fold_groups, pruner_col)
    cols = [*features, *categoricals]
    per_fold = []
    with _single_thread():
        for f, (tr, te) in enumerate(splits):
            if len(te) < 2:
                continue
            model = _Model(features, list(categoricals), learner, random_state=seed)
            train = df.iloc[tr]
            model.fit(train[cols], train[target].to_numpy(float))
            test = df.iloc[te]
            res = permutation_importance(
                model,
                test[cols],
                test[target].to_numpy(float),
                n_repeats=n_repeats,
                random_state=seed + f,
                scoring="r2",
            )
            per_fold.append(res.importances_mean[: len(features)])
    if not per_fold:
        raise ValueError("permutation_importance_oof: no fold with ≥ 2 test rows")
    M = np.vstack(per_fold)
    nf = M.shape[0]
    mean = M.mean(axis=0)
    sd = M.std(axis=0, ddof=1) if nf > 1 else np.full(M.shape[1], np.nan)
    half = sps.t.ppf(0.5 + level / 2, nf - 1) * sd / np.sqrt(nf) if nf > 1 else np.nan
    out = pd.DataFrame(
        {
            "feature": features,
            "importance": mean,
            "ci_low": mean - half,
            "ci_high": mean + half,
            "sd_folds": sd,
            "n_folds": nf,
            "n_repeats": n_repeats,
        }
    )
    out = out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
    out["rank"] = np.arange(1, len(out) + 1)
    return out


def vif(df: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    """Variance inflation factors (statsmodels, design with a constant), complete cases.

    Parameters
    ----------
    df : DataFrame
        Data.
    features : sequence of str
        At least two features.

    Returns
    -------
    DataFrame
        ``feature``, ``vif`` (inf for an exact linear combination, NaN for a constant), ``n``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = pd.DataFrame(rng.normal(size=(500, 2)), columns=["a", "b"])
    >>> bool((vif(x, ["a", "b"])["vif"] < 1.05).all())
    True
    """
    from statsmodels.stats.outliers_influence import variance_inflation_factor

    features = list(features)
    if len(features) < 2:
        raise ValueError("vif: need at least two features")
    _check_columns(df, features, "feature(s)")
    X = df[features].to_numpy(float)
    X = X[np.isfinite(X).all(axis=1)]
    if X.shape[0] <= len(features) + 1:
        raise ValueError(f"vif: {X.shape[0]} complete rows for {len(features)} features")
    sd = X.std(axis=0)
    const = sd == 0
    Z = (X[:, ~const] - X[:, ~const].mean(axis=0)) / sd[~const]
    exog = np.column_stack([np.ones(len(Z)), Z])
    vals = np.full(len(features), np.nan)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        vals[~const] = [variance_inflation_factor(exog, i + 1) for i in range(Z.shape[1])]
    return pd.DataFrame({"feature": features, "vif": vals, "n": X.shape[0]})


# --------------------------------------------------------------------------- ranking
def rank_agreement(
    oof_df: pd.DataFrame,
    true_col: str = "y",
    pred_col: str = "y_pred",
    cell_cols: Sequence[str] = ("model", "dataset", "sparsity"),
    item_col: str = "pruner",
    *,
    by: Sequence[str] = ("scope", "feature_set", "learner", "folds"),
    min_items: int = 3,
) -> pd.DataFrame:
    """Kendall τ between pruner rankings by true and by predicted accuracy, per cell.

    In each cell (e.g. one model, dataset and sparsity) the items (pruners) are ranked by their
    mean true value and by their mean out-of-fold prediction over seeds; τ-b
    (``scipy.stats.kendalltau``) compares the two rankings. Cells with fewer than ``min_items``
    items or a constant ranking get NaN (reported in ``note``).

    Read τ against 0 (a random ranking), not against the sparsity-only model: a model that sees
    only sparsity predicts a held-out pruner by the *other* pruners' mean at that sparsity, which
    ranks pruners in reverse by construction (τ ≈ −1 under leave-one-pruner-out, < 0 under
    K-fold on the authors' tables).

    Parameters
    ----------
    oof_df : DataFrame
        Out-of-fold predictions (:func:`evaluate` with ``return_oof=True``).
    true_col, pred_col : str
        Observed and predicted columns.
    cell_cols : sequence of str
        Cell definition.
    item_col : str
        What is ranked.
    by : sequence of str
        Further columns kept apart (those absent from ``oof_df`` are ignored).
    min_items : int
        Minimum items for a τ.

    Returns
    -------
    DataFrame
        ``by``…, ``cell_cols``…, ``n_items``, ``tau``, ``p_value``, ``note``.

    Examples
    --------
    >>> oof = pd.DataFrame({"cell": 1, "pruner": list("abcd"), "y": [1, 2, 3, 4],
    ...                     "y_pred": [10, 20, 30, 40]})
    >>> rank_agreement(oof, cell_cols=("cell",))["tau"].tolist()
    [1.0]
    """
    cell_cols = list(cell_cols)
    by = [c for c in by if c in oof_df.columns and c not in cell_cols]
    _check_columns(oof_df, [true_col, pred_col, *cell_cols, item_col], "column(s)")
    if len(oof_df) == 0:
        raise ValueError("rank_agreement: empty frame")
    means = (
        oof_df.groupby([*by, *cell_cols, item_col], sort=True, dropna=False)[[true_col, pred_col]]
        .mean()
        .reset_index()
    )
    rows = []
    for key, cell in means.groupby([*by, *cell_cols], sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        t = cell[true_col].to_numpy(float)
        p = cell[pred_col].to_numpy(float)
        ok = np.isfinite(t) & np.isfinite(p)
        t, p = t[ok], p[ok]
        tau = pval = np.nan
        note = ""
        if t.size < min_items:
            note = f"{t.size} items < {min_items}"
        elif np.ptp(t) == 0 or np.ptp(p) == 0:
            note = "constant ranking"
        else:
            res = sps.kendalltau(t, p)
            tau, pval = float(res.statistic), float(res.pvalue)
        rows.append(
            {
                **dict(zip([*by, *cell_cols], key)),
                "n_items": int(t.size),
                "tau": tau,
                "p_value": pval,
                "note": note,
            }
        )
    return pd.DataFrame(rows)


def _mean_ci(values: np.ndarray, n_boot: int, rng: np.random.Generator, level: float) -> tuple:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return np.nan, np.nan, np.nan
    boot = v[_boot_idx(v.size, n_boot, rng)].mean(axis=1)
    lo, hi = _pct(boot, level)
    return float(v.mean()), lo, hi


def rank_summary(
    tau_df: pd.DataFrame,
    by: Sequence[str] = ("scope", "feature_set", "learner", "folds"),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Mean Kendall τ over cells with a bootstrap CI (cells resampled), per ``by`` group.

    Parameters
    ----------
    tau_df : DataFrame
        Output of :func:`rank_agreement`.
    by : sequence of str
        Grouping (those absent are ignored).
    n_boot, seed, level : int, int, float
        Bootstrap settings.

    Returns
    -------
    DataFrame
        ``by``…, ``tau_mean``, ``ci_low``, ``ci_high``, ``n_cells``, ``n_nan``.

    Examples
    --------
    >>> rank_summary(pd.DataFrame({"tau": [1.0, 0.5, np.nan]}), by=())["n_cells"].tolist()
    [2]
    """
    _check_columns(tau_df, ["tau"], "column(s)")
    by = [c for c in by if c in tau_df.columns]
    groups = tau_df.groupby(by, sort=True, dropna=False) if by else [((), tau_df)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        label = "/".join(map(str, key))
        m, lo, hi = _mean_ci(g["tau"].to_numpy(float), n_boot, _unit_rng(seed, label), level)
        rows.append(
            {
                **dict(zip(by, key)),
                "tau_mean": m,
                "ci_low": lo,
                "ci_high": hi,
                "n_cells": int(g["tau"].notna().sum()),
                "n_nan": int(g["tau"].isna().sum()),
            }
        )
    return pd.DataFrame(rows)


def compare_tau(
    tau_a: pd.DataFrame,
    tau_b: pd.DataFrame,
    cell_cols: Sequence[str] = ("model", "dataset", "sparsity"),
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.Series:
    """Paired bootstrap over cells of mean τ(a) − mean τ(b) (cells where both are defined).

    Returns
    -------
    Series
        ``a``, ``b`` (mean τ), ``estimate``, ``ci_low``, ``ci_high``, ``p_le_0``, ``n_cells``.

    Examples
    --------
    >>> a = pd.DataFrame({"cell": range(20), "tau": 0.8})
    >>> b = pd.DataFrame({"cell": range(20), "tau": np.linspace(-0.2, 0.2, 20)})
    >>> round(float(compare_tau(a, b, ["cell"], n_boot=200)["estimate"]), 6)
    0.8
    """
    cell_cols = list(cell_cols)
    for name, t in (("tau_a", tau_a), ("tau_b", tau_b)):
        _check_columns(t, [*cell_cols, "tau"], f"column(s) of {name}:")
        if t.duplicated(cell_cols).any():
            raise ValueError(f"compare_tau: {name} has repeated cells; filter it first")
    m = tau_a[[*cell_cols, "tau"]].merge(
        tau_b[[*cell_cols, "tau"]], on=cell_cols, suffixes=("_a", "_b")
    )
    m = m[np.isfinite(m["tau_a"]) & np.isfinite(m["tau_b"])]
    if len(m) == 0:
        raise ValueError("compare_tau: no cell where both τ are defined")
    d = (m["tau_a"] - m["tau_b"]).to_numpy(float)
    boot = d[_boot_idx(d.size, n_boot, np.random.default_rng(seed))].mean(axis=1)
    lo, hi = _pct(boot, level)
    return pd.Series(
        {
            "a": float(m["tau_a"].mean()),
            "b": float(m["tau_b"].mean()),
            "estimate": float(d.mean()),
            "ci_low": lo,
            "ci_high": hi,
            "p_le_0": float(np.mean(boot <= 0)),
            "n_cells": len(m),
        }
    )


# --------------------------------------------------------------------------- claims
def _default_strata(scope: str, group_cols: Sequence[str], sparsity_col: str) -> list[str] | None:
    if scope == "per_group":
        return list(group_cols)
    if scope == "per_sparsity":
        return [*group_cols, sparsity_col]
    return None


def _pairs(oof: pd.DataFrame, scope: str) -> list[tuple[str, str]]:
    _check_columns(oof, ["scope", "feature_set", "learner", "folds"], "OOF column(s)")
    sub = oof[oof["scope"] == scope]
    if len(sub) == 0:
        raise ValueError(
            f"no OOF rows for scope {scope!r}; scopes: {sorted(oof['scope'].unique())}"
        )
    return sorted(sub[["learner", "folds"]].drop_duplicates().itertuples(index=False, name=None))


def _select(oof: pd.DataFrame, scope: str, fs: str, learner: str, folds: str) -> pd.DataFrame:
    s = oof[
        (oof["scope"] == scope)
        & (oof["feature_set"] == fs)
        & (oof["learner"] == learner)
        & (oof["folds"] == folds)
    ]
    if len(s) == 0:
        raise ValueError(f"no OOF rows for feature set {fs!r} ({scope}, {learner}, {folds})")
    return s


def _stat_label(
    metric: str,
    scope: str,
    strata: Sequence[str] | None,
    folds: str,
    learner: str,
    agg: str = "mean",
) -> str:
    what = {"r2": "ΔR²", "mae": "ΔMAE"}[metric]
    over = f"{agg} over ({', '.join(strata)})" if strata else "pooled"
    return f"{what}, {over}; {scope}, {folds}, {learner}"


def claim_mge_vs_bge(
    oof: pd.DataFrame,
    *,
    mge: str = "mge",
    bge: Sequence[str] = ("rolled", "rolled_channel"),
    scope: str = "per_group",
    metric: Literal["r2", "mae"] = "r2",
    agg: Literal["mean", "median"] = "mean",
    group_cols: Sequence[str] = ("model", "dataset"),
    sparsity_col: str = "sparsity",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "MGE metrics predict the accuracy drop much better than BGE metrics".

    For each learner × fold scheme in ``oof`` and each BGE feature set: :func:`compare` of
    ``mge`` against it (stratified by (model, dataset) in the per-group scope).
    **Rule**: supported when the CI of R²(MGE) − R²(BGE) lies above 0 (for MAE: below 0). The
    "much" is not tested; read the estimate.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table` (plus ``scope``, ``learner``, ``folds``, ``rule``).
    """
    strata = _default_strata(scope, group_cols, sparsity_col)
    rows = []
    for learner, folds in _pairs(oof, scope):
        a = _select(oof, scope, mge, learner, folds)
        for b_name in bge:
            b = _select(oof, scope, b_name, learner, folds)
            r = compare(
                a, b, metric=metric, strata=strata, agg=agg, n_boot=n_boot, seed=seed, level=level
            )
            ok = r["ci_low"] > 0 if metric == "r2" else r["ci_high"] < 0
            rows.append(
                {
                    "claim": CLAIMS["mge_vs_bge"],
                    "feature_set_or_comparison": f"{mge} − {b_name}",
                    "statistic": _stat_label(metric, scope, strata, folds, learner, agg),
                    "estimate": r["estimate"],
                    "ci_low": r["ci_low"],
                    "ci_high": r["ci_high"],
                    "supported": bool(ok),
                    "scope": scope,
                    "learner": learner,
                    "folds": folds,
                    "rule": "CI of the difference excludes 0 in MGE's favour",
                }
            )
    return rows


def claim_ramanujan_vs_density(
    oof: pd.DataFrame,
    *,
    ramanujan: str = "ramanujan",
    density: str = "density",
    scope: str = "per_group",
    margin: float = 0.05,
    rule: Literal["includes_zero_or_margin", "equivalence"] = "includes_zero_or_margin",
    agg: Literal["mean", "median"] = "mean",
    group_cols: Sequence[str] = ("model", "dataset"),
    sparsity_col: str = "sparsity",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "Ramanujan metrics are only as good as density" (SPEC §8.1).

    Difference R²(Ramanujan) − R²(density), paired, per learner × fold scheme.
    **Rules** (``rule``): ``"includes_zero_or_margin"`` (default, the project's rule) — supported
    when the CI contains 0 or lies within [−margin, +margin]; ``"equivalence"`` (stricter, TOST
    style) — supported only when the CI lies within [−margin, +margin]. A wide CI that merely
    contains 0 supports the claim under the first rule only: read ``ci_low``/``ci_high``.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table`.
    """
    if rule not in ("includes_zero_or_margin", "equivalence"):
        raise ValueError(f"unknown rule {rule!r}")
    strata = _default_strata(scope, group_cols, sparsity_col)
    rows = []
    for learner, folds in _pairs(oof, scope):
        a = _select(oof, scope, ramanujan, learner, folds)
        b = _select(oof, scope, density, learner, folds)
        r = compare(a, b, strata=strata, agg=agg, n_boot=n_boot, seed=seed, level=level)
        within = -margin <= r["ci_low"] and r["ci_high"] <= margin
        zero = r["ci_low"] <= 0 <= r["ci_high"]
        ok = within if rule == "equivalence" else (within or zero)
        rows.append(
            {
                "claim": CLAIMS["ramanujan_vs_density"],
                "feature_set_or_comparison": f"{ramanujan} − {density}",
                "statistic": _stat_label("r2", scope, strata, folds, learner, agg),
                "estimate": r["estimate"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "supported": bool(ok),
                "scope": scope,
                "learner": learner,
                "folds": folds,
                "rule": (
                    f"CI within ±{margin}"
                    if rule == "equivalence"
                    else f"CI contains 0 or lies within ±{margin}"
                ),
            }
        )
    return rows


def claim_ranking(
    tau_cells: pd.DataFrame,
    *,
    mixture: str = "mge",
    ramanujan: str = "ramanujan",
    scope: str = "per_group",
    cell_cols: Sequence[str] = ("model", "dataset", "sparsity"),
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "a mixture of topometrics ranks PaI algorithms better than Ramanujan metrics".

    ``tau_cells`` is :func:`rank_agreement` of PaI-only OOF predictions. Per learner × fold
    scheme, :func:`compare_tau` of the ``mixture`` feature set against ``ramanujan`` over the
    cells. **Rule**: supported when the CI of mean τ(mixture) − mean τ(Ramanujan) lies above 0.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table`.
    """
    _check_columns(tau_cells, ["scope", "feature_set", "learner", "folds", "tau"], "column(s)")
    rows = []
    for learner, folds in _pairs(tau_cells, scope):
        sel = (
            (tau_cells["scope"] == scope)
            & (tau_cells["learner"] == learner)
            & (tau_cells["folds"] == folds)
        )
        a = tau_cells[sel & (tau_cells["feature_set"] == mixture)]
        b = tau_cells[sel & (tau_cells["feature_set"] == ramanujan)]
        if len(a) == 0 or len(b) == 0:
            raise ValueError(f"claim_ranking: feature set {mixture!r} or {ramanujan!r} missing")
        r = compare_tau(a, b, cell_cols, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            {
                "claim": CLAIMS["ranking"],
                "feature_set_or_comparison": f"{mixture} − {ramanujan}",
                "statistic": f"Δ mean Kendall τ over {int(r['n_cells'])} cells; {scope}, {folds}, {learner}",
                "estimate": r["estimate"],
                "ci_low": r["ci_low"],
                "ci_high": r["ci_high"],
                "supported": bool(r["ci_low"] > 0),
                "scope": scope,
                "learner": learner,
                "folds": folds,
                "rule": "CI of the τ difference excludes 0 in the mixture's favour",
            }
        )
    return rows


def claims_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A tidy claims table: :data:`CLAIMS_COLUMNS` first, any extra keys after.

    Parameters
    ----------
    rows : iterable of mappings
        E.g. the concatenated outputs of :func:`claim_mge_vs_bge`,
        :func:`claim_ramanujan_vs_density` and :func:`claim_ranking`.

    Examples
    --------
    >>> claims_table([{"claim": "c", "feature_set_or_comparison": "a − b", "statistic": "ΔR²",
    ...                "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2, "supported": True}]).shape
    (1, 7)
    """
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("claims_table: no rows")
    for i, r in enumerate(rows):
        missing = [c for c in CLAIMS_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"claims_table: row {i} lacks {missing}")
    out = pd.DataFrame(rows)
    out["supported"] = out["supported"].astype(bool)
    return out[list(CLAIMS_COLUMNS) + [c for c in out.columns if c not in CLAIMS_COLUMNS]]
