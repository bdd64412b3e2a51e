"""Build the multipartite graph encoding (MGE) from a traced plan and masked weights.

Everything here is vectorised index arithmetic: for each conv layer and each kernel offset
``(dy, dx)`` (at most k² iterations per layer — never a loop over edges or positions) the kept taps
of that offset are broadcast against the output positions they reach. The exact edge count is
computed first, from the masks alone, so an encoding that would not fit the memory budget is
refused before anything large is allocated (method §5.1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mgelib.graphs import compat as compat_rule
from mgelib.graphs import csr
from mgelib.graphs.csr import edges_to_csr
from mgelib.graphs.graph import Graph
from mgelib.graphs.trace import ConvStep, IdentityStep, Plan

__all__ = [
    "LayerWeights",
    "GraphTooLarge",
    "count_edges",
    "exact_edges",
    "build_mge",
    "check_budget",
    "available_memory",
    "BYTES_PER_EDGE",
]

#: Peak bytes per edge while building: int32 source + target + float32 weight (12 B) during
#: construction, then the CSR copy (8 B) and scipy's index sort scratch (≈4 B).
BYTES_PER_EDGE = 24

#: Upper bound on elements broadcast at once (keeps temporaries around 100 MB).
_CHUNK = 4_000_000
#: Write plain plans straight into the CSR (``csr.steps_to_csr``); False: always through the
#: edge list (the reference path, kept for plans with parallel edges or the authors' numbering).
DIRECT = True


class GraphTooLarge(ValueError):
    """The estimated graph exceeds ``max_edges`` or the memory budget."""


@dataclass
class LayerWeights:
    """Kept pattern and edge weights of one layer."""

    kept: np.ndarray  # bool, the weight's shape
    weight: np.ndarray | None  # float32 |w| (or 1 for binary), same shape; None: count only
    groups: int = 1  # conv groups (1, or in_channels for a depthwise conv)


def available_memory() -> int:
    """Bytes of memory available to this process (``MemAvailable``, or a conservative guess)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3


# --------------------------------------------------------------------------- geometry helpers
def _conv_slice(step: ConvStep, a: int, b: int) -> np.ndarray:
    """The input table positions that kernel offset ``(a, b)`` reads, one per output position:
    row ``y_o·s + a·d`` of the padded table (stride ``s``, dilation ``d``)."""
    _, ho, wo = step.out_shape
    sh, sw = step.stride
    dh, dw = step.dilation
    y0, x0 = a * dh, b * dw
    return step.table[:, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw, :]


