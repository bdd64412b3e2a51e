"""Mask sets: which weights of a model are kept (method §1).

A mask set is a ``dict[str, torch.BoolTensor]`` keyed by the qualified parameter name
(``"layer1.0.conv1.weight"``), ``True`` = kept. The prunable weights are the ``weight`` of every
``Conv1d``, ``Conv2d`` and ``Linear`` module, first layer, classifier and 1×1 shortcut convolutions included;
biases and normalisation layers are never pruned.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> sorted(prunable_parameters(net))
['0.weight', '2.weight']
>>> masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in prunable_parameters(net).items()}
>>> sorted(check_masks(net, masks))
['0.weight', '2.weight']
>>> float(global_sparsity(masks))
0.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from mgelib.errors import MaskError

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
PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Linear)


def prunable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Conv1d, Conv2d and Linear modules by qualified module name, in registration order."""
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
    if isinstance(sparsity, bool):
        raise ValueError(f"sparsity must be a number in [0, 1), got the boolean {sparsity!r}")
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


def _as_bool_mask(key: str, value: Any) -> torch.Tensor:
    """One mask as a CPU ``BoolTensor``: boolean, or 0/1 of any dtype (torch, numpy, nested lists).

    Anything else is refused with the key named: a float mask of 0.3 or an int mask of {-1, 0, 2}
    would otherwise count every non-zero as kept, which silently changes the sparsity.
    """
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
    else:
        try:
            arr = np.asarray(value)
        except (TypeError, ValueError):
            arr = np.asarray(None, dtype=object)
        if arr.dtype == object or arr.dtype.kind in "SUV":
            raise MaskError(
                f"mask {key!r} is a {type(value).__name__} that is not a numeric array; masks are "
                "torch or numpy arrays of booleans (True = kept) or of 0/1"
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.dtype == torch.bool:
        return t
    if t.is_complex():
        raise MaskError(f"mask {key!r} is complex; masks are boolean (True = kept) or 0/1")
    bad = ~((t == 0) | (t == 1))
    if bool(bad.any()):
        values = torch.unique(t[bad].to(torch.float64))
        shown = ", ".join(f"{v:g}" for v in values[:5].tolist())
        raise MaskError(
            f"mask {key!r} ({t.dtype}) holds values other than 0 and 1 ({shown}"
            f"{' …' if values.numel() > 5 else ''}; {int(bad.sum())} of {t.numel()} entries); masks "
            "are boolean (True = kept) or 0/1 of any dtype. Threshold scores yourself, e.g. "
            "mgelib.pruning.masks_from_scores(scores, sparsity)"
        )
    return t.to(torch.bool)


def _check_structure(
    model: nn.Module, masks: Mapping[str, Any], what: str = "mask"
) -> dict[str, torch.Tensor]:
    """The model's prunable weights, after checking ``masks`` has exactly their keys and shapes."""
    params = prunable_parameters(model)
    if not params:
        raise ValueError(
            f"{type(model).__name__} has no prunable layer (no Conv1d, Conv2d or Linear weight)"
        )
    if not isinstance(masks, Mapping):
        raise MaskError(
            f"masks must be a mapping of parameter name → mask, got {type(masks).__name__}; "
            f"keys like {next(iter(params))!r}"
        )
    missing = [k for k in params if k not in masks]
    extra = [k for k in masks if k not in params]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unknown {extra[:5]}{' …' if len(extra) > 5 else ''}")
        raise MaskError(
            "masks do not match the model's prunable weights: "
            + "; ".join(parts)
            + f". Expected keys like {next(iter(params))!r} (one per Conv1d/Conv2d/Linear weight)."
        )
    for key, param in params.items():
        mask = masks[key]
        shape = tuple(getattr(mask, "shape", np.shape(mask)))
        if shape != tuple(param.shape):
            raise MaskError(
                f"{what} {key!r} has shape {shape} but the weight has shape "
                f"{tuple(param.shape)}; masks must come from the same architecture and input size"
            )
    return params


def check_masks(model: nn.Module, masks: Mapping[str, Any]) -> Masks:
    """Check a mask set against ``model`` and return it as CPU ``BoolTensor`` s.

    Raises a :class:`~mgelib.errors.MaskError` (a ``ValueError``) unless ``masks`` has exactly the
    model's prunable weights as keys, each with the weight's shape and boolean or 0/1 values
    (torch tensors, numpy arrays or nested lists of any dtype).

    Examples
    --------
    >>> import numpy as np, torch
    >>> net = torch.nn.Linear(2, 1)
    >>> check_masks(net, {"weight": np.array([[1, 0]])})["weight"].tolist()
    [[True, False]]
    >>> check_masks(net, {"weight": torch.tensor([[0.3, 0.3]])})
    Traceback (most recent call last):
    ...
    mgelib.errors.MaskError: mask 'weight' (torch.float32) holds values other than 0 and 1 ...
    """
    params = _check_structure(model, masks)
    out: Masks = {}
    for key in params:
        mask = masks[key]
        out[key] = _as_bool_mask(key, mask)
    return out


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Zero the pruned weights of ``model`` in place and return it.

    Masks are also stored as ``weight_mask`` buffers on each module (the attribute name
    :mod:`torch.nn.utils.prune` uses), so :func:`mgelib.encode` and the trainer can tell a kept
    weight that happens to be zero from a pruned one. The weight stays a plain parameter: training
    keeps it at zero by masking after every step (see :mod:`mgelib.train`).
    """
    masks = check_masks(model, masks)
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


def global_sparsity(masks: Mapping[str, Any]) -> float:
    """Fraction of weights removed over the whole mask set (boolean or 0/1 masks)."""
    bools = [_as_bool_mask(k, m) for k, m in masks.items()]
    total = sum(int(m.numel()) for m in bools)
    kept = sum(int(m.sum()) for m in bools)
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
    _check_structure(model, values, "weight array")
    for key, value in values.items():
        params[key].copy_(torch.as_tensor(np.asarray(value), dtype=params[key].dtype))
    return {k: p.detach().cpu() != 0 for k, p in params.items()}
