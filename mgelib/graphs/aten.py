"""Derive the MGE plan from an ATen-level trace (:func:`torch.export.export`, static shapes).

Used when :func:`torch.fx.symbolic_trace` cannot trace a model (Python size arithmetic such as
``int(x.size(1) * ratio)``) or the fx interpreter meets an operation it does not know. Shapes are
static for the given ``input_shape``, so sizes resolve, and only a small set of core ATen
operations has to be mapped (``docs/operations.md`` lists them and the refused ones):

- conv (1-D, 2-D; any groups, dilation, stride, padding) and linear on parameters: steps;
- element-wise unary operations, BatchNorm in eval: the node set passes through;
- index-only operations (view, reshape, flatten, permute, transpose, slice, select, split, chunk,
  cat, pad, expand, nearest upsampling, …): run on a tensor of element indices, which tells for
  each output element the input element it copies (``-1`` for a constant pad);
- pooling, adaptive pooling, reductions over non-batch axes, bilinear upsampling: fixed fan-in;
- sums and products of activations: the rules of :mod:`mgelib.graphs.builder`.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np
import torch
from torch import nn

from mgelib.graphs.builder import _PlanBuilder
from mgelib.graphs.geometry import _adaptive_windows, _gather_windows, _pair, pool_table
from mgelib.graphs.plan import UnsupportedOperation
from mgelib.graphs.values import _BATCH, _Nodes, _Pending, _Record, zero_input

__all__ = ["export_program", "AtenBuilder"]

aten = torch.ops.aten


def _names(*ops: Any) -> frozenset[str]:
    out = set()
    for op in ops:
        out.add(op.name() if hasattr(op, "name") else str(op))
    return frozenset(out)


def _packet(name: str) -> str:
    """``"aten.conv2d.default"`` → ``"conv2d"``."""
    return name.removeprefix("aten.").split(".")[0]


#: Element-wise operations of one activation (the others are constants or parameters).
PASSTHROUGH = {
    "relu", "relu_", "relu6", "sigmoid", "sigmoid_", "tanh", "tanh_", "hardtanh", "hardtanh_",
    "clamp", "clamp_", "clamp_min", "clamp_max", "gelu", "silu", "silu_", "leaky_relu",
    "leaky_relu_", "elu", "elu_", "selu", "celu", "mish", "hardswish", "hardswish_",
    "hardsigmoid", "hardsigmoid_", "softplus", "prelu", "dropout", "dropout_", "feature_dropout",
    "alpha_dropout", "alias", "clone", "contiguous", "detach", "_to_copy", "to", "type_as",
    "neg", "abs", "exp", "log", "sqrt", "rsqrt", "reciprocal", "pow", "square", "batch_norm",
    "_native_batch_norm_legit_no_training", "native_batch_norm", "lift_fresh_copy",
    "_assert_tensor_metadata",
}  # fmt: skip
#: Operations whose output elements are copies of input elements (or a constant).
INDEX_ONLY = {
    "view", "_unsafe_view", "reshape", "flatten", "unflatten", "permute", "transpose", "t",
    "slice", "select", "narrow", "split", "split_with_sizes", "chunk", "unbind", "cat", "stack",
    "expand", "squeeze", "unsqueeze", "pad", "constant_pad_nd", "reflection_pad1d",
    "reflection_pad2d", "replication_pad1d", "replication_pad2d", "upsample_nearest1d",
    "upsample_nearest2d", "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "flip", "roll",
    "repeat", "movedim", "swapaxes", "unfold", "tensor_split", "hsplit", "vsplit",
}  # fmt: skip
SUMS = {"add", "add_", "sub", "sub_", "rsub"}
PRODUCTS = {"mul", "mul_", "div", "div_", "maximum", "minimum", "fmax", "fmin"}
POOLS = {"max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "max_pool1d",
         "max_pool1d_with_indices", "avg_pool1d"}  # fmt: skip
ADAPTIVE = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_avg_pool1d",
            "adaptive_max_pool1d", "_adaptive_avg_pool2d"}  # fmt: skip
REDUCTIONS = {"mean", "sum", "amax", "amin", "max", "min", "logsumexp"}
LINEAR_INTERP = {"upsample_bilinear2d", "upsample_linear1d", "_upsample_bilinear2d_aa"}
CONVS = {"conv1d", "conv2d", "convolution", "_convolution"}
LINEARS = {"linear", "addmm", "mm", "matmul"}

#: Refused, with the reason the message gives.
REFUSED = {
    **dict.fromkeys(
        ["lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell", "gru_cell", "_thnn_fused_lstm_cell"],
        "a recurrent layer applies its weights at every time step and mixes positions through "
        "data-dependent gates; the MGE encodes feed-forward layers only",
    ),
    **dict.fromkeys(
        ["scaled_dot_product_attention", "_scaled_dot_product_flash_attention",
         "_scaled_dot_product_efficient_attention", "_native_multi_head_attention", "softmax",
         "_softmax", "log_softmax", "_log_softmax", "bmm", "baddbmm", "einsum"],
        "attention and softmax mix positions with data-dependent coefficients "
        "(softmax(QKᵀ)V): which input reaches which output depends on the input values, not on "
        "fixed weights",
    ),
    **dict.fromkeys(
        ["gather", "index", "index_select", "take", "embedding", "scatter", "scatter_add",
         "masked_select", "nonzero", "argmax", "argmin", "topk", "sort", "where", "masked_fill"],
        "a data-dependent gather or selection: the positions read depend on values, so there "
        "is no fixed edge set",
    ),
    **dict.fromkeys(
        ["layer_norm", "native_layer_norm", "group_norm", "native_group_norm", "instance_norm"],
        "normalisation over positions mixes every position of a sample through data-dependent "
        "statistics (only BatchNorm in eval, a per-channel affine map, is element-wise)",
    ),
    **dict.fromkeys(
        ["conv_transpose1d", "conv_transpose2d"],
        "transposed convolution is not mapped yet (a fixed linear map: open an issue if you "
        "need it)",
    ),
}  # fmt: skip


def export_program(model: nn.Module, input_shape: tuple[int, ...]) -> torch.export.ExportedProgram:
    """The model exported at the ATen level on a zero input of ``(2, *input_shape)``."""
    x = zero_input(model, input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model, (x,), strict=False)
    except Exception as exc:  # export raises many kinds of errors
        first = str(exc).strip().split("\n")[0]
        raise ValueError(
            f"could not trace {type(model).__name__} at the ATen level on an input of shape "
            f"{input_shape} with torch.export ({type(exc).__name__}: {first}). Does the shape "
            "match the model, and is its forward free of data-dependent control flow?"
        ) from None
    finally:
        model.train(was_training)


class AtenBuilder(_PlanBuilder):
    """Walks an exported program node by node and derives the plan's index tables."""

    def __init__(
        self,
        program: torch.export.ExportedProgram,
        model: nn.Module,
        keep_input_padding: bool,
        identity_shortcuts: bool,
    ) -> None:
        self._init_builder(keep_input_padding, identity_shortcuts)
        self.program = program
        self.model_name = type(model).__name__
        sig = program.graph_signature
        self.param_of: dict[str, str] = dict(sig.inputs_to_parameters)
        self.param_of.update(sig.inputs_to_buffers)
        self.user_inputs = list(sig.user_inputs)
        self.modules = dict(model.named_modules())
        self.values: dict[Any, Any] = {}
        self.params: dict[Any, str] = {}  # node → parameter it is (derived from)

    # -- walking ------------------------------------------------------------------
    def run(self) -> None:
        graph = self.program.graph_module.graph
        for n in graph.nodes:
            self.order += 1
            if n.op == "placeholder":
                if n.name in self.param_of:
                    self.params[n] = self.param_of[n.name]
                elif n.name == self.user_inputs[0]:
                    self.values[n] = self._input(n)
                continue
            if n.op == "output":
                for a in _flat(n.args[0]):
                    if a in self.values:
                        self.values[a] = self._materialise(self.values[a])
                continue
            if n.op != "call_function":
                continue
            self.values[n] = self._node(n)

    def _where(self, n: Any) -> str:
        stack = n.meta.get("nn_module_stack") or {}
        if stack:
            fqn, cls = list(stack.values())[-1]
            cls_name = cls if isinstance(cls, str) else getattr(cls, "__name__", str(cls))
            if fqn:
                return f"module {fqn!r} ({cls_name.rsplit('.', 1)[-1]})"
        return f"{self.model_name}.forward"

    def _val(self, a: Any) -> Any:
        v = self.values.get(a) if hasattr(a, "op") else None
        if isinstance(v, _Pending) and v.nodes is not None:
            return v.nodes
        return v

    def _node(self, n: Any) -> Any:  # noqa: C901 - one dispatch table
        name = _packet(str(n.target)) if n.target is not operator.getitem else "getitem"
        args = list(n.args)
        acts = [a for a in _flat((n.args, tuple(n.kwargs.values()))) if self._val(a) is not None]
        if not acts:
            # parameters, buffers, constants: remember which parameter a value derives from
            # (torch.nn.utils.prune computes weight = weight_orig * weight_mask in forward)
            for a in _flat(args):
                if a in self.params:
                    self.params[n] = self.params[a]
                    break
            return None
        where = self._where(n)
        if name == "getitem":
            seq = self._val(args[0])
            return seq[args[1]] if isinstance(seq, (list, tuple)) else seq
        if name in REFUSED:
            raise UnsupportedOperation(
                f"{where}: operation aten.{name} cannot be encoded as an MGE: {REFUSED[name]}"
            )
        if name in CONVS:
            return self._conv(n, name, where)
        if name in LINEARS:
            return self._linear(n, name, where)
        if name in PASSTHROUGH:
            out = self._val(acts[0])
            if name.endswith("batch_norm") or name.startswith("_native_batch_norm"):
                if "native" in name:
                    return (out, None, None)
            return out
        if name in SUMS:
            a, b = (self._val(v) for v in args[:2])
            return self._add_values(a, b, where)
        if name in PRODUCTS:
            vals = [self._val(v) for v in args[:2]]
            vals = [v for v in vals if v is not None]
            return vals[0] if len(vals) == 1 else self._product(vals[0], vals[1], where)
        if name in INDEX_ONLY:
            return self._index_only(n, where)
        if name in POOLS:
            return self._pool(n, name, where)
        if name in ADAPTIVE:
            return self._adaptive(n, name, where)
        if name in REDUCTIONS:
            return self._reduce(n, name, where)
        if name in LINEAR_INTERP:
            return self._interp(n, where)
        raise UnsupportedOperation(
            f"{where}: ATen operation {str(n.target)!r} is not supported by the MGE encoder "
            "(docs/operations.md lists what is and why)"
        )

    # -- input --------------------------------------------------------------------
    def _input(self, n: Any) -> _Nodes:
        shape = tuple(int(v) for v in n.meta["val"].shape[1:])
        pad = self._first_conv_padding(n) if self.keep_input_padding else None
        if pad is None or pad == (0, 0) or len(shape) not in (2, 3):
            return self._new_partition("input", shape, order=-1)
        ph, pw = pad
        if len(shape) == 2:
            c, length = shape
            full = self._new_partition("input", (c, length + 2 * pw), order=-1)
            inner = full.table[:, pw : pw + length, :]
            padded = full.table.reshape(c, 1, length + 2 * pw, 1)
            return _Nodes(table=inner, origin=full.origin, padded=((0, pw), padded))
        c, h, w = shape
        full = self._new_partition("input", (c, h + 2 * ph, w + 2 * pw), order=-1)
        inner = full.table[:, ph : ph + h, pw : pw + w, :]
        return _Nodes(table=inner, origin=full.origin, padded=(pad, full.table))

    def _first_conv_padding(self, n: Any) -> tuple[int, int] | None:
        """Padding of the first conv that reads the input through element-wise ops only."""
        frontier, seen = [n], set()
        while frontier:
            node = frontier.pop(0)
            for user in node.users:
                if user in seen or user.op != "call_function":
                    continue
                seen.add(user)
                name = _packet(str(user.target)) if user.target is not operator.getitem else ""
                if name in CONVS and user.args[0] is node:
                    geo = self._conv_geometry(user, name)
                    return geo["padding"] if geo["zero_pad"] else None
                if name in PASSTHROUGH or user.target is operator.getitem:
                    frontier.append(user)
        return None

    # -- layers -------------------------------------------------------------------
    def _param(self, node: Any, where: str) -> tuple[str, nn.Module]:
        pname = self.params.get(node)
        if pname is None:
            raise UnsupportedOperation(f"{where}: the layer's weight is not a parameter")
        owner_name, _, attr = pname.rpartition(".")
        if attr == "weight_orig":
            attr = "weight"
        if attr != "weight":
            raise UnsupportedOperation(f"{where}: weight {pname!r} is not a module's 'weight'")
        return owner_name, self.modules.get(owner_name)

    def _conv_geometry(self, n: Any, name: str) -> dict[str, Any]:
        args = list(n.args) + [None] * 9
        kw = n.kwargs
        weight = args[1].meta["val"]
        nd = weight.dim() - 2

        def get(i: int, key: str, default: Any) -> Any:
            v = kw.get(key, args[i])
            return default if v is None else v

        if name == "convolution" or name == "_convolution":
            stride, padding, dilation = args[3], args[4], args[5]
            if args[6]:
                raise UnsupportedOperation("transposed convolution is not mapped yet")
            groups = args[8]
        else:
            stride = get(3, "stride", 1)
            padding = get(4, "padding", 0)
            dilation = get(5, "dilation", 1)
            groups = get(6, "groups", 1)
        kernel = tuple(int(v) for v in weight.shape[2:])
        if isinstance(padding, str):
            if padding == "valid":
                padding = [0] * nd
            else:  # 'same' with stride 1
                total = [int(d) * (k - 1) for d, k in zip(_seq(dilation, nd), kernel)]
                if any(t % 2 for t in total):
                    raise UnsupportedOperation("padding='same' with an even kernel")
                padding = [t // 2 for t in total]
        stride, padding, dilation = (_seq(v, nd) for v in (stride, padding, dilation))
        if nd == 1:  # a (C, L) map is a (C, 1, L) map
            stride, dilation, kernel = ((1, *v) for v in (stride, dilation, kernel))
            padding = (0, *padding)
        return dict(
            nd=nd, stride=_pair(stride), padding=_pair(padding), dilation=_pair(dilation),
            kernel=_pair(kernel), groups=int(groups), zero_pad=True,
        )  # fmt: skip

    def _conv(self, n: Any, name: str, where: str) -> _Pending:
        owner, _module = self._param(n.args[1], where)
        geo = self._conv_geometry(n, name)
        if geo["nd"] not in (1, 2):
            raise UnsupportedOperation(f"{where}: {geo['nd']}-D convolution is not supported")
        src = self._nodes(self._val(n.args[0]), where)
        out_shape = tuple(int(v) for v in n.meta["val"].shape[1:])
        if geo["nd"] == 1:
            if src.table.ndim != 3:
                raise UnsupportedOperation(f"{where}: Conv1d expects a (C, L) input")
            c, length, m = src.table.shape
            padded = src.padded
            src = _Nodes(
                table=src.table.reshape(c, 1, length, m), origin=src.origin, plain=src.plain,
                padded=padded, duplicates=src.duplicates,
            )  # fmt: skip
            conv_shape = (out_shape[0], 1, out_shape[1])
        else:
            if src.table.ndim != 4:
                raise UnsupportedOperation(f"{where}: Conv2d expects a (C, H, W) input")
            conv_shape = out_shape
        record = _Record(
            layer=owner, param=f"{owner}.weight", module=None, kind="conv", source=src,
            out_shape=conv_shape, order=self.order, stride=geo["stride"], kernel=geo["kernel"],
            padding=geo["padding"], dilation=geo["dilation"], groups=geo["groups"],
            part_shape=out_shape if geo["nd"] == 1 else None,
        )  # fmt: skip
        return _Pending(main=record, duplicates=src.duplicates)

    def _linear(self, n: Any, name: str, where: str) -> _Pending:
        if name == "linear":
            x, w = n.args[0], n.args[1]
        elif name == "addmm":
            x, w = n.args[1], n.args[2]
        else:
            x, w = n.args[0], n.args[1]
        if self._val(w) is not None:
            raise UnsupportedOperation(
                f"{where}: operation aten.{name} multiplies two activations (as attention "
                f"does): {REFUSED['bmm']}"
            )
        owner, _module = self._param(w, where)
        src = self._nodes(self._val(x), where)
        if src.table.ndim != 2:
            raise UnsupportedOperation(
                f"{where}: Linear applied to a tensor of element shape {src.table.shape[:-1]}; "
                "flatten the input first (the MGE supports Linear on (N, F) inputs)"
            )
        record = _Record(
            layer=owner, param=f"{owner}.weight", module=None, kind="linear", source=src,
            out_shape=tuple(int(v) for v in n.meta["val"].shape[1:]), order=self.order,
        )  # fmt: skip
        return _Pending(main=record, duplicates=src.duplicates)

    # -- index-only operations ----------------------------------------------------
    def _index_only(self, n: Any, where: str) -> Any:
        """Run the op on element indices: each output element copies one input element."""
        inputs: list[_Nodes] = []
        offsets: list[int] = []
        total = 0

        def probe(a: Any) -> Any:
            nonlocal total
            v = self._val(a)
            if v is None:
                if hasattr(a, "op"):
                    raise UnsupportedOperation(f"{where}: mixes an activation with a tensor")
                return a
            nodes = self._nodes(v, where)
            shape = tuple(a.meta["val"].shape)
            if shape[0] != _BATCH:
                raise UnsupportedOperation(f"{where}: operates on a tensor without batch axis")
            size = int(np.prod(shape))
            t = torch.arange(total, total + size, dtype=torch.float64).reshape(shape)
            inputs.append(nodes)
            offsets.append(total)
            total += size
            return t

        args = _map(n.args, probe)
        kwargs = {k: _map(v, probe) for k, v in n.kwargs.items()}
        name = _packet(str(n.target))
        if name in ("pad", "constant_pad_nd"):
            mode = kwargs.get("mode", args[2] if len(args) > 2 else "constant")
            if name == "constant_pad_nd" or mode == "constant":
                args = [*args[:2], *(["constant"] if name == "pad" else [])]
                kwargs = {"value": -1.0} if name == "pad" else {}
                if name == "constant_pad_nd":
                    args = [args[0], args[1], -1.0]
        out = n.target(*args, **kwargs)
        sizes = [int(np.prod(x.table.shape[:-1])) for x in inputs]
        m = max(x.table.shape[-1] for x in inputs)
        flat = [
            np.pad(x.table.reshape(s, -1), ((0, 1 if i == len(inputs) - 1 else 0), (0, m - x.table.shape[-1])),
                   constant_values=-1)
            for i, (x, s) in enumerate(zip(inputs, sizes))
        ]  # fmt: skip
        # one stacked table of every (input, batch-free element) + a final all -1 row
        stacked = np.concatenate(flat, axis=0)
        starts = np.cumsum([0] + sizes)
        blank = int(starts[-1])
        dup = any(x.duplicates for x in inputs)

        def table_of(t: torch.Tensor) -> _Nodes:
            if t.dim() == 0 or t.shape[0] != _BATCH:
                raise UnsupportedOperation(f"{where}: the operation mixes the batch dimension")
            idx = t.reshape(_BATCH, -1).to(torch.int64).numpy()
            k = np.searchsorted(np.asarray(offsets), np.maximum(idx, 0), side="right") - 1
            local = np.maximum(idx, 0) - np.asarray(offsets)[k]
            batch, elem = np.divmod(local, np.asarray(sizes)[k])
            if not np.array_equal(
                batch[idx >= 0], np.broadcast_to(np.arange(_BATCH)[:, None], idx.shape)[idx >= 0]
            ):
                raise UnsupportedOperation(f"{where}: the operation mixes the batch dimension")
            rows = np.where(idx[0] >= 0, starts[k[0]] + elem[0], blank)
            table = stacked[rows].reshape(*t.shape[1:], m)
            used = rows[rows != blank]
            repeats = used.size != np.unique(used).size  # expand, upsampling, reflect padding
            return _Nodes(
                table=table, origin=max(x.origin for x in inputs), duplicates=dup or repeats
            )

        if isinstance(out, torch.Tensor):
            return table_of(out)
        return [table_of(t) for t in out]

    # -- fan-in operations --------------------------------------------------------
    def _as2d(self, n: Any, where: str) -> tuple[_Nodes, bool]:
        src = self._nodes(self._val(n.args[0]), where)
        if src.table.ndim == 3:  # (C, L, m) → (C, 1, L, m)
            c, length, m = src.table.shape
            return _Nodes(
                src.table.reshape(c, 1, length, m), src.origin, duplicates=src.duplicates
            ), True
        if src.table.ndim != 4:
            raise UnsupportedOperation(f"{where}: pooling expects a (C, H, W) or (C, L) input")
        return src, False

    def _pool(self, n: Any, name: str, where: str) -> Any:
        src, one_d = self._as2d(n, where)
        a = list(n.args) + [None] * 6
        kernel = a[1]
        stride = a[2] or kernel
        padding = a[3] or 0
        if name.startswith("max"):
            dilation, ceil_mode = a[4] or 1, bool(a[5])
        else:
            dilation, ceil_mode = 1, bool(a[4])
        if one_d:  # (C, L) as (C, 1, L)
            kernel, stride, dilation = ((1, *_seq(v, 1)) for v in (kernel, stride, dilation))
            padding = (0, *_seq(padding, 1))
        if _pair(dilation) != (1, 1):
            raise UnsupportedOperation(f"{where}: dilated pooling is not supported")
        table, overlap = pool_table(
            src.table, _pair(kernel), _pair(stride), _pair(padding), ceil_mode
        )
        if one_d:
            table = table[:, 0]
        out = _Nodes(table=table, origin=src.origin, duplicates=src.duplicates or overlap)
        return (out, None) if "indices" in name else out

    def _adaptive(self, n: Any, name: str, where: str) -> Any:
        src, one_d = self._as2d(n, where)
        out_shape = tuple(int(v) for v in _first(n.meta["val"]).shape[2:])
        c, h, w, m = src.table.shape
        ho, wo = (1, out_shape[0]) if one_d else out_shape
        table = _gather_windows(src.table, _adaptive_windows(h, ho), _adaptive_windows(w, wo))
        if one_d:
            table = table[:, 0]
        overlap = h % ho != 0 or w % wo != 0
        out = _Nodes(table=table, origin=src.origin, duplicates=src.duplicates or overlap)
        return (out, None) if name.startswith("adaptive_max") else out

    def _reduce(self, n: Any, name: str, where: str) -> Any:
        src = self._nodes(self._val(n.args[0]), where)
        rank = src.table.ndim  # element dims + 1 = tensor rank
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        keepdim = bool(n.args[2] if len(n.args) > 2 else n.kwargs.get("keepdim", False))
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            raise UnsupportedOperation(f"{where}: aten.{name} over every axis mixes the batch")
        dims = sorted({d % rank for d in _seq(dims, 1)})
        if 0 in dims:
            raise UnsupportedOperation(f"{where}: aten.{name} over the batch axis")
        axes = [d - 1 for d in dims]
        keep = [i for i in range(rank - 1) if i not in axes]
        t = np.transpose(src.table, [*keep, *axes, rank - 1])
        shape = [src.table.shape[i] for i in keep]
        table = t.reshape(*shape, -1)
        if keepdim:
            full = list(src.table.shape[:-1])
            for i in axes:
                full[i] = 1
            table = table.reshape(*full, table.shape[-1])
        out = _Nodes(table=table, origin=src.origin, duplicates=src.duplicates)
        is_pair = name in ("max", "min") and len(n.args) > 1
        return (out, None) if is_pair else out

    def _interp(self, n: Any, where: str) -> _Nodes:
        """Bilinear / linear upsampling: a fixed separable fan-in, found by probing each axis."""
        src, one_d = self._as2d(n, where)
        c, h, w, m = src.table.shape
        out_t = n.meta["val"]
        ho, wo = (
            (1, int(out_t.shape[-1])) if one_d else (int(out_t.shape[-2]), int(out_t.shape[-1]))
        )
        args = list(n.args)
        align = bool(args[2]) if len(args) > 2 else False

        def fan_in(size: int, out: int) -> list[np.ndarray]:
            if size == out:
                return [np.array([i]) for i in range(size)]
            eye = torch.eye(size, dtype=torch.float64).reshape(size, 1, size)
            y = torch.nn.functional.interpolate(eye, size=out, mode="linear", align_corners=align)
            pattern = (y[:, 0, :] != 0).numpy()  # (size, out)
            return [np.flatnonzero(pattern[:, j]) for j in range(out)]

        table = _gather_windows(src.table, fan_in(h, ho), fan_in(w, wo))
        if one_d:
            table = table[:, 0]
        return _Nodes(table=table, origin=src.origin, duplicates=True)


def _seq(v: Any, nd: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        return (
            tuple(int(x) for x in v)
            if len(v) == nd or nd == 1
            else tuple(int(v[0]) for _ in range(nd))
        )
    return tuple(int(v) for _ in range(nd))


def _first(v: Any) -> Any:
    return v[0] if isinstance(v, (list, tuple)) else v


def _flat(tree: Any) -> list[Any]:
    if isinstance(tree, (list, tuple)):
        return [x for t in tree for x in _flat(t)]
    if isinstance(tree, dict):
        return [x for t in tree.values() for x in _flat(t)]
    return [tree]


def _map(tree: Any, fn: Any) -> Any:
    if isinstance(tree, (list, tuple)):
        return type(tree)(_map(t, fn) for t in tree)
    if hasattr(tree, "op"):
        return fn(tree)
    return tree
