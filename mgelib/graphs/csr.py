"""The encoder's CSR step, in parallel (numba): straight from the plan's steps
(:func:`steps_to_csr`, every plan whose steps cannot repeat an edge: see the comment above it),
or from an edge list (:func:`edges_to_csr`, the rest, and the reference the tests compare with).

scipy's ``csr_array((w, (src, tgt)))`` followed by ``sort_indices`` is a sequential counting
sort plus a sequential per-row sort: on CONV-6 pruned to s = 0.6 (172.6 M edges) it is most of
the encoding time. :func:`edges_to_csr` does the same in parallel and gives the same arrays:

1. the edge list is cut into chunks (about equal sizes, two per thread); each chunk counts its
   edges per source row, and a prefix over the chunks, in order, gives every chunk its own write
   positions in every row, so the rows come out in edge-list order whatever the number of
   chunks or threads;
2. edges are written straight into the CSR arrays (no intermediate copy: on a VM, touching
   fresh memory costs seconds per GiB); a row out of order is sorted as 64-bit keys
   ``target · 2³² + bits(|w|)``, which carries the weights along; rows already in order are
   only checked;
3. a row with two equal targets (parallel edges) is reported, and the caller merges them.

>>> import numpy as np
>>> src = np.array([1, 0, 0, 2], np.int32); tgt = np.array([2, 2, 1, 0], np.int32)
>>> w = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
>>> a, parallel = edges_to_csr(src, tgt, w, 3)
>>> a.indptr.tolist(), a.indices.tolist(), a.data.tolist(), parallel
([0, 2, 3, 4], [1, 2, 2, 0], [2.0, 1.0, 0.5, 3.0], 0)
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from numba import njit, prange

__all__ = ["edges_to_csr", "steps_to_csr"]

#: Chunks of the edge list (fewer when the chunks × V position table would pass 64 MiB).
CHUNKS = 16


@njit(parallel=True, cache=True)
def _rows(src, tgt, wbits, n, bounds, indices, data):  # pragma: no cover - compiled
    nch = bounds.size - 1
    pos = np.zeros((nch, n), np.int64)
    for c in prange(nch):
        for e in range(bounds[c], bounds[c + 1]):
            pos[c, src[e]] += 1
    indptr = np.zeros(n + 1, np.int64)
    for v in range(n):
        d = 0
        for c in range(nch):
            d += pos[c, v]
        indptr[v + 1] = indptr[v] + d
    for v in prange(n):
        at = indptr[v]
        for c in range(nch):
            t = pos[c, v]
            pos[c, v] = at
            at += t
    for c in prange(nch):
        for e in range(bounds[c], bounds[c + 1]):
            v = src[e]
            p = pos[c, v]
            indices[p] = tgt[e]
            data[p] = wbits[e]
            pos[c, v] = p + 1
    return indptr


def edges_to_csr(
    src: np.ndarray, tgt: np.ndarray, w: np.ndarray, n_nodes: int
) -> tuple[sp.csr_array, int]:
    """``(CSR with sorted rows, number of parallel edges)`` of the edge list ``src → tgt`` with
    float32 weights ``w``. With parallel edges the CSR keeps every copy (sorted, adjacent): the
    caller merges them as it sees fit."""
    if n_nodes >= 2**31:
        raise ValueError(f"edges_to_csr takes fewer than 2³¹ nodes, got {n_nodes:,}")
    m = int(src.size)
    wbits = np.ascontiguousarray(w, dtype=np.float32).view(np.uint32)
    # The result is the same for any number of chunks (each row ends up sorted, and ties keep
    # the edge list's order), so the chunks follow the threads: more only cost position tables.
    chunks = int(
        max(1, min(CHUNKS, 2 * numba.get_num_threads(), m // 65536, 2**23 // max(n_nodes, 1)))
    )
    bounds = np.linspace(0, m, chunks + 1).astype(np.int64)
    index_dtype = np.int32 if m < 2**31 else np.int64
    indices = np.empty(m, index_dtype)
    data = np.empty(m, np.uint32)
    indptr = _rows(src, tgt, wbits, n_nodes, bounds, indices, data)
    parallel = _finish_rows(indptr, indices, data.view(np.float32), chunks)
    out = sp.csr_array(
        (data.view(np.float32), indices, indptr.astype(index_dtype)), shape=(n_nodes, n_nodes)
    )
    out.has_sorted_indices = True
    return out, int(parallel)


# --------------------------------------------------------------------------- straight into CSR
# The MGE builder's fast path (``mge.build_mge`` when no step can repeat an edge): every conv,
# linear and identity step writes its edges straight into the CSR, with no edge list between.
# A first pass counts each source's out-edges (the row lengths), a second writes each edge at
# its row's cursor. Both go in parallel over the step's input channels: a source belongs to one
# input channel, so each thread owns its rows, and the result does not depend on the threads.
# The taps run in the order (input channel, output channel, kernel row descending, kernel column
# descending), so that each row receives its targets in increasing order (a larger kernel offset
# reads the same source from an earlier output position): the rows come out sorted, and
# `_finish_rows` only checks them (it sorts a row that another step's edges put out of order;
# it also finishes the edge-list path).


@njit(inline="always")
def _put(src, tgt, w, cursor, indices, data, fill):  # pragma: no cover - compiled
    # Count an edge of row `src` (fill=False), or write it at the row's cursor (fill=True).
    if fill:
        p = cursor[src]
        indices[p] = tgt
        data[p] = w
        cursor[src] = p + 1
    else:
        cursor[src] += 1


@njit(parallel=True, cache=True)
def _conv_pass(
    table, tap_start, o, a, b, w, ho, wo, sh, sw, dh, dw, base_out, cursor, indices, data, fill
):  # pragma: no cover - compiled
    m = table.shape[3]
    for g in prange(tap_start.size - 1):
        for t in range(tap_start[g], tap_start[g + 1]):
            c = a[t] * dh
            ci = b[t] * dw
            head = base_out + o[t] * (ho * wo)
            for yo in range(ho):
                for xo in range(wo):
                    for k in range(m):
                        src = table[g, yo * sh + c, xo * sw + ci, k]
                        if src >= 0:
                            _put(src, head + yo * wo + xo, w[t], cursor, indices, data, fill)


@njit(parallel=True, cache=True)
def _linear_pass(table, tap_start, o, w, base_out, cursor, indices, data, fill):  # pragma: no cover
    m = table.shape[1]
    for i in prange(tap_start.size - 1):
        for t in range(tap_start[i], tap_start[i + 1]):
            for k in range(m):
                src = table[i, k]
                if src >= 0:
                    _put(src, base_out + o[t], w[t], cursor, indices, data, fill)


@njit(parallel=True, cache=True)
def _identity_pass(table, base_out, cursor, indices, data, fill):  # pragma: no cover - compiled
    n, m = table.shape
    for e in prange(n):
        for k in range(m):
            src = table[e, k]
            if src >= 0:
                _put(src, base_out + e, np.float32(1.0), cursor, indices, data, fill)


@njit(parallel=True, cache=True)
def _finish_rows(indptr, indices, data, chunks):  # pragma: no cover - compiled
    # Sort the rows that are out of order (as 64-bit keys target · 2³² + bits(w)), count repeats.
    n = indptr.size - 1
    widest = 0
    for v in range(n):
        widest = max(widest, indptr[v + 1] - indptr[v])
    step = (n + chunks - 1) // chunks
    parallel = 0
    bits = data.view(np.uint32)
    for c in prange(chunks):
        keys = np.empty(widest, np.uint64)
        for v in range(c * step, min(n, (c + 1) * step)):
            lo = indptr[v]
            hi = indptr[v + 1]
            ordered = True
            for k in range(lo + 1, hi):
                if indices[k] < indices[k - 1]:
                    ordered = False
                    break
            if not ordered:
                for k in range(lo, hi):
                    keys[k - lo] = (np.uint64(indices[k]) << np.uint64(32)) | np.uint64(bits[k])
                row = keys[: hi - lo]
                row.sort()
                for k in range(lo, hi):
                    indices[k] = row[k - lo] >> np.uint64(32)
                    bits[k] = row[k - lo] & np.uint64(0xFFFFFFFF)
            for k in range(lo + 1, hi):
                if indices[k] == indices[k - 1]:
                    parallel += 1
    return parallel


def steps_to_csr(passes, n_nodes: int, n_edges: int) -> tuple[sp.csr_array, int]:  # noqa: ANN001
    """``(CSR with sorted rows, number of parallel edges)`` from ``passes``: callables
    ``run(cursor, indices, data, fill)`` (one per step, see the comment above) that count each
    source's edges into ``cursor`` (``fill=False``) and then write them at it (``fill=True``)."""
    index_dtype = np.int32 if n_edges < 2**31 and n_nodes < 2**31 else np.int64
    counts = np.zeros(n_nodes, np.int64)
    empty_i, empty_w = np.empty(0, index_dtype), np.empty(0, np.float32)
    for run in passes:
        run(counts, empty_i, empty_w, False)
    indptr = np.zeros(n_nodes + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    if int(indptr[-1]) != n_edges:  # pragma: no cover - the count and the passes share geometry
        raise RuntimeError(
            f"internal error: counted {n_edges} edges but the passes make {indptr[-1]}"
        )
    cursor = indptr[:-1].copy()
    indices = np.empty(n_edges, index_dtype)
    data = np.empty(n_edges, np.float32)
    for run in passes:
        run(cursor, indices, data, True)
    chunks = int(max(1, min(CHUNKS, 2 * numba.get_num_threads(), n_nodes // 4096 or 1)))
    parallel = _finish_rows(indptr, indices, data, chunks)
    out = sp.csr_array((data, indices, indptr.astype(index_dtype)), shape=(n_nodes, n_nodes))
    out.has_sorted_indices = True
    return out, int(parallel)
