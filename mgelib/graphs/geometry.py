"""Index arithmetic for conv and pooling windows: kernel/stride pairs, padding, output sizes,
adaptive-pooling windows and the compaction of padding-only window slots."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import nn

from mgelib.graphs.plan import UnsupportedOperation

__all__ = [
    "_pair",
    "_conv_padding",
    "_pool_out",
    "_adaptive_windows",
    "_gather_windows",
    "_compact",
    "pool_table",
]


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _conv_padding(module: nn.Conv2d, name: str) -> tuple[int, int]:
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        k = _pair(module.kernel_size)
        if any(v % 2 == 0 for v in k):
            raise UnsupportedOperation(f"module {name!r}: padding='same' with an even kernel")
        return (k[0] // 2, k[1] // 2)
    return _pair(pad)


def _pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    num = size + 2 * p - k
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # PyTorch: the last window must start inside the input or left padding
    return out


def _adaptive_windows(size: int, out: int) -> list[np.ndarray]:
    return [
        np.arange((i * size) // out, -(-((i + 1) * size) // out), dtype=np.int64)
        for i in range(out)
    ]


def _gather_windows(
    table: np.ndarray, rows: list[np.ndarray], cols: list[np.ndarray]
) -> np.ndarray:
    c, _, _, m = table.shape
    kh = max(len(r) for r in rows)
    kw = max(len(cc) for cc in cols)
    out = np.full((c, len(rows), len(cols), kh * kw * m), -1, np.int64)
    for i, r in enumerate(rows):
        for j, cc in enumerate(cols):
            block = table[:, r][:, :, cc]  # (c, len(r), len(cc), m)
            out[:, i, j, : block.shape[1] * block.shape[2] * m] = block.reshape(c, -1)
    return out


def _compact(table: np.ndarray) -> np.ndarray:
    """Drop the trailing slots that are -1 for every element (padding-only window slots)."""
    keep = (table >= 0).any(axis=tuple(range(table.ndim - 1)))
    if keep.all():
        return table
    return table[..., keep]


def pool_table(
    table: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    ceil_mode: bool,
) -> tuple[np.ndarray, bool]:
    """Index table of a (max or average) pooled map: each pooled element stands for every node of
    its window (padding slots are ``-1``, then compacted); also whether windows overlap."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    c, h, w, m = table.shape
    ho = _pool_out(h, kh, sh, ph, ceil_mode)
    wo = _pool_out(w, kw, sw, pw, ceil_mode)
    need_h = (ho - 1) * sh + kh
    need_w = (wo - 1) * sw + kw
    padded = np.full((c, max(need_h, h + 2 * ph), max(need_w, w + 2 * pw), m), -1, np.int64)
    padded[:, ph : ph + h, pw : pw + w, :] = table
    parts = [
        padded[:, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw, :]
        for a in range(kh)
        for b in range(kw)
    ]
    return _compact(np.concatenate(parts, axis=-1)), sh < kh or sw < kw
