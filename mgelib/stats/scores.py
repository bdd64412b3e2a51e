"""Scores with bootstrap confidence intervals: R² and MAE of out-of-fold predictions
(:func:`bootstrap_scores`) and the paired bootstrap of a score difference between two feature
sets on the same rows (:func:`compare`).

Examples
--------
>>> s = bootstrap_scores(np.arange(10.0), np.arange(10.0), n_boot=100)
>>> s["r2"], s["mae"]
(1.0, 0.0)
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from mgelib.stats._common import (
    InsufficientData,
    _boot_idx,
    _check_columns,
    _metric_rows,
    _pct,
    _r2_rows,
)

__all__ = ["bootstrap_scores", "compare"]

logger = logging.getLogger(__name__)


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
        raise InsufficientData("compare: no stratum with ≥ 3 rows")
    if agg not in ("mean", "median"):
        raise ValueError(f"compare: agg must be 'mean' or 'median', got {agg!r}")
    combine = np.nanmean if agg == "mean" else np.nanmedian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        d = combine(np.vstack(boot_d), axis=0)
    lo, hi = _pct(d, level)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InsufficientData(f"compare: no finite bootstrap {metric} difference (constant y?)")
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
