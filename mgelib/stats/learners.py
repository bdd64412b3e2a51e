"""The two prediction learners of method §8.2 with their fold-local preprocessing.

Preprocessing is fitted on the training fold only: NaN features are imputed with the training
median; features constant on the training fold are dropped; for ``"ridge"`` a feature with
skewness > 1 and all training values > 0 is log-transformed (test values are clipped to the
training minimum first), then features are standardised.

``"ridge"`` is ridge regression whose penalty is chosen by an **inner** cross-validation on the
training fold only (the grid :data:`RIDGE_ALPHAS`, relative to the training size); the inner
folds mirror the outer scheme — under leave-one-pruner-out the inner folds hold out one
training pruner each, so the penalty is the one that generalises to an unseen pruner. Group
fixed effects (dummies) are not penalised (partialled out, Frisch–Waugh). All penalties of one
fit come from one SVD. With ``alpha=0`` it is ordinary least squares (tested against
statsmodels). Least squares is not a prediction learner here: on 16 collinear topometrics it
extrapolates without bound for an unseen pruner (out-of-fold R² of −10¹¹ on the authors'
tables); OLS and MixedLM serve coefficient inference (:func:`mgelib.stats.coefficients`).
``"gbt"`` is scikit-learn's ``HistGradientBoostingRegressor`` with a fixed ``random_state``.

Examples
--------
>>> tr = pd.DataFrame({"x": [0.0, 1, 2, 3], "y": [1.0, 3, 5, 7]})
>>> float(fit_predict(tr, pd.DataFrame({"x": [2.5]}), ["x"], "y", alpha=0.0)[0][0].round(6))
6.0
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import HistGradientBoostingRegressor

from mgelib.stats._common import _check_columns, _single_thread

__all__ = ["LEARNERS", "LINEAR_LEARNERS", "RIDGE_ALPHAS", "BOX_SLACK", "fit_predict"]

LEARNERS: tuple[str, ...] = ("ridge", "gbt")
#: Learners whose features are log-transformed where skewed and standardised.
LINEAR_LEARNERS: tuple[str, ...] = ("ridge",)
#: Ridge penalties tried by the inner CV, as multiples of the training size n (the features are
#: standardised, so XᵀX ≈ n·correlation: α/n = 1 halves the weight of a unit-variance direction).
RIDGE_ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-4, 3, 22))
#: Linear learners extrapolate at most this fraction of the training span beyond the training
#: range of each (transformed) feature: test values further out are clipped (method §8.2).
BOX_SLACK = 0.25
#: Inner folds of the penalty search when the outer scheme gives no groups.
_INNER_K = 5


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
        # The training box of the (transformed) features, widened by BOX_SLACK × its span on
        # each side: test values are clipped into it.
        state["box"] = _box(B)
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
    if "box" in state:
        # No extrapolation beyond the training fold (as the trees): a held-out pruner whose
        # feature lies 100 SDs outside the training range would otherwise move a linear
        # prediction by 100 × its coefficient (out-of-fold R² of −10⁶ on the authors' tables).
        lo, hi = state["box"]
        clipped += int(((B < lo) | (B > hi)).sum())
        B = np.clip(B, lo, hi)
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


def _residualise(Z: np.ndarray, M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``M`` minus its least-squares projection on the columns of ``Z``, and the coefficients."""
    coef = np.linalg.lstsq(Z, M, rcond=None)[0]
    return M - Z @ coef, coef


def _ridge_path(B: np.ndarray, y: np.ndarray, Z: np.ndarray, alphas: np.ndarray) -> tuple:
    """Ridge coefficients of ``y`` on ``B`` for every penalty, ``Z`` (intercept + dummies)
    unpenalised: β(α) = V diag(s / (s² + α)) Uᵀ ỹ on the residualised (B̃, ỹ)."""
    Bt, _ = _residualise(Z, B)
    yt, _ = _residualise(Z, y)
    U, sv, Vt = np.linalg.svd(Bt, full_matrices=False)
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(
            sv[None, :] > 1e-12 * max(sv.max(initial=0.0), 1e-300),
            sv[None, :] / (sv[None, :] ** 2 + alphas[:, None]),
            0.0,
        )
    betas = (shrink * (U.T @ yt)[None, :]) @ Vt  # (n_alphas, p)
    gammas = np.linalg.lstsq(Z, y[:, None] - B @ betas.T, rcond=None)[0]  # (q, n_alphas)
    return betas, gammas


