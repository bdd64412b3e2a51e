"""Per-network features from the authors' tables: :func:`network_features` (layer aggregates),
:func:`joined` (one row per network, all tables), :func:`feature_sets` (method §8) and
:func:`add_accuracy_drop` (method §1)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mgelib.paperdata.loaders import load_ramanujan, load_rolled, load_unrolled
from mgelib.paperdata.schema import (
    _ENCODINGS,
    BGE_METRICS,
    KEY,
    MGE_METRICS,
    PAI_PRUNERS,
    RAMANUJAN_METRICS,
    _front,
    logger,
)

__all__ = ["network_features", "joined", "feature_sets", "add_accuracy_drop"]


# --------------------------------------------------------------------------- aggregation
_HOW = {"mean": "mean", "wmean": "wmean", "weighted_mean": "wmean"}


def network_features(
    layers_df: pd.DataFrame,
    columns: Sequence[str],
    how: Sequence[str] = ("mean", "wmean"),
    *,
    weight: str = "no_weights",
    key: Sequence[str] = KEY,
    keep: Sequence[str] = ("accuracy",),
    prefix: str = "",
) -> pd.DataFrame:
    """Per-network aggregates of per-layer features (method §6, last paragraph).

    ``<prefix><col>__mean`` is the mean over the network's layers; ``<prefix><col>__wmean`` the
    mean weighted by ``weight`` — by default ``no_weights`` (kept weights = layer density ×
    layer size, a density-weighted mean); use ``weight="no_params"`` to weight by layer size
    only. NaN layer values are skipped (their weight too); a network with no value gets NaN.

    Parameters
    ----------
    layers_df : DataFrame
        One row per layer, with the ``key`` columns.
    columns : sequence of str
        Per-layer features to aggregate.
    how : sequence of {"mean", "wmean", "weighted_mean"}
        Aggregations (``weighted_mean`` is an alias of ``wmean``).
    weight : str
        Weight column for ``wmean``.
    key : sequence of str
        Columns that identify a network; default :data:`KEY`.
    keep : sequence of str
        Per-network columns carried over (first value; they must be constant per network).
    prefix : str
        Prepended to every aggregate's name (e.g. ``"rolled__"``).

    Returns
    -------
    DataFrame
        One row per network: ``key``, ``keep``, ``<prefix>n_layers`` and the aggregates.

    Examples
    --------
    >>> layers = pd.DataFrame({"net": [0, 0], "x": [1.0, 3.0], "no_weights": [1, 3]})
    >>> network_features(layers, ["x"], key=["net"], keep=())[["x__mean", "x__wmean"]]
       x__mean  x__wmean
    0      2.0       2.5
    """
    key, columns = list(key), list(columns)
    if not columns:
        raise ValueError("network_features: no columns to aggregate")
    unknown = [c for c in (*key, *columns, *keep) if c not in layers_df.columns]
    if unknown:
        raise ValueError(f"network_features: unknown column(s) {unknown}")
    bad_how = [h for h in how if h not in _HOW]
    if bad_how:
        raise ValueError(f"network_features: unknown aggregation(s) {bad_how}; use {sorted(_HOW)}")
    if len(layers_df) == 0:
        raise ValueError("network_features: layers_df is empty")
    hows = list(dict.fromkeys(_HOW[h] for h in how))
    if "wmean" in hows and weight not in layers_df.columns:
        raise ValueError(f"network_features: weight column {weight!r} not in layers_df")
    ids = layers_df[key]
    g = layers_df.groupby(key, sort=True, dropna=False)
    out = g.size().rename(f"{prefix}n_layers").to_frame()
    for c in keep:
        if (g[c].nunique(dropna=False) > 1).any():
            raise ValueError(f"network_features: {c!r} varies within a network")
    if keep:
        out = out.join(g[list(keep)].first())
    vals = layers_df[columns].astype(float)
    parts = []
    if "mean" in hows:
        m = pd.concat([ids, vals], axis=1).groupby(key, sort=True, dropna=False).mean()
        parts.append(m.add_prefix(prefix).add_suffix("__mean"))
    if "wmean" in hows:
        w = layers_df[weight].astype(float)
        num = vals.fillna(0.0).mul(w, axis=0)
        den = vals.notna().mul(w, axis=0)
        num = pd.concat([ids, num], axis=1).groupby(key, sort=True, dropna=False).sum()
        den = pd.concat([ids, den], axis=1).groupby(key, sort=True, dropna=False).sum()
        wm = num / den.where(den > 0)
        parts.append(wm.add_prefix(prefix).add_suffix("__wmean"))
    out = out.join(parts)
    # Interleave so each feature's aggregates sit together.
    agg_cols = [f"{prefix}{c}__{h}" for c in columns for h in hows]
    return out[[*keep, f"{prefix}n_layers", *agg_cols]].reset_index()


def joined(
    root: str | Path | None = None,
    *,
    how: Literal["inner", "outer"] = "inner",
    aggregations: Sequence[str] = ("mean", "wmean"),
    weight: str = "no_weights",
    dropna: bool = False,
) -> pd.DataFrame:
    """One row per sparse network: MGE topometrics + BGE and Ramanujan aggregates.

    Joins :func:`load_unrolled` with :func:`network_features` of :func:`load_rolled` (both
    encodings, columns ``rolled__<metric>__<agg>``, ``rolled_channel__<metric>__<agg>``) and of
    :func:`load_ramanujan` (``<metric>__<agg>`` for Δr, imsg, imdb and ``layer_density``) on
    :data:`KEY`. ``density_realised`` = Σ kept / Σ weights over the Ramanujan layers (it differs
    from ``density`` = 1 − sparsity for some DST runs). Accuracies agree across tables (checked).

    Parameters
    ----------
    root : path, optional
        Folder of the authors' tables.
    how : {"inner", "outer"}
        ``inner`` keeps the networks present in all four tables (MobileNetV2 exists only in the
        MGE table); ``outer`` keeps all, with ``in_unrolled``, ``in_rolled``,
        ``in_rolled_channel``, ``in_ramanujan`` flags.
    aggregations : sequence of str
        Passed to :func:`network_features`.
    weight : str
        Weight of the weighted mean (``no_weights`` or ``no_params``).
    dropna : bool
        Passed to :func:`load_unrolled`.

    Returns
    -------
    DataFrame
        ``attrs["report"]["membership"]`` counts networks by the tables they appear in.

    Examples
    --------
    >>> df = joined()                                               # doctest: +SKIP
    >>> df.attrs["report"]["n_joined"]                              # doctest: +SKIP
    1932
    """
    if how not in ("inner", "outer"):
        raise ValueError(f"how must be 'inner' or 'outer', got {how!r}")
    key = list(KEY)
    u = load_unrolled(root, dropna=dropna)
    tables = {"unrolled": u}
    for enc in _ENCODINGS:
        layers = load_rolled(enc, root)
        tables[enc] = network_features(
            layers, BGE_METRICS, aggregations, weight=weight, keep=("accuracy",), prefix=f"{enc}__"
        )
    ram = load_ramanujan(root)
    rf = network_features(
        ram,
        [*RAMANUJAN_METRICS, "layer_density"],
        aggregations,
        weight=weight,
        keep=("accuracy",),
    )
    tot = ram.groupby(key, sort=True)[["no_weights", "no_params"]].sum()
    rf = rf.merge(
        (tot["no_weights"] / tot["no_params"]).rename("density_realised").reset_index(), on=key
    )
    tables["ramanujan"] = rf

    out: pd.DataFrame | None = None
    for name, t in tables.items():
        t = t.rename(columns={"accuracy": f"accuracy_{name}"}).assign(**{f"in_{name}": True})
        out = t if out is None else out.merge(t, on=key, how="outer")
    assert out is not None
    flags = [f"in_{n}" for n in tables]
    out[flags] = out[flags].fillna(False).astype(bool)
    accs = out[[f"accuracy_{n}" for n in tables]]
    spread = (accs.max(axis=1) - accs.min(axis=1)).fillna(0.0)
    n_acc_mismatch = int((spread > 1e-9).sum())
    if n_acc_mismatch:
        warnings.warn(f"joined: {n_acc_mismatch} networks with different accuracies", stacklevel=2)
    out["accuracy"] = accs.bfill(axis=1).iloc[:, 0]
    out = out.drop(columns=list(accs.columns))
    out["family"] = np.where(out["pruner"].isin(PAI_PRUNERS), "pai", "dst")
    out["density"] = 1.0 - out["sparsity"]
    pattern = out[flags].apply(lambda r: "+".join(n[3:] for n in flags if r[n]), axis=1)
    membership = {str(k): int(v) for k, v in pattern.value_counts().items()}
    n_all = int(out[flags].all(axis=1).sum())
    not_joined = out[~out[flags].all(axis=1)]
    report = {
        "n_networks_any": len(out),
        "n_joined": n_all,
        "membership": membership,
        "not_joined_by_model": {
            str(k): int(v) for k, v in not_joined["model"].value_counts().items()
        },
        "accuracy_mismatches": n_acc_mismatch,
        "unrolled": u.attrs.get("report", {}),
    }
    logger.info(
        "joined: %d networks in all four tables, %d not (%s)", n_all, len(out) - n_all, membership
    )
    if how == "inner":
        out = out[out[flags].all(axis=1)].drop(columns=flags)
    out = out.sort_values(key).reset_index(drop=True)
    out = _front(out, [*key, "family", "accuracy", "density", "density_realised", "nodes", "edges"])
    out.attrs["report"] = report
    return out


def feature_sets(
    df: pd.DataFrame | None = None, *, aggregations: Sequence[str] = ("mean",)
) -> dict[str, list[str]]:
    """The method §8 feature sets, named by the columns of :func:`joined`.

    ================  ==============================================================
    name              columns
    ================  ==============================================================
    sparsity          ``sparsity`` (the baseline that is always shown)
    density           ``density_realised``, ``layer_density__<agg>`` (layer-wise density)
    ramanujan         Δr, imsg, imdb aggregates
    ramanujan+density both of the above
    rolled            the 10 BGE metrics on the rolled encoding, aggregated
    rolled_channel    the same on the rolled-channel encoding
    mge               the 16 MGE topometrics (normalised, as the authors used them)
    mge+sparsity      MGE + ``sparsity``
    ================  ==============================================================

    Parameters
    ----------
    df : DataFrame, optional
        When given, every column must exist in it (``ValueError`` names those that do not).
    aggregations : sequence of str
        Which layer aggregates enter the BGE / Ramanujan sets (``mean``, ``wmean``).

    Examples
    --------
    >>> feature_sets()["ramanujan"]
    ['degree_bound__mean', 'iterative_spectral_gap__mean', 'iterative_degree_bound__mean']
    """
    hows = [_HOW[h] for h in aggregations]
    ram = [f"{m}__{h}" for m in RAMANUJAN_METRICS for h in hows]
    dens = ["density_realised", *[f"layer_density__{h}" for h in hows]]
    sets = {
        "sparsity": ["sparsity"],
        "density": dens,
        "ramanujan": ram,
        "ramanujan+density": ram + dens,
        "rolled": [f"rolled__{m}__{h}" for m in BGE_METRICS for h in hows],
        "rolled_channel": [f"rolled_channel__{m}__{h}" for m in BGE_METRICS for h in hows],
        "mge": list(MGE_METRICS),
        "mge+sparsity": [*MGE_METRICS, "sparsity"],
    }
    if df is not None:
        missing = sorted({c for cols in sets.values() for c in cols if c not in df.columns})
        if missing:
            raise ValueError(f"feature_sets: column(s) {missing} not in the frame (use joined())")
    return sets


# --------------------------------------------------------------------------- accuracy drop
def add_accuracy_drop(
    df: pd.DataFrame,
    dense: pd.DataFrame | Mapping[tuple[str, str], float] | None = None,
    *,
    acc_col: str = "accuracy",
    group_cols: Sequence[str] = ("model", "dataset"),
) -> pd.DataFrame:
    """Add the accuracy drop (method §1) against a per-group reference accuracy.

    With ``dense`` (our own runs), the reference is the mean dense accuracy of the same
    (model, dataset): ``accuracy_drop = acc_dense − acc`` and ``accuracy_drop_rel =
    (acc_dense − acc) / acc_dense``. The authors' tables publish no dense accuracy; with
    ``dense=None`` the reference is the **best** accuracy in the group (``accuracy_ref_source``
    says which). Within one group both drops are affine in accuracy (slope −1 or −1/ref), so
    any within-group R², MAE ratio or rank statistic is the same whether the target is the
    accuracy, the drop or the relative drop; the analyses therefore use ``accuracy`` within
    groups, and these columns are for display.

    Parameters
    ----------
    df : DataFrame
        Runs with ``group_cols`` and ``acc_col``.
    dense : DataFrame or mapping, optional
        Dense runs (rows with ``group_cols`` and ``acc_col``; their mean per group is taken), or
        a mapping ``(model, dataset) -> dense accuracy``.
    acc_col : str
        Accuracy column (fraction).
    group_cols : sequence of str
        Grouping of the reference.

    Returns
    -------
    DataFrame
        A copy with ``accuracy_ref``, ``accuracy_ref_source``, ``accuracy_drop``,
        ``accuracy_drop_rel``.

    Examples
    --------
    >>> runs = pd.DataFrame({"model": ["m", "m"], "dataset": ["d", "d"], "accuracy": [0.8, 0.6]})
    >>> add_accuracy_drop(runs, {("m", "d"): 0.9})["accuracy_drop"].round(3).tolist()
    [0.1, 0.3]
    """
    group_cols = list(group_cols)
    missing = [c for c in (*group_cols, acc_col) if c not in df.columns]
    if missing:
        raise ValueError(f"add_accuracy_drop: column(s) {missing} not in df")
    out = df.copy()
    keys = pd.MultiIndex.from_frame(out[group_cols])
    if dense is None:
        ref = out.groupby(group_cols)[acc_col].transform("max")
        source = "best"
    else:
        if isinstance(dense, pd.DataFrame):
            miss = [c for c in (*group_cols, acc_col) if c not in dense.columns]
            if miss:
                raise ValueError(f"add_accuracy_drop: dense frame lacks column(s) {miss}")
            table = dense.groupby(group_cols)[acc_col].mean()
        else:
            table = pd.Series(dict(dense), dtype=float)
            if len(group_cols) > 1:
                table.index = pd.MultiIndex.from_tuples(table.index, names=group_cols)
        ref = pd.Series(table.reindex(keys).to_numpy(), index=out.index)
        lacking = sorted(
            {tuple(k) if isinstance(k, tuple) else (k,) for k in keys[ref.isna().to_numpy()]}
        )
        if lacking:
            raise ValueError(f"add_accuracy_drop: no dense accuracy for group(s) {lacking}")
        source = "dense"
    out["accuracy_ref"] = ref.astype(float)
    out["accuracy_ref_source"] = source
    out["accuracy_drop"] = out["accuracy_ref"] - out[acc_col]
    out["accuracy_drop_rel"] = out["accuracy_drop"] / out["accuracy_ref"]
    return out
