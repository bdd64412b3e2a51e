"""Mask sets: which weights of a model are kept (method §1).

A mask set is a ``dict[str, torch.BoolTensor]`` keyed by the qualified parameter name
(``"layer1.0.conv1.weight"``), ``True`` = kept. The prunable weights are the ``weight`` of every
``Conv2d`` and ``Linear`` module, first layer, classifier and 1×1 shortcut convolutions included;
biases and normalisation layers are never pruned.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> sorted(prunable_parameters(net))
['0.weight', '2.weight']
>>> masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(net).items()}
>>> check_masks(net, masks)
>>> float(global_sparsity(masks))
0.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "Masks",
    "PRUNABLE_TYPES",
    "prunable_parameters",
    "prunable_modules",
    "check_masks",
    "check_sparsity",
    "apply_masks",
    "global_sparsity",
    "dense_masks",
    "masks_from_weights",
]

Masks = dict[str, torch.Tensor]

#: Module types whose ``weight`` is prunable.
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Conv2d and Linear modules by qualified module name, in registration order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}


def prunable_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """The prunable weights by qualified parameter name (``"<module>.weight"``).

    Works on models pruned with :mod:`torch.nn.utils.prune` too: the underlying
    ``weight_orig`` parameter is returned under the ``"<module>.weight"`` name.
    """
    out: dict[str, torch.Tensor] = {}
    for name, module in prunable_modules(model).items():
        param = getattr(module, "weight_orig", None)
        if param is None:
            param = module.weight
        out[f"{name}.weight" if name else "weight"] = param
    return out


def check_sparsity(sparsity: float) -> float:
    """Return ``sparsity`` as a float, or raise a ``ValueError`` naming the bad value."""
    try:
        s = float(sparsity)
    except (TypeError, ValueError):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}") from None
    if not 0.0 <= s < 1.0:
        raise ValueError(
            f"sparsity must lie in [0, 1) (the fraction of prunable weights removed), got {s!r}; "
            "use 0 for the dense network"
        )
    return s


def check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Raise a ``ValueError`` unless ``masks`` has exactly the model's prunable weights as keys,
    each with the weight's shape."""
    params = prunable_parameters(model)
    if not params:
        raise ValueError(
            f"{type(model).__name__} has no prunable layer (no Conv2d or Linear weight)"
        )
    missing = [k for k in params if k not in masks]
    extra = [k for k in masks if k not in params]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unknown {extra[:5]}{' …' if len(extra) > 5 else ''}")
        raise ValueError(
            "masks do not match the model's prunable weights: "
            + "; ".join(parts)
            + f". Expected keys like {next(iter(params))!r} (one per Conv2d/Linear weight)."
        )
    for key, param in params.items():
        mask = masks[key]
        if tuple(mask.shape) != tuple(param.shape):
            raise ValueError(
                f"mask {key!r} has shape {tuple(mask.shape)} but the weight has shape "
                f"{tuple(param.shape)}; masks must come from the same architecture and input size"
            )


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned weights of ``model`` in place and return it.

    Masks are also stored as ``weight_mask`` buffers on each module (the attribute name
    :mod:`torch.nn.utils.prune` uses), so :func:`mgelib.encode` and the trainer can tell a kept
    weight that happens to be zero from a pruned one. The weight stays a plain parameter: training
    keeps it at zero by masking after every step (see :mod:`mgelib.train`).
    """
    check_masks(model, masks)
    for name, module in prunable_modules(model).items():
        key = f"{name}.weight" if name else "weight"
        mask = masks[key].to(device=module.weight.device, dtype=torch.bool)
        if hasattr(module, "weight_orig"):
            raise ValueError(
                f"module {name!r} is already pruned with torch.nn.utils.prune; call "
                "torch.nn.utils.prune.remove first or pass that model to the encoder as it is"
            )
        module.weight.mul_(mask.to(module.weight.dtype))
        if "weight_mask" in module._buffers:
            module._buffers["weight_mask"] = mask.clone()
        else:
            module.register_buffer("weight_mask", mask.clone(), persistent=False)
    return model


def global_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of weights removed over the whole mask set."""
    total = sum(int(m.numel()) for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return 1.0 - kept / total if total else 0.0


def dense_masks(model: nn.Module) -> Masks:
    """All-``True`` masks for the dense baseline."""
    return {
        k: torch.ones_like(p, dtype=torch.bool, device="cpu")
        for k, p in prunable_parameters(model).items()
    }


@torch.no_grad()
def masks_from_weights(model: nn.Module, arrays: Mapping[str, Any]) -> Masks:
    """Load masked weight arrays into ``model`` and return the masks they imply (``w != 0``).

    ``arrays`` maps module names (``"convs1.0"``, as in the authors' fixture files) or parameter
    names (``"convs1.0.weight"``) to weight arrays with zeros where pruned; every prunable weight
    must be given. Apply the result with :func:`apply_masks`.
    """
    params = prunable_parameters(model)
    values = {k if k in params else f"{k}.weight": v for k, v in arrays.items()}
    check_masks(model, {k: torch.as_tensor(np.asarray(v)) for k, v in values.items()})
    for key, value in values.items():
        params[key].copy_(torch.as_tensor(np.asarray(value), dtype=params[key].dtype))
    return {k: p.detach().cpu() != 0 for k, p in params.items()}
