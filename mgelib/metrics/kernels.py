"""Compiled graph kernels for the combinatorial topometrics (numba, O(V + E) each).

Why not igraph here: handing an edge list to python-igraph costs ~0.4 µs per edge in its
Python-object conversion (1.7 s for CONV-6 at s = 0.98, ~8 s at s = 0.9) — longer than every
metric together. These kernels read the scipy CSR arrays directly. igraph stays the reference
engine (``topometrics(..., engine="igraph")``) and the tests check both engines agree exactly, and
against networkx, on random graphs.

All kernels work on the *undirected multigraph* view of a directed graph (what igraph uses for
bridges, articulation points, ``coreness(mode="all")`` and the RAND-ESU neighbourhoods): every
directed edge ``i → j`` appears in both adjacency lists, with an edge id, so parallel edges
(``i → j`` and ``j → i``) are two edges and never a bridge.
"""

from __future__ import annotations

import functools
import os
import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

# numba would pick the OpenMP layer (torch's libgomp), whose threads spin at every barrier: on a
# busy machine a descheduled thread then stalls the spinning one (seen: a Laplacian mat-vec
# waiting in gomp_team_barrier_wait_end). The workqueue layer sleeps instead. A layer the
# user chose (NUMBA_THREADING_LAYER) is left alone.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

__all__ = [
    "UndirectedView",
    "undirected_view",
    "bridges_and_articulation_points",
    "core_numbers",
    "two_hop_sizes",
    "esu4_counts",
    "esu4_work",
    "weak_components",
    "self_loops",
    "esu4_levels",
    "esu4_estimates",
    "is_forward",
    "parallel_kernel",
    "serial_kernels",
]

_MODE = threading.local()


def parallel_kernel(fn: Callable) -> Callable:
    """Compile ``fn`` twice: with ``parallel=True`` (its ``prange`` loops on numba's threads) and
    as a serial twin (``prange`` is then ``range``), both releasing the GIL. A call runs the
    twin inside :func:`serial_kernels` (in that thread), else the parallel version.

    Both give the same bits: every parallel kernel here splits its work into chunks fixed by
    the data, each chunk writing its own output, so the order the chunks run in never shows.
    numba's workqueue threads (chosen at the top of this module) let only one Python thread
    launch parallel kernels at a time; the twins are what several metrics running side by side use.
    The twin is a copy of ``fn`` under another name, so numba caches the two apart.
    """
    parallel = njit(parallel=True, cache=True, nogil=True)(fn)
    twin = types.FunctionType(
        fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
    )
    twin.__qualname__ = fn.__qualname__ + "_serial"
    twin.__module__ = fn.__module__
    serial = njit(cache=True, nogil=True)(twin)

    @functools.wraps(fn)
    def call(*args):  # noqa: ANN002, ANN202
        return (serial if getattr(_MODE, "serial", False) else parallel)(*args)

    call.parallel, call.serial = parallel, serial  # type: ignore[attr-defined]
    return call


@contextmanager
def serial_kernels() -> Iterator[None]:
    """Within this block, this thread's calls of :func:`parallel_kernel` kernels run serially
    (what each metric does when several run side by side, one core each)."""
    previous = getattr(_MODE, "serial", False)
    _MODE.serial = True
    try:
        yield
    finally:
        _MODE.serial = previous


@njit(cache=True, nogil=True)
def is_forward(indptr, indices):  # pragma: no cover - compiled
    """Whether every edge ``i → j`` of a CSR has ``i < j`` (no self-loop, no reciprocal pair)."""
    for v in range(indptr.size - 1):
        for k in range(indptr[v], indptr[v + 1]):
            if indices[k] <= v:
                return False
    return True


def chunk_bounds(work: np.ndarray, chunks: int) -> np.ndarray:
    """Cut items into at most ``chunks`` consecutive chunks of about equal total ``work`` (rows
    by their entries, runs by their products): the bounds, from 0 to ``work.size``.

    >>> chunk_bounds(np.array([3, 1, 1, 1, 2]), 2).tolist()
    [0, 2, 5]
    """
    total = np.concatenate([[0], np.cumsum(work, dtype=np.int64)])
    cuts = np.searchsorted(total, np.linspace(0, total[-1], chunks + 1)[1:-1], side="left")
    return np.unique(np.concatenate([[0], cuts, [work.size]])).astype(np.int64)


