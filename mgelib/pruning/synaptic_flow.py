"""SynFlow (Tanaka et al. 2020): data-free, iterative pruning by synaptic flow (SPEC §4).

Scores come from a float64, eval-mode copy of the model with every parameter and floating buffer
replaced by its absolute value, fed an all-ones input; no data and no randomness are used. The
pruner re-scores the masked network over ``rounds`` rounds on an exponential density schedule.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> masks = synflow(net, 0.75, input_shape=(8,), rounds=10)
>>> sum(int(m.sum()) for m in masks.values())  # round(0.25 * 176)
44
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from mgelib.masks import Masks, prunable_parameters
from mgelib.progress import show_progress
from mgelib.pruning.core import (
    _top_k_flat,
    check_finite_weights,
    forward_checked,
    kept_count,
    model_device,
    prepare,
)
from mgelib.pruning.report import _check_input_shape
from mgelib.pruning.saliency import Scores, _fill

__all__ = ["synflow", "synflow_scores"]


def _synflow_probe(model: nn.Module) -> tuple[nn.Module, Scores, Scores]:
    """The linearised copy: float64, eval mode, every parameter and floating buffer → |·|."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
        for b in net.buffers():
            if b.is_floating_point():
                b.abs_()
    weights = prunable_parameters(net)
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    w_abs = {n: w.detach().clone() for n, w in weights.items()}
    return net, weights, w_abs


def _synflow_round(
    net: nn.Module,
    weights: Scores,
    w_abs: Scores,
    masks: Mapping[str, torch.Tensor] | None,
    x: torch.Tensor,
    out: Mapping[str, torch.Tensor] | None = None,
) -> Scores:
    """Scores of the linearised ``net`` with weights ``w_abs ⊙ masks``, written into ``out``
    (views of one flat buffer in :func:`synflow`) or into new tensors."""
    with torch.no_grad():
        for n, w in weights.items():
            w.copy_(w_abs[n])
            if masks is not None:
                w.mul_(masks[n])
    ws = list(weights.values())
    r = forward_checked(net, x, "synflow", what="all-ones input").sum()
    grads = _fill(torch.autograd.grad(r, ws, allow_unused=True), ws)
    scores = {}
    with torch.no_grad():
        for (n, w), g in zip(weights.items(), grads):
            scores[n] = torch.mul(g, w, out=out[n]) if out is not None else g * w
            scores[n].abs_()
    return scores


def synflow_scores(
    model: nn.Module,
    input_shape: Sequence[int],
    masks: Mapping[str, torch.Tensor] | None = None,
) -> Scores:
    """One round of SynFlow scores ``|∂R/∂w ⊙ w|`` on the (masked) linearised network.

    ``R`` is the sum of the outputs for an all-ones input of shape ``(1, *input_shape)``, computed
    on a float64 copy in eval mode in which every parameter and floating buffer is replaced by its
    absolute value (Tanaka et al. 2020). Scores are float64 on the model's device.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 1, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
    ...     _ = net[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
    >>> synflow_scores(net, (2,))["0.weight"].tolist()  # |w0| ⊙ |w1| broadcast per row
    [[1.0, 2.0], [3.0, 4.0]]
    """
    prepare(model, 0.0)
    check_finite_weights(model, "synflow")
    shape = _check_input_shape(input_shape)
    with torch.enable_grad():
        net, weights, w_abs = _synflow_probe(model)
        x = torch.ones((1, *shape), dtype=torch.float64, device=model_device(net))
        dev_masks = None if masks is None else {n: m.to(x.device) for n, m in masks.items()}
        return _synflow_round(net, weights, w_abs, dev_masks, x)


def synflow(
    model: nn.Module,
    sparsity: float,
    *,
    input_shape: Sequence[int],
    rounds: int = 100,
    seed: int = 0,
    on_round: Callable[[int, float, int], None] | None = None,
    progress: bool | None = None,
) -> Masks:
    """SynFlow (Tanaka et al. 2020): iterative, data-free pruning by synaptic flow.

    Round ``k = 1 … rounds`` re-scores the network masked by round ``k − 1`` with
    :func:`synflow_scores` and keeps the global top ``round(d_k · N)`` weights among those still
    kept, where ``d_k = d^(k / rounds)`` (the exponential schedule; the last round hits ``d``
    exactly). A pruned weight never comes back.

    Parameters
    ----------
    input_shape
        Shape of one input without the batch dimension, e.g. ``(3, 32, 32)``.
    rounds
        Number of pruning rounds (100 in the paper).
    seed
        Accepted for a uniform signature; SynFlow uses no randomness.
    on_round
        Called after each round as ``on_round(k, d_k, kept)``, e.g. to record the schedule.
    progress
        Show a tqdm bar over the rounds (default: on unless ``MGELIB_QUIET=1``).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> seen = []
    >>> m = synflow(net, 0.5, input_shape=(4,), rounds=4, progress=False,
    ...             on_round=lambda k, d, kept: seen.append(kept))
    >>> seen  # round(0.5 ** (k / 4) * 48)
    [40, 34, 29, 24]
    """
    s, _ = prepare(model, sparsity)
    check_finite_weights(model, "synflow")
    shape = _check_input_shape(input_shape)
    if int(rounds) != rounds or int(rounds) < 1:
        raise ValueError(f"rounds must be a positive integer, got {rounds!r}")
    rounds = int(rounds)
    d = 1.0 - s
    with torch.enable_grad():
        net, weights, w_abs = _synflow_probe(model)
        device = model_device(net)
        x = torch.ones((1, *shape), dtype=torch.float64, device=device)
        # One flat score buffer and one flat keep-vector, with per-layer views into both: the
        # global selection then needs no concatenation in each of the 100 rounds.
        total = sum(w.numel() for w in weights.values())
        flat = torch.empty(total, dtype=torch.float64, device=device)
        keep = torch.ones(total, dtype=torch.bool, device=device)
        bounds, start = {}, 0
        for n, w in weights.items():
            bounds[n] = (start, start + w.numel(), w.shape)
            start += w.numel()

        def views(t: torch.Tensor) -> dict[str, torch.Tensor]:
            return {n: t[a:b].view(shape) for n, (a, b, shape) in bounds.items()}

        bar = tqdm(
            range(1, rounds + 1), desc="synflow", leave=False, disable=not show_progress(progress)
        )
        for k in bar:
            d_k = d if k == rounds else d ** (k / rounds)
            _synflow_round(net, weights, w_abs, views(keep), x, out=views(flat))
            # Pruned weights score -inf so they are never selected again (their flow is 0, but so
            # may be the flow of a kept weight, and ties go by position).
            flat.masked_fill_(~keep, float("-inf"))
            if bool(torch.isnan(flat).any()):
                raise ValueError(
                    f"SynFlow scores overflowed to NaN in float64 in round {k} (the weights are "
                    "finite); the network is too deep or too wide for the all-ones probe"
                )
            kept = kept_count(1.0 - d_k, total)
            keep = _top_k_flat(flat, kept)
            if on_round is not None:
                on_round(k, d_k, kept)
    return {n: m.cpu().clone() for n, m in views(keep).items()}
