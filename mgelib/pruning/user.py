"""User pruners given by a spec (``mypruners:magnitude``, ``path/to/file.py:magnitude``).

A user pruner follows the built-ins' contract (SPEC §4)::

    fn(model, sparsity, *, data=None, input_shape=None, seed=0) -> dict[str, BoolTensor]

and is called with ``model`` and ``sparsity`` positionally plus those of ``data``,
``input_shape`` and ``seed`` it declares (all of them if it takes ``**kwargs``). It gets a deep
copy of the model, so scoring cannot change the network being trained.

What it returns is checked before anything else uses it (:func:`check_user_masks`): one mask per
prunable weight (the keys of :func:`mgelib.masks.prunable_parameters`), each of the weight's
shape, boolean or 0/1 values, and **exactly** the kept count the built-ins keep,
``round((1 - sparsity) · N)`` of the ``N`` prunable weights (± one weight, SPEC §1). A pruner that
keeps another count is refused rather than recorded at a sparsity it did not reach, so a run's
recorded sparsity is always the one it has; use :func:`mgelib.pruning.masks_from_scores` to turn
scores into an exact global top-k.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 4))
>>> ok = {"0.weight": torch.arange(16).reshape(4, 4) >= 8}  # keeps 8 of 16
>>> sorted(check_user_masks(net, ok, 0.5, "mine:half"))
['0.weight']
>>> check_user_masks(net, ok, 0.9, "mine:half")
Traceback (most recent call last):
...
ValueError: pruner 'mine:half' kept 8 of 16 weights (sparsity 0.5); sparsity 0.9 keeps 2 (± 1)... sparsity)
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mgelib.masks import Masks, check_masks, prunable_parameters
from mgelib.pruning.core import kept_count

__all__ = ["run_user_pruner", "check_user_masks"]


def check_user_masks(model: nn.Module, masks: Any, sparsity: float, name: str) -> Masks:
    """Validate what a user pruner returned and return it as CPU ``BoolTensor`` s.

    Raises
    ------
    ValueError
        Not a mapping; keys other than the prunable weights; a wrong shape; values other than
        booleans or 0/1; a kept count off the exact one by more than one weight.
    """
    what = f"pruner {name!r}"
    if not isinstance(masks, Mapping):
        raise ValueError(
            f"{what} returned a {type(masks).__name__}; it must return a dict mapping each "
            "prunable parameter name to a boolean mask"
        )
    out: Masks = {}
    for key, value in masks.items():
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu()
        else:
            try:
                t = torch.as_tensor(np.asarray(value))
            except (TypeError, ValueError):
                raise ValueError(
                    f"{what}: mask {key!r} is a {type(value).__name__}, not a tensor or array"
                ) from None
        if t.dtype != torch.bool:
            if t.is_complex() or not bool(((t == 0) | (t == 1)).all()):
                raise ValueError(
                    f"{what}: mask {key!r} has values other than 0/1 (dtype {t.dtype}); return "
                    "booleans, True = kept"
                )
            t = t != 0
        out[str(key)] = t
    try:
        check_masks(model, out)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None
    total = sum(int(p.numel()) for p in prunable_parameters(model).values())
    kept = sum(int(m.sum()) for m in out.values())
    want = kept_count(sparsity, total)
    if abs(kept - want) > 1:
        raise ValueError(
            f"{what} kept {kept} of {total} weights (sparsity {1 - kept / total:.4g}); sparsity "
            f"{sparsity:g} keeps {want} (± 1). Keep exactly that many, e.g. with "
            "mgelib.pruning.masks_from_scores(scores, sparsity)"
        )
    return out


def run_user_pruner(
    name: str,
    model: nn.Module,
    sparsity: float,
    *,
    data: Any = None,
    seed: int = 0,
    input_shape: Sequence[int] | None = None,
    **kwargs: Any,
) -> Masks:
    """Resolve the spec ``name``, call it on a copy of ``model`` and check its masks."""
    from mgelib import specs

    fn = specs.resolve(name)
    available = {
        "data": data,
        "input_shape": tuple(input_shape) if input_shape is not None else None,
        "seed": int(seed),
        **kwargs,
    }
    scratch = copy.deepcopy(model)
    masks = _call(fn, scratch, sparsity, f"pruner {name!r}", available)
    return check_user_masks(model, masks, sparsity, name)


def _call(fn: Any, model: nn.Module, sparsity: float, what: str, available: dict) -> Any:
    """Call ``fn(model, sparsity, **declared)``, refusing a signature without two positionals."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # no signature to read: pass everything
        return fn(model, sparsity, **available)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 and not any(p.kind is p.VAR_POSITIONAL for p in params):
        raise ValueError(
            f"{what} must take (model, sparsity, *, data=None, input_shape=None, seed=0); its "
            f"signature is {inspect.signature(fn)}"
        )
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return fn(model, sparsity, **available)
    rest = {p.name for p in params[2:]} if len(positional) >= 2 else {p.name for p in params}
    declared = {k: v for k, v in available.items() if k in rest}
    missing = [
        p.name
        for p in params[2:]
        if p.name not in available
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        raise ValueError(
            f"{what} has required parameter(s) {missing} that mgelib cannot supply; it passes "
            f"only {', '.join(available)} by keyword"
        )
    return fn(model, sparsity, **declared)