def _inner_splits(n: int, groups: np.ndarray | None, seed: int) -> list[tuple]:
    if groups is not None:
        levels = np.unique(groups)
        if levels.size >= 3:
            return [(np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in levels]
    k = min(_INNER_K, n)
    fold = np.random.default_rng(seed).permutation(n) % k
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def _box(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training range of each column widened by :data:`BOX_SLACK` of its span."""
    lo, hi = B.min(axis=0, initial=np.inf), B.max(axis=0, initial=-np.inf)
    slack = BOX_SLACK * (hi - lo)
    return lo - slack, hi + slack


def _choose_alpha(
    B: np.ndarray, y: np.ndarray, Z: np.ndarray, groups: np.ndarray | None, seed: int
) -> tuple[float, float]:
    """The penalty from :data:`RIDGE_ALPHAS` × n by inner CV with the one-standard-error rule
    (the largest penalty whose mean inner-fold error is within one SE of the smallest: with a
    handful of training pruners the error curve is flat and noisy, and the simplest model
    within noise is the one that generalises), and its error as a share of the training
    variance (1 − inner R²). Inner folds clip features as the outer fit does."""
    n = len(y)
    alphas = np.asarray(RIDGE_ALPHAS) * n
    mse = []
    for tr, te in _inner_splits(n, groups, seed):
        if tr.size < 2 or te.size == 0:
            continue
        Ztr = Z[tr][:, np.abs(Z[tr]).sum(axis=0) > 0]  # a level absent from the inner fold
        Zte = Z[te][:, np.abs(Z[tr]).sum(axis=0) > 0]
        betas, gammas = _ridge_path(B[tr], y[tr], Ztr, alphas)
        lo, hi = _box(B[tr])
        pred = np.clip(B[te], lo, hi) @ betas.T + Zte @ gammas  # (n_te, n_alphas)
        mse.append(((y[te, None] - pred) ** 2).mean(axis=0))
    if not mse:
        return float(alphas[-1]), np.nan
    M = np.vstack(mse)
    mean = M.mean(axis=0)
    se = M.std(axis=0, ddof=1) / np.sqrt(len(M)) if len(M) > 1 else np.zeros_like(mean)
    i_min = int(np.argmin(mean))
    best = int(np.flatnonzero(mean <= mean[i_min] + se[i_min])[-1])
    var = float(y.var())
    return float(alphas[best]), float(mean[best] / var) if var > 0 else np.nan


def _fit_arrays(
    A: np.ndarray,
    y: np.ndarray,
    D: np.ndarray | None,
    learner: str,
    *,
    log_skewed: bool = True,
    random_state: int = 0,
    gbt_params: Mapping | None = None,
    alpha: float | None = None,
    inner_groups: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit preprocessing + learner on arrays; ``D`` = fixed-effect dummies (not transformed,
    not penalised); ``alpha`` fixes the ridge penalty (else inner CV, grouped by
    ``inner_groups`` when given)."""
    if learner not in LEARNERS:
        raise ValueError(f"unknown learner {learner!r}; use one of {LEARNERS}")
    linear = learner in LINEAR_LEARNERS
    # Trees are invariant to monotone transforms and to scale: no log, no standardisation.
    st = _prep_fit(A, log_skewed=log_skewed and linear, standardise=linear)
    B = _prep_numeric(st, np.where(np.isnan(A), st["med"], A))
    if linear:
        B = (B - st["mean"]) / st["sd"]
    dkeep = None
    if D is not None and D.shape[1]:
        dkeep = D.std(axis=0) > 0  # a level absent from the training fold: no column
    st["dkeep"] = dkeep
    st["learner"] = learner
    if linear:
        Z = np.ones((len(B), 1))
        if dkeep is not None:
            Z = np.column_stack([Z, D[:, dkeep]])
        if alpha is None:
            alpha, st["inner_loss"] = _choose_alpha(B, y, Z, inner_groups, random_state)
        betas, gammas = _ridge_path(B, y, Z, np.array([float(alpha)]))
        st["alpha"], st["beta"], st["gamma"] = float(alpha), betas[0], gammas[:, 0]
        # A bounded target: predictions stay within the training range (± BOX_SLACK of its span).
        st["y_box"] = _box(y[:, None]) if len(y) else None
        return st
    if dkeep is not None:
        B = np.hstack([B, D[:, dkeep]])
    if B.shape[1] == 0:
        # No usable feature (e.g. sparsity within one sparsity level): boosting from a constant
        # start with nothing to split on predicts the training mean; skip the 100 no-op trees.
        st["gbt"], st["const"] = None, float(np.mean(y))
    else:
        st["gbt"] = _regressor(learner, len(y), random_state, gbt_params).fit(B, y)
    return st


def _predict_arrays(st: dict[str, Any], A: np.ndarray, D: np.ndarray | None) -> tuple:
    B, imputed, clipped = _prep_apply(st, A)
    if st["learner"] in LINEAR_LEARNERS:
        Z = np.ones((len(B), 1))
        if st["dkeep"] is not None and D is not None:
            Z = np.column_stack([Z, D[:, st["dkeep"]]])
        pred = B @ st["beta"] + Z @ st["gamma"]
        if st.get("y_box") is not None:
            pred = np.clip(pred, st["y_box"][0][0], st["y_box"][1][0])
        return np.asarray(pred, dtype=float), imputed, clipped
    if st["dkeep"] is not None and D is not None:
        B = np.hstack([B, D[:, st["dkeep"]]])
    if st["gbt"] is None:
        pred = np.full(len(B), st["const"])
    else:
        pred = st["gbt"].predict(B)
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
        alpha: float | None = None,
    ):
        self.features = features
        self.categoricals = categoricals
        self.learner = learner
        self.log_skewed = log_skewed
        self.random_state = random_state
        self.gbt_params = gbt_params
        self.alpha = alpha

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
            alpha=self.alpha,
        )
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        A = X[list(self.features)].to_numpy(dtype=float)
        return _predict_arrays(self.state_, A, self._dummies(X))[0]


