"""The encoder's edge list → CSR step, in parallel (numba).

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

__all__ = ["edges_to_csr"]

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
    # Sort the rows that are out of order (one key buffer per block of rows), count repeats.
    widest = 0
    for v in range(n):
        widest = max(widest, indptr[v + 1] - indptr[v])
    step = (n + nch - 1) // max(nch, 1)
    parallel = 0
    for c in prange(nch):
        keys = np.empty(widest, np.uint64)
        for v in range(c * step, min(n, (c + 1) * step)):
            a = indptr[v]
            b = indptr[v + 1]
            ordered = True
            for k in range(a + 1, b):
                if indices[k] < indices[k - 1]:
                    ordered = False
                    break
            if not ordered:
                for k in range(a, b):
                    keys[k - a] = (np.uint64(indices[k]) << np.uint64(32)) | np.uint64(data[k])
                row = keys[: b - a]
                row.sort()
                for k in range(a, b):
                    indices[k] = row[k - a] >> np.uint64(32)
                    data[k] = row[k - a] & np.uint64(0xFFFFFFFF)
            for k in range(a + 1, b):
                if indices[k] == indices[k - 1]:
                    parallel += 1
    return indptr, parallel


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
    indptr, parallel = _rows(src, tgt, wbits, n_nodes, bounds, indices, data)
    out = sp.csr_array(
        (data.view(np.float32), indices, indptr.astype(index_dtype)), shape=(n_nodes, n_nodes)
    )
    out.has_sorted_indices = True
    return out, int(parallel)
