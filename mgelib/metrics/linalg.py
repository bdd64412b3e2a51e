"""Multi-threaded sparse kernels for the eigensolves (numba, ``prange`` over CSR rows).

The solvers go through :class:`SymmetricOperator`. On a forward graph (every edge ``i → j`` has
``i < j``, as in every MGE and BGE) it multiplies by ``A = W + Wᵀ`` straight from the graph's CSR
— one pass that gathers along each row and scatters into per-chunk buffers — so ``A`` is never
built, and on a bipartite graph :meth:`SymmetricOperator.side_product` gives ``B x`` and ``Bᵀ y``
doing only the useful half of that pass. Any other graph is multiplied through
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

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from mgelib.metrics.kernels import is_forward

# numba would pick the OpenMP layer (torch's libgomp), whose threads spin at every barrier: on a
# busy machine a descheduled thread then stalls the spinning one (seen: a Laplacian mat-vec
# waiting in gomp_team_barrier_wait_end). The workqueue layer sleeps instead. A layer the
# user chose (NUMBA_THREADING_LAYER) is left alone.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

__all__ = [
    "available_cores",
    "resolve_jobs",
    "symmetric_csr",
    "matvec",
    "laplacian_matvec",
    "rows_matvec",
    "row_sums",
    "SymmetricOperator",
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


@njit(cache=True)
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


@njit(parallel=True, cache=True)
def _matvec(ptr, ind, dat, x, out):  # pragma: no cover - compiled
    for i in prange(ptr.size - 1):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k] * x[ind[k]]
        out[i] = s


@njit(parallel=True, cache=True)
def _laplacian(ptr, ind, dat, deg, x, out):  # pragma: no cover - compiled
    for i in prange(ptr.size - 1):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k] * x[ind[k]]
        out[i] = deg[i] * x[i] - s


@njit(parallel=True, cache=True)
def _rows(ptr, ind, dat, rows, x, out):  # pragma: no cover - compiled
    for r in prange(rows.size):
        i = rows[r]
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k] * x[ind[k]]
        out[r] = s


@njit(parallel=True, cache=True)
def _row_sums(ptr, dat, out):  # pragma: no cover - compiled
    for i in prange(ptr.size - 1):
        s = 0.0
        for k in range(ptr[i], ptr[i + 1]):
            s += dat[k]
        out[i] = s


@njit(parallel=True, cache=True)
def _forward_product(
    ptr, ind, dat, x, out, bounds, lo, hi, off, buf, deg, laplacian, roles
):  # pragma: no cover
    # A x = W x + Wᵀ x from W alone. Chunk c (rows bounds[c]..bounds[c+1], about equal numbers
    # of entries) gathers W x for its rows and scatters its part of Wᵀ x into a private buffer
    # over the columns it touches (lo[c]..hi[c]); the buffers are then added in chunk order.
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
    # Add the buffers, each node's in chunk order, in blocks of nodes (each block visits only
    # the chunks whose columns overlap it).
    n = ptr.size - 1
    blocks = 64
    size = (n + blocks - 1) // blocks
    for b in prange(blocks):
        b0 = b * size
        b1 = min(n, b0 + size)
        for c in range(bounds.size - 1):
            a0 = max(b0, lo[c])
            a1 = min(b1, hi[c])
            shift = off[c] - lo[c]
            for i in range(a0, a1):
                out[i] += buf[shift + i]
        if laplacian:
            for i in range(b0, b1):
                out[i] = deg[i] * x[i] - out[i]


class SymmetricOperator:
    """``x ↦ A x`` and ``x ↦ (D − A) x`` for the weighted symmetric adjacency ``A`` of a graph,
    in float64, row-parallel, the same bits for any number of threads.

    A forward graph (every edge ``i → j`` has ``i < j``: every MGE and BGE) is multiplied from
    its own CSR ``W`` — ``A x = W x + Wᵀ x`` in one pass that gathers along each row and
    scatters into per-chunk buffers — so ``A`` is never built (a counting sort of 2·E entries)
    and each product reads E entries instead of 2·E. Any other graph goes through
    :func:`symmetric_csr` (``max(W, Wᵀ)``, method §6) and the CSR kernels.

    >>> import numpy as np, scipy.sparse as sp
    >>> w = sp.csr_array(np.array([[0, 2, 0], [0, 0, 3], [0, 0, 0]], dtype=np.float32))
    >>> op = SymmetricOperator(w)
    >>> op.matvec(np.ones(3)).tolist(), op.deg.tolist(), op.laplacian(np.ones(3)).tolist()
    ([2.0, 5.0, 3.0], [2.0, 5.0, 3.0], [0.0, 0.0, 0.0])
    """

    #: Scatter buffers: at most this many chunks, each about ``E / CHUNKS`` entries.
    CHUNKS = 16

    def __init__(self, adj: sp.sparray, *, forward: bool = True) -> None:
        w = sp.csr_array(adj)
        self.n = n = w.shape[0]
        self.forward = forward and bool(is_forward(w.indptr, w.indices))
        if not self.forward:
            self.sym = symmetric_csr(w, forward=False)
            self.deg = row_sums(self.sym)
            return
        self.sym = None
        self._roles: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.w = w
        self.data = w.data.astype(np.float32, copy=False)
        nnz = w.nnz
        chunks = max(1, min(self.CHUNKS, nnz // 65536 or 1))
        cuts = np.searchsorted(w.indptr, np.linspace(0, nnz, chunks + 1)[1:-1], side="left")
        self.bounds = np.unique(np.concatenate([[0], cuts, [n]])).astype(np.int64)
        first = w.indptr[self.bounds[:-1]]
        last = w.indptr[self.bounds[1:]]
        lo = np.full(self.bounds.size - 1, n, np.int64)
        hi = np.zeros(self.bounds.size - 1, np.int64)
        for c, (a, b) in enumerate(zip(first, last)):  # ≤ 16 chunks: one min/max each
            if b > a:
                cols = w.indices[a:b]
                lo[c], hi[c] = int(cols.min()), int(cols.max()) + 1
        hi = np.maximum(hi, lo)
        self.lo, self.hi = lo, hi
        self.off = np.concatenate([[0], np.cumsum(hi - lo)]).astype(np.int64)
        self.buf = np.empty(int(self.off[-1]))
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
        if key not in self._roles:  # the two sides of a bipartite solve, kept for its duration
            if len(self._roles) >= 2:
                self._roles.clear()
            self._roles[key] = (side, np.where(side, 1, 2).astype(np.int8))
        return self._product(x, out, False, self._roles[key][1])

    _ALL = np.zeros(0, np.int8)

    def _product(
        self, x: np.ndarray, out: np.ndarray | None, lap: bool, roles: np.ndarray = _ALL
    ) -> np.ndarray:
        out = np.empty(self.n) if out is None else out
        x = np.ascontiguousarray(x, dtype=np.float64)
        if self.sym is not None:
            return laplacian_matvec(self.sym, self.deg, x, out) if lap else matvec(self.sym, x, out)
        w = self.w
        _forward_product(
            w.indptr, w.indices, self.data, x, out,
            self.bounds, self.lo, self.hi, self.off, self.buf, self.deg, lap, roles,
        )  # fmt: skip
        return out

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
