"""Multi-threaded sparse kernels for the eigensolves (numba, ``prange`` over CSR rows).

The solvers go through :class:`SymmetricOperator`. On a forward graph (every edge ``i → j`` has
``i < j``, as in every MGE and BGE) it multiplies by ``A = W + Wᵀ`` straight from the graph's CSR
— one pass that gathers along each row and scatters into per-chunk buffers — so ``A`` is never
built, and on a bipartite graph :meth:`SymmetricOperator.side_product` gives ``B x`` and ``Bᵀ y``
doing only the useful half of that pass. When the rows repeat — an MGE's do: a conv mask is
shared by every position of a channel pair — that pass runs on :class:`RowRuns`, a table of row
classes ~2 % the size of the CSR, as contiguous vector updates (CONV-6 at s = 0.9, one thread: a
product in ~13 ms instead of ~50 ms). Any other graph is multiplied through
:func:`symmetric_csr` (``max(W, Wᵀ)``, assembled by one counting sort, stored with the graph's
own ``float32`` weights) and the CSR kernels :func:`matvec`, :func:`laplacian_matvec` (``D·x −
A·x`` fused: ``L`` is never formed) and :func:`rows_matvec` (a subset of the rows). Products
accumulate in float64 in an order fixed by the graph, so the result does not depend on the
number of threads.

>>> import numpy as np, scipy.sparse as sp
>>> w = sp.csr_array(np.array([[0, 2, 0], [0, 0, 3], [0, 0, 0]], dtype=np.float32))
>>> a = symmetric_csr(w)
>>> a.toarray().tolist()
[[0.0, 2.0, 0.0], [2.0, 0.0, 3.0], [0.0, 3.0, 0.0]]
>>> matvec(a, np.ones(3)).tolist()
[2.0, 5.0, 3.0]
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from mgelib.metrics.kernels import chunk_bounds, is_forward, parallel_kernel

__all__ = [
    "available_cores",
    "resolve_jobs",
    "symmetric_csr",
    "matvec",
    "laplacian_matvec",
    "rows_matvec",
    "row_sums",
    "SymmetricOperator",
    "RowRuns",
]


def available_cores() -> int:
    """The cores this process may run on: ``MGELIB_CORES`` when set (a grid worker's share, set
    by :mod:`mgelib.runner`), else ``len(os.sched_getaffinity(0))`` (SLURM's and taskset's
    limits included), else ``os.cpu_count()``."""
    env = os.environ.get("MGELIB_CORES", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_jobs(n_jobs: int | None) -> int:
    """``n_jobs`` when positive; ``None`` or ``0``: :func:`available_cores`.

    >>> resolve_jobs(3)
    3
    >>> resolve_jobs(0) == available_cores()
    True
    """
    if n_jobs is None or n_jobs == 0:
        return available_cores()
    if n_jobs < 0:
        raise ValueError(f"n_jobs must be ≥ 0 (0 means every available core), got {n_jobs}")
    return int(n_jobs)


@njit(cache=True, nogil=True)
def _symmetric(indptr, indices, data, n, idx_type):  # pragma: no cover - compiled
    ptr = np.zeros(n + 1, np.int64)
    for v in range(n):
        ptr[v + 1] += indptr[v + 1] - indptr[v]
        for k in range(indptr[v], indptr[v + 1]):
            ptr[indices[k] + 1] += 1
    for v in range(n):
        ptr[v + 1] += ptr[v]
    ind = np.empty(ptr[n], idx_type)
    dat = np.empty(ptr[n], np.float32)
    fill = ptr[:-1].copy()
    for v in range(n):  # the transposed entries first: for a forward graph their columns are < v
        for k in range(indptr[v], indptr[v + 1]):
            u = indices[k]
            ind[fill[u]] = v
            dat[fill[u]] = data[k]
            fill[u] += 1
    for v in range(n):
        f = fill[v]
        for k in range(indptr[v], indptr[v + 1]):
            ind[f] = indices[k]
            dat[f] = data[k]
            f += 1
    return ptr, ind, dat


def symmetric_csr(adj: sp.sparray, *, forward: bool = True) -> sp.csr_array:
    """``A = max(W, Wᵀ)`` (``= W + Wᵀ`` when every edge has ``i < j``) as a float32 CSR.

    ``forward=False`` or a graph with an edge ``i ≥ j`` takes scipy's ``maximum`` (reciprocal
    pairs keep the larger weight, method §6); either way the values are the graph's weights.
    """
    w = sp.csr_array(adj)
    n = w.shape[0]
    forward_graph = forward and bool(is_forward(w.indptr, w.indices))
    if not forward_graph:
        w32 = sp.csr_array(w, dtype=np.float32)
        a = sp.csr_array(w32.maximum(sp.csr_array(w32.T)))
        a.sort_indices()
        return a
    idx_type = np.int32 if 2 * w.nnz < 2**31 and n < 2**31 else np.int64
    ptr, ind, dat = _symmetric(
        w.indptr, w.indices, w.data.astype(np.float32, copy=False), n, idx_type
    )
    if ptr[-1] < 2**31:
        ptr = ptr.astype(np.int32)
    out = sp.csr_array((dat, ind, ptr), shape=(n, n))
    out.has_sorted_indices = True
    return out


@parallel_kernel
def _matvec(ptr, ind, dat, x, out):  # pragma: no cover - compiled
    for i in prange(ptr.size - 1):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k] * x[ind[k]]
        out[i] = s


@parallel_kernel
def _laplacian(ptr, ind, dat, deg, x, out):  # pragma: no cover - compiled
    for i in prange(ptr.size - 1):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k] * x[ind[k]]
        out[i] = deg[i] * x[i] - s


@parallel_kernel
def _rows(ptr, ind, dat, rows, x, out):  # pragma: no cover - compiled
    for r in prange(rows.size):
        i = rows[r]
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k] * x[ind[k]]
        out[r] = s


@parallel_kernel
def _row_sums(ptr, dat, out):  # pragma: no cover - compiled
    for i in prange(ptr.size - 1):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k]
        out[i] = s


@parallel_kernel
def _forward_product(ptr, ind, dat, x, out, bounds, lo, off, buf, roles):  # pragma: no cover
    # A x = W x + Wᵀ x from W alone. Chunk c (rows bounds[c]..bounds[c+1], about equal numbers
    # of entries) gathers W x for its rows and scatters its part of Wᵀ x into a private buffer
    # over the columns it touches (lo[c]..hi[c]); `_add_buffers` then adds them in chunk order.
    # The chunks are fixed by the graph, not by the thread count: the same bits for any.
    # `roles` (empty: every row does both) lets a bipartite product skip the half of the work
    # that multiplies zeros: 1 = scatter only (x lives on this row), 2 = gather only.
    for c in prange(bounds.size - 1):
        base = off[c] - lo[c]
        for t in range(off[c], off[c + 1]):
            buf[t] = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            s = 0.0
            xi = x[i]
            role = roles[i] if roles.size else 3
            if role == 3:
                for k in range(ptr[i], ptr[i + 1]):
                    j = ind[k]
                    wk = dat[k]
                    s += wk * x[j]
                    buf[base + j] += wk * xi
            elif role == 1:  # x is zero on this row's neighbours: only the scatter counts
                for k in range(ptr[i], ptr[i + 1]):
                    buf[base + ind[k]] += dat[k] * xi
            elif role == 2:  # x is zero here: only the gather counts
                for k in range(ptr[i], ptr[i + 1]):
                    s += dat[k] * x[ind[k]]
            out[i] = s


@parallel_kernel
def _run_product(
    x,
    s,
    xs,
    gptr,
    grows,
    run_u,
    run_len,
    run_a,
    run_cls,
    cptr,
    coff,
    cdat,
    bounds,
    lo,
    off,
    buf,
    roles,
):  # pragma: no cover - compiled
    # `_forward_product` on the run form (`RowRuns`). A run is L consecutive distinct rows of one
    # class whose anchors (first columns) are consecutive too, so each class entry (offset o,
    # weight w) is two contiguous AXPYs: s[u0:u0+L] += w·x[a0+o : a0+o+L] (the gather, in the
    # class's entry order: the same bits as the CSR's row order) and buf[a0+o : …] += w·xs[u0:…]
    # (the scatter, xs[u] = the sum of x over the rows that share distinct row u: pooling
    # windows). Chunks of runs are fixed by the graph: the same bits for any thread count.
    # Indices are unsigned (every one is ≥ 0) so that the loops vectorise without numba's
    # negative-index wraparound; the gather takes four entries per sweep, adding in entry order.
    u1 = np.uint64(1)
    for c in prange(bounds.size - 1):
        shift = off[c] - lo[c]
        for t in range(off[c], off[c + 1]):
            buf[t] = 0.0
        for r in range(bounds[c], bounds[c + 1]):
            u0 = np.uint64(run_u[r])
            n_u = np.uint64(run_len[r])
            a0 = np.uint64(run_a[r])
            e0 = cptr[run_cls[r]]
            e1 = cptr[run_cls[r] + 1]
            role = roles[r] if roles.size else 3
            for t in range(n_u):
                s[u0 + t] = 0.0
            if role & 2:  # gather
                e = e0
                while e + 4 <= e1:
                    w0 = np.float64(cdat[e])
                    w1 = np.float64(cdat[e + 1])
                    w2 = np.float64(cdat[e + 2])
                    w3 = np.float64(cdat[e + 3])
                    j0 = a0 + np.uint64(coff[e])
                    j1 = a0 + np.uint64(coff[e + 1])
                    j2 = a0 + np.uint64(coff[e + 2])
                    j3 = a0 + np.uint64(coff[e + 3])
                    for t in range(n_u):
                        s[u0 + t] = (
                            ((s[u0 + t] + w0 * x[j0 + t]) + w1 * x[j1 + t]) + w2 * x[j2 + t]
                        ) + w3 * x[j3 + t]
                    e += 4
                while e < e1:
                    w0 = np.float64(cdat[e])
                    j0 = a0 + np.uint64(coff[e])
                    for t in range(n_u):
                        s[u0 + t] += w0 * x[j0 + t]
                    e += 1
            if role & 1:  # scatter
                for t in range(n_u):
                    v = 0.0
                    for g in range(gptr[u0 + t], gptr[u0 + t + u1]):
                        v += x[np.uint64(grows[g])]
                    xs[u0 + t] = v
                base = np.uint64(shift + run_a[r])
                for e in range(e0, e1):
                    w0 = np.float64(cdat[e])
                    b0 = base + np.uint64(coff[e])
                    for t in range(n_u):
                        buf[b0 + t] += w0 * xs[u0 + t]


@parallel_kernel
def _add_buffers(out, x, bounds, lo, hi, off, buf, deg, laplacian, s, uid):  # pragma: no cover
    # Add the scatter buffers, each node's in chunk order, in blocks of nodes (each block visits
    # only the chunks whose columns overlap it); optionally turn A x into (D − A) x. With `uid`
    # (the run form) each row's gather is first copied from its distinct row's `s`.
    n = out.size
    blocks = 64
    size = (n + blocks - 1) // blocks
    for b in prange(blocks):
        b0 = b * size
        b1 = min(n, b0 + size)
        if uid.size:
            for i in range(b0, b1):
                out[i] = s[uid[i]] if uid[i] >= 0 else 0.0
        for c in range(bounds.size - 1):
            a0 = max(b0, lo[c])
            a1 = min(b1, hi[c])
            shift = off[c] - lo[c]
            for i in range(a0, a1):
                out[i] += buf[shift + i]
        if laplacian:
            for i in range(b0, b1):
                out[i] = deg[i] * x[i] - out[i]


_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)


@parallel_kernel
def _row_hashes(ptr, ind, bits):  # pragma: no cover - compiled
    # A 64-bit hash of each row's (degree, columns relative to its first, weight bits): rows
    # with equal hashes are candidates for one class; `_same_as_class` checks them exactly.
    n = ptr.size - 1
    h = np.empty(n, np.uint64)
    for i in prange(n):
        a = ptr[i]
        b = ptr[i + 1]
        z = np.uint64(b - a) * _K1
        if b > a:
            f = ind[a]
            for k in range(a, b):
                v = (np.uint64(ind[k] - f) * _K2) ^ np.uint64(bits[k])
                z = (z ^ v) * _K3
                z ^= z >> np.uint64(29)
        h[i] = z
    return h


@parallel_kernel
def _same_as_class(ptr, ind, bits, cls, first):  # pragma: no cover - compiled
    # Whether every row equals its class's first row exactly (shifted columns, same weights).
    n = ptr.size - 1
    bad = np.zeros(n, np.bool_)
    for i in prange(n):
        r = first[cls[i]]
        a = ptr[i]
        d = ptr[i + 1] - a
        ra = ptr[r]
        if ptr[r + 1] - ra != d:
            bad[i] = True
            continue
        if d:
            for k in range(d):
                if ind[a + k] - ind[a] != ind[ra + k] - ind[ra] or bits[a + k] != bits[ra + k]:
                    bad[i] = True
                    break
    return not bad.any()


def _chunk_ranges(bounds, starts, ends):
    """Per chunk of items ``bounds[c]..bounds[c+1]``, the column range ``[lo, hi)`` its items
    touch (item ``r`` touches ``starts[r]..ends[r]``), and the chunks' buffer offsets."""
    k = bounds.size - 1
    lo = np.zeros(k, np.int64)
    hi = np.zeros(k, np.int64)
    full = bounds[1:] > bounds[:-1]
    if starts.size and full.any():
        at = bounds[:-1][full]
        lo[full] = np.minimum.reduceat(starts, at)
        hi[full] = np.maximum.reduceat(ends, at)
    hi = np.maximum(hi, lo)
    return lo, hi, np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)