def _input_channel(step: ConvStep, o: np.ndarray, i: np.ndarray) -> np.ndarray:
    """Input channel read by tap ``(o, i)``: channel ``i`` of output channel ``o``'s group (block
    diagonal; ``groups = C_in`` is depthwise, ``o // multiplier``)."""
    if step.groups == 1:
        return i
    c_out = step.out_shape[0]
    c_in = step.table.shape[0]
    return (o // (c_out // step.groups)) * (c_in // step.groups) + i


# --------------------------------------------------------------------------- counting
def count_edges(plan: Plan, weights: Mapping[str, LayerWeights], compat: str | None = None) -> int:
    """Edges the plan yields for these masks before parallel edges are merged: exact when
    ``plan.may_duplicate`` is false, an upper bound otherwise."""
    return int(sum(_count_step(step, weights, compat) for step in plan.steps))


def _count_step(step: ConvStep | IdentityStep, weights: Mapping[str, LayerWeights], compat) -> int:
    if isinstance(step, IdentityStep):
        return int((step.table >= 0).sum())
    kept = weights[step.param].kept
    if step.kind == "linear":
        per_input = (step.table >= 0).sum(axis=1)  # (F_in,)
        return int((kept.sum(axis=0).astype(np.int64) * per_input).sum())
    kh, kw = step.kernel
    if compat_rule.applies(step, compat):
        return compat_rule.count(step, kept)
    c_in = step.table.shape[0]
    per = np.empty((c_in, kh, kw), dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            per[:, a, b] = (_conv_slice(step, a, b) >= 0).sum(axis=(1, 2, 3))
    if step.groups == 1:
        return int((kept.sum(axis=0).astype(np.int64) * per).sum())
    o, i = np.meshgrid(np.arange(kept.shape[0]), np.arange(kept.shape[1]), indexing="ij")
    return int((kept.astype(np.int64) * per[_input_channel(step, o, i)]).sum())


# --------------------------------------------------------------------------- building
class _EdgeBuffer:
    def __init__(self, n_edges: int, index_dtype: type) -> None:
        self.src = np.empty(n_edges, dtype=index_dtype)
        self.tgt = np.empty(n_edges, dtype=index_dtype)
        self.w = np.empty(n_edges, dtype=np.float32)
        self.n = 0

    def add(self, src: np.ndarray, tgt: np.ndarray, w: np.ndarray) -> None:
        k = src.size
        self.src[self.n : self.n + k] = src
        self.tgt[self.n : self.n + k] = tgt
        self.w[self.n : self.n + k] = w
        self.n += k


def _taps_by_offset(step: ConvStep, lw: LayerWeights):  # noqa: ANN202 - a generator
    """The kept taps of a conv grouped by kernel offset: yields ``(dy, dx, out_channel, in_channel,
    |w|)`` arrays, one group per offset that has kept taps (at most k² groups)."""
    o, i, dy, dx = np.nonzero(lw.kept)
    wv = lw.weight[o, i, dy, dx]
    ig = _input_channel(step, o, i)
    kh, kw = step.kernel
    for a in range(kh):
        for b in range(kw):
            sel = np.flatnonzero((dy == a) & (dx == b))
            if sel.size:
                yield a, b, o[sel], ig[sel], wv[sel]


def _emit_conv(step: ConvStep, lw: LayerWeights, base_out: int, buf: _EdgeBuffer) -> None:
    _, ho, wo = step.out_shape
    pos = np.arange(ho * wo, dtype=np.int64).reshape(ho, wo)
    for a, b, o, ig, wv in _taps_by_offset(step, lw):
        sl = _conv_slice(step, a, b)  # (C_in, Ho, Wo, m)
        step_taps = max(1, _CHUNK // max(ho * wo * sl.shape[-1], 1))
        for start in range(0, o.size, step_taps):
            chunk = slice(start, start + step_taps)
            src = sl[ig[chunk]]  # (K, Ho, Wo, m)
            tgt = base_out + o[chunk, None, None] * (ho * wo) + pos[None]  # (K, Ho, Wo)
            tgt = np.broadcast_to(tgt[..., None], src.shape)
            w = np.broadcast_to(wv[chunk, None, None, None], src.shape)
            valid = src >= 0
            buf.add(src[valid], tgt[valid], w[valid])


def _emit_linear(step: ConvStep, lw: LayerWeights, base_out: int, buf: _EdgeBuffer) -> None:
    o, i = np.nonzero(lw.kept)
    wv = lw.weight[o, i]
    m = step.table.shape[-1]
    step_taps = max(1, _CHUNK // m)
    for start in range(0, o.size, step_taps):
        sl = slice(start, start + step_taps)
        src = step.table[i[sl]]  # (K, m)
        tgt = np.broadcast_to((base_out + o[sl])[:, None], src.shape)
        w = np.broadcast_to(wv[sl, None], src.shape)
        valid = src >= 0
        buf.add(src[valid], tgt[valid], w[valid])


def _emit_identity(step: IdentityStep, base_out: int, buf: _EdgeBuffer) -> None:
    elems = int(np.prod(step.table.shape[:-1]))
    src = step.table.reshape(elems, -1)
    tgt = np.broadcast_to((base_out + np.arange(elems, dtype=np.int64))[:, None], src.shape)
    valid = src >= 0
    buf.add(src[valid], tgt[valid], np.ones(int(valid.sum()), np.float32))


def _merged_csr(buf: _EdgeBuffer, n_nodes: int) -> tuple[sp.csr_array, int]:
    """CSR of the buffer with parallel edges merged, keeping the largest |w| (so every edge
    weight is one real weight's magnitude): one sort of the int64 keys ``src·V + tgt``, a
    ``maximum.reduceat`` per key, and the CSR arrays read straight off the sorted keys."""
    key = buf.src.astype(np.int64) * n_nodes + buf.tgt.astype(np.int64)
    order = np.argsort(key)
    key = key[order]
    first = np.ones(key.size, dtype=bool)
    first[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(first)
    w = np.maximum.reduceat(buf.w[order], starts) if starts.size else buf.w[:0]
    del order
    key = key[starts]
    src, tgt = np.divmod(key, n_nodes)
    index_dtype = buf.src.dtype
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n_nodes), out=indptr[1:])
    adjacency = sp.csr_array(
        (w.astype(np.float32), tgt.astype(index_dtype), indptr.astype(index_dtype)),
        shape=(n_nodes, n_nodes),
    )
    adjacency.has_sorted_indices = True
    return adjacency, int(buf.n - key.size)


def _one_owner(table: np.ndarray) -> bool:
    """Whether every source id in ``table`` (groups × …) appears under one group only: the
    condition for writing the groups' rows in parallel."""
    flat = table.reshape(table.shape[0], -1)
    group, _ = np.nonzero(flat >= 0)
    src = flat[flat >= 0].astype(np.int64)
    if src.size == 0:
        return True
    order = np.argsort(src, kind="stable")
    src, group = src[order], group[order]
    same = src[1:] == src[:-1]
    return not np.any(same & (group[1:] != group[:-1]))


def _direct_passes(plan: Plan, weights: Mapping[str, LayerWeights], bases: list[int]):  # noqa: ANN202
    """One ``run(cursor, indices, data, fill)`` per step for :func:`csr.steps_to_csr`, or
    ``None`` when some step reads a source under two input channels (two threads would share
    its row). The caller sends plans with the authors' strided numbering, or that may repeat an
    edge, to the edge-list path first."""
    passes = []
    for step in plan.steps:
        base_out = bases[step.target]
        if isinstance(step, IdentityStep):
            table = step.table.reshape(int(np.prod(step.table.shape[:-1])), -1)
            if not _one_owner(table):
                return None
            passes.append(
                lambda cur, ind, dat, fill, t=table, b=base_out: csr._identity_pass(
                    t, b, cur, ind, dat, fill
                )
            )
            continue
        lw = weights[step.param]
        if not _one_owner(step.table):
            return None
        if step.kind == "linear":
            o, i = np.nonzero(lw.kept)
            w = lw.weight[o, i].astype(np.float32)
            order = np.lexsort((o, i))  # by input, then output: each row in target order
            start = np.zeros(step.table.shape[0] + 1, np.int64)
            np.cumsum(np.bincount(i, minlength=step.table.shape[0]), out=start[1:])
            args = (step.table, start, o[order].astype(np.int64), w[order], base_out)
            passes.append(
                lambda cur, ind, dat, fill, a=args: csr._linear_pass(*a, cur, ind, dat, fill)
            )
            continue
        o, i, dy, dx = np.nonzero(lw.kept)
        w = lw.weight[o, i, dy, dx].astype(np.float32)
        ig = _input_channel(step, o, i)
        order = np.lexsort((-dx, -dy, o, ig))
        c_in = step.table.shape[0]
        start = np.zeros(c_in + 1, np.int64)
        np.cumsum(np.bincount(ig, minlength=c_in), out=start[1:])
        _, ho, wo = step.out_shape
        args = (
            step.table, start, o[order].astype(np.int64), dy[order].astype(np.int64),
            dx[order].astype(np.int64), w[order], ho, wo, *step.stride, *step.dilation, base_out,
        )  # fmt: skip
        passes.append(lambda cur, ind, dat, fill, a=args: csr._conv_pass(*a, cur, ind, dat, fill))
    return passes


def _emit_step(step, weights, bases, compat, buf) -> bool:  # noqa: ANN001
    """Emit one step's edges into ``buf``; whether it used the authors' strided numbering."""
    base_out = bases[step.target]
    if isinstance(step, IdentityStep):
        _emit_identity(step, base_out, buf)
        return False
    lw = weights[step.param]
    if step.kind == "linear":
        _emit_linear(step, lw, base_out, buf)
    elif compat_rule.applies(step, compat):
        compat_rule.emit(step, _taps_by_offset(step, lw), bases[step.plain_input], buf.add)
        return True
    else:
        _emit_conv(step, lw, base_out, buf)
    return False


def exact_edges(plan: Plan, weights: Mapping[str, LayerWeights], compat: str | None = None) -> int:
    """Exact number of MGE edges after parallel edges are merged. Equal to :func:`count_edges`
    unless ``plan.may_duplicate``; then each target partition's edges are generated (keys
    only, one partition at a time) and their distinct keys counted."""
    if not plan.may_duplicate:
        return count_edges(plan, weights, compat)
    bases = [p.base for p in plan.partitions]
    by_target: dict[int, list] = {}
    for step in plan.steps:
        by_target.setdefault(step.target, []).append(step)
    total = 0
    for steps in by_target.values():
        n = sum(_count_step(step, weights, compat) for step in steps)
        buf = _EdgeBuffer(n, np.int64)
        for step in steps:
            _emit_step(step, weights, bases, compat, buf)
        key = buf.src * plan.n_nodes + buf.tgt
        key.sort()
        total += int(key.size and 1 + np.count_nonzero(key[1:] != key[:-1]))
    return total


def check_budget(
    n_edges: int, n_nodes: int, max_edges: int | None, memory_budget: int | None
) -> None:
    """Refuse (:class:`GraphTooLarge`) an MGE over ``max_edges`` or the memory budget."""
    need = n_edges * BYTES_PER_EDGE + n_nodes * 16
    budget = int(0.8 * available_memory()) if memory_budget is None else int(memory_budget)
    if max_edges is not None and n_edges > max_edges:
        raise GraphTooLarge(
            f"the MGE would have {n_edges:,} edges ({n_nodes:,} nodes), more than "
            f"max_edges={max_edges:,}; raise max_edges, use a smaller input or a sparser mask"
        )
    if need > budget:
        raise GraphTooLarge(
            f"the MGE would have {n_edges:,} edges and need about {need / 2**30:.1f} GiB to build "
            f"(≈{BYTES_PER_EDGE} B/edge), more than the memory budget of {budget / 2**30:.1f} GiB; "
            "free memory, pass memory_budget=… explicitly, or encode a sparser network"
        )


def build_mge(
    plan: Plan,
    weights: Mapping[str, LayerWeights],
    *,
    compat: str | None = None,
    max_edges: int | None = None,
    memory_budget: int | None = None,
    meta: dict | None = None,
    n_edges: int | None = None,
) -> Graph:
    """Turn a plan and per-layer kept masks/weights into a :class:`Graph`.

    A plan whose steps cannot repeat an edge is written straight into the CSR
    (:func:`mgelib.graphs.csr.steps_to_csr`: CONV-6 at s = 0.9, 19.5 M edges, in 0.26 s); any
    other goes through an edge list, sorted and its parallel edges merged.

    Raises
    ------
    GraphTooLarge
        If the exact edge count exceeds ``max_edges``, or the estimated peak memory
        (``BYTES_PER_EDGE`` per edge) exceeds ``memory_budget`` (default: 80 % of the memory
        available now). The message gives both numbers.
    """
    n_nodes = plan.n_nodes
    if n_edges is None:
        n_edges = count_edges(plan, weights, compat)
        check_budget(n_edges, n_nodes, max_edges, memory_budget)
    bases = [p.base for p in plan.partitions]
    adjacency, merged, compat_layers = None, 0, []
    plain = not plan.may_duplicate and not any(
        isinstance(step, ConvStep) and compat_rule.applies(step, compat) for step in plan.steps
    )
    passes = _direct_passes(plan, weights, bases) if plain and DIRECT else None
    if passes is not None:  # straight into the CSR: no edge list (12 B/edge) in between
        adjacency, parallel = csr.steps_to_csr(passes, n_nodes, n_edges)
        if parallel:  # parallel edges the plan did not foresee: the edge-list path merges them
            adjacency = None
    if adjacency is None:
        index_dtype = np.int32 if n_nodes < 2**31 - 1 else np.int64
        buf = _EdgeBuffer(n_edges, index_dtype)
        compat_layers = [
            step.layer for step in plan.steps if _emit_step(step, weights, bases, compat, buf)
        ]
        if buf.n != n_edges:  # pragma: no cover - the count and the build share their geometry
            raise RuntimeError(f"internal error: counted {n_edges} edges but built {buf.n}")
        if plan.may_duplicate:
            adjacency, merged = _merged_csr(buf, n_nodes)
        else:
            adjacency, parallel = edges_to_csr(buf.src, buf.tgt, buf.w, n_nodes)
            if parallel:  # parallel edges the plan did not foresee: keep the largest |w|
                del adjacency
                adjacency, merged = _merged_csr(buf, n_nodes)
        del buf
    adjacency.sort_indices()
    info = dict(meta or {})
    info.update(
        compat=compat,
        bipartite=plan.bipartite and not compat_layers,
        merged_duplicate_edges=merged,
        compat_layers=compat_layers,
        input_shape=list(plan.input_shape),
    )
    return Graph(
        adjacency,
        dims=plan.dims,
        layers=[p.layer for p in plan.partitions],
        shapes=[p.shape for p in plan.partitions],
        encoding="mge",
        meta=info,
        check=False,  # edges from the plan (oracle-tested); checking costs ~4 passes over E
    )
