"""Saliency pruners at initialisation: SNIP, GraSP, ProsPr (SPEC §4).

SynFlow, the data-free one, is in :mod:`mgelib.pruning.synaptic_flow`.

Each pruner has a ``*_scores`` function (one score tensor per prunable weight, on the model's
device) and a pruner function that ranks the scores globally with
:func:`mgelib.pruning.masks_from_scores` and returns CPU boolean masks. Scoring works on a deep copy
of the model: the model's parameters, buffers, ``requires_grad`` flags and mode are untouched, and
the global random state is forked and seeded (dropout, shuffling loaders), so the same seed gives
the same masks.

What the data pruners read from ``data`` (an ``(x, y)`` batch or an iterable of batches):

- SNIP: the first batch;
- GraSP: ``samples_per_class`` samples of every class, gathered in order from the batches until
  every class is full or the batches run out (then as many as exist);
- ProsPr: ``steps + 1`` batches (one per inner step, one for the meta-loss), cycling through
  the batches already read if ``data`` runs out; a single batch is used for every step.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> x, y = torch.randn(12, 8), torch.arange(12) % 3
>>> masks = snip(net, 0.75, (x, y))
>>> sum(int(m.sum()) for m in masks.values())  # round(0.25 * 176)
44
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from mgelib.masks import Masks, prunable_parameters
from mgelib.pruning.core import (
    check_finite_weights,
    check_labels,
    cycle_batches,
    first_batch,
    forward_checked,
    iter_batches,
    masks_from_scores,
    model_device,
    model_dtype,
    prepare,
    require_data,
    seeded,
    to_model,
)

__all__ = [
    "snip",
    "snip_scores",
    "grasp",
    "grasp_scores",
    "prospr",
    "prospr_scores",
]

Scores = dict[str, torch.Tensor]


#: Scoring precisions: ``"float64"`` (default) or ``"model"`` (the model's own dtype).
PRECISIONS = ("float64", "model")


def _score_dtype(model: nn.Module, precision: str) -> torch.dtype:
    """The dtype scores are computed in.

    Float64 by default: in float32 the reductions of a convolution's backward pass are summed in
    an order that depends on the number of CPU threads (and the GPU kernel), so scores near the
    top-k threshold swapped places and the masks changed with ``OMP_NUM_THREADS`` (ProsPr's
    three unrolled SGD steps amplified it to 10 % of the kept weights). Float64 shrinks those
    differences from ~1e-7 to ~1e-16 relative, below the gap between neighbouring scores, so the
    masks are the same at any thread count (``tests/test_pruning.py`` checks 1 vs 2 threads).
    ``"model"`` keeps the model's dtype (a model that cannot run in float64, or speed on a GPU
    whose float64 rate is low); its masks may then depend on the thread count.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.float64 if precision == "float64" else model_dtype(model)


def _scoring_copy(
    model: nn.Module, *, train: bool = True, dtype: torch.dtype | None = None
) -> tuple[nn.Module, Scores]:
    """A deep copy (in ``dtype``) whose prunable weights (and only those) require grad."""
    net = copy.deepcopy(model)
    if dtype is not None:
        net = net.to(dtype)
    net.train(train)
    weights = prunable_parameters(net)
    for p in net.parameters():
        p.requires_grad_(False)
    for w in weights.values():
        w.requires_grad_(True)
    return net, weights