def fit_predict(
    train_df: pd.DataFrame,
    test_df: pd.DataFrame,
    features: Sequence[str],
    target: str,
    learner: Literal["ridge", "gbt"] = "ridge",
    *,
    categoricals: Sequence[str] = (),
    log_skewed: bool = True,
    random_state: int = 0,
    gbt_params: Mapping[str, Any] | None = None,
    alpha: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fit on ``train_df`` (preprocessing included), predict ``test_df``.

    ``"ridge"``: training-median imputation, constant features dropped, log of skewed positive
    features (skewness > 1, all > 0, decided on ``train_df``), standardisation with the training
    mean and SD, then ridge regression with an unpenalised intercept (and unpenalised
    ``categoricals``) whose penalty is chosen by a 5-fold inner CV on ``train_df`` over
    :data:`RIDGE_ALPHAS` × n, unless ``alpha`` fixes it (``alpha=0`` is least squares, the same
    fit as statsmodels OLS). ``"gbt"``: imputation and constant-dropping only, then
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
    learner : {"ridge", "gbt"}
        The learner.
    categoricals : sequence of str
        Columns one-hot encoded with the training levels (fixed effects); unseen levels → 0.
    log_skewed : bool
        ``ridge`` only: apply the log rule above.
    random_state : int
        Seed of the tree model.
    gbt_params : mapping, optional
        Overrides of ``HistGradientBoostingRegressor`` parameters.
    alpha : float, optional
        ``ridge`` only: a fixed penalty instead of the inner CV.

    Returns
    -------
    y_pred : ndarray
        Predictions for ``test_df``.
    info : dict
        ``features_used``, ``dropped_constant``, ``dropped_all_nan``, ``logged``,
        ``imputed_train``, ``imputed_test`` (NaN cells filled with the training median),
        ``clipped_test`` (test values below the training minimum of a logged feature),
        ``n_train``, ``n_test``, ``alpha`` (``ridge``: the penalty used).

    Examples
    --------
    >>> tr = pd.DataFrame({"x": [0.0, 1, 2, 3], "c": 1.0, "y": [1.0, 3, 5, 7]})
    >>> te = pd.DataFrame({"x": [2.5], "c": 1.0})
    >>> pred, info = fit_predict(tr, te, ["x", "c"], "y", alpha=0.0)
    >>> float(pred[0].round(6)), info["dropped_constant"]
    (6.0, ['c'])
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
    model = _Model(
        features, list(categoricals), learner, log_skewed, random_state, gbt_params, alpha
    )
    with _single_thread():
        model.fit(train_df, y)
        pred, imputed, clipped = _predict_arrays(
            model.state_, test_df[features].to_numpy(dtype=float), model._dummies(test_df)
        )
    info = _info(model.state_, features)
    info.update(
        imputed_test=imputed,
        clipped_test=clipped,
        n_train=len(train_df),
        n_test=len(test_df),
        alpha=model.state_.get("alpha", np.nan),
    )
    return pred, info
