"""Discover a model's dataflow (:mod:`torch.fx`, else an ATen trace) and turn it into an MGE *plan*.

The plan depends only on the architecture and the input shape, never on weights or masks, so it is
computed once and cached; :mod:`mgelib.graphs.mge` turns a plan plus masked weights into edges.

How the tracer sees a tensor (method §5.1)
----------------------------------------
Every activation tensor is represented by an *index table*: an integer array of shape
``(*element_shape, m)`` giving, for each element, the MGE node ids it stands for (``-1`` = none).
A tensor produced by a conv/linear layer whose partition exists has ``m = 1`` (one node per
element). Pooling gives the pooled map no nodes: each pooled element stands for every node of its
window (``m`` = window size), which is exactly "each edge that leaves a pooled position is copied
to every pre-pool position in that window". Flatten/view reshape the table (``(c, y, x)`` order).
BatchNorm, ReLU, dropout and other element-wise operations pass the table through.

A conv/linear output is *pending* until something other than an element-wise op consumes it; it
then becomes a partition. That is how a parametric shortcut creates no partition: at a residual
``add`` of two pending outputs, the main path (the one fed by the later partition — the block's
inner partition, not the block input) keeps its partition and the shortcut's edges are retargeted
onto it. An identity shortcut adds nothing (or, with ``identity_shortcuts=True``, one weight-1
edge per position). Partitions are numbered in forward execution order of their producing layer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import nn

from mgelib.graphs.aten import AtenBuilder, export_program
from mgelib.graphs.interpreter import _Interpreter
from mgelib.graphs.plan import ConvStep, IdentityStep, Partition, Plan, UnsupportedOperation
from mgelib.graphs.values import _Record, zero_input

__all__ = ["Plan", "Partition", "ConvStep", "IdentityStep", "trace_plan", "UnsupportedOperation"]


def _strip_fx(exc: BaseException) -> str:
    """The message without the fx interpreter's "While executing %node …" appendix."""
    return str(exc).split("\n\nWhile executing", 1)[0].strip()