@dataclass
class RowRuns:
    """The run form of a forward CSR: what :func:`_run_product` multiplies.

    - A *class* is a set of rows with the same weights at the same column offsets from their
      first column (their *anchor*). A convolution's mask is shared by every position of a
      channel pair, so the rows of a channel repeat along its interior; borders make more
      classes, never a wrong one (every row is checked against its class exactly).
    - Rows with the same class and anchor have the same out-edges (the positions of one pooling
      window): one *distinct row* stands for them, fed by the sum of their ``x``.
    - A *run* is a maximal sequence of consecutive distinct rows of one class with consecutive
      anchors (a row of interior positions), so every class entry is two contiguous AXPYs.

    The CSRs of the test models' MGEs have 1.5–2.5 % as many class entries as edges, so the
    table stays in cache and a product streams a few bytes per row instead of 8 per edge.
    ``RowRuns.build`` returns ``None`` when the table would not be ``limit`` × smaller than the
    CSR (a graph without that symmetry keeps the plain kernel).
    """

    uid: np.ndarray  # distinct row of each row (−1: an empty row)
    gptr: np.ndarray  # the rows of each distinct row: grows[gptr[u]:gptr[u + 1]]
    grows: np.ndarray
    run_u: np.ndarray  # per run: first distinct row, length, anchor, class
    run_len: np.ndarray
    run_a: np.ndarray
    run_cls: np.ndarray
    cptr: np.ndarray  # the class table: entries cptr[k]..cptr[k + 1], offsets and weights
    coff: np.ndarray
    cdat: np.ndarray
    bounds: np.ndarray  # chunks of runs, the columns [lo, hi) each scatters to, buffer offsets
    lo: np.ndarray
    hi: np.ndarray
    off: np.ndarray

    @property
    def n_class_entries(self) -> int:
        return int(self.cptr[-1])

    @property
    def n_distinct(self) -> int:
        """Distinct rows (rows with the same class and anchor count once)."""
        return int(self.gptr.size - 1)

    @classmethod
    def build(cls, w: sp.csr_array, data: np.ndarray, limit: float, chunks: int):
        n, nnz = w.shape[0], w.nnz
        if n == 0 or nnz == 0:
            return None
        bits = data.view(np.uint32)
        h = _row_hashes(w.indptr, w.indices, bits)
        _, first, klass = np.unique(h, return_index=True, return_inverse=True)
        klass = klass.ravel()
        deg = np.diff(w.indptr)
        sizes = deg[first]
        if int(sizes.sum()) * limit > nnz:
            return None
        if not _same_as_class(w.indptr, w.indices, bits, klass, first):
            return None  # a hash collision (odds ~ rows²/2⁶⁴): the plain CSR is always right
        idx = np.int32 if n < 2**31 else np.int64
        # The class table: each class's entries, columns relative to its first.
        cptr = np.zeros(first.size + 1, np.int64)
        np.cumsum(sizes, out=cptr[1:])
        take = np.repeat(w.indptr[first] - cptr[:-1], sizes) + np.arange(cptr[-1])
        heads = w.indices[np.minimum(w.indptr[first], nnz - 1)].astype(np.int64)
        coff = (w.indices[take].astype(np.int64) - np.repeat(heads, sizes)).astype(idx)
        span = np.zeros(first.size, np.int64)  # the largest offset of each class
        span[sizes > 0] = coff[cptr[1:][sizes > 0] - 1]
        # Distinct rows: (class, anchor) pairs of the non-empty rows, in order of appearance.
        rows = np.flatnonzero(deg > 0)
        anchor = w.indices[w.indptr[rows]].astype(np.int64)
        key = klass[rows].astype(np.int64) * (n + 1) + anchor
        _, at, inv = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(at, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        row_uid = rank[inv.ravel()]
        uid = np.full(n, -1, idx)
        uid[rows] = row_uid
        u_rows = rows[at[order]]
        u_cls = klass[u_rows]
        u_anchor = anchor[at[order]]
        gptr = np.zeros(order.size + 1, np.int64)
        np.cumsum(np.bincount(row_uid, minlength=order.size), out=gptr[1:])
        grows = rows[np.argsort(row_uid, kind="stable")].astype(idx)
        # Runs of distinct rows.
        brk = np.ones(order.size, bool)
        brk[1:] = (u_cls[1:] != u_cls[:-1]) | (u_anchor[1:] != u_anchor[:-1] + 1)
        run_u = np.flatnonzero(brk)
        run_len = np.diff(np.append(run_u, order.size))
        run_a = u_anchor[run_u]
        run_cls = u_cls[run_u]
        bounds = chunk_bounds(run_len * sizes[run_cls], chunks)
        lo, hi, off = _chunk_ranges(bounds, run_a, run_a + run_len + span[run_cls])
        return cls(
            uid=uid, gptr=gptr, grows=grows,
            run_u=run_u.astype(idx), run_len=run_len.astype(idx), run_a=run_a.astype(idx),
            run_cls=run_cls.astype(idx), cptr=cptr, coff=coff, cdat=data[take],
            bounds=bounds, lo=lo, hi=hi, off=off,
        )  # fmt: skip

    def row_roles(self, roles: np.ndarray) -> np.ndarray:
        """Per-run roles from per-row ones (1 scatter, 2 gather): a run whose rows disagree
        does both (exact: the extra terms multiply zeros)."""
        member = roles[self.grows].astype(np.int8)
        starts = self.gptr[self.run_u]
        lo = np.minimum.reduceat(member, starts) if starts.size else member[:0]
        hi = np.maximum.reduceat(member, starts) if starts.size else member[:0]
        return np.where(lo == hi, lo, 3).astype(np.int8)

    def work(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fresh work arrays for one thread: the scatter buffers, and per distinct row the
        gather and the Σ x."""
        rows = self.n_distinct
        return np.empty(int(self.off[-1])), np.empty(rows), np.empty(rows)

    def product(self, x, out, roles, deg, laplacian, work) -> None:
        buf, s, xs = work
        _run_product(
            x, s, xs, self.gptr, self.grows, self.run_u, self.run_len, self.run_a,
            self.run_cls, self.cptr, self.coff, self.cdat, self.bounds, self.lo, self.off,
            buf, roles,
        )  # fmt: skip
        _add_buffers(
            out, x, self.bounds, self.lo, self.hi, self.off, buf, deg, laplacian, s, self.uid,
        )  # fmt: skip


class SymmetricOperator:
    """``x ↦ A x`` and ``x ↦ (D − A) x`` for the weighted symmetric adjacency ``A`` of a graph,
    in float64, row-parallel, the same bits for any number of threads.

    A forward graph (every edge ``i → j`` has ``i < j``: every MGE and BGE) is multiplied from
    its own CSR ``W`` — ``A x = W x + Wᵀ x`` in one pass that gathers along each row and
    scatters into per-chunk buffers — so ``A`` is never built (a counting sort of 2·E entries)
    and each product reads E entries instead of 2·E; with ``compress`` (the default) the pass
    runs on the graph's :class:`RowRuns` when its rows repeat enough (``COMPRESSION``). Any
    other graph goes through :func:`symmetric_csr` (``max(W, Wᵀ)``, method §6) and the CSR
    kernels. Each thread multiplies with work arrays of its own, so one operator serves two
    solves running side by side.

    >>> import numpy as np, scipy.sparse as sp
    >>> w = sp.csr_array(np.array([[0, 2, 0], [0, 0, 3], [0, 0, 0]], dtype=np.float32))
    >>> op = SymmetricOperator(w)
    >>> op.matvec(np.ones(3)).tolist(), op.deg.tolist(), op.laplacian(np.ones(3)).tolist()
    ([2.0, 5.0, 3.0], [2.0, 5.0, 3.0], [0.0, 0.0, 0.0])
    """

    #: Scatter buffers: at most this many chunks, each about ``E / CHUNKS`` entries and at
    #: least ``CHUNK_ENTRIES`` (``RUN_CHUNK_ENTRIES`` in the run form, where a product costs so
    #: little per entry that zeroing and adding the buffers, each chunk's span of columns,
    #: outweighs a second thread below ~1 M entries: CONV-6 at s = 0.98, 16 → 3 chunks, both
    #: eigensolves 20 % faster). The chunks depend on the graph alone, never on the threads.
    CHUNKS = 16
    CHUNK_ENTRIES = 65536
    RUN_CHUNK_ENTRIES = 2**20
    #: Use the row-class form when its class table is at least this many times smaller than E.
    COMPRESSION = 8.0

    def __init__(self, adj: sp.sparray, *, forward: bool = True, compress: bool = True) -> None:
        w = sp.csr_array(adj)
        self.n = n = w.shape[0]
        self.forward = forward and bool(is_forward(w.indptr, w.indices))
        if not self.forward:
            self.sym = symmetric_csr(w, forward=False)
            self.deg = row_sums(self.sym)
            return
        self.sym = None
        self._local = threading.local()  # per thread: work arrays, a bipartite solve's roles
        self.w = w
        self.data = w.data.astype(np.float32, copy=False)
        nnz = w.nnz
        chunks = max(1, min(self.CHUNKS, nnz // self.CHUNK_ENTRIES or 1))
        run_chunks = max(1, min(self.CHUNKS, nnz // self.RUN_CHUNK_ENTRIES or 1))
        self.runs = RowRuns.build(w, self.data, self.COMPRESSION, run_chunks) if compress else None
        if self.runs is None:
            deg = np.diff(w.indptr)
            self.bounds = chunk_bounds(deg, chunks)  # rows, about E / chunks entries each
            full = deg > 0  # the column ranges come from the non-empty rows (sorted columns)
            starts = w.indices[w.indptr[:-1][full]]
            ends = w.indices[w.indptr[1:][full] - 1] + 1
            before = np.concatenate([[0], np.cumsum(full)])  # non-empty rows before each row
            self.lo, self.hi, self.off = _chunk_ranges(before[self.bounds], starts, ends)
        self.deg = np.zeros(n)
        self.deg = self.matvec(np.ones(n))

    def matvec(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``A @ x``."""
        return self._product(x, out, False)

    def laplacian(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``(D − A) @ x`` (``D`` the weighted degrees, ``L`` never formed)."""
        return self._product(x, out, True)

    def side_product(self, x: np.ndarray, side: np.ndarray, out: np.ndarray | None = None):
        """``A @ x`` for an ``x`` that is zero off ``side`` (a boolean node mask) on a graph with
        no edge inside ``side``: the result lives off ``side`` (zeros on it). On a bipartite
        graph this is ``B x`` or ``Bᵀ y``, at about half the random memory traffic of
        :meth:`matvec` (each edge does only its useful half of the gather/scatter)."""
        if self.sym is not None:
            out = self.matvec(x, out)
            out[side] = 0.0
            return out
        key = id(side)
        cache = getattr(self._local, "roles", None)
        if cache is None:
            cache = self._local.roles = {}
        if key not in cache:  # the two sides of a bipartite solve, kept for its duration
            if len(cache) >= 2:
                cache.clear()
            roles = np.where(side, 1, 2).astype(np.int8)
            if self.runs is not None:
                roles = self.runs.row_roles(roles)
            cache[key] = (side, roles)
        return self._product(x, out, False, cache[key][1])

    _ALL = np.zeros(0, np.int8)

    def _product(
        self, x: np.ndarray, out: np.ndarray | None, lap: bool, roles: np.ndarray = _ALL
    ) -> np.ndarray:
        out = np.empty(self.n) if out is None else out
        x = np.ascontiguousarray(x, dtype=np.float64)
        if self.sym is not None:
            return laplacian_matvec(self.sym, self.deg, x, out) if lap else matvec(self.sym, x, out)
        work = self._work()
        if self.runs is not None:
            self.runs.product(x, out, roles, self.deg, lap, work)
            return out
        w, buf = self.w, work[0]
        _forward_product(
            w.indptr, w.indices, self.data, x, out, self.bounds, self.lo, self.off, buf, roles
        )  # fmt: skip
        _add_buffers(
            out, x, self.bounds, self.lo, self.hi, self.off, buf, self.deg, lap, out,
            self._NO_UID,
        )  # fmt: skip
        return out

    def _work(self) -> tuple[np.ndarray, ...]:
        # Work arrays per thread, so that two solves (the radius and the gap running side by
        # side) can share one operator.
        work = getattr(self._local, "work", None)
        if work is None:
            work = self.runs.work() if self.runs is not None else (np.empty(int(self.off[-1])),)
            self._local.work = work
        return work

    _NO_UID = np.zeros(0, np.int32)

    def csr(self) -> sp.csr_array:
        """``A`` as a float64 CSR (built on demand: the small dense branches only)."""
        if self.sym is not None:
            return sp.csr_array(self.sym, dtype=np.float64)
        w = sp.csr_array(self.w, dtype=np.float64)
        return sp.csr_array(w + w.T)

    def toarray(self) -> np.ndarray:
        """The dense ``A`` (float64; small graphs only)."""
        if self.sym is not None:
            return self.sym.toarray().astype(np.float64)
        dense = self.w.toarray().astype(np.float64)
        return dense + dense.T


def matvec(a: sp.csr_array, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``A @ x`` in float64 (row-parallel; the same bits for any number of threads)."""
    out = np.empty(a.shape[0]) if out is None else out
    _matvec(a.indptr, a.indices, a.data, np.ascontiguousarray(x, dtype=np.float64), out)
    return out


def row_sums(a: sp.csr_array) -> np.ndarray:
    """Row sums in float64 (the weighted degrees of a symmetric adjacency)."""
    out = np.empty(a.shape[0])
    _row_sums(a.indptr, a.data, out)
    return out


def laplacian_matvec(
    a: sp.csr_array, deg: np.ndarray, x: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``(D − A) @ x`` without forming ``D − A``."""
    out = np.empty(a.shape[0]) if out is None else out
    _laplacian(a.indptr, a.indices, a.data, deg, np.ascontiguousarray(x, dtype=np.float64), out)
    return out


def rows_matvec(
    a: sp.csr_array, rows: np.ndarray, x: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``A[rows] @ x`` (``x`` of full length) without copying the rows."""
    out = np.empty(rows.size) if out is None else out
    _rows(a.indptr, a.indices, a.data, rows, np.ascontiguousarray(x, dtype=np.float64), out)
    return out
