"""The two baselines that "topology beyond density" must beat (method §8, Frankle et al. 2021):
**layer-wise density** as a feature set (:func:`add_layer_densities`: one feature per layer,
its kept fraction) and the **``+shuffle`` null model** (:func:`shuffle_survival`: how much of
each pruner's effect on the accuracy drop and on each topometric survives redrawing its
kept positions uniformly within every layer).

Examples
--------
>>> layers = pd.DataFrame({"model": "m", "dataset": "d", "pruner": "p", "sparsity": 0.9,
...                        "seed": 0, "layer_id": [0, 1], "layer_density": [0.5, 0.05]})
>>> nets = layers.drop(columns=["layer_id", "layer_density"]).drop_duplicates()
>>> out, cols = add_layer_densities(nets, layers)
>>> cols, out[cols].to_numpy().tolist()
(['layer_density__L00', 'layer_density__L01'], [[0.5, 0.05]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mgelib import paperdata
from mgelib.analysis.study import SHUFFLE_SUFFIX, is_shuffled

__all__ = ["LAYER_DENSITY_SET", "add_layer_densities", "shuffle_survival"]

#: Name of the per-layer density feature set (one column per layer position).
LAYER_DENSITY_SET = "layer_density"
_KEY = list(paperdata.KEY)


def add_layer_densities(
    nets: pd.DataFrame, layers: pd.DataFrame, *, density_col: str = "layer_density"
) -> tuple[pd.DataFrame, list[str]]:
    """``nets`` with one column ``layer_density__L<id>`` per layer position (the layer's kept
    fraction), from a per-layer table (:func:`mgelib.analysis.load_layers`: the authors'
    Ramanujan tables or our runs' ``ramanujan.parquet``), and the list of those columns.

    Architectures differ in depth: a position a network lacks is NaN (imputed with the training
    median by the learners, i.e. constant within that architecture). Columns that are NaN for
    every network are not returned; no per-layer table gives ``(nets, [])``.
    """
    need = [*_KEY, "layer_id", density_col]
    if len(layers) == 0 or not set(need) <= set(layers.columns):
        return nets, []
    wide = layers.pivot_table(index=_KEY, columns="layer_id", values=density_col, aggfunc="first")
    wide.columns = [f"{density_col}__L{int(c):02d}" for c in wide.columns]
    wide = wide.loc[:, wide.notna().any()]
    cols = list(wide.columns)
    out = nets.drop(columns=[c for c in cols if c in nets.columns]).merge(
        wide.reset_index(), on=_KEY, how="left"
    )
    return out, cols


def _effects(df: pd.DataFrame, value: str, cell_cols: list[str]) -> pd.Series:
    """Each pruner's mean over seeds minus the mean over pruners, per cell."""
    m = df.groupby([*cell_cols, "base"], sort=True)[value].mean()
    return m - m.groupby(level=list(range(len(cell_cols)))).transform("mean")


def shuffle_survival(
    nets: pd.DataFrame,
    quantities: Sequence[str],
    *,
    cell_cols: Sequence[str] = ("model", "dataset", "sparsity"),
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """How much of each pruner's effect survives its ``+shuffle`` twin (method §4, §8).

    In every cell (model, dataset, sparsity) a pruner's **effect** on a quantity is its mean
    over seeds minus the mean over the pruners that have a twin; the twin's effect is computed
    the same way on the shuffled networks. **Survival** is the least-squares slope of the
    twins' effects on the originals' (through 0, pooled over cells): 1 = everything that sets
    the pruners apart survives shuffling (layer-wise density explains it), 0 = shuffling erases
    it (it is topology beyond density). For the accuracy drop, ``drop_ratio`` also gives
    mean drop(twin) / mean drop(original). CIs: percentile bootstrap over cells.

    Parameters
    ----------
    nets : DataFrame
        Networks with a ``pruner`` column holding ``p`` and ``p+shuffle`` labels.
    quantities : sequence of str
        Columns (the target, topometrics).

    Returns
    -------
    DataFrame
        ``quantity``, ``survival``, ``ci_low``, ``ci_high``, ``drop_ratio`` (first quantity
        only), ``n_cells``, ``n_pruners``; empty when no pruner has a twin.
    """
    cell_cols = list(cell_cols)
    cols = ["quantity", "survival", "ci_low", "ci_high", "drop_ratio", "n_cells", "n_pruners"]
    shuffled = nets["pruner"].map(is_shuffled)
    base = nets["pruner"].str.removesuffix(SHUFFLE_SUFFIX)
    twins = set(base[shuffled]) & set(base[~shuffled])
    if not twins:
        return pd.DataFrame(columns=cols)
    df = nets.assign(base=base, shuffled=shuffled)[base.isin(twins).to_numpy()]
    orig, shuf = df[~df["shuffled"]], df[df["shuffled"]]
    rng = np.random.default_rng(seed)
    rows = []
    for i, q in enumerate(quantities):
        e = pd.concat(
            [_effects(orig, q, cell_cols).rename("o"), _effects(shuf, q, cell_cols).rename("s")],
            axis=1,
        ).dropna()
        if len(e) == 0:
            continue
        cells = e.groupby(level=list(range(len(cell_cols)))).ngroup().to_numpy()
        n_cells = int(cells.max()) + 1
        so = np.bincount(cells, (e["o"] * e["s"]).to_numpy(), n_cells)
        oo = np.bincount(cells, (e["o"] ** 2).to_numpy(), n_cells)
        pick = rng.integers(0, n_cells, size=(n_boot, n_cells))
        with np.errstate(divide="ignore", invalid="ignore"):
            est = so.sum() / oo.sum() if oo.sum() > 0 else np.nan
            boot = so[pick].sum(axis=1) / oo[pick].sum(axis=1)
        boot = boot[np.isfinite(boot)]
        a = (1 - level) / 2
        lo, hi = np.quantile(boot, [a, 1 - a]) if boot.size else (np.nan, np.nan)
        ratio = np.nan
        if i == 0:
            mo, ms = orig[q].mean(), shuf[q].mean()
            ratio = ms / mo if mo != 0 else np.nan
        rows.append(
            {
                "quantity": q,
                "survival": est,
                "ci_low": lo,
                "ci_high": hi,
                "drop_ratio": ratio,
                "n_cells": n_cells,
                "n_pruners": len(twins),
            }
        )
    return pd.DataFrame(rows, columns=cols)