class UndirectedView:
    """CSR of the undirected multigraph: ``indptr``, ``indices`` (neighbour), ``edge`` (edge id;
    empty for a forward graph, whose undirected view is simple: no edge needs a name there);
    ``simple``: no node lists a neighbour twice (true of a forward graph's view)."""

    def __init__(
        self,
        indptr: np.ndarray,
        indices: np.ndarray,
        edge: np.ndarray,
        n_edges: int,
        simple: bool = False,
    ):
        self.indptr = indptr
        self.indices = indices
        self.edge = edge
        self.n_edges = n_edges
        self.simple = simple

    @property
    def n_nodes(self) -> int:
        return self.indptr.size - 1


@parallel_kernel
def _undirected(indptr, indices, n, bounds, idx_type, with_ids):  # pragma: no cover - compiled
    # Node v's list: its out-edges (CSR order), then its in-edges by increasing source. The
    # in-edges are a transpose, done in parallel over fixed row chunks: each chunk counts its
    # entries per target, a prefix over the chunks (in order) gives every chunk its own write
    # positions, and then every chunk writes independently — the same layout for any number of
    # threads, and the same as a sequential counting sort.
    nch = bounds.size - 1
    pos = np.zeros((nch, n), idx_type)
    for c in prange(nch):
        for v in range(bounds[c], bounds[c + 1]):
            for k in range(indptr[v], indptr[v + 1]):
                pos[c, indices[k]] += 1
    ptr = np.zeros(n + 1, np.int64)
    for v in range(n):
        d = indptr[v + 1] - indptr[v]
        for c in range(nch):
            d += pos[c, v]
        ptr[v + 1] = ptr[v] + d
    for u in prange(n):
        at = ptr[u] + indptr[u + 1] - indptr[u]
        for c in range(nch):
            t = pos[c, u]
            pos[c, u] = at
            at += t
    nbr = np.empty(ptr[n], idx_type)
    eid = np.empty(ptr[n] if with_ids else 0, idx_type)
    for v in prange(n):
        f = ptr[v]
        for k in range(indptr[v], indptr[v + 1]):
            nbr[f] = indices[k]
            if with_ids:
                eid[f] = k
            f += 1
    for c in prange(nch):
        for v in range(bounds[c], bounds[c + 1]):
            for k in range(indptr[v], indptr[v + 1]):
                u = indices[k]
                f = pos[c, u]
                nbr[f] = v
                if with_ids:
                    eid[f] = k
                pos[c, u] = f + 1
    return ptr, nbr, eid


