"""Bipartite graph encodings, one graph per layer, input-agnostic (method §5.2) — the baselines.

- ``rolled`` (Hoang et al. 2023): a conv weight ``C_out × C_in × k × k`` is reshaped to
  ``C_out × (C_in·k·k)``; left nodes are the ``C_in·k·k`` kernel entries (row-major over
  ``(c_in, dy, dx)``, the authors' order), right nodes the ``C_out`` filters; edge iff kept,
  weight ``|w|``.
- ``rolled_channel`` (Prabhu et al. 2018): left = input channels, right = output channels; edge iff
  the ``k × k`` slice ``W[c_out, c_in]`` has a kept weight; weight = L2 norm of that slice.
- Linear layers: left = in-features, right = out-features in both.

Each layer's graph is a :class:`~mgelib.graphs.graph.Graph` with two partitions, edges left → right.
Its ``meta`` holds ``weights`` (the layer's number of weights), ``kept`` (kept weights) and
``density``, which the Ramanujan table reports (method §7).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from mgelib.graphs.graph import Graph
from mgelib.graphs.mge import LayerWeights

__all__ = ["build_bge", "BGE_ENCODINGS"]

BGE_ENCODINGS = ("rolled", "rolled_channel")


def _biadjacency_graph(
    bi: sp.csr_array, layer: str, left_shape: tuple[int, ...], meta: dict
) -> Graph:
    """Embed an ``L × R`` biadjacency (rows = left nodes) as a ``(L+R)²`` directed adjacency."""
    n_left, n_right = bi.shape
    bi = sp.csr_array(bi)
    bi.sort_indices()
    indptr = np.concatenate([bi.indptr, np.full(n_right, bi.indptr[-1], dtype=bi.indptr.dtype)])
    adj = sp.csr_array(
        (bi.data.astype(np.float32), bi.indices + n_left, indptr),
        shape=(n_left + n_right, n_left + n_right),
    )
    return Graph(
        adj,
        dims=[n_left, n_right],
        layers=[f"{layer}:in", layer],
        shapes=[left_shape, (n_right,)],
        meta=meta,
    )


def build_bge(
    encoding: str,
    layers: Mapping[str, LayerWeights],
    *,
    weight_precision: str = "float16",
    meta: dict | None = None,
) -> dict[str, Graph]:
    """One bipartite graph per layer (keys: module names, in the model's registration order).

    Parameters
    ----------
    encoding : {"rolled", "rolled_channel"}
    layers : mapping of module name → :class:`LayerWeights` (kept pattern and ``|w|`` at full
        precision; the rolled-channel norm is taken before rounding to ``weight_precision``).
    """
    if encoding not in BGE_ENCODINGS:
        raise ValueError(f"encoding must be one of {BGE_ENCODINGS}, got {encoding!r}")
    out: dict[str, Graph] = {}
    for name, lw in layers.items():
        kept = lw.kept
        w = np.where(kept, lw.weight, 0.0).astype(np.float32)
        info = dict(meta or {})
        info.update(
            layer=name,
            weights=int(kept.size),
            kept=int(kept.sum()),
            density=float(kept.sum() / kept.size),
            weight_shape=list(kept.shape),
        )
        if kept.ndim == 2:  # linear: out × in
            bi_kept = kept.T
            bi_w = w.T
            left_shape: tuple[int, ...] = (kept.shape[1],)
        elif encoding == "rolled":
            c_out = kept.shape[0]
            bi_kept = kept.reshape(c_out, -1).T
            bi_w = w.reshape(c_out, -1).T
            left_shape = tuple(kept.shape[1:])
        else:
            any_kept = kept.any(axis=(2, 3))  # (C_out, C_in / groups)
            norm = np.sqrt((w.astype(np.float64) ** 2).sum(axis=(2, 3))).astype(np.float32)
            if lw.groups > 1:  # depthwise: output o reads input channel o // multiplier only
                c_out = kept.shape[0]
                c_in = lw.groups
                o = np.arange(c_out)
                bi_kept = np.zeros((c_in, c_out), dtype=bool)
                bi_w = np.zeros((c_in, c_out), dtype=np.float32)
                bi_kept[o // (c_out // c_in), o] = any_kept[:, 0]
                bi_w[o // (c_out // c_in), o] = norm[:, 0]
            else:
                bi_kept, bi_w = any_kept.T, norm.T  # (C_in, C_out)
            left_shape = (bi_kept.shape[0],)
        rows, cols = np.nonzero(bi_kept)
        vals = _round(bi_w[rows, cols], weight_precision)
        bi = sp.csr_array((vals, (rows, cols)), shape=bi_kept.shape)
        g = _biadjacency_graph(bi, name, left_shape, info)
        g.encoding = encoding
        out[name] = g
    return out


def _round(values: np.ndarray, precision: str) -> np.ndarray:
    if precision == "float16":
        return np.abs(values).astype(np.float16).astype(np.float32)
    return np.abs(values).astype(np.float32)