# --------------------------------------------------------------------------- public
def trace_plan(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    keep_input_padding: bool = True,
    identity_shortcuts: bool = False,
    export_key: Any = None,
) -> Plan:
    """Trace ``model`` on a dummy input of ``input_shape`` and return its MGE plan.

    ``export_key`` (the architecture's fingerprint and the shape) caches the ATen export, which
    does not depend on the encoding options.

    :func:`torch.fx.symbolic_trace` is tried first (tens of milliseconds); a model it cannot
    trace, or that uses an operation its interpreter does not map, is traced at the ATen level by
    :func:`torch.export.export` (seconds, static shapes; :mod:`mgelib.graphs.aten`). Both give the
    same plan for the models both handle (tested).

    Raises
    ------
    UnsupportedOperation
        For an operation the MGE cannot represent; the message names the op, the module and why.
    ValueError
        When the model cannot run on (or be traced at) ``input_shape``.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) not in (1, 2, 3) or min(input_shape, default=0) < 1:
        raise ValueError(f"input_shape must be (C, H, W), (C, L) or (F,), got {input_shape}")
    if len(input_shape) != 2:
        try:
            return _trace_fx(model, input_shape, keep_input_padding, identity_shortcuts)
        except _NotForFx:
            pass
    return _trace_aten(model, input_shape, keep_input_padding, identity_shortcuts, export_key)


_EXPORTS: OrderedDict[Any, Any] = OrderedDict()
_EXPORTS_SIZE = 4


class _NotForFx(Exception):
    """The fx path cannot handle the model: try the ATen path."""


def _trace_aten(
    model: nn.Module,
    input_shape: tuple[int, ...],
    keep_input_padding: bool,
    identity: bool,
    export_key: Any = None,
) -> Plan:
    program = _EXPORTS.get(export_key) if export_key is not None else None
    if program is None:
        program = export_program(model, input_shape)
        if export_key is not None:
            _EXPORTS[export_key] = program
            while len(_EXPORTS) > _EXPORTS_SIZE:
                _EXPORTS.popitem(last=False)
    builder = AtenBuilder(program, model, keep_input_padding, identity)
    builder.run()
    return _finalise(builder, input_shape, keep_input_padding, identity)


def _trace_fx(
    model: nn.Module, input_shape: tuple[int, ...], keep_input_padding: bool, identity: bool
) -> Plan:
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors: the ATen path resolves sizes
        raise _NotForFx from exc
    interp = _Interpreter(gm, keep_input_padding, identity)
    x = zero_input(model, input_shape)
    was_training = model.training
    model.eval()
    gm.eval()
    try:
        with torch.no_grad():
            interp.run(x)
    except UnsupportedOperation as exc:
        raise _NotForFx from exc
    except RuntimeError as exc:
        raise ValueError(
            f"{type(model).__name__} cannot run on input_shape={input_shape}: "
            f"{_strip_fx(exc)}. Does the shape match the one the model was built for, and is it "
            "large enough (pooling and strides must not shrink it below 1×1)?"
        ) from None
    except (TypeError, ValueError, AttributeError, IndexError) as exc:
        raise _NotForFx from exc
    finally:
        model.train(was_training)
    return _finalise(interp, input_shape, keep_input_padding, identity)


def _finalise(
    interp: Any,
    input_shape: tuple[int, ...],
    keep_input_padding: bool,
    identity_shortcuts: bool,
) -> Plan:
    parts = interp.partitions
    if len(parts) < 2:
        raise ValueError("the model has no conv/linear layer reachable from its input")
    # Final numbering: partitions in forward-execution order of their producing layer.
    order = sorted(range(len(parts)), key=lambda i: parts[i].order)
    new_index = {old: new for new, old in enumerate(order)}
    old_bases = np.array([p.base for p in parts], dtype=np.int64)
    final = [parts[i] for i in order]
    base = 0
    for p in final:
        p.base = base
        base += p.size
    new_bases = np.array([parts[i].base for i in range(len(parts))], dtype=np.int64)
    sort_old = np.argsort(old_bases)

    def remap(table: np.ndarray) -> np.ndarray:
        if order == list(range(len(parts))):
            return table
        out = table.copy()
        valid = table >= 0
        ids = table[valid]
        slot = np.searchsorted(old_bases[sort_old], ids, side="right") - 1
        part = sort_old[slot]
        out[valid] = new_bases[part] + (ids - old_bases[part])
        return out

    steps: list[ConvStep | IdentityStep] = []
    for item in interp.steps:
        if len(item) == 3:
            rec, target, role = item
            table = remap(rec.source.table)
            if rec.kind == "conv":
                table = _pad_for_conv(rec, table, remap)
            plain = rec.source.plain
            steps.append(
                ConvStep(
                    layer=rec.layer,
                    param=rec.param,
                    kind=rec.kind,
                    role=role,
                    table=table,
                    out_shape=rec.out_shape,
                    target=new_index[target],
                    stride=rec.stride,
                    kernel=rec.kernel,
                    padding=rec.padding,
                    depthwise_multiplier=rec.depthwise_multiplier,
                    dilation=rec.dilation,
                    groups=rec.groups,
                    plain_input=None if plain is None else new_index[plain],
                    in_shape=tuple(rec.source.table.shape[:-1]),
                )
            )
        else:
            nodes, target = item
            steps.append(IdentityStep(table=remap(nodes.table), target=new_index[target]))
    steps.sort(key=lambda s: (s.target, 0 if getattr(s, "role", "") == "main" else 1))
    return Plan(
        partitions=final,
        steps=steps,
        input_shape=input_shape,
        keep_input_padding=keep_input_padding,
        identity_shortcuts=identity_shortcuts,
        may_duplicate=interp.may_duplicate,
        notes=interp.notes,
    )


def _pad_for_conv(rec: _Record, table: np.ndarray, remap: Any) -> np.ndarray:
    """Pad the input table for the conv: with -1 (padding is not a node), or — for the input
    partition kept with its border (paper convention) — with the border nodes themselves."""
    ph, pw = rec.padding
    if ph == 0 and pw == 0:
        return table
    padded = rec.source.padded
    if padded is not None and padded[0] == (ph, pw):
        return remap(padded[1])
    c, h, w, m = table.shape
    out = np.full((c, h + 2 * ph, w + 2 * pw, m), -1, dtype=np.int64)
    out[:, ph : ph + h, pw : pw + w, :] = table
    return out
