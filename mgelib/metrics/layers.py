"""Per-layer topometrics of the bipartite encodings (method §5.2, §6 last paragraph) and their
network-level aggregates.

The authors computed ten of the method §6 topometrics on each layer's BGE (``main.py``,
``process_graph_topometrics``): cut-edges, cut-nodes, motif, 1-hop_nei, avg_node_strength,
k-core, no_connected_components, mean_connected_components, spectral_gap, spectral_radius.
:func:`layer_metrics` computes them with :func:`mgelib.metrics.topometrics` (one definition for
the MGE and the BGEs). Definitions checked against that code:

- bridges / articulation points / coreness (``mode="all"``) of the directed igraph graph, i.e.
  of its undirected view; 1-hop = mean ``neighborhood_size(order=1, mode="out")`` (the node
  itself included); strength = mean ``strength(mode="all")``;
- components: the *strong* components of ``as_undirected()``, i.e. the weak components (method §6);
- spectral gap / radius: on the weighted symmetric adjacency of all ``L + R`` nodes (zero-degree
  nodes are kept, unlike the Ramanujan metrics);
- motif: their ``sample=int(0.001·V)`` is 0 on every BGE below 1,000 nodes;
  :func:`~mgelib.metrics.topometrics` uses ``max(1, ⌊0.001·V⌋)`` start nodes (method §6).

Their published per-layer tables (``graph_metrics/rolled*``, :func:`mgelib.paperdata.load_rolled`)
hold **raw** values; ``layer_metrics(..., normalise=True)`` (the default) divides by V or E as
method §6 does for the MGE, so pass ``normalise=False`` to compare with those tables.

Network-level BGE features (:func:`network_aggregates`) are named as in
:mod:`mgelib.paperdata`: ``<encoding>__<metric>__mean`` and ``<encoding>__<metric>__wmean``.

Examples
--------
>>> import torch
>>> from mgelib.graphs import encode
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
>>> df = layer_metrics(encode(net, encoding="rolled"), normalise=False)
>>> df[["layer", "nodes", "edges", "cut-edges", "no_connected_components"]]
  layer  nodes  edges  cut-edges  no_connected_components
0     0      9     20        0.0                      1.0
1     2      8     15        0.0                      1.0
>>> network_aggregates(df)[["rolled__1-hop_nei__mean", "rolled__1-hop_nei__wmean"]].round(4)
   rolled__1-hop_nei__mean  rolled__1-hop_nei__wmean
0                   3.0486                    3.0734
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from mgelib.graphs.graph import Graph
from mgelib.metrics.ramanujan import PAPER_ALIASES, check_layer_graphs
from mgelib.metrics.topo import NORMALISER, topometrics

__all__ = ["layer_metrics", "network_aggregates", "LAYER_METRICS", "LAYER_COLUMNS", "WEIGHTS"]

#: The ten per-layer BGE topometrics (method §6 names), in the authors' CSV order.
LAYER_METRICS: tuple[str, ...] = (
    "cut-edges",
    "cut-nodes",
    "motif",
    "1-hop_nei",
    "avg_node_strength",
    "k-core",
    "no_connected_components",
    "mean_connected_components",
    "spectral_gap",
    "spectral_radius",
)

#: Columns of :func:`layer_metrics`.
LAYER_COLUMNS: tuple[str, ...] = (
    "layer",
    "layer_id",
    "encoding",
    "nodes",
    "edges",
    "weights",
    "kept",
    "density",
    *LAYER_METRICS,
    "reason",
)

#: Accepted names of the ``__wmean`` weight: the layer's number of weights (``weights``, the
#: authors' ``no_params``) or of kept weights (``kept``, their ``no_weights``).
WEIGHTS: dict[str, str] = {
    "weights": "weights",
    "no_params": "weights",
    "kept": "kept",
    "no_weights": "kept",
}
#: The same choice in a :func:`mgelib.metrics.ramanujan` frame.
_RAMANUJAN_WEIGHT = {"weights": "no_params", "kept": "no_weights"}
#: Ramanujan aggregates use the authors' names, as :func:`mgelib.paperdata.joined` does.
_RAMANUJAN_FEATURES = {k: PAPER_ALIASES[k] for k in ("delta_r", "imsg", "imdb", "density")}


def _canonical_weight(weight: str) -> str:
    if weight not in WEIGHTS:
        raise ValueError(
            f"weight must be one of {sorted(WEIGHTS)} (the layer's number of weights or of kept "
            f"weights), got {weight!r}"
        )
    return WEIGHTS[weight]


def layer_metrics(
    graphs: Mapping[str, Graph],
    *,
    seed: int = 0,
    normalise: bool = True,
    weight: str = "weights",
) -> pd.DataFrame:
    """The ten per-layer BGE topometrics (method §6, last paragraph) of every layer.

    Parameters
    ----------
    graphs : mapping of str to Graph
        ``encode(model, encoding="rolled" | "rolled_channel")``: one bipartite graph per layer,
        in the model's order.
    seed : int
        Seeds the motif sampling and the eigensolver start vectors (same seed ⇒ same frame).
    normalise : bool
        Divide each metric by V or E as method §6 stores the MGE values (``metrics.NORMALISER``);
        ``False`` gives raw values, which is how the authors' per-layer tables store them.
        Recorded in ``df.attrs["normalised"]``.
    weight : {"weights", "kept"}
        What :func:`network_aggregates` weights ``__wmean`` by (recorded in
        ``df.attrs["weight"]``): each layer's number of weights (``"weights"``, alias
        ``"no_params"``, the default) or of kept weights (``"kept"``, alias ``"no_weights"``).

    Returns
    -------
    pandas.DataFrame
        One row per layer, in the dict's order: ``layer`` (module name), ``layer_id``
        (position), ``encoding``, ``nodes`` (``L + R``), ``edges``, ``weights`` (the layer's
        number of weights), ``kept`` (kept weights), ``density`` (kept / weights), the
        :data:`LAYER_METRICS` and ``reason`` (why a value is NaN; missing when none is). A
        layer without kept weights gets NaN metrics and a reason; it never raises. ``attrs``:
        ``kind="layer_metrics"``, ``normalised``, ``normaliser`` (metric → ``"V"``, ``"E"`` or
        None), ``seed``, ``weight``.

    Raises
    ------
    ValueError
        If ``graphs`` is not a non-empty dict of bipartite graphs, or ``weight`` is unknown.

    Examples
    --------
    >>> import torch
    >>> from mgelib.graphs import encode
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.Flatten(),
    ...                           torch.nn.Linear(4 * 4 * 4, 3))
    >>> df = layer_metrics(encode(net, encoding="rolled_channel"), normalise=False)
    >>> df[["layer", "nodes", "edges", "weights", "kept", "k-core"]]
      layer  nodes  edges  weights  kept  k-core
    0     0      6      8       72    72     2.0
    1     2     67    192      192   192     3.0
    """
    frame = check_layer_graphs(graphs)
    wname = _canonical_weight(weight)
    rows = []
    for i, (name, g) in enumerate(frame.items()):
        meta = g.meta or {}
        n_left, n_right = (int(d) for d in np.asarray(g.dims))
        total = int(meta.get("weights", n_left * n_right))
        kept = int(meta.get("kept", g.n_edges))
        row: dict[str, object] = {
            "layer": str(name),
            "layer_id": i,
            "encoding": g.encoding,
            "nodes": g.n_nodes,
            "edges": g.n_edges,
            "weights": total,
            "kept": kept,
            "density": kept / total if total else float("nan"),
        }
        if g.n_edges == 0:
            row.update({m: float("nan") for m in LAYER_METRICS})
            row["reason"] = "no kept weight (no edges)"
        else:
            r = topometrics(g, seed=seed, normalise=normalise, metrics=LAYER_METRICS)
            row.update({m: float(r[m]) for m in LAYER_METRICS})
            row["reason"] = "; ".join(f"{m}: {why}" for m, why in r.reasons.items()) or None
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
    df = df.astype(
        {c: "int64" for c in ("layer_id", "nodes", "edges", "weights", "kept")}
        | {c: "float64" for c in ("density", *LAYER_METRICS)}
    )
    df.attrs.update(
        kind="layer_metrics",
        normalised=bool(normalise),
        normaliser={m: NORMALISER[m] if normalise else None for m in LAYER_METRICS},
        seed=int(seed),
        weight=wname,
    )
    return df


def network_aggregates(
    df: pd.DataFrame,
    *,
    weight: str | None = None,
    how: Sequence[str] = ("mean", "wmean"),
) -> pd.DataFrame:
    """Network-level features: per-layer values averaged over the layers (one row).

    ``__mean`` is the plain mean over layers; ``__wmean`` the mean weighted by each layer's
    number of weights (``weights``, the authors' ``no_params``) by default — or by its kept
    weights (``kept`` / ``no_weights``, a density × size weighting) with ``weight="kept"``. A
    layer whose value is NaN is skipped (its weight too); all-NaN gives NaN. The aggregation is
    :func:`mgelib.paperdata.network_features`, the one used on the authors' tables.

    Column names follow :mod:`mgelib.paperdata` so that our runs and the paper tables share them:

    - a :func:`layer_metrics` frame gives ``<encoding>__<metric>__mean|wmean`` for the
      :data:`LAYER_METRICS` (e.g. ``rolled__cut-edges__mean``,
      ``rolled_channel__spectral_gap__wmean``) and ``<encoding>__n_layers``;
    - a :func:`~mgelib.metrics.ramanujan.ramanujan` frame gives the authors' names without
      prefix on the rolled encoding (``degree_bound__mean``, ``iterative_spectral_gap__wmean``,
      ``iterative_degree_bound__…``, ``layer_density__…``, as in
      :func:`mgelib.paperdata.joined`), ``rolled_channel__``-prefixed on the rolled-channel one,
      plus ``density_realised`` = Σ kept / Σ weights and ``n_layers``.

    Note: :func:`mgelib.paperdata.joined` weights ``__wmean`` by ``no_weights`` (kept) unless
    told otherwise; pass the same choice on both sides before comparing ``__wmean`` columns.

    Parameters
    ----------
    df : DataFrame
        The frame of :func:`layer_metrics` or :func:`~mgelib.metrics.ramanujan.ramanujan` for one
        network (one encoding).
    weight : {"weights", "kept"}, optional
        Weight of ``__wmean`` (aliases ``no_params`` / ``no_weights``); default
        ``df.attrs["weight"]`` when set, else ``"weights"``.
    how : sequence of {"mean", "wmean"}
        Which aggregates.

    Returns
    -------
    pandas.DataFrame
        One row. ``attrs``: ``weight``, ``normalised`` (layer metrics), ``encoding``.

    Examples
    --------
    >>> df = pd.DataFrame({"layer": ["a", "b"], "encoding": "rolled", "weights": [100, 300],
    ...                    "kept": [10, 3], "cut-edges": [1.0, 3.0]})
    >>> out = network_aggregates(df)
    >>> out[["rolled__cut-edges__mean", "rolled__cut-edges__wmean"]]
       rolled__cut-edges__mean  rolled__cut-edges__wmean
    0                      2.0                       2.5
    """
    from mgelib.paperdata import network_features

    if not isinstance(df, pd.DataFrame) or len(df) == 0:
        raise ValueError("network_aggregates needs a non-empty per-layer DataFrame")
    if "encoding" not in df.columns:
        raise ValueError("network_aggregates: the frame has no 'encoding' column")
    encodings = df["encoding"].dropna().unique().tolist()
    if len(encodings) != 1:
        raise ValueError(
            f"network_aggregates: expected the layers of one network in one encoding, got "
            f"encodings {encodings}"
        )
    encoding = str(encodings[0])
    wname = _canonical_weight(weight or df.attrs.get("weight", "weights"))
    is_ramanujan = df.attrs.get("kind") == "ramanujan" or "delta_r" in df.columns
    layers = df.copy()
    layers["_network"] = 0
    if is_ramanujan:
        for ours, theirs in _RAMANUJAN_FEATURES.items():
            if theirs not in layers.columns:
                if ours not in layers.columns:
                    raise ValueError(f"network_aggregates: Ramanujan frame lacks {ours!r}")
                layers[theirs] = layers[ours]
        columns = list(_RAMANUJAN_FEATURES.values())
        wcol = _RAMANUJAN_WEIGHT[wname]
        prefix = "" if encoding == "rolled" else f"{encoding}__"
    else:
        columns = [m for m in LAYER_METRICS if m in layers.columns]
        if not columns:
            raise ValueError(
                f"network_aggregates: no per-layer metric column ({', '.join(LAYER_METRICS)})"
            )
        wcol = wname
        prefix = f"{encoding}__"
    if wcol not in layers.columns:
        raise ValueError(f"network_aggregates: weight column {wcol!r} not in the frame")
    out = network_features(
        layers, columns, how, weight=wcol, key=["_network"], keep=(), prefix=prefix
    ).drop(columns="_network")
    if is_ramanujan:
        kept, total = float(layers["no_weights"].sum()), float(layers["no_params"].sum())
        out[f"{prefix}density_realised"] = kept / total if total else float("nan")
    out.attrs.update(weight=wname, encoding=encoding)
    if "normalised" in df.attrs:
        out.attrs["normalised"] = df.attrs["normalised"]
    return out
