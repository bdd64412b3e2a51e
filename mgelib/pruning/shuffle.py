"""The layer-wise shuffle null model (Frankle et al. 2021, "Pruning neural networks at
initialization: why are we missing the mark?"; SPEC §4): ``<pruner>+shuffle``.

Each layer keeps exactly as many weights as ``<pruner>`` kept there, at positions drawn uniformly
at random without replacement. Layer-wise density is preserved, every other trace of the pruner's
choice (which filters, which taps, which paths) is destroyed, so a metric that still separates
``snip`` from ``snip+shuffle`` measures topology beyond layer-wise density.

The draw of layer ``name`` comes from ``numpy.random.default_rng([seed, crc32(name)])``: it is
deterministic for a seed and does not depend on the order of the mask set or on the other layers.

Examples
--------
>>> import torch
>>> masks = {"0.weight": torch.tensor([[True, True, False, False]]),
...          "2.weight": torch.tensor([[True], [False], [False]])}
>>> out = shuffle(masks, seed=0)
>>> [int(m.sum()) for m in out.values()]  # the kept count of each layer is unchanged
[2, 1]
>>> all(torch.equal(a, b) for a, b in zip(out.values(), shuffle(masks, seed=0).values()))
True
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np
import torch

__all__ = ["shuffle"]


def shuffle(masks: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Redraw the kept positions of every layer uniformly at random, keeping each layer's count.

    Parameters
    ----------
    masks
        A mask set (``dict[str, BoolTensor]``, ``True`` = kept), e.g. from
        :func:`mgelib.pruning.prune`.
    seed
        Seeds the draw (per layer, see the module docstring).

    Returns
    -------
    dict[str, torch.BoolTensor]
        CPU masks of the same keys, shapes and per-layer kept counts.
    """
    out: dict[str, torch.Tensor] = {}
    for name, mask in masks.items():
        flat = mask.detach().to("cpu", torch.bool).reshape(-1)
        n, k = flat.numel(), int(flat.sum())
        rng = np.random.default_rng([int(seed), zlib.crc32(name.encode())])
        new = np.zeros(n, dtype=bool)
        new[rng.choice(n, size=k, replace=False)] = True
        out[name] = torch.from_numpy(new).reshape(mask.shape)
    return out