def _fill(grads: Sequence[torch.Tensor | None], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Replace the ``None`` gradients of unused weights by zeros."""
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, like)]


# --------------------------------------------------------------------------- SNIP
def snip_scores(
    model: nn.Module, data: Any, *, seed: int = 0, precision: str = "float64"
) -> Scores:
    """SNIP saliency ``|∂L/∂c| = |g ⊙ w|`` at ``c = 1`` on the first batch of ``data``.

    The loss is the mean cross-entropy of the model in training mode (BatchNorm uses the batch's
    statistics, as in the first training step). Scores are on the model's device.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Linear(3, 2)
    >>> s = snip_scores(net, (torch.randn(4, 3), torch.tensor([0, 1, 0, 1])))
    >>> s["weight"].shape
    torch.Size([2, 3])
    """
    require_data("snip", data)
    check_finite_weights(model, "snip")
    device, dtype = model_device(model), _score_dtype(model, precision)
    with seeded(device, seed), torch.enable_grad():
        x, y = to_model(first_batch(data), device, dtype)
        net, weights = _scoring_copy(model, dtype=dtype)
        ws = list(weights.values())
        logits = forward_checked(net, x, "snip")
        check_labels("snip", logits, x, y)
        loss = F.cross_entropy(logits, y)
        grads = _fill(torch.autograd.grad(loss, ws, allow_unused=True), ws)
    return {n: (g * w).detach().abs() for (n, w), g in zip(weights.items(), grads)}


def snip(
    model: nn.Module, sparsity: float, data: Any, *, seed: int = 0, precision: str = "float64"
) -> Masks:
    """SNIP (Lee et al. 2019): keep the global top-k of ``|g ⊙ w|`` on one mini-batch.

    Parameters
    ----------
    model
        The initialised network (not modified).
    sparsity
        Fraction of prunable weights to remove, in [0, 1).
    data
        An ``(x, y)`` batch or an iterable of batches; only the first batch is read.
    seed
        Seeds the global RNG while scoring (dropout, a shuffling loader).
    precision
        ``"float64"`` (default: masks independent of the thread count) or ``"model"``.

    Returns
    -------
    dict[str, torch.BoolTensor]
        CPU masks keyed by parameter name; exactly ``round((1 - sparsity) · N)`` kept.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> m = snip(net, 0.5, (torch.randn(6, 4), torch.tensor([0, 1] * 3)))
    >>> sum(int(v.sum()) for v in m.values())
    24
    """
    s, _ = prepare(model, sparsity)
    return masks_from_scores(snip_scores(model, data, seed=seed, precision=precision), s)


# --------------------------------------------------------------------------- GraSP
def _gather_per_class(
    net: nn.Module, data: Any, samples_per_class: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``samples_per_class`` samples of each class, ordered by class then by arrival (CPU)."""
    xs: dict[int, list[torch.Tensor]] = {}
    counts: dict[int, int] = {}
    num_classes: int | None = None
    logits: torch.Tensor | None = None
    for i, (x, y) in enumerate(iter_batches(data)):
        if logits is None:
            # The number of classes is the width of the model's output.
            was_training = net.training
            net.eval()
            with torch.no_grad():
                probe = x[:1].to(device=model_device(net))
                if probe.is_floating_point():
                    probe = probe.to(model_dtype(net))
                logits = forward_checked(net, probe, "grasp")
                num_classes = int(logits.shape[-1])
            net.train(was_training)
        check_labels("grasp", logits, x, y, i)
        y = y.detach().cpu().reshape(-1).long()
        x = x.detach().cpu()
        for c in torch.unique(y).tolist():
            need = samples_per_class - counts.get(c, 0)
            if need <= 0:
                continue
            idx = torch.nonzero(y == c).flatten()[:need]
            xs.setdefault(c, []).append(x[idx])
            counts[c] = counts.get(c, 0) + len(idx)
        if len(counts) == num_classes and min(counts.values()) >= samples_per_class:
            break
    if not counts:
        raise ValueError("data yielded no sample for GraSP")
    classes = sorted(xs)
    xcat = torch.cat([torch.cat(xs[c]) for c in classes])
    ycat = torch.cat([torch.full((counts[c],), c, dtype=torch.long) for c in classes])
    return xcat, ycat


def grasp_scores(
    model: nn.Module,
    data: Any,
    *,
    temperature: float = 200.0,
    samples_per_class: int = 10,
    batch_size: int | None = None,
    seed: int = 0,
    precision: str = "float64",
) -> Scores:
    """GraSP scores ``−w ⊙ (H g)`` (Wang et al. 2020); large scores are the ones to remove.

    ``g = ∇_w L`` and ``H g = ∇_w (gᵀ ∇_w L)`` with ``g`` held constant (a double backward), where
    ``L`` is the mean cross-entropy of ``logits / temperature`` over ``samples_per_class``
    samples of each class (model in training mode).

    Parameters
    ----------
    batch_size
        Process the gathered samples in chunks of this size to bound memory (``None``: one pass).
        The loss is the size-weighted mean over chunks, so only BatchNorm's batch statistics depend
        on the chunking. With dropout, the two passes draw different dropout masks.
    precision
        ``"float64"`` (default: masks independent of the thread count) or ``"model"``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    >>> s = grasp_scores(net, (torch.randn(8, 3), torch.tensor([0, 1] * 4)), samples_per_class=2)
    >>> sorted(s)
    ['0.weight', '2.weight']
    """
    require_data("grasp", data)
    check_finite_weights(model, "grasp")
    if float(temperature) <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if int(samples_per_class) < 1:
        raise ValueError(f"samples_per_class must be >= 1, got {samples_per_class!r}")
    if batch_size is not None and int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size!r}")
    device, dtype = model_device(model), _score_dtype(model, precision)
    t = float(temperature)
    with seeded(device, seed), torch.enable_grad():
        net, weights = _scoring_copy(model, dtype=dtype)
        x_all, y_all = _gather_per_class(net, data, int(samples_per_class))
        n = len(y_all)
        step = n if batch_size is None else int(batch_size)
        chunks = [(x_all[i : i + step], y_all[i : i + step]) for i in range(0, n, step)]
        ws = list(weights.values())

        def chunk_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            x, y = to_model((x, y), device, dtype)
            return F.cross_entropy(net(x) / t, y) * (len(y) / n)

        g = [torch.zeros_like(w) for w in ws]
        for x, y in chunks:
            grads = _fill(torch.autograd.grad(chunk_loss(x, y), ws, allow_unused=True), ws)
            g = [a + b for a, b in zip(g, grads)]
        hg = [torch.zeros_like(w) for w in ws]
        for x, y in chunks:
            grads = torch.autograd.grad(chunk_loss(x, y), ws, create_graph=True, allow_unused=True)
            z = sum((gi * gc).sum() for gi, gc in zip(grads, g) if gi is not None)
            if isinstance(z, torch.Tensor) and z.requires_grad:
                hz = _fill(torch.autograd.grad(z, ws, allow_unused=True), ws)
                hg = [a + b for a, b in zip(hg, hz)]
    return {name: (-w * h).detach() for (name, w), h in zip(weights.items(), hg)}


