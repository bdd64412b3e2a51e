"""Graph encodings of sparse networks (SPEC §5).

:func:`encode` is the one entry point: the input-aware multipartite graph encoding (``"mge"``,
one :class:`Graph`) or the input-agnostic bipartite baselines (``"rolled"``, ``"rolled_channel"``,
a ``dict`` of one :class:`Graph` per layer).

Three layers of rules are kept apart (SPEC §5):

1. exact geometry, always;
2. the paper's conventions, each an option, on by default: ``keep_input_padding`` (the input
   partition keeps the first conv's zero-padding border as nodes), identity shortcuts not encoded
   (``identity_shortcuts=False``), pooling as window fan-in, float16 edge weights
   (``weight_precision="float16"``);
3. reference compatibility, off by default: ``compat="mge-snn"`` reproduces the authors' strided
   convolution numbering defect, so that numbers can be set beside their published tables.

The strided-convolution defect (``compat="mge-snn"``)
----------------------------------------------------
The authors' code unrolls a *strided main-path* convolution over an assumed input grid
``H' = (Ho − 1)·s + k − 2·pad`` (31×31 instead of 32×32 and 15×15 instead of 16×16 in ResNet-20),
numbers its sources over that grid and its targets from the *input* partition's start. Thousands
of edges land inside the input partition and the last output nodes get no in-edges from that conv;
on ResNet-20 at s = 0.98 source nodes go from 331 to 2,390 and r-in from 1,249 to 14,225. Every
published MGE number of ResNet-20/32, WRN-28-2 and MobileNetV2 carries it (CONV-6 has no strides).
We apply the same formula to any strided main-path conv whose input is an unpooled partition
(any k, pad, s); a strided conv that reads a pooled map or the padded input keeps exact geometry
(the authors' code has no such layer in its four models).

Examples
--------
>>> import torch
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.ReLU(),
...                           torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
>>> g = encode(net, (1, 4, 4))
>>> g.dims.tolist()  # input kept with its padding border: 1×6×6
[36, 32, 3]
>>> sorted(encode(net, encoding="rolled"))
['0', '3']
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mgelib.graphs.bge import BGE_ENCODINGS, build_bge
from mgelib.graphs.graph import Graph, read_edgelist, to_igraph, to_networkx, write_edgelist
from mgelib.graphs.mge import GraphTooLarge, LayerWeights, build_mge, count_edges
from mgelib.graphs.trace import Plan, UnsupportedOperation, trace_plan
from mgelib.masks import check_masks, prunable_modules

__all__ = [
    "encode",
    "plan_for",
    "estimate_edges",
    "layer_weights",
    "Graph",
    "GraphTooLarge",
    "UnsupportedOperation",
    "ENCODINGS",
    "to_igraph",
    "to_networkx",
    "write_edgelist",
    "read_edgelist",
]

ENCODINGS = ("mge", *BGE_ENCODINGS)
COMPAT = (None, "mge-snn")
WEIGHTS = ("init", "trained", "binary")
PRECISIONS = ("float16", "float32")

_PLAN_CACHE: OrderedDict[tuple, Plan] = OrderedDict()
_PLAN_CACHE_SIZE = 8


def _fingerprint(model: nn.Module) -> tuple:
    """What decides a model's dataflow: every module's class (and its ``forward``), its
    configuration (``repr``) and its plain attributes (a flag that changes ``forward`` does not
    always show in ``repr``), and the parameter shapes. Weights and masks are not in it."""
    parts = []
    for name, m in model.named_modules():
        attrs = tuple(
            sorted(
                (k, repr(v))
                for k, v in vars(m).items()
                if not k.startswith("_") and k != "training" and not isinstance(v, torch.Tensor)
            )
        )
        forward = getattr(type(m), "forward", None)
        code = getattr(forward, "__code__", None)
        parts.append(
            (name, type(m).__module__, type(m).__qualname__, id(code), m.extra_repr(), attrs)
        )
    shapes = tuple((k, tuple(p.shape)) for k, p in model.named_parameters())
    return (tuple(parts), shapes)


def plan_for(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    keep_input_padding: bool = True,
    identity_shortcuts: bool = False,
) -> Plan:
    """The traced MGE plan of ``model`` (cached per architecture, input shape and options).

    The plan does not depend on weights or masks, so a grid of pruned copies of one architecture
    traces it once.
    """
    key = (
        _fingerprint(model),
        tuple(int(v) for v in input_shape),
        bool(keep_input_padding),
        bool(identity_shortcuts),
    )
    plan = _PLAN_CACHE.get(key)
    if plan is None:
        plan = trace_plan(
            model,
            input_shape,
            keep_input_padding=keep_input_padding,
            identity_shortcuts=identity_shortcuts,
        )
        _PLAN_CACHE[key] = plan
        while len(_PLAN_CACHE) > _PLAN_CACHE_SIZE:
            _PLAN_CACHE.popitem(last=False)
    else:
        _PLAN_CACHE.move_to_end(key)
    return plan


def layer_weights(
    model: nn.Module,
    *,
    weights: str | Mapping[str, torch.Tensor] = "init",
    weight_precision: str = "float16",
    masks: Mapping[str, torch.Tensor] | None = None,
    round_weights: bool = True,
) -> dict[str, LayerWeights]:
    """Kept pattern and ``|w|`` of every prunable layer, keyed by parameter name.

    The kept pattern is, in order of preference: ``masks`` when given, the module's
    ``weight_mask`` buffer (set by :func:`mgelib.masks.apply_masks` or
    :mod:`torch.nn.utils.prune`), else ``weight != 0``.
    """
    if masks is not None:
        masks = check_masks(model, masks)  # bool CPU tensors, numpy accepted
    explicit = weights if isinstance(weights, Mapping) else None
    out: dict[str, LayerWeights] = {}
    for name, module in prunable_modules(model).items():
        key = f"{name}.weight"
        w = explicit[key] if explicit is not None and key in explicit else module.weight
        w = w.detach().to("cpu", torch.float32)
        if masks is not None:
            kept = masks[key].detach().to("cpu", torch.bool)
        elif isinstance(getattr(module, "weight_mask", None), torch.Tensor):
            kept = module.weight_mask.detach().to("cpu", torch.bool)
        else:
            kept = w != 0
        if tuple(kept.shape) != tuple(w.shape):
            raise ValueError(
                f"mask of {key!r} has shape {tuple(kept.shape)}, weight {tuple(w.shape)}"
            )
        kept_np = kept.numpy()
        if weights == "binary":
            mag = kept_np.astype(np.float32)
        else:
            mag = np.abs(w.numpy()) * kept_np
            if round_weights and weight_precision == "float16":
                mag = mag.astype(np.float16).astype(np.float32)
        groups = int(getattr(module, "groups", 1))
        out[key] = LayerWeights(kept=kept_np, weight=mag.astype(np.float32), groups=groups)
    return out


def estimate_edges(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    keep_input_padding: bool = True,
    identity_shortcuts: bool = False,
    compat: str | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
) -> int:
    """Exact number of MGE edges, computed from the masks without building the graph."""
    plan = plan_for(
        model,
        input_shape,
        keep_input_padding=keep_input_padding,
        identity_shortcuts=identity_shortcuts,
    )
    return count_edges(plan, layer_weights(model, masks=masks, weights="binary"), compat)


def encode(
    model: nn.Module,
    input_shape: Sequence[int] | None = None,
    encoding: str = "mge",
    *,
    weights: str | Mapping[str, torch.Tensor] = "init",
    keep_input_padding: bool = True,
    identity_shortcuts: bool = False,
    weight_precision: str = "float16",
    compat: str | None = None,
    max_edges: int | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    memory_budget: int | None = None,
) -> Graph | dict[str, Graph]:
    """Encode a (masked) network as a graph.

    Parameters
    ----------
    model : torch.nn.Module
        Any model built from the supported operations (SPEC §5.1): Conv2d (groups 1 or depthwise),
        Linear, max/avg/adaptive pooling, flatten, residual add, element-wise layers. Its masked
        weights are read as they are; pass the model as initialised (and masked) for
        ``weights="init"``, or the trained model with ``weights="trained"``.
    input_shape : (C, H, W) or (F,)
        The input of one sample (the MGE is input-aware). Not needed for the BGEs.
    encoding : {"mge", "rolled", "rolled_channel"}
    weights : {"init", "trained", "binary"} or mapping
        Edge weights: the model's ``|w|`` ("init" and "trained" label which weights the caller
        passed and are recorded in ``graph.meta``), all ones ("binary"), or explicit tensors keyed
        by parameter name.
    keep_input_padding : bool
        Paper convention: the input partition keeps the first conv's zero-padding border.
    identity_shortcuts : bool
        Add a weight-1 edge from each block-input node to the same position of the block output.
    weight_precision : {"float16", "float32"}
        Paper mode rounds ``|w|`` to float16 precision, as the authors stored them.
    compat : {None, "mge-snn"}
        Reproduce the authors' strided-conv numbering (see the module docstring).
    max_edges : int, optional
        Refuse (``GraphTooLarge``) to build a larger MGE; the exact count is computed first.
    masks : mapping, optional
        Kept patterns keyed by parameter name (else ``weight_mask`` buffers, else ``w != 0``).
    memory_budget : int, optional
        Bytes the build may use (default 80 % of the available memory).

    Returns
    -------
    Graph or dict of str to Graph
        One MGE, or one bipartite graph per conv/linear layer (module name → graph).
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
    if compat not in COMPAT:
        raise ValueError(f"compat must be None or 'mge-snn', got {compat!r}")
    if weight_precision not in PRECISIONS:
        raise ValueError(f"weight_precision must be one of {PRECISIONS}, got {weight_precision!r}")
    if isinstance(weights, str) and weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS} or a mapping, got {weights!r}")
    if not prunable_modules(model):
        raise ValueError(f"{type(model).__name__} has no Conv2d or Linear layer to encode")
    label = weights if isinstance(weights, str) else "explicit"
    meta = {
        "weights": label,
        "weight_precision": weight_precision,
        "keep_input_padding": keep_input_padding,
        "identity_shortcuts": identity_shortcuts,
        "model": type(model).__name__,
    }
    if encoding in BGE_ENCODINGS:
        lw = layer_weights(
            model,
            weights=weights,
            weight_precision=weight_precision,
            masks=masks,
            round_weights=False,
        )
        named = {k.removesuffix(".weight"): v for k, v in lw.items()}
        return build_bge(encoding, named, weight_precision=weight_precision, meta=meta)
    if input_shape is None:
        raise ValueError("the MGE is input-aware: pass input_shape=(C, H, W) of one sample")
    plan = plan_for(
        model,
        input_shape,
        keep_input_padding=keep_input_padding,
        identity_shortcuts=identity_shortcuts,
    )
    lw = layer_weights(model, weights=weights, weight_precision=weight_precision, masks=masks)
    return build_mge(
        plan, lw, compat=compat, max_edges=max_edges, memory_budget=memory_budget, meta=meta
    )
