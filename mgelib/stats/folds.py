"""Fold schemes of the out-of-fold analyses (method §8.2): random K-fold — the paper's setting,
optionally keeping groups (e.g. the seeds of one configuration) together — and
leave-one-pruner-out (can topology predict an unseen pruning algorithm?).

Examples
--------
>>> folds = kfold_splits(pd.DataFrame({"x": range(10)}), k=5, seed=0)
>>> len(folds)
5
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FOLD_SCHEMES", "Split", "kfold_splits", "leave_one_pruner_out"]

FOLD_SCHEMES: tuple[str, ...] = ("kfold", "lopo")
Split = tuple[np.ndarray, np.ndarray]


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
