"""Pruning at initialisation behind one API (method §4).

Seven pruners, one function each, all returning a mask set (``dict[str, torch.BoolTensor]`` on
the CPU, keyed by parameter name, ``True`` = kept) with exactly ``round((1 - sparsity) · N)`` kept
weights over the ``N`` prunable weights:

========  =====================================================  =======================
name      score / allocation                                     needs
========  =====================================================  =======================
snip      ``|g ⊙ w|`` on one mini-batch, global top-k            data
grasp     ``−w ⊙ Hg`` at temperature 200, global *bottom*-k      data (10 per class)
synflow   ``|∂R/∂w ⊙ w|``, 100 rounds, ``d_k = d^(k/100)``       ``input_shape``
prospr    ``|∂L(θ_3)/∂c|`` through 3 SGD steps, global top-k     data
uniform   random, same density in every layer                    —
er        random, density ∝ (n_in + n_out)/(n_in · n_out)        —
erk       random, density ∝ sum(shape)/prod(shape)               —
========  =====================================================  =======================

Scoring never changes the model (it works on a deep copy), runs on the model's device, and is
deterministic for a seed. Masks are not applied: use :func:`mgelib.masks.apply_masks`.

Besides these names, :func:`prune` takes a **user pruner** by spec (``mypruners:magnitude``,
``path/to/file.py:magnitude``; contract and checks in :mod:`mgelib.pruning.user`) and a
``+shuffle`` suffix on any of them (``snip+shuffle``: each layer's kept count, positions redrawn
at random; :mod:`mgelib.pruning.shuffle`).

Examples
--------
>>> import torch
>>> from mgelib.pruning import prune, layer_report
>>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
>>> batch = (torch.randn(16, 8), torch.arange(16) % 4)
>>> masks = prune("snip", net, 0.9, data=batch)
>>> sum(int(m.sum()) for m in masks.values())  # round(0.1 * 192)
19
>>> masks = prune("synflow", net, 0.9, data=batch, progress=False)  # input_shape from the data
>>> layer_report(net, masks, input_shape=(8,)).attrs["path_connected"]
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from torch import nn

from mgelib.masks import Masks, dense_masks
from mgelib.pruning.core import (
    DATA_FREE,
    DATA_PRUNERS,
    apportion,
    check_options,
    check_seed,
    first_batch,
    kept_count,
    masks_from_scores,
    prepare,
    require_data,
)
from mgelib.pruning.random import er, erk, layer_counts, layer_densities, uniform
from mgelib.pruning.report import layer_report, path_connected, warn_collapse
from mgelib.pruning.saliency import (
    grasp,
    grasp_scores,
    prospr,
    prospr_scores,
    snip,
    snip_scores,
)
from mgelib.pruning.shuffle import shuffle
from mgelib.pruning.synaptic_flow import synflow, synflow_scores
from mgelib.pruning.user import check_user_masks, run_user_pruner
from mgelib.vocabulary import PRUNER_TRANSFORMS

__all__ = [
    "PRUNERS",
    "DATA_FREE",
    "DATA_PRUNERS",
    "prune",
    "check_pruner",
    "shuffle",
    "check_user_masks",
    "masks_from_scores",
    "kept_count",
    "apportion",
    "layer_report",
    "path_connected",
    "warn_collapse",
    "snip",
    "grasp",
    "synflow",
    "prospr",
    "uniform",
    "er",
    "erk",
    "snip_scores",
    "grasp_scores",
    "synflow_scores",
    "prospr_scores",
    "layer_densities",
    "layer_counts",
]

#: The pruners by name (method §4 vocabulary).
PRUNERS: dict[str, Callable[..., Masks]] = {
    "snip": snip,
    "grasp": grasp,
    "synflow": synflow,
    "prospr": prospr,
    "uniform": uniform,
    "er": er,
    "erk": erk,
}


def check_pruner(name: str) -> str:
    """Return ``name`` if :func:`prune` accepts it — a built-in, a spec that resolves to a
    callable, either with ``+shuffle`` — else raise the ``ValueError`` :func:`prune` would, before
    any expensive work.

    Examples
    --------
    >>> check_pruner("snip+shuffle")
    'snip+shuffle'
    >>> check_pruner("snip+shufle")
    Traceback (most recent call last):
    ...
    ValueError: unknown pruner 'snip+shufle'; choose one of snip, grasp, synflow, prospr, uniform, er, erk, a spec 'module:function' or 'file.py:function', each optionally with +shuffle
    """
    from mgelib import specs

    base, _ = specs.split_transforms(name) if isinstance(name, str) else (name, ())
    if specs.is_spec(base):
        specs.resolve(base)
    elif base not in PRUNERS:
        raise ValueError(
            f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}, a spec "
            "'module:function' or 'file.py:function', each optionally with "
            + ", ".join(f"+{t}" for t in PRUNER_TRANSFORMS)
        )
    return name


def prune(
    name: str,
    model: nn.Module,
    sparsity: float,
    *,
    data: Any = None,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    **kwargs: Any,
) -> Masks:
    """Masks of pruner ``name`` for ``model`` at ``sparsity``.

    Parameters
    ----------
    name
        One of ``snip grasp synflow prospr uniform er erk`` (the keys of :data:`PRUNERS`), or a
        user pruner's spec ``module:function`` / ``path/to/file.py:function``
        (:mod:`mgelib.pruning.user`); either may end in ``+shuffle`` (:func:`shuffle`, seeded
        by ``seed``).
    model
        The initialised network (not modified).
    sparsity
        Fraction of prunable weights removed, in [0, 1); 0 returns all-``True`` masks without
        scoring (and without needing data).
    data
        An ``(x, y)`` batch or an iterable of batches, for ``snip``, ``grasp`` and ``prospr``
        (see :mod:`mgelib.pruning.saliency` for what each reads); ignored by the others.
    seed
        Seed of every random choice (random masks, dropout, a shuffling loader).
    input_shape
        Shape of one input, e.g. ``(3, 32, 32)``, for ``synflow``; inferred from the first batch
        of ``data`` when not given.
    **kwargs
        Passed to the pruner (e.g. ``rounds=`` for synflow, ``steps=`` for prospr,
        ``samples_per_class=`` for grasp).

    Returns
    -------
    dict[str, torch.BoolTensor]
        CPU masks keyed by parameter name, ``round((1 - sparsity) · N)`` kept.

    Raises
    ------
    ValueError
        Unknown pruner, sparsity outside [0, 1), a model without Conv1d/Conv2d/Linear layer, a data
        pruner without data, SynFlow without ``input_shape`` or data; a user pruner that does
        not import or returns masks of the wrong keys, shapes, values or kept count.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.ReLU(), torch.nn.Linear(10, 2))
    >>> m = prune("erk", net, 0.5, seed=1)
    >>> sum(int(v.sum()) for v in m.values())
    60
    >>> shuffled = prune("erk+shuffle", net, 0.5, seed=1)
    >>> [int(v.sum()) for v in shuffled.values()] == [int(v.sum()) for v in m.values()]
    True
    >>> prune("magnitude", net, 0.5)
    Traceback (most recent call last):
    ...
    ValueError: unknown pruner 'magnitude'; choose one of snip, grasp, synflow, prospr, uniform, er, erk, a spec 'module:function' or 'file.py:function', each optionally with +shuffle
    """
    from mgelib import specs

    check_pruner(name)
    base, transforms = specs.split_transforms(name)
    s, _ = prepare(model, sparsity)
    seed = check_seed(seed)
    if base in PRUNERS:
        check_options(base, PRUNERS[base], kwargs)
    if s == 0.0:
        return dense_masks(model)
    masks = _base_masks(base, model, s, data=data, seed=seed, input_shape=input_shape, **kwargs)
    for transform in transforms:  # only "shuffle" today (vocabulary.PRUNER_TRANSFORMS)
        if transform == "shuffle":
            masks = shuffle(masks, seed=seed)
    # Layer collapse (method §4) keeps the result meaningful but worth knowing: warn, naming them.
    shape = _probe_shape(input_shape, data)
    warn_collapse(model, masks, shape, source=f"{name} at sparsity {s:g}", stacklevel=2)
    return masks


def _probe_shape(input_shape: Sequence[int] | None, data: Any) -> Sequence[int] | None:
    """``input_shape``, else one input's shape from ``data`` when reading it again is harmless
    (a batch or a re-iterable loader, not a one-shot iterator); ``None`` if unknown."""
    if input_shape is not None or data is None or isinstance(data, Iterator):
        return input_shape
    import torch

    try:
        with torch.random.fork_rng(devices=[]):  # a shuffling loader must not move the caller's RNG
            return tuple(first_batch(data)[0].shape[1:])
    except (ValueError, TypeError):
        return None


def _base_masks(
    name: str,
    model: nn.Module,
    s: float,
    *,
    data: Any,
    seed: int,
    input_shape: Sequence[int] | None,
    **kwargs: Any,
) -> Masks:
    """One pruner's masks: a user spec, or a built-in (PaI); DST methods, which move the mask
    during training, are dispatched by the trainer, not here."""
    from mgelib import specs

    if specs.is_spec(name):
        return run_user_pruner(
            name, model, s, data=data, seed=seed, input_shape=input_shape, **kwargs
        )
    if name in DATA_PRUNERS:
        require_data(name, data)
        masks = PRUNERS[name](model, s, data, seed=seed, **kwargs)
    elif name == "synflow":
        if input_shape is None:
            if data is None:
                raise ValueError(
                    "synflow needs input_shape (one input without the batch dimension, e.g. "
                    "(3, 32, 32)) or data to infer it from"
                )
            input_shape = tuple(first_batch(data)[0].shape[1:])
        masks = synflow(model, s, input_shape=input_shape, seed=seed, **kwargs)
    else:
        masks = PRUNERS[name](model, s, seed=seed, **kwargs)
    return masks
