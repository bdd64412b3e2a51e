"""Which features matter (method §8.3): standardised OLS coefficients with clustered or
mixed-model standard errors (:func:`coefficients`), out-of-fold permutation importance
(:func:`permutation_importance_oof`) and variance inflation factors (:func:`vif`).

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = pd.DataFrame(rng.normal(size=(500, 2)), columns=["a", "b"])
>>> bool((vif(x, ["a", "b"])["vif"] < 1.05).all())
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from mgelib.stats._common import InsufficientData, _boot_idx, _check_columns, _single_thread
from mgelib.stats.folds import _as_labels, _splits
from mgelib.stats.learners import (
    _dummies,
    _fit_arrays,
    _info,
    _predict_arrays,
    _prep_apply,
    _prep_fit,
)

__all__ = ["coefficients", "permutation_importance_oof", "vif"]


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


def _boot_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` multiplicities of the rows in each bootstrap resample."""
    idx = _boot_idx(n, n_boot, rng).astype(np.int64)
    flat = idx + (np.arange(n_boot, dtype=np.int64) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(float)


def _fold_errors(
    A: np.ndarray,
    y: np.ndarray,
    D: np.ndarray | None,
    tr: np.ndarray,
    te: np.ndarray,
    learner: str,
    n_repeats: int,
    seed: int,
    fold: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared held-out errors of one fold: unpermuted ``(n,)`` and, per feature, the mean over
    ``n_repeats`` permutations of that feature in the held-out rows ``(p, n)``."""
    p, R = A.shape[1], n_repeats
    st = _fit_arrays(A[tr], y[tr], None if D is None else D[tr], learner, random_state=seed)
    At, yt, Dt, n = A[te], y[te], None if D is None else D[te], len(te)
    base = (yt - _predict_arrays(st, At, Dt)[0]) ** 2
    # Every (feature, repeat) permutation of the held-out rows, predicted in one call:
    # p·R·n rows instead of p·R predict calls (sklearn's permutation_importance).
    rng = np.random.default_rng([seed, fold])
    perm = rng.permuted(np.tile(np.arange(n), (p * R, 1)), axis=1)
    col = np.repeat(np.arange(p), R)
    big = np.repeat(At[None], p * R, axis=0)
    big[np.arange(p * R)[:, None], np.arange(n)[None, :], col[:, None]] = At[perm, col[:, None]]
    Db = None if Dt is None else np.tile(Dt, (p * R, 1))
    pred = _predict_arrays(st, big.reshape(p * R * n, p), Db)[0].reshape(p * R, n)
    return base, ((yt[None, :] - pred) ** 2).reshape(p, R, n).mean(axis=1)


def permutation_importance_oof(
    df: pd.DataFrame,
    features: Sequence[str],
    target: str,
    *,
    learner: Literal["ridge", "gbt"] = "gbt",
    folds: Literal["kfold", "lopo"] = "kfold",
    k: int = 5,
    seed: int = 0,
    fold_groups: str | Sequence[str] | None = None,
    pruner_col: str = "pruner",
    categoricals: Sequence[str] = (),
    n_repeats: int = 10,
    n_boot: int = 1000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Permutation importance on held-out folds, with bootstrap CIs.

    For each fold, the model (preprocessing included) is fitted on the training rows and each
    feature is permuted ``n_repeats`` times in the held-out rows (as
    ``sklearn.inspection.permutation_importance``, vectorised). The importance of a feature is
    the drop in the **pooled out-of-fold** R² when it is permuted, averaged over repeats:
    Σᵢ (eᵢ,perm² − eᵢ²) / Σᵢ (yᵢ − ȳ)² over all held-out rows. Because the numerator is a sum
    over rows, its percentile bootstrap over held-out rows is exact and cheap (one
    multiplicity matrix for all features).

    An importance is **undefined** (NaN, ``rank`` missing, ``status="undefined"`` with the
    ``reason``) when the held-out target has no variance or a prediction is not finite; it is
    never ranked.

    Parameters
    ----------
    df : DataFrame
        Rows with a finite target.
    features : sequence of str
        Features (all are scored).
    target : str
        Response.
    learner : {"gbt", "ridge"}
        Model.
    folds : {"kfold", "lopo"}
        Fold scheme.
    k, seed, fold_groups, pruner_col : see :func:`evaluate`
    categoricals : sequence of str
        Fixed-effect columns (not scored).
    n_repeats : int
        Permutations per feature and fold.
    n_boot, level : int, float
        Bootstrap resamples of the held-out rows and confidence level.

    Returns
    -------
    DataFrame
        ``feature``, ``importance``, ``ci_low``, ``ci_high`` (bootstrap), ``sd_folds`` (SD of
        the per-fold importances), ``n``, ``n_folds``, ``n_repeats``, ``rank`` (1 = most
        important; missing when undefined), ``status`` (``ok`` / ``undefined``), ``reason``;
        ranked features first, by importance.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame(rng.normal(size=(120, 2)), columns=["a", "b"])
    >>> df["y"] = df["a"] + 0.1 * rng.normal(size=120)
    >>> permutation_importance_oof(df, ["a", "b"], "y", n_repeats=3)["feature"].iloc[0]
    'a'
    """
    features = list(features)
    _check_columns(df, [*features, target, *categoricals], "column(s)")
    df = df[np.isfinite(df[target].to_numpy(float))]
    if len(df) == 0:
        raise InsufficientData("permutation_importance_oof: no row with a finite target")
    try:
        splits = _splits(df, folds, k, seed, fold_groups, pruner_col)
    except ValueError as err:
        raise InsufficientData(f"permutation_importance_oof: {err}") from err
    A = df[features].to_numpy(float)
    y = df[target].to_numpy(float)
    cats = [df[c].astype(str).to_numpy(dtype=object) for c in categoricals]
    ys, bases, perms, fold_imp = [], [], [], []
    with _single_thread():
        for f, (tr, te) in enumerate(splits):
            if len(te) < 2:
                continue
            # Dummies with the training fold's levels (an unseen level: all zeros), as _Model.
            levels = [sorted(pd.unique(v[tr])) for v in cats]
            D = np.hstack([_dummies(v, lv) for v, lv in zip(cats, levels)]) if cats else None
            base, perm = _fold_errors(A, y, D, tr, te, learner, n_repeats, seed, f)
            ys.append(y[te])
            bases.append(base)
            perms.append(perm)
            ss = float(((y[te] - y[te].mean()) ** 2).sum())
            fold_imp.append(
                (perm - base).sum(axis=1) / ss if ss > 0 else np.full(len(features), np.nan)
            )
    if not ys:
        raise InsufficientData("permutation_importance_oof: no fold with ≥ 2 test rows")
    yy, E = np.concatenate(ys), np.hstack(perms) - np.concatenate(bases)[None, :]
    n = yy.size
    ss_tot = float(((yy - yy.mean()) ** 2).sum())
    reason = np.full(len(features), "", dtype=object)
    finite = np.isfinite(E).all(axis=1)
    reason[~finite] = "a held-out prediction is not finite"
    if not ss_tot > 0:
        reason[:] = "the held-out target has no variance: R² is undefined"
    ok = reason == ""
    imp = np.where(
        ok, np.where(finite[:, None], E, 0.0).sum(axis=1) / (ss_tot if ss_tot > 0 else 1.0), np.nan
    )
    lo = hi = np.full(len(features), np.nan)
    if ok.any():
        C = _boot_counts(n, n_boot, np.random.default_rng([seed, n]))
        sst_b = C @ (yy**2) - (C @ yy) ** 2 / n
        with np.errstate(divide="ignore", invalid="ignore"):
            boot = (C @ np.where(finite[:, None], E, 0.0).T) / sst_b[:, None]  # (n_boot, p)
        boot = boot[sst_b > 0]
        a = (1.0 - level) / 2.0
        q = (
            np.quantile(boot, [a, 1.0 - a], axis=0)
            if len(boot)
            else np.full((2, len(features)), np.nan)
        )
        lo, hi = np.where(ok, q[0], np.nan), np.where(ok, q[1], np.nan)
    F = np.vstack(fold_imp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(F, axis=0, ddof=1) if F.shape[0] > 1 else np.full(len(features), np.nan)
    out = pd.DataFrame(
        {
            "feature": features,
            "importance": imp,
            "ci_low": lo,
            "ci_high": hi,
            "sd_folds": sd,
            "n": n,
            "n_folds": F.shape[0],
            "n_repeats": n_repeats,
            "status": np.where(ok, "ok", "undefined"),
            "reason": reason.astype(str),
        }
    )
    return _rank(out)


def _rank(imp: pd.DataFrame) -> pd.DataFrame:
    """Sort by importance and rank 1…m the defined ones only; NaN is never ranked."""
    defined = np.isfinite(imp["importance"].to_numpy(float))
    out = pd.concat(
        [
            imp[defined].sort_values("importance", ascending=False, kind="stable"),
            imp[~defined].assign(status="undefined"),
        ],
        ignore_index=True,
    )
    out["rank"] = pd.array(
        [*range(1, int(defined.sum()) + 1), *[pd.NA] * int((~defined).sum())], dtype="Int64"
    )
    cols = [c for c in out.columns if c not in ("rank", "status", "reason")]
    return out[[*cols, "rank", "status", "reason"]]


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
