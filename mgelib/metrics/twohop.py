"""The 2-hop neighbourhood sizes of an MGE from its translation symmetry (exact integers).

A convolution's mask is shared by every position of a channel pair, so the out-neighbourhood of
node ``(c, y, x)`` is the same set of *offsets* at every interior position; so is the 2-hop
neighbourhood. Counting it node by node costs ``Σ_u indeg(u)·outdeg(u)`` (CONV-6 pruned to
s = 0.6: ~10¹⁰ steps); counting it once per class of equivalent nodes costs a few passes over
the edges plus the explicit count of one node per class.

Nodes are placed in one absolute frame: partition ``q`` of shape ``(C, H, W)`` puts node
``(c, y, x)`` at ``(Y, X) = (y·S/H, x·S/W)`` with ``S`` the least common multiple of every
partition's size (a pooled or strided partition is coarser), and a node of a flat partition
``(F,)`` at ``(0, 0)``. An edge ``v → u`` is described relative to ``v`` by
``(q_u, c_u, Y_u − Y_v, X_u − X_v)``; given ``v`` this tuple names ``u``. Then

- ``h1(u)``: a hash of the set of tuples of ``u``'s out-edges;
- ``h2(v)``: a hash of ``(p_v, c_v)`` and of the set of ``(tuple(v → u), h1(u))``.

Two nodes with equal ``h2`` have 2-hop neighbourhoods that are the same set of relative tuples
(the tuple of ``w`` reached through ``u`` is ``tuple(v → u)`` shifted by ``tuple(u → w)``), hence
the same size, whatever the layers are: borders, padding, pooling windows, strides, shortcuts and
the intra-partition edges of ``compat="mge-snn"`` only make more classes, never a wrong count.
The hashes are sums of two independent 64-bit mixes per element (order-free set hashes): a false
merge of two classes needs a simultaneous collision of both, odds ~2⁻¹²⁸ per pair. One node per
class is then counted explicitly, in parallel: a node that feeds a narrow layer densely (a
classifier's inputs: at most one 64-bit word per four out-edges) keeps its out-neighbours as a
bitset, which the count ORs in instead of visiting its edges (CONV-6 pruned to s = 0.6: the
last conv layers' classes count 10–30× faster); every other node is visited as in
:func:`mgelib.metrics.kernels.reach_two`.

>>> import numpy as np, scipy.sparse as sp
>>> chain = sp.csr_array((np.ones(3), ([0, 1, 2], [1, 2, 3])), shape=(4, 4))
>>> two_hop_sizes(chain, [1, 1, 1, 1], [(1,)] * 4).tolist()
[3, 3, 2, 1]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from mgelib.metrics.kernels import parallel_kernel, reach_two

__all__ = ["node_frame", "two_hop_sizes", "two_hop_classes"]

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_M3 = np.uint64(0xFF51AFD7ED558CCD)
_M4 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLD = np.uint64(0x9E3779B97F4A7C15)


@njit(inline="always")
def _mix_a(z):  # pragma: no cover - compiled (splitmix64's finaliser)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _mix_b(z):  # pragma: no cover - compiled (murmur3's fmix64)
    z = (z ^ (z >> np.uint64(33))) * _M3
    z = (z ^ (z >> np.uint64(33))) * _M4
    return z ^ (z >> np.uint64(33))


@njit(inline="always")
def _encode(q, c, dy, dx):  # pragma: no cover - compiled
    z = _mix_a(np.uint64(q) * _GOLD + np.uint64(c))
    z = _mix_a(z + np.uint64(dy + 2**31))
    return z + np.uint64(dx + 2**31) * _GOLD


@parallel_kernel
def _hash_out(indptr, indices, part, chan, ys, xs):  # pragma: no cover - compiled
    n = indptr.size - 1
    ha = np.zeros(n, np.uint64)
    hb = np.zeros(n, np.uint64)
    for v in prange(n):
        sa = np.uint64(0)
        sb = np.uint64(0)
        for k in range(indptr[v], indptr[v + 1]):
            u = indices[k]
            z = _encode(part[u], chan[u], ys[u] - ys[v], xs[u] - xs[v])
            sa += _mix_a(z)
            sb += _mix_b(z ^ _GOLD)
        ha[v] = sa
        hb[v] = sb
    return ha, hb


@parallel_kernel
def _hash_two(indptr, indices, part, chan, ys, xs, ha, hb):  # pragma: no cover - compiled
    n = indptr.size - 1
    ka = np.zeros(n, np.uint64)
    kb = np.zeros(n, np.uint64)
    for v in prange(n):
        own = _encode(part[v], chan[v], 0, 0)
        sa = _mix_a(own ^ _M4)
        sb = _mix_b(own ^ _M1)
        for k in range(indptr[v], indptr[v + 1]):
            u = indices[k]
            z = _encode(part[u], chan[u], ys[u] - ys[v], xs[u] - xs[v])
            sa += _mix_a(z ^ _mix_b(ha[u]))
            sb += _mix_b(z ^ _mix_a(hb[u] + _GOLD))
        ka[v] = sa
        kb[v] = sb
    return ka, kb


#: A node's out-neighbours are kept as a bitset when its column window has at most
#: ``1 / _BITSET_FACTOR`` as many 64-bit words as it has out-edges (the nodes that feed a
#: narrow layer: a classifier's inputs); a 2-hop count then ORs its words instead of visiting
#: its edges. ``_MAX_WORDS``: the widest window one count may OR into (32 KiB per thread).
_BITSET_FACTOR = 4
_MAX_WORDS = 4096


@njit(cache=True, nogil=True)
def _popcount(z):  # pragma: no cover - compiled
    z = z - ((z >> np.uint64(1)) & np.uint64(0x5555555555555555))
    z = (z & np.uint64(0x3333333333333333)) + ((z >> np.uint64(2)) & np.uint64(0x3333333333333333))
    z = (z + (z >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (z * np.uint64(0x0101010101010101)) >> np.uint64(56)


@parallel_kernel
def _bitsets(indptr, indices, factor):  # pragma: no cover - compiled
    # Per node: first word (column // 64) and number of words of its bitset (0: none).
    n = indptr.size - 1
    start = np.zeros(n, np.int64)
    words = np.zeros(n, np.int64)
    for u in prange(n):
        d = indptr[u + 1] - indptr[u]
        if d >= 2 * factor:
            lo = indices[indptr[u]]
            hi = lo
            for k in range(indptr[u], indptr[u + 1]):
                lo = min(lo, indices[k])
                hi = max(hi, indices[k])
            w = (hi >> 6) - (lo >> 6) + 1
            if w * factor <= d:
                start[u] = lo >> 6
                words[u] = w
    off = np.zeros(n + 1, np.int64)
    for u in range(n):
        off[u + 1] = off[u] + words[u]
    bits = np.zeros(off[n], np.uint64)
    for u in prange(n):
        if words[u]:
            base = off[u] - start[u]
            for k in range(indptr[u], indptr[u + 1]):
                c = indices[k]
                bits[base + (c >> 6)] |= np.uint64(1) << np.uint64(c & 63)
    return start, words, off, bits


@njit(inline="always")
def _add_node(e, lo, hi, local, stamp, tag):  # pragma: no cover - compiled
    # 1 if e is new to the current set (a bit of `local` inside the window, else a stamp).
    word = e >> 6
    if lo <= word < hi:
        bit = np.uint64(1) << np.uint64(e & 63)
        if local[word - lo] & bit:
            return 0
        local[word - lo] |= bit
        return 1
    if stamp[e] == tag:
        return 0
    stamp[e] = tag
    return 1


@parallel_kernel
def _two_hop_rows(
    indptr, indices, rows, n, n_chunks, start, words, off, bits, max_words
):  # pragma: no cover - compiled
    # |{v} ∪ N(v) ∪ N(N(v))| for each v in `rows`. The out-neighbours of a node with a bitset
    # are OR-ed in as words; everything else is visited, inside the window as bits, outside
    # it with stamps: each node is counted once.
    out = np.empty(rows.size, np.int64)
    step = (rows.size + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        stamp = np.zeros(n, np.int64)
        local = np.zeros(max_words, np.uint64)
        for r in range(ch * step, min(rows.size, (ch + 1) * step)):
            v = rows[r]
            tag = r + 1
            lo = np.int64(2**62)
            hi = np.int64(0)
            for a in range(indptr[v], indptr[v + 1]):
                u = indices[a]
                if words[u]:
                    lo = min(lo, start[u])
                    hi = max(hi, start[u] + words[u])
            if hi <= lo or hi - lo > max_words:
                # no neighbour with a bitset, or too wide a window: visit every edge
                out[r] = reach_two(indptr, indices, v, stamp, tag)
                continue
            count = 0
            for t in range(hi - lo):
                local[t] = 0
            for a in range(indptr[v], indptr[v + 1]):
                u = indices[a]
                if words[u]:
                    b0 = start[u] - lo
                    for t in range(words[u]):
                        local[b0 + t] |= bits[off[u] + t]
            for t in range(hi - lo):
                count += _popcount(local[t])
            count += _add_node(v, lo, hi, local, stamp, tag)
            for a in range(indptr[v], indptr[v + 1]):
                u = indices[a]
                count += _add_node(u, lo, hi, local, stamp, tag)
                if not words[u]:
                    for b in range(indptr[u], indptr[u + 1]):
                        count += _add_node(indices[b], lo, hi, local, stamp, tag)
            out[r] = count
    return out


def _count_rows(adj: sp.csr_array, rows: np.ndarray, n_chunks: int) -> np.ndarray:
    """Explicit 2-hop sizes of ``rows`` (bitsets for the nodes that feed narrow layers)."""
    start, words, off, bits = _bitsets(adj.indptr, adj.indices, _BITSET_FACTOR)
    return _two_hop_rows(
        adj.indptr, adj.indices, rows, adj.shape[0], max(1, min(n_chunks, rows.size)),
        start, words, off, bits, _MAX_WORDS,
    )  # fmt: skip


#: Below this many stamp steps per edge (``Σ_u indeg·outdeg / E``) the explicit count is cheaper
#: than the two hashing passes (CONV-6 at s = 0.98: ~10 steps per edge; at s = 0.9: ~50).
_EXPLICIT_FACTOR = 16.0


def node_frame(
    dims: Sequence[int], shapes: Sequence[tuple[int, ...]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(partition, channel, Y, X)`` of every node in the common frame (module docstring)."""
    # Any injective placement gives exact counts; one that matches the layers' geometry gives
    # few classes: a padded input (34 × 34 around 32 × 32) has the scale of what it feeds, a
    # pooled or strided partition (16 × 16) a coarser one.
    heights = [s[1] for s in shapes if len(s) == 3]
    widths = [s[2] for s in shapes if len(s) == 3]
    top_h, top_w = max(heights, default=1), max(widths, default=1)
    parts, chans, ys, xs = [], [], [], []
    for p, (d, shape) in enumerate(zip(dims, shapes)):
        d = int(d)
        parts.append(np.full(d, p, np.int64))
        if len(shape) == 3:
            c, h, w = shape
            local = np.arange(d)
            chans.append(local // (h * w))
            ys.append((local // w) % h * max(1, round(top_h / h)))
            xs.append(local % w * max(1, round(top_w / w)))
        else:
            chans.append(np.arange(d))
            ys.append(np.zeros(d, np.int64))
            xs.append(np.zeros(d, np.int64))

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, np.int64)

    return cat(parts), cat(chans), cat(ys), cat(xs)


def two_hop_classes(
    adj: sp.csr_array, dims: Sequence[int], shapes: Sequence[tuple[int, ...]]
) -> tuple[np.ndarray, np.ndarray]:
    """``(representatives, class of each node)``: nodes whose 2-hop neighbourhoods are the same
    set of relative positions share a class; ``representatives[k]`` is the first node of class
    ``k``."""
    adj = sp.csr_array(adj)
    part, chan, ys, xs = node_frame(dims, shapes)
    indptr, indices = adj.indptr, adj.indices
    ha, hb = _hash_out(indptr, indices, part, chan, ys, xs)
    ka, kb = _hash_two(indptr, indices, part, chan, ys, xs, ha, hb)
    # Classes by the first hash (a 1-D unique: 10× faster than pairs); the second must then be
    # constant within each class, else two classes share a first hash and the pairs decide.
    _, first, cls = np.unique(ka, return_index=True, return_inverse=True)
    cls = cls.ravel()
    if not np.array_equal(kb, kb[first][cls]):
        keys = np.empty((adj.shape[0], 2), np.uint64)
        keys[:, 0], keys[:, 1] = ka, kb
        _, first, cls = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first.astype(np.int64), cls.ravel().astype(np.int64)


def two_hop_sizes(
    adj: sp.sparray,
    dims: Sequence[int],
    shapes: Sequence[tuple[int, ...]],
    *,
    n_chunks: int = 64,
) -> np.ndarray:
    """Nodes within two out-steps of each node, the node itself included (one explicit count per
    class of :func:`two_hop_classes`; every node explicitly when that is cheaper, on a sparse
    graph)."""
    adj = sp.csr_array(adj)
    n = adj.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    outdeg = np.diff(adj.indptr).astype(np.float64)
    indeg = np.bincount(adj.indices, minlength=n).astype(np.float64)
    if float(indeg @ outdeg) <= _EXPLICIT_FACTOR * adj.nnz:
        # A sparse graph: the explicit count costs about as much as hashing the edges twice.
        return _count_rows(adj, np.arange(n, dtype=np.int64), n_chunks)
    reps, cls = two_hop_classes(adj, dims, shapes)
    return _count_rows(adj, reps, n_chunks)[cls]