def undirected_view(adj: sp.csr_array, *, edge_ids: bool | None = None) -> UndirectedView:
    """Both directions of every edge, grouped by node (a self-loop appears twice, like igraph).
    Neighbours and edge ids are int32 while they fit (half the memory of the 2·E entries).

    ``edge_ids=None`` keeps the edge ids only where they are needed — a graph with self-loops
    or reciprocal pairs ``i → j``, ``j → i`` (a multigraph once undirected); a forward graph
    (every edge ``i < j``, as every MGE and BGE) is simple and saves the 2·E ids.

    Built in parallel over up to 16 row chunks of about equal numbers of edges (fewer when the
    per-chunk position table, chunks × V entries, would pass 64 MiB)."""
    small = 2 * adj.nnz < 2**31 and adj.shape[0] < 2**31
    idx_type = np.int32 if small else np.int64
    n = adj.shape[0]
    width = np.dtype(idx_type).itemsize * max(n, 1)
    chunks = int(max(1, min(16, adj.nnz // 65536, 2**26 // width)))
    bounds = chunk_bounds(np.diff(adj.indptr), chunks)
    forward = bool(is_forward(adj.indptr, adj.indices))
    if edge_ids is None:
        edge_ids = not forward
    ptr, nbr, eid = _undirected(adj.indptr, adj.indices, n, bounds, idx_type, bool(edge_ids))
    return UndirectedView(ptr, nbr, eid, adj.nnz, simple=forward)


@njit(cache=True, nogil=True)
def _bridges_ap(indptr, indices, edge, n):  # pragma: no cover - compiled
    disc = np.full(n, -1, np.int64)
    low = np.zeros(n, np.int64)
    parent_edge = np.full(n, -1, np.int64)
    parent = np.full(n, -1, np.int64)
    pos = np.zeros(n, np.int64)
    children = np.zeros(n, np.int64)
    is_ap = np.zeros(n, np.bool_)
    stack = np.empty(n, np.int64)
    came_back = np.zeros(n if edge.size == 0 else 0, np.bool_)
    n_bridges = 0
    time = 0
    for root in range(n):
        if disc[root] >= 0:
            continue
        disc[root] = time
        low[root] = time
        time += 1
        pos[root] = indptr[root]
        top = 0
        stack[0] = root
        while top >= 0:
            u = stack[top]
            if pos[u] < indptr[u + 1]:
                k = pos[u]
                pos[u] += 1
                v = indices[k]
                if edge.size:
                    eid = edge[k]
                    if eid == parent_edge[u] or v == u:
                        continue  # the tree edge we came in by (only that copy), or a self-loop
                else:  # a simple graph: the one edge to the parent is the tree edge
                    eid = -1
                    if v == parent[u] and not came_back[u]:
                        came_back[u] = True
                        continue
                if disc[v] < 0:
                    disc[v] = time
                    low[v] = time
                    time += 1
                    parent[v] = u
                    parent_edge[v] = eid
                    pos[v] = indptr[v]
                    children[u] += 1
                    top += 1
                    stack[top] = v
                elif disc[v] < low[u]:
                    low[u] = disc[v]
            else:
                top -= 1
                p = parent[u]
                if p >= 0:
                    if low[u] < low[p]:
                        low[p] = low[u]
                    if low[u] > disc[p]:
                        n_bridges += 1
                    if parent[p] >= 0 and low[u] >= disc[p]:
                        is_ap[p] = True
        if children[root] > 1:
            is_ap[root] = True
    return n_bridges, int(is_ap.sum())


def bridges_and_articulation_points(view: UndirectedView) -> tuple[int, int]:
    """Number of bridges and of articulation points of the undirected view (iterative DFS)."""
    return _bridges_ap(view.indptr, view.indices, view.edge, view.n_nodes)


@njit(cache=True, nogil=True)
def _cores(indptr, indices, n):  # pragma: no cover - compiled
    # Batagelj & Zaversnik (2003), O(E): bucket sort by degree, peel in order.
    deg = np.empty(n, np.int64)
    md = 0
    for v in range(n):
        deg[v] = indptr[v + 1] - indptr[v]
        if deg[v] > md:
            md = deg[v]
    bins = np.zeros(md + 2, np.int64)
    for v in range(n):
        bins[deg[v]] += 1
    start = 0
    for d in range(md + 1):
        num = bins[d]
        bins[d] = start
        start += num
    pos = np.empty(n, np.int64)
    vert = np.empty(n, np.int64)
    for v in range(n):
        pos[v] = bins[deg[v]]
        vert[pos[v]] = v
        bins[deg[v]] += 1
    for d in range(md, 0, -1):
        bins[d] = bins[d - 1]
    bins[0] = 0
    for i in range(n):
        v = vert[i]
        for k in range(indptr[v], indptr[v + 1]):
            u = indices[k]
            if deg[u] > deg[v]:
                du = deg[u]
                pu = pos[u]
                pw = bins[du]
                w = vert[pw]
                if u != w:
                    pos[u] = pw
                    vert[pu] = w
                    pos[w] = pu
                    vert[pw] = u
                bins[du] += 1
                deg[u] -= 1
    return deg


def core_numbers(view: UndirectedView) -> np.ndarray:
    """Core number of every node with undirected (in + out) degree, like igraph ``mode="all"``."""
    return _cores(view.indptr, view.indices, view.n_nodes)


@njit(cache=True, nogil=True)
def _self_loops(indptr, indices):  # pragma: no cover - compiled
    count = 0
    for v in range(indptr.size - 1):
        for k in range(indptr[v], indptr[v + 1]):
            if indices[k] == v:
                count += 1
    return count


def self_loops(adj: sp.csr_array) -> int:
    """Number of stored diagonal entries (self-loops), without an E-sized temporary."""
    return int(_self_loops(adj.indptr, adj.indices))


@njit(cache=True, nogil=True)
def _weak_components(indptr, indices, n):  # pragma: no cover - compiled
    # Union–find with path halving and union by index over the CSR edges: O(E α(V)), reading
    # the arrays in place (scipy's csgraph first validates and copies them).
    parent = np.arange(n)
    count = n
    for v in range(n):
        for k in range(indptr[v], indptr[v + 1]):
            a = v
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            b = indices[k]
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                if a < b:
                    parent[b] = a
                else:
                    parent[a] = b
                count -= 1
    return count


def weak_components(adj: sp.csr_array) -> int:
    """Number of weakly connected components (isolated nodes count as one each).

    >>> import numpy as np, scipy.sparse as sp
    >>> weak_components(sp.csr_array((np.ones(2), ([0, 2], [1, 3])), shape=(5, 5)))
    3
    """
    return int(_weak_components(adj.indptr, adj.indices, adj.shape[0]))


@njit(cache=True, nogil=True)
def reach_two(indptr, indices, v, stamp, tag):  # pragma: no cover - compiled
    """Nodes within two out-steps of ``v``, ``v`` included; ``stamp`` (one slot per node) marks
    the nodes seen with ``tag``, a value not used before in that array."""
    stamp[v] = tag
    count = 1
    for a in range(indptr[v], indptr[v + 1]):
        u = indices[a]
        if stamp[u] != tag:
            stamp[u] = tag
            count += 1
    for a in range(indptr[v], indptr[v + 1]):
        u = indices[a]
        for b in range(indptr[u], indptr[u + 1]):
            w = indices[b]
            if stamp[w] != tag:
                stamp[w] = tag
                count += 1
    return count


@njit(cache=True, nogil=True)
def _two_hop(indptr, indices, n):  # pragma: no cover - compiled
    stamp = np.zeros(n, np.int64)
    out = np.empty(n, np.int64)
    for v in range(n):
        out[v] = reach_two(indptr, indices, v, stamp, v + 1)
    return out


def two_hop_sizes(adj: sp.csr_array) -> np.ndarray:
    """Number of nodes within two out-steps of each node, the node itself included."""
    return _two_hop(adj.indptr.astype(np.int64), adj.indices.astype(np.int64), adj.shape[0])


@njit(cache=True, nogil=True)
def _open_root(indptr, indices, v, mark, ext1):  # pragma: no cover - compiled
    """Mark the root and its neighbours; fill ext1 with the neighbours > v (ESU's first
    extension set); return its size."""
    mark[v] += 1
    n1 = 0
    for a in range(indptr[v], indptr[v + 1]):
        u = indices[a]
        if mark[u] == 0 and u > v:
            ext1[n1] = u
            n1 += 1
        mark[u] += 1
    return n1


@njit(cache=True, nogil=True)
def _extend(indptr, indices, v, w1, ext1, i, n1, mark, ext2):  # pragma: no cover - compiled
    """ESU's second level from root ``v`` after adding ``w1`` (``ext1[i]``): ``ext2`` = the rest
    of ``ext1`` plus ``w1``'s exclusive neighbours above ``v``; marks ``w1``'s neighbourhood (the
    caller unmarks it) and returns the length of ``ext2``."""
    mark[w1] += 1
    n2 = 0
    for j in range(i + 1, n1):
        ext2[n2] = ext1[j]
        n2 += 1
    for a in range(indptr[w1], indptr[w1 + 1]):
        u = indices[a]
        if mark[u] == 0 and u > v:
            ext2[n2] = u
            n2 += 1
        mark[u] += 1
    return n2


@njit(cache=True, nogil=True)
def _close_node(indptr, indices, v, mark):  # pragma: no cover - compiled
    """Undo the marks a node and its neighbours received."""
    for a in range(indptr[v], indptr[v + 1]):
        mark[indices[a]] -= 1
    mark[v] -= 1


def esu4_work(view: UndirectedView, roots: np.ndarray) -> float:
    """About how many adjacency entries :func:`esu4_counts` would scan for these roots (an upper
    bound within a small factor; computed in O(Σ deg·|extension|), far cheaper than the count):
    the level-3 scans of :func:`esu4_levels`."""
    return esu4_levels(view, roots)[1]


def esu4_counts(view: UndirectedView, roots: np.ndarray) -> np.ndarray:
    """For each root, the number of weakly connected induced 4-vertex subgraphs whose smallest
    vertex it is — what RAND-ESU (Wernicke 2006) enumerates from it with no cut — counted in
    parallel over roots (:func:`esu4_estimates` with ``p2 = p3 = 1``)."""
    return esu4_estimates(view, roots).astype(np.int64)


@njit(cache=True, nogil=True)
def _esu4_levels(indptr, indices, n, roots):  # pragma: no cover - compiled
    # Adjacency scans per ESU level for these roots: (building the level-2 extension sets,
    # counting the level-3 children) — what the cut probabilities are chosen from.
    mark = np.zeros(n, np.int64)
    ext1 = np.empty(n, np.int64)
    w2 = 0.0
    w3 = 0.0
    for r in range(roots.size):
        v = roots[r]
        n1 = _open_root(indptr, indices, v, mark, ext1)
        for i in range(n1):
            a1 = ext1[i]
            w2 += indptr[a1 + 1] - indptr[a1]
            for j in range(i + 1, n1):
                b = ext1[j]
                w3 += indptr[b + 1] - indptr[b]
            for a in range(indptr[a1], indptr[a1 + 1]):
                u = indices[a]
                if mark[u] == 0 and u > v:
                    w3 += indptr[u + 1] - indptr[u]
        _close_node(indptr, indices, v, mark)
    return w2, w3


def esu4_levels(view: UndirectedView, roots: np.ndarray) -> tuple[float, float]:
    """Adjacency entries the exact enumeration scans at ESU levels 2 and 3 (building the level-2
    extension sets; counting the level-3 children, the bulk of the work)."""
    w2, w3 = _esu4_levels(
        view.indptr, view.indices, view.n_nodes, np.asarray(roots, dtype=np.int64)
    )
    return float(w2), float(w3)


@njit(inline="always")
def _uniform(seed, a, b, c):  # pragma: no cover - compiled
    # A counter-based uniform in [0, 1): the draw for a tree node depends only on (seed, root,
    # path), never on which thread visits it.
    z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(a)
    for x in (b, c):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = (z ^ (z >> np.uint64(31))) + np.uint64(x) * np.uint64(0xD6E8FEB86659FD93)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@parallel_kernel
def _esu4_cut(indptr, indices, n, roots, p2, p3, seed, n_chunks, simple):  # pragma: no cover
    # RAND-ESU (Wernicke 2006) below each root: a level-2 child is expanded with probability
    # p2, a level-3 child with p3; the level-4 children of an expanded level-3 node are counted
    # exactly (their expected number given the path, so no cut there). Each connected 4-set
    # lies on exactly one root-to-leaf path, reached with probability p2·p3: dividing by it
    # makes every root's value an unbiased estimate of its exact count.
    out = np.zeros(roots.size)
    step = (roots.size + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        # `mark[x] > 0` ⇔ x is in the current subgraph or adjacent to it (ESU's exclusive
        # neighbourhood test): at most a few increments per node, so 16 bits (and a quarter of
        # the memory that 64 chunks of int64 would fault in) suffice.
        mark = np.zeros(n, np.int16)
        ext1 = np.empty(n, np.int64)
        ext2 = np.empty(n, np.int64)
        for r in range(ch * step, min(roots.size, (ch + 1) * step)):
            v = roots[r]
            total = 0.0
            n1 = _open_root(indptr, indices, v, mark, ext1)
            for i in range(n1):
                w1 = ext1[i]
                if p2 < 1.0 and _uniform(seed, v, w1, n) >= p2:
                    continue
                n2 = _extend(indptr, indices, v, w1, ext1, i, n1, mark, ext2)
                sub = 0
                for j in range(n2):
                    w2 = ext2[j]
                    if p3 < 1.0 and _uniform(seed, v, w1, w2) >= p3:
                        continue
                    c = n2 - j - 1
                    if simple:
                        # Each neighbour listed once: the exclusive-neighbour test alone counts
                        # the level-4 children (a leaf level: nothing to mark for later).
                        for a in range(indptr[w2], indptr[w2 + 1]):
                            u = indices[a]
                            c += (mark[u] == 0) & (u > v)
                    else:  # a repeated neighbour must be counted once: mark as we go
                        mark[w2] += 1
                        for a in range(indptr[w2], indptr[w2 + 1]):
                            u = indices[a]
                            if mark[u] == 0 and u > v:
                                c += 1
                            mark[u] += 1
                        _close_node(indptr, indices, w2, mark)
                    sub += c
                total += sub
                _close_node(indptr, indices, w1, mark)
            _close_node(indptr, indices, v, mark)
            out[r] = total / (p2 * p3)
    return out


def esu4_estimates(
    view: UndirectedView,
    roots: np.ndarray,
    p2: float = 1.0,
    p3: float = 1.0,
    *,
    seed: int = 0,
    n_chunks: int = 64,
) -> np.ndarray:
    """Per root, an unbiased RAND-ESU estimate of :func:`esu4_counts` (levels 2 and 3 cut with
    probabilities ``p2``, ``p3``; ``p2 = p3 = 1`` gives the exact counts), in parallel over roots.

    >>> import numpy as np, scipy.sparse as sp
    >>> path = sp.csr_array((np.ones(3), ([0, 1, 2], [1, 2, 3])), shape=(4, 4))
    >>> esu4_estimates(undirected_view(path), np.arange(4)).tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    if not (0.0 < p2 <= 1.0 and 0.0 < p3 <= 1.0):
        raise ValueError(f"cut probabilities must lie in (0, 1], got p2={p2}, p3={p3}")
    roots = np.asarray(roots, dtype=np.int64)
    if roots.size == 0:
        return np.zeros(0)
    return _esu4_cut(
        view.indptr,
        view.indices,
        view.n_nodes,
        roots,
        float(p2),
        float(p3),
        int(seed) & (2**63 - 1),
        max(1, min(n_chunks, roots.size)),
        bool(getattr(view, "simple", False)),
    )
