"""The :class:`Graph` container shared by every encoding, and its exports.

A graph is a directed, weighted scipy CSR adjacency (row = source, column = target, value = |w|)
plus the partition structure that the metrics and drawings need: the partition sizes ``dims``, the
layer that produced each partition and each partition's element shape, so that any node id can be
turned back into (partition, channel, y, x) (method §5: nodes are numbered partition by partition,
within a partition in (channel, y, x) row-major order).

Examples
--------
>>> import numpy as np, scipy.sparse as sp
>>> adj = sp.csr_array((np.ones(2, np.float32), ([0, 1], [2, 2])), shape=(3, 3))
>>> g = Graph(adj, dims=[2, 1], layers=["input", "fc"], shapes=[(2,), (1,)])
>>> g.n_nodes, g.n_edges
(3, 2)
>>> g.node_info([2])["layer"].tolist()
['fc']
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Graph", "to_igraph", "to_networkx", "write_edgelist", "read_edgelist"]

#: Above this many edges ``to_networkx`` refuses: networkx holds each edge as Python dicts.
NETWORKX_MAX_EDGES = 2_000_000


@dataclass(eq=False)
class Graph:
    """A directed weighted graph with a partition structure.

    Parameters
    ----------
    adjacency : scipy.sparse.csr_array
        ``V × V``, ``adjacency[i, j] = |w|`` for the edge ``i → j``; float32 values, int32 indices
        while they fit (int64 beyond).
    dims : sequence of int
        Partition sizes, in node order (the input first for the MGE, ``[left, right]`` for a BGE).
    layers : sequence of str
        The layer that produced each partition (``"input"`` for the MGE's input partition; for a
        BGE ``"<layer>:in"`` and ``"<layer>"``).
    shapes : sequence of tuple
        Element shape of each partition, e.g. ``(C, H, W)`` or ``(F,)``; ``prod(shape) == dim``.
    encoding : str
        ``"mge"``, ``"rolled"`` or ``"rolled_channel"``.
    meta : dict
        The options the graph was built with (``compat``, ``weights``, ``weight_precision``, …) and
        facts about it (``bipartite``: whether every edge joins partitions of different parity).
    """

    adjacency: sp.csr_array
    dims: Sequence[int]
    layers: Sequence[str]
    shapes: Sequence[tuple[int, ...]]
    encoding: str = "mge"
    meta: dict[str, Any] = field(default_factory=dict)
    check: bool = field(default=True, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.dims = np.asarray(self.dims, dtype=np.int64)
        self.layers = list(self.layers)
        self.shapes = [tuple(int(v) for v in s) for s in self.shapes]
        n = int(self.dims.sum())
        if self.adjacency.shape != (n, n):
            raise ValueError(f"adjacency is {self.adjacency.shape} but dims sum to {n}")
        if not (len(self.dims) == len(self.layers) == len(self.shapes)):
            raise ValueError("dims, layers and shapes must have one entry per partition")
        for d, s in zip(self.dims, self.shapes):
            if int(np.prod(s)) != int(d):
                raise ValueError(f"partition shape {s} does not hold {d} nodes")
        if self.check:
            self._check_edges()

    def _check_edges(self) -> None:
        """Refuse negative or non-finite weights, self-loops and edges inside one partition
        (an MGE joins distinct layers). Graphs built with ``compat="mge-snn"`` (or
        ``meta["allow_intra_partition_edges"]``) keep the authors' intra-partition edges."""
        data = self.adjacency.data
        if data.size and not (np.isfinite(data).all() and data.min() >= 0):
            bad = np.flatnonzero(~np.isfinite(data) | (data < 0))[0]
            src, tgt, _ = self.edges()
            raise ValueError(
                f"edge {int(src[bad])} → {int(tgt[bad])} has weight {data[bad]}: edge weights "
                "must be finite and ≥ 0 (|w|)"
            )
        src, tgt, _ = self.edges()
        loops = np.flatnonzero(src == tgt)
        if loops.size:
            raise ValueError(f"node {int(src[loops[0]])} has a self-loop ({loops.size:,} in all)")
        allowed = self.meta.get("compat") == "mge-snn" or self.meta.get(
            "allow_intra_partition_edges", False
        )
        if allowed or len(self.dims) < 2:
            return
        off = self.offsets
        part = np.searchsorted(off, src, side="right") - 1
        intra = np.flatnonzero((tgt >= off[part]) & (tgt < off[part + 1]))
        if intra.size:
            e = intra[0]
            raise ValueError(
                f"edge {int(src[e])} → {int(tgt[e])} joins two nodes of partition {int(part[e])} "
                f"({self.layers[int(part[e])]!r}; {intra.size:,} such edges): MGE edges join "
                "distinct partitions (only compat='mge-snn' graphs keep the authors' intra-"
                "partition edges)"
            )

    # ------------------------------------------------------------------ basic facts
    @property
    def n_nodes(self) -> int:
        return int(self.adjacency.shape[0])

    @property
    def n_edges(self) -> int:
        return int(self.adjacency.nnz)

    @property
    def offsets(self) -> np.ndarray:
        """First node id of each partition (length ``len(dims) + 1``, last = V)."""
        return np.concatenate([[0], np.cumsum(self.dims)])

    @property
    def compat(self) -> str | None:
        """``"mge-snn"`` when built to reproduce the authors' code (method §5.1), else ``None``."""
        return self.meta.get("compat")

    def __repr__(self) -> str:
        return (
            f"Graph(encoding={self.encoding!r}, nodes={self.n_nodes:,}, edges={self.n_edges:,}, "
            f"partitions={len(self.dims)}, compat={self.compat!r})"
        )

    # ------------------------------------------------------------------ node lookup
    def partition_of(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Partition index of each node id."""
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_nodes):
            raise ValueError(
                f"node ids must lie in [0, {self.n_nodes}), got {ids.min()}..{ids.max()}"
            )
        return np.searchsorted(self.offsets, ids, side="right") - 1

    def node_info(self, ids: Sequence[int] | np.ndarray | None = None) -> pd.DataFrame:
        """(partition, layer, channel, y, x) of each node id (all nodes when ``ids`` is None).

        Linear partitions have ``channel`` = feature index and ``y = x = 0``.
        """
        ids = np.arange(self.n_nodes) if ids is None else np.asarray(ids, dtype=np.int64)
        part = self.partition_of(ids)
        local = ids - self.offsets[part]
        channel = np.zeros_like(local)
        y = np.zeros_like(local)
        x = np.zeros_like(local)
        for p in np.unique(part):
            sel = part == p
            shape = self.shapes[p]
            if len(shape) == 3:
                c_, y_, x_ = np.unravel_index(local[sel], shape)
                channel[sel], y[sel], x[sel] = c_, y_, x_
            else:
                channel[sel] = local[sel]
        layers = np.asarray(self.layers, dtype=object)[part]
        return pd.DataFrame(
            {"node": ids, "partition": part, "layer": layers, "channel": channel, "y": y, "x": x}
        )

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(source, target, weight)`` arrays in CSR order."""
        adj = self.adjacency
        src = np.repeat(
            np.arange(self.n_nodes, dtype=adj.indices.dtype), np.diff(adj.indptr).astype(np.int64)
        )
        return src, adj.indices, adj.data

    def out_degree(self) -> np.ndarray:
        return np.diff(self.adjacency.indptr).astype(np.int64)

    def in_degree(self) -> np.ndarray:
        return np.bincount(self.adjacency.indices, minlength=self.n_nodes).astype(np.int64)

    def to_igraph(self, weights: bool = True):  # noqa: ANN201 - igraph is imported lazily
        return to_igraph(self, weights=weights)

    def to_networkx(self):  # noqa: ANN201
        return to_networkx(self)

    def write_edgelist(self, path: str | os.PathLike) -> Path:
        return write_edgelist(self, path)


def to_igraph(graph: Graph, weights: bool = True):  # noqa: ANN201
    """The graph as a directed :class:`igraph.Graph` (edge attribute ``weight``, vertex attribute
    ``subset`` = partition index).

    The edge list is handed to igraph as one ``(E, 2)`` integer array, which igraph copies in C.
    """
    import igraph as ig

    src, tgt, w = graph.edges()
    g = ig.Graph(n=graph.n_nodes, edges=np.column_stack([src, tgt]).astype(np.int64), directed=True)
    if weights:
        g.es["weight"] = w.astype(np.float64)
    g.vs["subset"] = np.repeat(np.arange(len(graph.dims)), graph.dims).tolist()
    return g


def to_networkx(graph: Graph):  # noqa: ANN201
    """The graph as a :class:`networkx.DiGraph` (small graphs only), node attribute ``subset`` =
    partition index (what :func:`networkx.multipartite_layout` reads), edge attribute ``weight``."""
    import networkx as nx

    if graph.n_edges > NETWORKX_MAX_EDGES:
        raise ValueError(
            f"graph has {graph.n_edges:,} edges; networkx export is for graphs up to "
            f"{NETWORKX_MAX_EDGES:,} edges — use to_igraph() or write_edgelist() instead"
        )
    g = nx.DiGraph()
    subset = np.repeat(np.arange(len(graph.dims)), graph.dims)
    g.add_nodes_from((int(i), {"subset": int(s)}) for i, s in enumerate(subset))
    src, tgt, w = graph.edges()
    g.add_weighted_edges_from(zip(src.tolist(), tgt.tolist(), w.astype(float).tolist()))
    return g


def write_edgelist(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``source, target, weight`` (+ partition ids) as a Parquet file, atomically.

    The partition sizes, layers and options are stored in the file's key-value metadata, so
    :func:`read_edgelist` restores the same :class:`Graph`.
    """
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    src, tgt, w = graph.edges()
    table = pa.table({"source": src, "target": tgt, "weight": w})
    meta = {
        "dims": [int(d) for d in graph.dims],
        "layers": graph.layers,
        "shapes": [list(s) for s in graph.shapes],
        "encoding": graph.encoding,
        "meta": {k: v for k, v in graph.meta.items() if _jsonable(v)},
    }
    table = table.replace_schema_metadata({"mgelib.graph": json.dumps(meta)})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_edgelist(path: str | os.PathLike) -> Graph:
    """Read a graph written by :func:`write_edgelist`."""
    import json

    import pyarrow.parquet as pq

    table = pq.read_table(path)
    info = json.loads(table.schema.metadata[b"mgelib.graph"])
    n = int(sum(info["dims"]))
    adj = sp.csr_array(
        (
            table["weight"].to_numpy(),
            (table["source"].to_numpy(), table["target"].to_numpy()),
        ),
        shape=(n, n),
    )
    return Graph(
        adj,
        dims=info["dims"],
        layers=info["layers"],
        shapes=[tuple(s) for s in info["shapes"]],
        encoding=info["encoding"],
        meta=info["meta"],
    )


def _jsonable(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, type(None), list, tuple, dict))