def grasp(
    model: nn.Module,
    sparsity: float,
    data: Any,
    *,
    temperature: float = 200.0,
    samples_per_class: int = 10,
    batch_size: int | None = None,
    seed: int = 0,
    precision: str = "float64",
) -> Masks:
    """GraSP: remove the weights with the **largest** ``−w ⊙ Hg`` (keep the global bottom-k).

    Removing a weight whose ``−w ⊙ Hg`` is large reduces the gradient flow the least (or raises
    it): GraSP preserves the gradient norm after pruning. See :func:`grasp_scores` for the
    parameters; ``data`` gives ``samples_per_class`` samples of each class (as many as exist).

    Unlike the authors' code, the weights are not re-initialised before scoring (the scores
    belong to the model as given) and nothing is tied to CUDA.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> m = grasp(net, 0.5, (torch.randn(8, 4), torch.tensor([0, 1] * 4)), samples_per_class=4)
    >>> sum(int(v.sum()) for v in m.values())
    24
    """
    s, _ = prepare(model, sparsity)
    scores = grasp_scores(
        model,
        data,
        temperature=temperature,
        samples_per_class=samples_per_class,
        batch_size=batch_size,
        seed=seed,
        precision=precision,
    )
    return masks_from_scores(scores, s, largest=False)


