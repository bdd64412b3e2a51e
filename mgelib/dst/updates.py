"""One mask update — drop, reallocate, regrow — as pure functions on tensors.

:func:`update_masks` takes the current weights and masks (keyed by parameter name) and returns
the new masks with exactly as many active weights as before, globally and — without
redistribution — per layer. Ties are broken by flat index (stable sorts), random regrowth draws
from the caller's :class:`torch.Generator`, so an update is a deterministic function of its
inputs.

Examples
--------
>>> import torch
>>> w = {"a": torch.tensor([0.5, -0.1, 0.0, 0.0, 2.0])}
>>> m = {"a": torch.tensor([True, True, False, False, True])}
>>> g = {"a": torch.tensor([0.0, 0.0, 3.0, 1.0, 0.0])}
>>> new, info = update_masks(w, m, fraction=0.34, growth="gradient", scores=g)
>>> new["a"].tolist()  # -0.1 (the smallest |w|) dropped, position 2 (largest |g|) grown
[True, False, True, False, True]
>>> info["dropped"], info["grown"], info["moved"]
(1, 1, 1)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from mgelib.pruning.core import apportion

__all__ = ["drop_counts", "smallest_active", "grow_positions", "regrow_counts", "update_masks"]


def drop_counts(masks: Mapping[str, torch.Tensor], fraction: float) -> dict[str, int]:
    """``floor(fraction · active)`` per layer (RigL's and SNFS's per-layer drop count)."""
    return {k: int(float(fraction) * int(m.sum())) for k, m in masks.items()}


def _k_smallest(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the ``k`` smallest entries of a flat tensor, ties broken by lower index.

    One selection (``kthvalue``, linear time) instead of a sort: everything below the k-th value,
    then the lowest-index entries equal to it. The indices come in no particular order.
    """
    n = score.numel()
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=score.device)
    if k >= n:
        return torch.arange(n, device=score.device)
    kth = torch.kthvalue(score, k).values
    below = torch.nonzero(score < kth).flatten()
    at = torch.nonzero(score == kth).flatten()[: k - len(below)]
    return torch.cat([below, at])


def smallest_active(weight: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """Flat indices of the ``k`` active weights of smallest ``|w|`` (ties: lower index first)."""
    score = weight.detach().abs().flatten().float()
    score = torch.where(mask.flatten(), score, torch.full_like(score, float("inf")))
    return _k_smallest(score, k)


def grow_positions(
    candidates: torch.Tensor,
    k: int,
    scores: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Flat indices of ``k`` positions among the ``candidates`` (a flat bool tensor): the largest
    ``|scores|`` (ties: lower index first), or uniformly at random when ``scores`` is None."""
    if k <= 0:
        return torch.zeros(0, dtype=torch.long, device=candidates.device)
    if scores is None:
        pool = torch.nonzero(candidates.cpu()).flatten()
        pick = torch.randperm(len(pool), generator=generator)[:k]
        return pool[pick].to(candidates.device)
    s = -scores.detach().abs().flatten().float()
    s = torch.where(candidates, s, torch.full_like(s, float("inf")))
    return _k_smallest(s, k)


def regrow_counts(
    dropped: Mapping[str, int],
    survivors: Mapping[str, int],
    sizes: Mapping[str, int],
    shares: Mapping[str, float] | None,
) -> dict[str, int]:
    """How many weights each layer regrows: what it dropped (``shares`` None), or the total
    dropped split ∝ ``shares`` (largest remainders, :func:`mgelib.pruning.apportion`), never more
    than a layer's free positions. Sums to the total dropped exactly."""
    keys = list(dropped)
    total = sum(dropped.values())
    if shares is None or total == 0:
        return dict(dropped)
    s = np.array([max(0.0, float(shares[k])) for k in keys])
    caps = [sizes[k] - survivors[k] for k in keys]
    if not np.isfinite(s).all() or s.sum() <= 0:
        return dict(dropped)
    counts = apportion(list(s / s.sum() * total), caps, total)
    return dict(zip(keys, (int(c) for c in counts)))


@torch.no_grad()
def update_masks(
    weights: Mapping[str, torch.Tensor],
    masks: Mapping[str, torch.Tensor],
    *,
    fraction: float,
    growth: str = "random",
    scores: Mapping[str, torch.Tensor] | None = None,
    redistribution: Mapping[str, float] | str | None = None,
    threshold: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Drop and regrow: the new masks and what moved.

    Parameters
    ----------
    weights, masks
        Current weights and boolean masks, by parameter name.
    fraction
        Fraction of each layer's active weights to drop (smallest ``|w|``), ignored when
        ``threshold`` is given.
    growth
        ``"random"``, or ``"gradient"``/``"momentum"``: the largest ``|scores|`` among the
        positions inactive after the drop.
    scores
        Growth scores by parameter name (dense gradient or momentum).
    redistribution
        Per-layer shares of the regrowth, or ``"survivors"`` (∝ each layer's weights that
        survived this drop: DSR); None regrows in each layer what it dropped.
    threshold
        DSR: drop every active weight with ``|w| < threshold`` instead.
    generator
        Draws random regrowth.

    Returns
    -------
    (new masks, info)
        ``info``: ``dropped``, ``grown`` (totals, equal), ``moved`` (active now, inactive
        before), and per-layer ``dropped_by_layer`` / ``grown_by_layer``.
    """
    if growth != "random" and scores is None:
        raise ValueError(f"growth {growth!r} needs scores (the dense gradient or momentum)")
    drops: dict[str, torch.Tensor] = {}
    for key, m in masks.items():
        flat = m.flatten()
        if threshold is not None:
            below = flat & (weights[key].detach().abs().flatten() < threshold)
            drops[key] = torch.nonzero(below).flatten()
        else:
            k = int(float(fraction) * int(flat.sum()))
            drops[key] = smallest_active(weights[key], flat, k)
    dropped = {k: len(v) for k, v in drops.items()}
    survivors = {k: int(masks[k].sum()) - dropped[k] for k in masks}
    sizes = {k: int(m.numel()) for k, m in masks.items()}
    shares = survivors if redistribution == "survivors" else redistribution
    grow = regrow_counts(dropped, survivors, sizes, shares)  # type: ignore[arg-type]
    out: dict[str, torch.Tensor] = {}
    kept: dict[str, torch.Tensor] = {}
    moved = 0
    for key, m in masks.items():
        flat = m.flatten().clone()
        flat[drops[key]] = False
        kept[key] = flat.clone().view(m.shape)
        layer_scores = None if growth == "random" else scores[key]
        idx = grow_positions(~flat, grow[key], layer_scores, generator)
        flat[idx] = True
        new = flat.view(m.shape)
        moved += int((new & ~m).sum())
        out[key] = new
    info: dict[str, Any] = {
        "dropped": sum(dropped.values()),
        "grown": sum(grow.values()),
        "moved": moved,
        "dropped_by_layer": dropped,
        "grown_by_layer": grow,
        "survivors": kept,
    }
    return out, info
