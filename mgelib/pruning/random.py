"""Random pruners with a prescribed layer-wise density: Uniform, ER, ERK (method §4).

All three keep, in layer ``l`` with ``n_l`` weights, an exact number ``c_l`` of weights chosen
uniformly at random (a seeded ``torch.randperm``); they differ in the densities ``d_l``:

- **Uniform**: ``d_l = d`` in every layer;
- **ER** (Mocanu et al. 2018): ``d_l = ε · (n_in + n_out) / (n_in · n_out)`` (a convolution counts
  its channels only);
- **ERK** (Evci et al. 2020): ``d_l = ε · sum(shape) / prod(shape)``, i.e.
  ``(n_in + n_out + k_h + k_w) / (n_in · n_out · k_h · k_w)`` for a convolution and
  ``(n_in + n_out) / (n_in · n_out)`` for a linear layer (Evci et al.'s definition, followed by the
  authors' code: a linear layer has no kernel terms);

with ``ε`` chosen so that ``Σ d_l n_l = d · N``. A layer with ``ε · raw_l > 1`` is kept dense and
``ε`` is recomputed over the others, until no layer exceeds 1 (:func:`layer_densities`).

The real-valued quotas ``d_l · n_l`` become integers by the largest-remainder method
(:func:`mgelib.pruning.core.apportion`): every layer gets ``floor(d_l n_l)``, and the weights
missing to reach exactly ``round(d · N)`` go one each to the layers with the largest fractional
parts (ties to the earlier layer). So the global count is exact and each layer is within one weight
of its density.

The authors' code draws Bernoulli masks (inexact counts), does not cap ER, computes ER over the
last module only and moves masks to CUDA unconditionally; none of that is reproduced here.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 100),
...                           torch.nn.ReLU(), torch.nn.Linear(100, 100))
>>> layer_densities(net, 0.5, "er")  # the small layers would exceed 1: kept dense
{'0.weight': 1.0, '2.weight': 1.0, '4.weight': 0.4792}
>>> {k: int(v.sum()) for k, v in er(net, 0.5).items()}
{'0.weight': 16, '2.weight': 400, '4.weight': 4792}
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mgelib.masks import Masks
from mgelib.pruning.core import apportion, kept_count, prepare

__all__ = ["METHODS", "layer_densities", "layer_counts", "uniform", "er", "erk"]

#: The density allocations :func:`layer_densities` knows.
METHODS: tuple[str, ...] = ("uniform", "er", "erk")


def _raw_density(shape: tuple[int, ...], method: str) -> float:
    """Unscaled density of a weight of ``shape`` (out, in, *kernel)."""
    if method == "er":
        n_out, n_in = shape[0], shape[1]
        return (n_in + n_out) / (n_in * n_out)
    return sum(shape) / math.prod(shape)


def layer_densities(model: nn.Module, sparsity: float, method: str = "erk") -> dict[str, float]:
    """Per-layer densities of the Uniform, ER or ERK allocation at global ``sparsity``.

    Parameters
    ----------
    model
        The network; only the shapes of its prunable weights are read.
    sparsity
        Global fraction of weights removed, in [0, 1).
    method
        ``"uniform"``, ``"er"`` or ``"erk"`` (see the module docstring).

    Returns
    -------
    dict[str, float]
        Density in (0, 1] per prunable parameter; ``Σ d_l n_l = (1 - sparsity) · N`` up to float
        rounding. Layers capped at 1 are exactly ``1.0``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8, 2))
    >>> {k: round(v, 4) for k, v in layer_densities(net, 0.5, "uniform").items()}
    {'0.weight': 0.5, '2.weight': 0.5}
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    s, params = prepare(model, sparsity)
    d = 1.0 - s
    shapes = {n: tuple(int(v) for v in p.shape) for n, p in params.items()}
    if method == "uniform" or s == 0.0:
        return dict.fromkeys(shapes, d)
    sizes = {n: math.prod(sh) for n, sh in shapes.items()}
    raw = {n: _raw_density(sh, method) for n, sh in shapes.items()}
    target = d * sum(sizes.values())
    dense: set[str] = set()
    while True:
        free = [n for n in shapes if n not in dense]
        budget = target - sum(sizes[n] for n in dense)
        divisor = sum(raw[n] * sizes[n] for n in free)
        eps = budget / divisor
        # Raising ε never brings a capped layer back under 1, so capping all offenders at once
        # reaches the same fixed point as capping them one at a time.
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            break
        dense.update(over)
    return {n: 1.0 if n in dense else eps * raw[n] for n in shapes}


def layer_counts(model: nn.Module, sparsity: float, method: str = "erk") -> dict[str, int]:
    """Exact number of weights kept per layer: :func:`layer_densities` × size, apportioned so the
    total is ``round((1 - sparsity) · N)``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    >>> layer_counts(net, 0.5, "uniform")  # 4.5 + 4.5 → 9 (round half to even): 5 + 4
    {'0.weight': 5, '1.weight': 4}
    """
    densities = layer_densities(model, sparsity, method)
    s, params = prepare(model, sparsity)
    sizes = [p.numel() for p in params.values()]
    counts = apportion(
        [densities[n] * p.numel() for n, p in params.items()], sizes, kept_count(s, sum(sizes))
    )
    return {n: int(c) for n, c in zip(params, counts)}


def _random_masks(model: nn.Module, counts: dict[str, int], seed: int) -> Masks:
    _, params = prepare(model, 0.0)
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    masks: Masks = {}
    for name, p in params.items():
        flat = torch.zeros(p.numel(), dtype=torch.bool)
        flat[torch.randperm(p.numel(), generator=gen)[: counts[name]]] = True
        masks[name] = flat.reshape(p.shape)
    return masks


def uniform(model: nn.Module, sparsity: float, *, seed: int = 0) -> Masks:
    """Uniform random pruning: every layer keeps a random ``d · n_l`` of its weights (± 1).

    Parameters
    ----------
    model
        The network (not modified; only weight shapes are read).
    sparsity
        Fraction of prunable weights to remove, in [0, 1).
    seed
        Seeds the ``torch.Generator`` that draws the masks.

    Returns
    -------
    dict[str, torch.BoolTensor]
        CPU masks; exactly ``round((1 - sparsity) · N)`` kept in all.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 5))
    >>> {k: int(v.sum()) for k, v in uniform(net, 0.8).items()}
    {'0.weight': 20, '1.weight': 10}
    """
    return _random_masks(model, layer_counts(model, sparsity, "uniform"), seed)


def er(model: nn.Module, sparsity: float, *, seed: int = 0) -> Masks:
    """Erdős–Rényi random pruning: densities ∝ (n_in + n_out)/(n_in · n_out), capped at 1.

    Parameters and return value as :func:`uniform`; see the module docstring for the allocation.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 5))
    >>> sum(int(v.sum()) for v in er(net, 0.8).values())
    30
    """
    return _random_masks(model, layer_counts(model, sparsity, "er"), seed)


def erk(model: nn.Module, sparsity: float, *, seed: int = 0) -> Masks:
    """Erdős–Rényi-Kernel random pruning: densities ∝ sum(shape)/prod(shape), capped at 1.

    Parameters and return value as :func:`uniform`; see the module docstring for the allocation.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3), torch.nn.Flatten(), torch.nn.Linear(16, 10))
    >>> sum(int(v.sum()) for v in erk(net, 0.9).values())
    59
    """
    return _random_masks(model, layer_counts(model, sparsity, "erk"), seed)
