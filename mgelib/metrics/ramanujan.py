"""Ramanujan-based metrics of each layer's bipartite graph (method §7; Hoang et al. 2023).

For one layer's BGE with biadjacency ``B`` (left = inputs, right = outputs, ``L × R``):

- drop zero-degree nodes; ``d_l``, ``d_r`` = mean left / right degree;
  ``ub = √(d_l − 1) + √(d_r − 1)`` (the Ramanujan bound of a biregular graph);
- **Δr** (``delta_r``, the authors' ``degree_bound``) ``= (ub − μ̂)/ub``, where ``μ̂`` is the
  third-largest ``|λ|`` of the *unweighted* symmetric adjacency; NaN for graphs with ≤ 3 nodes;
- **imsg / imdb**: for each distinct left degree ``d ≥ 3``, the subgraph of the left nodes of
  degree exactly ``d`` plus every right node, zero-degree nodes dropped, kept when its mean left
  and right degrees are ≥ 3; imsg = mean over kept subgraphs of the *weighted* spectral gap (first
  − third ``|λ|``), imdb = mean of their Δr (unweighted); NaN when no subgraph qualifies.

Speed. A bipartite adjacency ``[[0, B], [Bᵀ, 0]]`` has spectrum ``±σ(B)`` (plus zeros), so the
three largest ``|λ|`` are ``σ₁, σ₁, σ₂`` and the third is ``σ₂`` (0 when ``min(L, R) = 1``). We
take ``σ₁, σ₂`` from the Gram matrix of the smaller side (``BᵀB`` or ``BBᵀ``, a sparse product),
densely up to :data:`DENSE_GRAM_MAX` and by Lanczos (ARPACK, fixed start vector) beyond. The
per-degree subgraphs are contiguous row blocks of ``B`` sorted by left degree: no Python loop over
edges, only one over the distinct degrees. The authors' code (``ramanunjan_metric.py``) builds
igraph subgraphs in Python loops and solves in float32 ARPACK: 4–34 s per network, against
0.05–0.5 s here (``benchmarks/bench_bge.py``).

Agreement with the authors' implementation (``process_graph_ramanunjan``, checked on the shared
fixtures):

- ``nodes`` is their ``G.vcount()``: *all* ``L + R`` nodes of the layer graph, taken before the
  zero-degree nodes are dropped (``active_nodes`` counts the nodes left after dropping them);
  ``edges`` is unaffected by the dropping. ``no_weights`` / ``no_params`` are the layer's kept /
  total weights (not edges: a rolled-channel edge stands for a whole ``k × k`` slice).
- Their degrees are taken before ``as_undirected`` (BGEs have no parallel edges, so no
  difference) and their ``filter_zero_degree`` leaves ``dim_in`` unchanged (harmless: every left
  node of a degree-``d`` subgraph has degree ``d ≥ 3``).
- ``ub = 0`` (every active node has degree 1, a matching) makes their Δr ``−inf``; we return NaN
  with a reason (:mod:`mgelib.paperdata` maps their ``−inf`` to NaN as well).
- Their eigensolves are float32 ARPACK; ours are float64. On the fixtures (CONV-6 and
  ResNet-20, ERK 0.98, both encodings) integer columns agree exactly, Δr and imdb to 2e-9
  relative and imsg to 1.3e-5 relative (a small difference of float32 singular values).
- Their ``layer_id`` counts pooling modules too (CONV-6: 0, 1, 3, 4, 6, …); ours is the position
  in the ``graphs`` dict (0, 1, 2, …). Join on the layer name.

Examples
--------
>>> import torch
>>> from mgelib.graphs import encode
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
>>> df = ramanujan(encode(net, encoding="rolled"))
>>> df[["layer", "delta_r", "imdb", "nodes", "edges"]].round(4)
  layer  delta_r  imdb  nodes  edges
0     0      1.0   1.0      9     20
1     2      1.0   1.0      8     15
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from mgelib.graphs.graph import Graph
from mgelib.metrics.spectral import eigsh_fixed

__all__ = [
    "ramanujan",
    "ramanujan_layer",
    "biadjacency",
    "check_layer_graphs",
    "top_singular_values",
    "RAMANUJAN_COLUMNS",
    "PAPER_ALIASES",
    "DENSE_GRAM_MAX",
    "GRAM_MATRIX_MAX",
    "GRAM_COST_STEPS",
    "MIN_DEGREE",
]

#: Gram matrices up to this size are diagonalised densely; larger ones by Lanczos (ARPACK).
DENSE_GRAM_MAX = 256
#: Above this size ARPACK runs on ``x ↦ Bᵀ(Bx)`` instead of a formed sparse Gram matrix.
GRAM_MATRIX_MAX = 4096
#: Form the Gram matrix only when that costs at most this many Lanczos steps (dense layers at low
#: sparsity are cheaper through ``x ↦ Bᵀ(Bx)``).
GRAM_COST_STEPS = 30
#: Relative residual tolerance of the Lanczos path (method §6 asks for 1e-6 of the largest |λ|).
TOL = 1e-10
#: The per-degree subgraphs of imsg/imdb need left degree and mean degrees of at least this.
MIN_DEGREE = 3

#: Our column -> the authors' name in their published tables (``ramanunjan_results``, read by
#: :func:`mgelib.paperdata.load_ramanujan`). The fixtures' CSVs use ``delta_r``, ``imdb`` and
#: ``iterative_spectral_gap``, and ``layer_sparsity`` for what is a density.
PAPER_ALIASES: dict[str, str] = {
    "layer": "layer_name",
    "delta_r": "degree_bound",
    "imsg": "iterative_spectral_gap",
    "imdb": "iterative_degree_bound",
    "density": "layer_density",
}

#: Columns of :func:`ramanujan` (without the aliases).
RAMANUJAN_COLUMNS: tuple[str, ...] = (
    "layer",
    "layer_id",
    "encoding",
    "delta_r",
    "imsg",
    "imdb",
    "density",
    "no_weights",
    "no_params",
    "nodes",
    "active_nodes",
    "edges",
    "n_subgraphs",
    "reason",
)


# --------------------------------------------------------------------------- linear algebra
def top_singular_values(b: sp.sparray, k: int = 2, *, seed: int = 0) -> np.ndarray:
    """The ``k`` largest singular values of a sparse matrix, descending, zero-padded to ``k``.

    Computed from the Gram matrix ``G`` of the smaller side (``BᵀB`` or ``BBᵀ``, float64):
    all eigenvalues of a dense ``G`` up to :data:`DENSE_GRAM_MAX` (faster than any iterative
    solver there); beyond, the top ``k`` by ARPACK (fixed start vector drawn from ``seed``,
    relative tolerance :data:`TOL`) on the sparse ``G`` up to :data:`GRAM_MATRIX_MAX`, and on the
    operator ``x ↦ Bᵀ(Bx)`` above — or whenever forming ``G`` would cost more than
    :data:`GRAM_COST_STEPS` Lanczos steps (rows with hundreds of entries). Accuracy: a singular
    value near 0 is resolved to about ``√ε·σ₁`` ≈ 1e-8·σ₁ (the Gram matrix squares the condition
    number), well inside method §6's 1e-6 of the largest ``|λ|``.

    Parameters
    ----------
    b : scipy sparse matrix or array, shape (m, n)
    k : int
        How many singular values (the smaller side bounds how many are non-zero).
    seed : int
        Seeds the Lanczos start vector (matrices above :data:`DENSE_GRAM_MAX` only).

    Returns
    -------
    numpy.ndarray
        ``k`` values, descending.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> top_singular_values(sp.csr_array(np.ones((3, 4))), 2).round(6).tolist()
    [3.464102, 0.0]
    """
    b = sp.csr_array(b, dtype=np.float64)
    m, n = b.shape
    if min(m, n) == 0 or b.nnz == 0:
        return np.zeros(k)
    bt = sp.csr_array(b.T)
    small = min(m, n)
    # Forming G costs Σ d² over the longer side's degrees; one Lanczos step costs 2·nnz.
    long_deg = np.diff(b.indptr) if n <= m else np.diff(bt.indptr)
    form_gram = float(np.square(long_deg, dtype=np.float64).sum()) <= GRAM_COST_STEPS * 2 * b.nnz
    if small <= k + 1 or (form_gram and small <= DENSE_GRAM_MAX):
        gram = (bt @ b if n <= m else b @ bt).toarray()
        vals = np.linalg.eigvalsh(gram)
    else:
        if form_gram and small <= GRAM_MATRIX_MAX:
            op = sp.csr_array(bt @ b if n <= m else b @ bt)
        elif n <= m:
            op = LinearOperator((n, n), matvec=lambda x: bt @ (b @ x), dtype=np.float64)
        else:
            op = LinearOperator((m, m), matvec=lambda x: b @ (bt @ x), dtype=np.float64)
        vals = eigsh_fixed(op, k, "LA", seed=seed, tol=TOL, ncv=min(small, max(2 * k + 1, 20)))
    s = np.sqrt(np.clip(np.sort(vals)[::-1][:k], 0.0, None))
    return np.pad(s, (0, max(0, k - s.size)))


def biadjacency(graph: Graph) -> sp.csr_array:
    """The ``L × R`` biadjacency (rows = left nodes, values = edge weights) of a layer's BGE.

    Raises ``ValueError`` unless ``graph`` has two partitions and every edge goes left → right.

    Examples
    --------
    >>> import torch
    >>> from mgelib.graphs import encode
    >>> g = encode(torch.nn.Sequential(torch.nn.Linear(2, 3)), encoding="rolled")["0"]
    >>> biadjacency(g).shape
    (2, 3)
    """
    if not isinstance(graph, Graph):
        raise ValueError(f"expected an mgelib Graph, got {type(graph).__name__}")
    dims = np.asarray(graph.dims)
    if dims.size != 2:
        raise ValueError(
            f"Ramanujan metrics need a bipartite layer graph (dims=[left, right]); got "
            f"{dims.size} partitions (encoding={graph.encoding!r}) — pass the per-layer graphs of "
            "encode(model, encoding='rolled' or 'rolled_channel')"
        )
    n_left = int(dims[0])
    adj = sp.csr_array(graph.adjacency)
    b = adj[:n_left, n_left:]
    if b.nnz != adj.nnz:
        raise ValueError(
            f"layer graph {graph.layers[-1]!r} has {adj.nnz - b.nnz} edge(s) that do not go from "
            "the left (input) to the right (output) partition"
        )
    b = sp.csr_array(b)
    b.sum_duplicates()
    return b


# --------------------------------------------------------------------------- one layer
def _delta_r(pattern: sp.csr_array, n_edges: int, n_left: int, n_right: int, seed: int) -> float:
    """(ub − μ̂)/ub of a graph without zero-degree nodes (``n_left``/``n_right`` active nodes)."""
    ub = math.sqrt(n_edges / n_left - 1.0) + math.sqrt(n_edges / n_right - 1.0)
    if ub == 0.0:
        return float("nan")
    mu = float(top_singular_values(pattern, 2, seed=seed)[1])  # third |λ| = σ₂
    return (ub - mu) / ub


def ramanujan_layer(graph: Graph, *, seed: int = 0) -> dict[str, float | int | str | None]:
    """Δr, imsg and imdb (method §7) and the counts of one layer's bipartite graph.

    Parameters
    ----------
    graph : Graph
        One layer of ``encode(model, encoding="rolled" | "rolled_channel")`` (or any
        :class:`~mgelib.graphs.Graph` with ``dims=[left, right]`` and edges left → right).
    seed : int
        Seeds the Lanczos start vectors (only Gram matrices above :data:`DENSE_GRAM_MAX`).

    Returns
    -------
    dict
        ``delta_r``, ``imsg``, ``imdb`` (NaN where undefined), ``density``, ``no_weights``,
        ``no_params`` (from ``graph.meta`` when :func:`~mgelib.graphs.encode` set them, else
        edges and ``L·R``), ``nodes`` (``L + R``), ``active_nodes`` (after dropping
        zero-degree nodes), ``edges``, ``n_subgraphs`` (qualifying per-degree subgraphs) and
        ``reason`` (why a value is NaN, else None).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from mgelib.graphs import Graph
    >>> b = np.ones((4, 5), np.float32)  # K_{4,5}: eigenvalues ±√20 and 0
    >>> adj = sp.csr_array(np.block([[np.zeros((4, 4)), b], [np.zeros((5, 9))]]))
    >>> g = Graph(adj, dims=[4, 5], layers=["fc:in", "fc"], shapes=[(4,), (5,)])
    >>> r = ramanujan_layer(g)
    >>> round(r["delta_r"], 6), round(r["imdb"], 6), round(r["imsg"], 6)  # μ̂ = 0, gap = √20
    (1.0, 1.0, 4.472136)
    """
    b = biadjacency(graph)
    n_left, n_right = b.shape
    n_edges = int(b.nnz)
    meta = graph.meta or {}
    no_params = int(meta.get("weights", n_left * n_right))
    no_weights = int(meta.get("kept", n_edges))
    deg_l = np.diff(b.indptr).astype(np.int64)
    deg_r = np.bincount(b.indices, minlength=n_right).astype(np.int64)
    act_l, act_r = int(np.count_nonzero(deg_l)), int(np.count_nonzero(deg_r))
    out: dict[str, float | int | str | None] = {
        "delta_r": float("nan"),
        "imsg": float("nan"),
        "imdb": float("nan"),
        "density": no_weights / no_params if no_params else float("nan"),
        "no_weights": no_weights,
        "no_params": no_params,
        "nodes": n_left + n_right,
        "active_nodes": act_l + act_r,
        "edges": n_edges,
        "n_subgraphs": 0,
        "reason": None,
    }
    if n_edges == 0:
        out["reason"] = "no kept weight (no edges)"
        return out
    reasons = []
    # Structure only: a kept weight whose |w| rounds to 0 in float16 is still an edge.
    pattern = sp.csr_array((np.ones(n_edges), b.indices, b.indptr), shape=b.shape)
    if act_l + act_r <= 3:
        reasons.append("delta_r: 3 or fewer nodes with an edge")
    else:
        out["delta_r"] = _delta_r(pattern, n_edges, act_l, act_r, seed)
        if math.isnan(out["delta_r"]):
            reasons.append("delta_r: every degree is 1, so ub = 0 (the authors' code gives -inf)")

    # imsg / imdb: rows sorted by left degree make each degree class a contiguous row block.
    order = np.argsort(deg_l, kind="stable")
    sorted_deg = deg_l[order]
    b_sorted = sp.csr_array(b[order])
    p_sorted = sp.csr_array(pattern[order])
    degrees, starts, counts = np.unique(sorted_deg, return_index=True, return_counts=True)
    gaps, deltas = [], []
    for d, start, count in zip(degrees.tolist(), starts.tolist(), counts.tolist()):
        if d < MIN_DEGREE:
            continue
        block = slice(start, start + count)
        p_sub = p_sorted[block]
        right = np.bincount(p_sub.indices, minlength=n_right)
        act = np.flatnonzero(right)
        # mean right degree = count·d / active right nodes ≥ 3, compared exactly in integers.
        if count * d < MIN_DEGREE * act.size:
            continue
        p_sub = sp.csr_array(p_sub[:, act])
        w_sub = sp.csr_array(b_sorted[block][:, act])
        s_w = top_singular_values(w_sub, 2, seed=seed)
        gaps.append(float(s_w[0] - s_w[1]))
        deltas.append(_delta_r(p_sub, count * d, count, act.size, seed))
    out["n_subgraphs"] = len(gaps)
    if gaps:
        out["imsg"] = float(np.mean(gaps))
        out["imdb"] = float(np.mean(deltas))
    else:
        reasons.append(
            f"imsg/imdb: no left-degree class with degree ≥ {MIN_DEGREE} and mean right degree "
            f"≥ {MIN_DEGREE}"
        )
    out["reason"] = "; ".join(reasons) or None
    return out


# --------------------------------------------------------------------------- network
def ramanujan(graphs: Mapping[str, Graph], *, seed: int = 0, aliases: bool = True) -> pd.DataFrame:
    """Per-layer Ramanujan metrics (method §7) of a network's bipartite graphs.

    Parameters
    ----------
    graphs : mapping of str to Graph
        ``encode(model, encoding="rolled")`` (the paper's setting) or ``"rolled_channel"``
        (the authors computed that too): one bipartite graph per layer, in the model's order.
    seed : int
        Seeds the Lanczos start vectors (used only for Gram matrices larger than
        :data:`DENSE_GRAM_MAX`); same seed ⇒ identical frame.
    aliases : bool
        Also add the authors' column names (:data:`PAPER_ALIASES`: ``layer_name``,
        ``degree_bound``, ``iterative_spectral_gap``, ``iterative_degree_bound``,
        ``layer_density``) as copies, so the frame joins with
        :func:`mgelib.paperdata.load_ramanujan` and the fixtures without renaming.

    Returns
    -------
    pandas.DataFrame
        One row per layer with :data:`RAMANUJAN_COLUMNS`: ``layer`` (module name),
        ``layer_id`` (position in ``graphs``), ``encoding``, ``delta_r`` (Δr, normalised),
        ``imsg``, ``imdb``, ``density`` (kept / total weights), ``no_weights`` (kept weights),
        ``no_params`` (weights), ``nodes`` (``L + R``, as the authors count them),
        ``active_nodes`` (after dropping zero-degree nodes), ``edges``, ``n_subgraphs`` (the
        per-degree subgraphs that entered imsg/imdb) and ``reason`` (why a value is NaN;
        missing when none is). ``attrs``: ``kind="ramanujan"``, ``seed``, ``aliases``.

    Raises
    ------
    ValueError
        If ``graphs`` is empty, is a single MGE, or holds a graph that is not bipartite
        left → right.

    Examples
    --------
    >>> import torch
    >>> from mgelib.graphs import encode
    >>> from mgelib.pruning import erk
    >>> from mgelib.masks import apply_masks
    >>> _ = torch.manual_seed(0)
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(),
    ...                           torch.nn.Linear(8 * 6 * 6, 10))
    >>> _ = apply_masks(net, erk(net, 0.5, seed=0))
    >>> df = ramanujan(encode(net, encoding="rolled"))
    >>> df[["layer", "delta_r", "imsg", "imdb", "no_weights", "no_params", "edges"]].round(4)
      layer  delta_r    imsg    imdb  no_weights  no_params  edges
    0     0   0.3004  0.1753  0.2180          84        216     84
    1     2   0.3105  0.1625  0.3318        1464       2880   1464
    """
    frame = check_layer_graphs(graphs)
    rows = []
    for i, (name, g) in enumerate(frame.items()):
        r = ramanujan_layer(g, seed=seed)
        rows.append({"layer": str(name), "layer_id": i, "encoding": g.encoding, **r})
    df = pd.DataFrame(rows, columns=list(RAMANUJAN_COLUMNS))
    df = df.astype(
        {
            "layer_id": "int64",
            "no_weights": "int64",
            "no_params": "int64",
            "nodes": "int64",
            "active_nodes": "int64",
            "edges": "int64",
            "n_subgraphs": "int64",
            "delta_r": "float64",
            "imsg": "float64",
            "imdb": "float64",
            "density": "float64",
        }
    )
    if aliases:
        for ours, theirs in PAPER_ALIASES.items():
            df[theirs] = df[ours]
    df.attrs.update(kind="ramanujan", seed=int(seed), aliases=bool(aliases))
    return df


def check_layer_graphs(graphs: Mapping[str, Graph]) -> Mapping[str, Graph]:
    """Return ``graphs`` if it is a non-empty dict of bipartite layer graphs, else raise a
    ``ValueError`` that names the problem."""
    if isinstance(graphs, Graph):
        raise ValueError(
            "pass the dict of per-layer graphs from encode(model, encoding='rolled' or "
            f"'rolled_channel'), not a single Graph (got {graphs!r})"
        )
    if not isinstance(graphs, Mapping):
        raise ValueError(
            f"graphs must be a dict of layer name -> Graph, got {type(graphs).__name__}"
        )
    if not graphs:
        raise ValueError("graphs is empty: the network has no layer to measure")
    for name, g in graphs.items():
        if not isinstance(g, Graph):
            raise ValueError(f"graphs[{name!r}] is a {type(g).__name__}, not an mgelib Graph")
        if len(np.asarray(g.dims)) != 2:
            raise ValueError(
                f"graphs[{name!r}] has {len(np.asarray(g.dims))} partitions; per-layer metrics "
                "need bipartite graphs from encode(..., encoding='rolled' or 'rolled_channel')"
            )
    return graphs
