"""Diagnostics of a mask set: per-layer counts and input → output connectivity (SPEC §4).

:func:`layer_report` tabulates what the masks keep in each prunable layer (and flags collapsed
layers); :func:`path_connected` tells whether any path of kept weights still links the input to
the output, with the SynFlow-style positive probe.

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
>>> masks = {"0.weight": torch.ones(3, 2, dtype=torch.bool), "2.weight": torch.ones(1, 3, dtype=torch.bool)}
>>> layer_report(net, masks, input_shape=(2,)).attrs["path_connected"]
True
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from mgelib.errors import LayerCollapseWarning
from mgelib.masks import check_masks, prunable_parameters
from mgelib.pruning.core import model_device

__all__ = ["layer_report", "path_connected", "warn_collapse"]


def _positive_probe(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """A double-precision eval-mode copy in which every kept weight is positive and nothing else
    can make an activation positive (zero biases, BN reduced to a positive scaling)."""
    net = copy.deepcopy(model).double().eval()
    prunable = prunable_parameters(net)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name in prunable:
                m = masks[name].to(device=p.device, dtype=p.dtype)
                # 1/sqrt(fan-in) keeps a dense net from overflowing and a one-path net from
                # underflowing in double precision; only the sign matters.
                fan_in = max(1, p[0].numel())
                p.copy_(m / math.sqrt(fan_in))
            elif name.rsplit(".", 1)[-1] == "bias":
                p.zero_()
            else:
                p.abs_()
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                if module.running_mean is not None:
                    module.running_mean.zero_()
                if module.running_var is not None:
                    module.running_var.fill_(1.0)
                if module.weight is not None:
                    module.weight.fill_(1.0)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def path_connected(
    model: nn.Module, masks: Mapping[str, torch.Tensor], input_shape: Sequence[int]
) -> bool:
    """Whether any input → output path of kept weights survives the masks.

    The SynFlow-style probe (Tanaka et al. 2020): on a double-precision, eval-mode copy every kept
    weight is set to a positive value, every pruned weight to 0, every bias (and BatchNorm shift
    and running mean) to 0 and BatchNorm to a positive scaling; an all-ones input is fed and the
    network is connected iff some output is > 0.

    Why this is exact for ReLU networks: with non-negative inputs, non-negative weights and zero
    biases every activation is non-negative, so nothing cancels. A conv/linear unit is then > 0 iff
    one of its kept in-edges comes from a unit > 0; ReLU, max/average pooling, flatten, dropout in
    eval mode and residual additions of non-negative tensors are > 0 iff one of their inputs is;
    zero padding contributes nothing. By induction over the layers, a unit is > 0 iff a path of
    kept weights reaches it from the input. The exactness needs activations with ``f(0) = 0`` and
    ``f(x) > 0`` for ``x > 0`` (ReLU and friends); a sigmoid, say, would make every output positive.

    Parameters
    ----------
    model
        The network (not modified).
    masks
        A mask set for ``model`` (see :mod:`mgelib.masks`).
    input_shape
        Shape of one input without the batch dimension, e.g. ``(3, 32, 32)``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    >>> masks = {"0.weight": torch.tensor([[True, False], [False, False]]),
    ...          "2.weight": torch.tensor([[True, False]])}
    >>> path_connected(net, masks, (2,))
    True
    >>> masks["2.weight"] = torch.tensor([[False, True]])
    >>> path_connected(net, masks, (2,))
    False
    """
    masks = check_masks(model, masks)
    shape = _check_input_shape(input_shape)
    net = _positive_probe(model, masks)
    x = torch.ones((1, *shape), dtype=torch.float64, device=model_device(net))
    with torch.no_grad():
        out = net(x)
    return bool((out > 0).any())


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_shape must be a sequence of positive ints such as (3, 32, 32), got {input_shape!r}"
        ) from None
    if not shape or any(v <= 0 for v in shape):
        raise ValueError(
            f"input_shape must be a non-empty sequence of positive ints (one input without the "
            f"batch dimension, e.g. (3, 32, 32)), got {input_shape!r}"
        )
    return shape


def layer_report(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    input_shape: Sequence[int] | None = None,
) -> pd.DataFrame:
    """One row per prunable layer: what the masks keep.

    Parameters
    ----------
    model
        The network the masks belong to.
    masks
        A mask set for ``model``.
    input_shape
        If given, the network-level :func:`path_connected` is computed and stored in
        ``report.attrs["path_connected"]``.

    Returns
    -------
    pandas.DataFrame
        Columns ``layer`` (module name), ``parameter``, ``shape``, ``weights``, ``kept``,
        ``density``, ``collapsed`` (``True`` when no weight of the layer is kept), in the model's
        registration order. ``attrs`` holds ``sparsity`` (global) and, with ``input_shape``,
        ``path_connected``.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> masks = {"0.weight": torch.ones(3, 4, dtype=torch.bool), "2.weight": torch.zeros(2, 3, dtype=torch.bool)}
    >>> rep = layer_report(net, masks, input_shape=(4,))
    >>> rep[["parameter", "kept", "collapsed"]].values.tolist()
    [['0.weight', 12, False], ['2.weight', 0, True]]
    >>> rep.attrs["path_connected"]
    False
    """
    masks = check_masks(model, masks)
    rows = []
    for name, p in prunable_parameters(model).items():
        m = masks[name]
        n, kept = int(m.numel()), int(m.sum())
        rows.append(
            {
                "layer": name.rsplit(".", 1)[0] if "." in name else "",
                "parameter": name,
                "shape": tuple(p.shape),
                "weights": n,
                "kept": kept,
                "density": kept / n if n else float("nan"),
                "collapsed": kept == 0,
            }
        )
    report = pd.DataFrame(rows)
    total = int(report["weights"].sum())
    report.attrs["sparsity"] = 1.0 - int(report["kept"].sum()) / total if total else 0.0
    if input_shape is not None:
        report.attrs["path_connected"] = path_connected(model, masks, input_shape)
    return report


def warn_collapse(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor],
    input_shape: Sequence[int] | None = None,
    *,
    source: str = "masks",
    stacklevel: int = 2,
) -> list[str]:
    """Warn with a :class:`~mgelib.errors.LayerCollapseWarning` when ``masks`` keep no weight in
    some layer or (with ``input_shape``) leave no input → output path; return the empty layers.

    At extreme sparsity a global ranking can empty whole layers (SynFlow at s = 0.999999 keeps one
    weight: 8 of 9 layers empty). Such a network still has a graph, but it computes a constant:
    the result is meaningful, so it is a warning, not an error.

    Examples
    --------
    >>> import torch, warnings
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
    >>> masks = {"0.weight": torch.ones(2, 2, dtype=torch.bool), "2.weight": torch.zeros(1, 2, dtype=torch.bool)}
    >>> with warnings.catch_warnings(record=True) as seen:
    ...     warnings.simplefilter("always")
    ...     warn_collapse(net, masks, (2,))
    ['2']
    >>> print(seen[0].message)
    masks: 1 of 2 prunable layers keep no weight (2); no input → output path survives; the network computes a constant
    """
    report = layer_report(model, masks, input_shape)
    empty = [str(v) for v in report.loc[report["collapsed"], "layer"]]
    connected = bool(report.attrs.get("path_connected", True))
    if empty or not connected:
        parts = []
        if empty:
            shown = ", ".join(empty[:8]) + (" …" if len(empty) > 8 else "")
            parts.append(f"{len(empty)} of {len(report)} prunable layers keep no weight ({shown})")
        if not connected:
            parts.append("no input → output path survives")
        warnings.warn(
            f"{source}: " + "; ".join(parts) + "; the network computes a constant",
            LayerCollapseWarning,
            stacklevel=stacklevel,
        )
    return empty
