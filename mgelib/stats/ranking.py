"""Ranking pruners (method §8.4): Kendall τ between the ranking of the pruners by true and by
out-of-fold predicted accuracy per (model, dataset, sparsity) cell, averaged with a CI.

Examples
--------
>>> oof = pd.DataFrame({"cell": 1, "pruner": list("abcd"), "y": [1, 2, 3, 4],
...                     "y_pred": [10, 20, 30, 40]})
>>> rank_agreement(oof, cell_cols=("cell",))["tau"].tolist()
[1.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from mgelib.stats._common import InsufficientData, _boot_idx, _check_columns, _pct, _unit_rng

__all__ = ["rank_agreement", "rank_summary", "compare_tau"]


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
        raise InsufficientData("compare_tau: no cell where both τ are defined")
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