# --------------------------------------------------------------------------- ProsPr
def prospr_scores(
    model: nn.Module,
    data: Any,
    *,
    steps: int = 3,
    inner_lr: float = 0.5,
    inner_momentum: float = 0.9,
    seed: int = 0,
    precision: str = "float64",
) -> Scores:
    """ProsPr meta-gradients ``|∂L(θ_steps)/∂c|`` at ``c = 1`` (Alizadeh et al. 2022).

    Every prunable weight is multiplied by a mask ``c`` initialised to one; ``steps`` SGD steps
    (learning rate ``inner_lr``, heavy-ball momentum ``inner_momentum``, no weight decay) are
    unrolled differentiably with :func:`torch.func.functional_call` on the trainable parameters,
    batch ``i`` for step ``i``; the loss after the last step is taken on batch ``steps`` and
    differentiated w.r.t. ``c`` through the whole unroll (second order). ``steps + 1`` batches are
    read (see the module docstring). With ``steps=0`` this is SNIP on the same batch.
    ``precision`` as for :func:`snip_scores` (float64 matters most here: the unrolled steps
    amplify float32 rounding differences between thread counts).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> s = prospr_scores(net, (torch.randn(6, 3), torch.tensor([0, 1] * 3)), steps=1)
    >>> s["2.weight"].shape
    torch.Size([2, 4])
    """
    require_data("prospr", data)
    if int(steps) != steps or int(steps) < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not 0.0 <= float(inner_momentum) < 1.0:
        raise ValueError(f"inner_momentum must lie in [0, 1), got {inner_momentum!r}")
    steps = int(steps)
    check_finite_weights(model, "prospr")
    lr, mom = float(inner_lr), float(inner_momentum)
    device, dtype = model_device(model), _score_dtype(model, precision)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with seeded(device, seed), torch.enable_grad():
        batches = [to_model(b, device, dtype) for b in cycle_batches(data, steps + 1)]
        net = copy.deepcopy(model).to(dtype).train()
        for p in net.parameters():
            p.requires_grad_(False)
        prunable = prunable_parameters(net)
        masks = {n: torch.ones_like(w, requires_grad=True) for n, w in prunable.items()}
        fast: dict[str, torch.Tensor] = {}
        for n, p in net.named_parameters():
            if n in masks:
                fast[n] = p.detach() * masks[n]
            elif n in trainable:
                fast[n] = p.detach().clone().requires_grad_(True)
            # frozen parameters (e.g. SPEC §1's frozen biases) are taken from the module
        names = list(fast)
        buf: dict[str, torch.Tensor] = {}
        # The output width from one eval-mode sample (no BatchNorm statistics are updated), then
        # every batch's labels against it, before the differentiable unroll.
        net.eval()
        with torch.no_grad():
            probe = forward_checked(net, batches[0][0][:1], "prospr")
        net.train()
        for i, (x, y) in enumerate(batches):
            check_labels("prospr", probe, x, y, i)
        for i in range(steps):
            x, y = batches[i]
            loss = F.cross_entropy(functional_call(net, fast, (x,)), y)
            grads = torch.autograd.grad(
                loss, [fast[n] for n in names], create_graph=True, allow_unused=True
            )
            for n, g in zip(names, grads):
                if g is None:
                    continue
                # torch.optim.SGD's heavy ball: buf = g at the first step, then m·buf + g.
                buf[n] = g if n not in buf else buf[n] * mom + g
                fast[n] = fast[n] - lr * buf[n]
        x, y = batches[steps]
        loss = F.cross_entropy(functional_call(net, fast, (x,)), y)
        ms = list(masks.values())
        meta = _fill(torch.autograd.grad(loss, ms, allow_unused=True), ms)
    return {n: g.detach().abs() for n, g in zip(masks, meta)}


def prospr(
    model: nn.Module,
    sparsity: float,
    data: Any,
    *,
    steps: int = 3,
    inner_lr: float = 0.5,
    inner_momentum: float = 0.9,
    seed: int = 0,
    precision: str = "float64",
) -> Masks:
    """ProsPr: keep the global top-k of the meta-gradient magnitude (see :func:`prospr_scores`).

    Unlike the authors' code, the batches come from ``data`` (their code ignores the loader it is
    given and reloads CIFAR), and the model stays on its own device.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    >>> m = prospr(net, 0.5, (torch.randn(6, 4), torch.tensor([0, 1] * 3)), steps=2)
    >>> sum(int(v.sum()) for v in m.values())
    24
    """
    s, _ = prepare(model, sparsity)
    scores = prospr_scores(
        model,
        data,
        steps=steps,
        inner_lr=inner_lr,
        inner_momentum=inner_momentum,
        seed=seed,
        precision=precision,
    )
    return masks_from_scores(scores, s)
