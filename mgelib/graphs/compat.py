"""The authors' strided-convolution numbering (``compat="mge-snn"``, method §5.1): the one place
that knows it.

The authors' code (eliacunegatti/mge-snn) unrolls a *strided main-path* convolution over an
assumed input grid

.. math::  H' = (H_o - 1)\\,s + k - 2p, \\qquad W' = (W_o - 1)\\,s + k - 2p

(31×31 instead of 32×32 and 15×15 instead of 16×16 in ResNet-20), numbers its sources over that
grid — source ``(c, y, x)`` with ``y = y_o·s − p + a`` for kernel row ``a`` kept only when
``0 ≤ y < H'`` (same for ``x``) — and numbers its targets from the *input* partition's start,
``base_in + C_in·H'·W' + o·H_o·W_o + y_o·W_o + x_o``. Thousands of edges land inside the input
partition and the last output nodes get no in-edges from that conv; on ResNet-20 at s = 0.98 source
nodes go from 331 to 2,390 and r-in from 1,249 to 14,225. Every published MGE number of
ResNet-20/32, WRN-28-2 and MobileNetV2 carries it (CONV-6 has no strides).

The rule applies to any strided, undilated main-path conv whose input is an unpooled partition,
as it is (any k, pad, s, groups); a strided conv that reads a pooled map, a slice or the padded
input keeps exact geometry (the authors' code has no such layer in its four models). Graphs built
this way carry intra-partition edges, which :class:`~mgelib.graphs.graph.Graph` allows only for
them (``meta["compat"] == "mge-snn"``).

Examples
--------
>>> from mgelib.graphs.plan import ConvStep
>>> import numpy as np
>>> step = ConvStep(layer="c", param="c.weight", kind="conv", role="main",
...                 table=np.zeros((1, 6, 6, 1), np.int64), out_shape=(1, 2, 2), target=1,
...                 stride=(2, 2), kernel=(3, 3), padding=(1, 1), plain_input=0, in_shape=(1, 4, 4))
>>> applies(step, "mge-snn"), applies(step, None)
(True, False)
>>> grid(step)[:2]  # H' = (2 − 1)·2 + 3 − 2 = 3
(3, 3)
"""

from __future__ import annotations

import numpy as np

from mgelib.graphs.plan import ConvStep

__all__ = ["applies", "grid", "count", "emit"]


def applies(step: ConvStep, compat: str | None) -> bool:
    """Whether ``step`` is numbered the authors' way under ``compat``."""
    return (
        compat == "mge-snn"
        and step.kind == "conv"
        and step.role == "main"
        and step.stride != (1, 1)
        and step.dilation == (1, 1)
        and step.plain_input is not None
    )


def grid(step: ConvStep) -> tuple[int, int, list[np.ndarray], list[np.ndarray]]:
    """``H'``, ``W'`` and, per kernel row/column, the source row/column of every output row/col."""
    _, ho, wo = step.out_shape
    (sh, sw), (kh, kw), (ph, pw) = step.stride, step.kernel, step.padding
    hp = (ho - 1) * sh + kh - 2 * ph
    wp = (wo - 1) * sw + kw - 2 * pw
    rows = [np.arange(ho) * sh - ph + a for a in range(kh)]
    cols = [np.arange(wo) * sw - pw + b for b in range(kw)]
    return hp, wp, rows, cols


def count(step: ConvStep, kept: np.ndarray) -> int:
    """Edges of ``step`` numbered the authors' way (kept taps × in-grid positions per offset)."""
    hp, wp, rows, cols = grid(step)
    ny = np.array([((r >= 0) & (r < hp)).sum() for r in rows])
    nx = np.array([((c >= 0) & (c < wp)).sum() for c in cols])
    taps = kept.sum(axis=(0, 1)).astype(np.int64)  # (kh, kw)
    return int((taps * ny[:, None] * nx[None, :]).sum())


def emit(step: ConvStep, taps, base_in: int, add) -> None:  # noqa: ANN001 - internal callables
    """Emit the edges: ``taps`` yields ``(a, b, out_channel, in_channel, |w|)`` per kernel offset,
    ``add(src, tgt, w)`` stores them."""
    c_in = step.in_shape[0]
    _, ho, wo = step.out_shape
    hp, wp, rows, cols = grid(step)
    tgt_base = base_in + c_in * hp * wp
    for a, b, o, ig, wv in taps:
        p = np.flatnonzero((rows[a] >= 0) & (rows[a] < hp))
        q = np.flatnonzero((cols[b] >= 0) & (cols[b] < wp))
        if p.size == 0 or q.size == 0:
            continue
        local_src = (rows[a][p][:, None] * wp + cols[b][q][None, :]).ravel()  # (P·Q,)
        local_tgt = (p[:, None] * wo + q[None, :]).ravel()
        src = base_in + ig[:, None] * (hp * wp) + local_src[None, :]
        tgt = tgt_base + o[:, None] * (ho * wo) + local_tgt[None, :]
        add(src.ravel(), tgt.ravel(), np.broadcast_to(wv[:, None], src.shape).ravel())
