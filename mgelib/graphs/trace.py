"""Discover a model's dataflow with :mod:`torch.fx` and turn it into an MGE *plan*.

The plan depends only on the architecture and the input shape, never on weights or masks, so it is
computed once and cached; :mod:`mgelib.graphs.mge` turns a plan plus masked weights into edges.

How the tracer sees a tensor (SPEC §5.1)
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

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

__all__ = ["Plan", "Partition", "ConvStep", "IdentityStep", "trace_plan", "UnsupportedOperation"]


class UnsupportedOperation(ValueError):
    """A module or operation the MGE cannot represent (SPEC §5.1, last rule)."""


# --------------------------------------------------------------------------- plan records
@dataclass
class Partition:
    """One partition of the MGE: the input or one conv/linear layer's output positions."""

    layer: str  # producing layer ("input" for the input partition)
    shape: tuple[int, ...]  # element shape, e.g. (C, H, W) or (F,)
    base: int = 0  # first node id (final numbering)
    order: int = 0  # execution index of the producing node (sort key)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class ConvStep:
    """The edges one conv/linear layer contributes: its taps × the positions they read."""

    layer: str  # module name ("layer2.0.conv1")
    param: str  # parameter name ("layer2.0.conv1.weight")
    kind: str  # "conv" or "linear"
    role: str  # "main" or "shortcut"
    table: np.ndarray  # input index table, already padded for the conv: (C_in, Hp, Wp, m) / (F, m)
    out_shape: tuple[int, ...]  # (C_out, Ho, Wo) or (F_out,)
    target: int  # index of the partition the edges go to
    stride: tuple[int, int] = (1, 1)
    kernel: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    depthwise_multiplier: int = 0  # 0 = dense conv; k = depthwise with k outputs per input channel
    plain_input: int | None = None  # input partition index when the table is that partition, as is
    in_shape: tuple[int, ...] = ()  # unpadded input element shape (C_in, H, W) / (F,)


@dataclass
class IdentityStep:
    """Weight-1 edges of an identity shortcut (only with ``identity_shortcuts=True``)."""

    table: np.ndarray  # (C, H, W, m) source ids, same element shape as the target
    target: int
    layer: str = "identity"


@dataclass
class Plan:
    partitions: list[Partition]
    steps: list[ConvStep | IdentityStep]
    input_shape: tuple[int, ...]
    keep_input_padding: bool
    identity_shortcuts: bool
    may_duplicate: bool = False  # overlapping pool windows or shared-source branches
    notes: list[str] = field(default_factory=list)

    @property
    def dims(self) -> list[int]:
        return [p.size for p in self.partitions]

    @property
    def n_nodes(self) -> int:
        return int(sum(self.dims))

    @property
    def bipartite(self) -> bool:
        """Whether every edge joins partitions whose indices differ by an odd number (then the
        adjacency spectrum is ±-symmetric, SPEC §6)."""
        for step in self.steps:
            src_parts = self._source_partitions(step.table)
            if any((step.target - p) % 2 == 0 for p in src_parts):
                return False
        return True

    def _source_partitions(self, table: np.ndarray) -> set[int]:
        ids = table[table >= 0]
        if ids.size == 0:
            return set()
        bases = np.array([p.base for p in self.partitions])
        return set(np.unique(np.searchsorted(bases, ids, side="right") - 1).tolist())


# --------------------------------------------------------------------------- tracer values
@dataclass
class _Nodes:
    """A tensor whose elements map to existing nodes through an index table."""

    table: np.ndarray  # (*elem_shape, m), provisional ids
    origin: int  # creation order of the partition the ids come from (for choosing the main path)
    plain: int | None = None  # partition index if table is exactly that partition (m == 1)
    padded: tuple[tuple[int, int], np.ndarray] | None = None  # input partition kept with padding
    duplicates: bool = False


@dataclass
class _Record:
    layer: str
    param: str
    module: nn.Module | None
    kind: str
    source: _Nodes
    out_shape: tuple[int, ...]
    order: int
    stride: tuple[int, int] = (1, 1)
    kernel: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    depthwise_multiplier: int = 0


@dataclass
class _Pending:
    """A conv/linear output whose partition does not exist yet."""

    main: _Record
    extras: list[_Record] = field(default_factory=list)  # shortcut convs merged into it
    identities: list[_Nodes] = field(default_factory=list)
    duplicates: bool = False
    nodes: _Nodes | None = None  # set once the partition exists (a tensor may be read twice)

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.main.out_shape


_PASSTHROUGH_MODULES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
)

_PASSTHROUGH_FUNCTIONS = {
    F.relu,
    F.relu_,
    torch.relu,
    torch.relu_,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.hardsigmoid,
    F.hardtanh,
    torch.sigmoid,
    torch.tanh,
    F.softplus,
    F.dropout,
    F.dropout2d,
    F.batch_norm,
    torch.clone,
    torch.clamp,
}

_PASSTHROUGH_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "tanh",
    "clamp",
    "clamp_",
    "contiguous",
    "clone",
    "detach",
    "float",
    "double",
    "half",
    "to",
    "type_as",
}

_SCALAR_ARITH = {operator.mul, operator.truediv, operator.imul, torch.mul}
_ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
_RESHAPE_FUNCTIONS = {torch.flatten, torch.reshape}
_RESHAPE_METHODS = {"view", "reshape", "flatten"}


class _Interpreter(fx.Interpreter):
    """Runs the traced module on a real dummy input and, node by node, derives index tables."""

    def __init__(
        self,
        gm: fx.GraphModule,
        keep_input_padding: bool,
        identity_shortcuts: bool,
    ) -> None:
        super().__init__(gm)
        self.values: dict[fx.Node, Any] = {}
        self.partitions: list[Partition] = []
        self.steps: list[tuple[_Record, int, str] | tuple[_Nodes, int]] = []
        self.keep_input_padding = keep_input_padding
        self.identity_shortcuts = identity_shortcuts
        self.modules = dict(gm.named_modules())
        self.param_owner = {id(p): n for n, p in gm.named_parameters()}
        self.order = 0
        self.next_id = 0
        self.may_duplicate = False
        self.notes: list[str] = []

    # -- partitions ---------------------------------------------------------------
    def _new_partition(self, layer: str, shape: tuple[int, ...], order: int) -> _Nodes:
        size = int(np.prod(shape))
        base = self.next_id
        self.next_id += size
        index = len(self.partitions)
        self.partitions.append(Partition(layer=layer, shape=shape, base=base, order=order))
        table = (base + np.arange(size, dtype=np.int64)).reshape(*shape, 1)
        return _Nodes(table=table, origin=index, plain=index)

    def _materialise(self, value: Any) -> Any:
        if not isinstance(value, _Pending):
            return value
        if value.nodes is not None:
            return value.nodes
        rec = value.main
        nodes = self._new_partition(rec.layer, rec.out_shape, rec.order)
        target = nodes.plain
        self.steps.append((rec, target, "main"))
        for extra in value.extras:
            self.steps.append((extra, target, "shortcut"))
        for ident in value.identities:
            self.steps.append((ident, target))
        if value.duplicates:
            self.may_duplicate = True
        value.nodes = nodes
        return nodes

    # -- fx hooks -----------------------------------------------------------------
    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        self.order += 1
        self.values[n] = self._symbolic(n, result)
        return result

    def _arg(self, a: Any) -> Any:
        value = self.values.get(a) if isinstance(a, fx.Node) else None
        if isinstance(value, _Pending) and value.nodes is not None:
            return value.nodes  # a conv output that already became a partition
        return value

    def _tensor_args(self, n: fx.Node) -> list[Any]:
        out: list[Any] = []
        fx.node.map_arg((n.args, n.kwargs), lambda a: out.append(self.values.get(a)))
        return [v for v in out if v is not None]

    def _symbolic(self, n: fx.Node, result: Any) -> Any:  # noqa: C901 - one dispatch table
        if n.op == "placeholder":
            if not isinstance(result, torch.Tensor):
                return None
            return self._input(n, result)
        if n.op == "get_attr":
            return None
        if n.op == "output":
            self._output(n.args[0])
            return None
        inputs = self._tensor_args(n)
        if not inputs:
            return None  # shapes, constants, parameters: nothing to encode
        where = self._where(n)
        if n.op == "call_module":
            module = self.modules[n.target]
            x = self._arg(n.args[0])
            if isinstance(module, nn.Conv2d):
                return self._conv(n, str(n.target), module, x, result)
            if isinstance(module, nn.Linear):
                return self._linear(n, str(n.target), module, x, result)
            if isinstance(module, _PASSTHROUGH_MODULES):
                return x
            if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
                return self._pool(
                    x, module.kernel_size, module.stride, module.padding, module, where
                )
            if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                return self._adaptive_pool(x, result, where)
            if isinstance(module, nn.Flatten):
                return self._reshape(x, result, where)
            raise UnsupportedOperation(
                f"{where}: module {type(module).__name__} is not supported by the MGE encoder "
                "(supported: Conv2d (groups 1 or depthwise), Linear, max/avg/adaptive pooling, "
                "Flatten, residual add, and element-wise layers such as BatchNorm, ReLU, Dropout)"
            )
        target = n.target
        if n.op == "call_function":
            x = self._arg(n.args[0]) if n.args else None
            if target in _PASSTHROUGH_FUNCTIONS:
                return x
            if target in _ADD_FUNCTIONS:
                return self._add(n, where)
            if target in _SCALAR_ARITH:
                return self._scalar_arith(n, where)
            if target in _RESHAPE_FUNCTIONS:
                return self._reshape(x, result, where)
            if target in (F.max_pool2d, F.avg_pool2d):
                args, kwargs = self.fetch_args_kwargs_from_env(n)
                kernel = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
                stride = kwargs.get("stride", args[2] if len(args) > 2 else None)
                padding = kwargs.get("padding", args[3] if len(args) > 3 else 0)
                return self._pool(x, kernel, stride or kernel, padding, None, where, args, kwargs)
            if target in (F.adaptive_avg_pool2d, F.adaptive_max_pool2d):
                return self._adaptive_pool(x, result, where)
            if target in (F.conv2d, torch.conv2d, F.linear):
                return self._functional_layer(n, result, where)
            if target is torch.mean:
                return self._mean(n, x, result, where)
        if n.op == "call_method":
            x = self._arg(n.args[0])
            if target in _PASSTHROUGH_METHODS:
                return x
            if target in _RESHAPE_METHODS:
                return self._reshape(x, result, where)
            if target in ("add", "add_", "__add__", "__iadd__"):
                return self._add(n, where)
            if target in ("mul", "mul_", "div", "div_"):
                return self._scalar_arith(n, where)
            if target == "mean":
                return self._mean(n, x, result, where)
            if target in ("size", "dim"):
                return None
        raise UnsupportedOperation(
            f"{where}: operation {getattr(target, '__name__', target)!r} is not supported by the "
            "MGE encoder (it changes connectivity in a way SPEC §5.1 does not define)"
        )

    def _where(self, n: fx.Node) -> str:
        if n.op == "call_module":
            return f"module {n.target!r} ({type(self.modules[n.target]).__name__})"
        stack = n.meta.get("nn_module_stack")
        owner = next(reversed(stack)) if stack else None
        return f"node {n.name!r}" + (f" in {owner!r}" if owner else "")

    # -- operations ---------------------------------------------------------------
    def _input(self, n: fx.Node, x: torch.Tensor) -> _Nodes:
        shape = tuple(int(v) for v in x.shape[1:])
        pad = self._first_conv_padding(n) if self.keep_input_padding else None
        if pad is None or pad == (0, 0) or len(shape) != 3:
            return self._new_partition("input", shape, order=-1)
        c, h, w = shape
        ph, pw = pad
        full = self._new_partition("input", (c, h + 2 * ph, w + 2 * pw), order=-1)
        inner = full.table[:, ph : ph + h, pw : pw + w, :]
        return _Nodes(table=inner, origin=full.origin, plain=None, padded=(pad, full.table))

    def _first_conv_padding(self, n: fx.Node) -> tuple[int, int] | None:
        """Padding of the first conv that reads the input through element-wise ops only."""
        frontier = [n]
        seen: set[fx.Node] = set()
        while frontier:
            node = frontier.pop(0)
            for user in node.users:
                if user in seen:
                    continue
                seen.add(user)
                if user.op == "call_module":
                    module = self.modules[user.target]
                    if isinstance(module, nn.Conv2d):
                        return _pair(_conv_padding(module, str(user.target)))
                    if isinstance(module, _PASSTHROUGH_MODULES):
                        frontier.append(user)
                elif user.op == "call_function" and user.target in _PASSTHROUGH_FUNCTIONS:
                    frontier.append(user)
                elif user.op == "call_method" and user.target in _PASSTHROUGH_METHODS:
                    frontier.append(user)
        return None

    def _output(self, arg: Any) -> None:
        def visit(a: Any) -> Any:
            if isinstance(a, fx.Node):
                value = self.values.get(a)
                self.values[a] = self._materialise(value)
            return a

        fx.node.map_arg(arg, visit)

    def _nodes(self, x: Any, where: str) -> _Nodes:
        x = self._materialise(x)
        if not isinstance(x, _Nodes):
            raise UnsupportedOperation(f"{where}: its input does not come from the model input")
        return x

    def _conv(
        self, n: fx.Node, name: str, module: nn.Conv2d, x: Any, result: torch.Tensor
    ) -> _Pending:
        where = f"module {name!r} (Conv2d)"
        src = self._nodes(x, where)
        if src.table.ndim != 4:
            raise UnsupportedOperation(f"{where}: expected a (C, H, W) input")
        if _pair(module.dilation) != (1, 1):
            raise UnsupportedOperation(f"{where}: dilation {module.dilation} is not supported")
        if module.padding_mode != "zeros":
            raise UnsupportedOperation(
                f"{where}: padding_mode={module.padding_mode!r} is not supported (only zeros)"
            )
        multiplier = 0
        if module.groups != 1:
            if (
                module.groups == module.in_channels
                and module.out_channels % module.in_channels == 0
            ):
                multiplier = module.out_channels // module.in_channels
            else:
                raise UnsupportedOperation(
                    f"{where}: grouped convolution with groups={module.groups} is not supported "
                    "(only groups=1 and depthwise, groups == in_channels)"
                )
        return self._pending(
            name,
            module,
            "conv",
            src,
            result,
            stride=_pair(module.stride),
            kernel=_pair(module.kernel_size),
            padding=_pair(_conv_padding(module, name)),
            depthwise_multiplier=multiplier,
        )

    def _linear(
        self, n: fx.Node, name: str, module: nn.Linear, x: Any, result: torch.Tensor
    ) -> _Pending:
        where = f"module {name!r} (Linear)"
        src = self._nodes(x, where)
        if src.table.ndim != 2:
            raise UnsupportedOperation(
                f"{where}: Linear applied to a tensor of element shape {src.table.shape[:-1]}; "
                "flatten the input first (the MGE supports Linear on (N, F) inputs)"
            )
        return self._pending(name, module, "linear", src, result)

    def _pending(
        self,
        name: str,
        module: nn.Module,
        kind: str,
        src: _Nodes,
        result: torch.Tensor,
        **geometry: Any,
    ) -> _Pending:
        """The not-yet-materialised output of a conv/linear layer reading ``src``."""
        record = _Record(
            layer=name,
            param=f"{name}.weight",
            module=module,
            kind=kind,
            source=src,
            out_shape=tuple(int(v) for v in result.shape[1:]),
            order=self.order,
            **geometry,
        )
        return _Pending(main=record, duplicates=src.duplicates)

    def _functional_layer(self, n: fx.Node, result: torch.Tensor, where: str) -> _Pending:
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        weight_node = n.args[1] if len(n.args) > 1 else n.kwargs.get("weight")
        if not (isinstance(weight_node, fx.Node) and weight_node.op == "get_attr"):
            raise UnsupportedOperation(f"{where}: functional conv/linear needs a parameter weight")
        pname = str(weight_node.target)
        owner_name, _, attr = pname.rpartition(".")
        if attr != "weight":
            raise UnsupportedOperation(f"{where}: weight {pname!r} is not a module's 'weight'")
        owner = self.modules.get(owner_name)
        x = self._arg(n.args[0])
        if n.target is F.linear:
            fake = owner if isinstance(owner, nn.Linear) else None
            if fake is None:
                raise UnsupportedOperation(f"{where}: F.linear weight must belong to an nn.Linear")
            return self._linear(n, owner_name, fake, x, result)
        if not isinstance(owner, nn.Conv2d):
            raise UnsupportedOperation(f"{where}: F.conv2d weight must belong to an nn.Conv2d")
        stride = kwargs.get("stride", args[3] if len(args) > 3 else 1)
        padding = kwargs.get("padding", args[4] if len(args) > 4 else 0)
        groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
        if (
            _pair(stride) != _pair(owner.stride)
            or _pair(padding) != _pair(owner.padding)
            or (groups != owner.groups)
        ):
            raise UnsupportedOperation(
                f"{where}: F.conv2d called with geometry different from {owner_name!r}"
            )
        return self._conv(n, owner_name, owner, x, result)

    def _add(self, n: fx.Node, where: str) -> Any:
        operands = [self._arg(a) for a in n.args[:2]]
        tensors = [v for v in operands if v is not None]
        if len(tensors) == 1:
            return tensors[0]  # tensor + constant
        a, b = tensors
        if isinstance(a, _Pending) and isinstance(b, _Pending):
            if a.out_shape != b.out_shape:
                raise UnsupportedOperation(f"{where}: residual add of different shapes")
            main, short = (a, b) if self._is_main(a, b) else (b, a)
            same_source = main.main.source.origin == short.main.source.origin
            return _Pending(
                main=main.main,
                extras=main.extras + [short.main] + short.extras,
                identities=main.identities + short.identities,
                duplicates=main.duplicates or short.duplicates or same_source,
            )
        if isinstance(a, _Pending) or isinstance(b, _Pending):
            pending, nodes = (a, b) if isinstance(a, _Pending) else (b, a)
            if not isinstance(nodes, _Nodes):
                raise UnsupportedOperation(f"{where}: cannot add these operands")
            if nodes.table.shape[:-1] != pending.out_shape:
                raise UnsupportedOperation(
                    f"{where}: identity shortcut of shape {nodes.table.shape[:-1]} added to an "
                    f"output of shape {pending.out_shape}"
                )
            if not self.identity_shortcuts:
                return pending  # paper convention: identity shortcuts add no edges
            # An identity from a partition that a conv of this sum also reads can duplicate
            # that conv's edges (a 1×1 shortcut conv and the identity of the same input).
            origins = {r.source.origin for r in [pending.main, *pending.extras]}
            origins |= {i.origin for i in pending.identities}
            return _Pending(
                main=pending.main,
                extras=pending.extras,
                identities=pending.identities + [nodes],
                duplicates=pending.duplicates or nodes.origin in origins,
            )
        raise UnsupportedOperation(
            f"{where}: residual add of two tensors with no conv/linear layer between them and the "
            "add; the MGE has no partition to attach it to"
        )

    @staticmethod
    def _is_main(a: _Pending, b: _Pending) -> bool:
        """The main path is fed by the later partition (the block's inner one); ties go to the
        larger kernel, then to the first operand."""
        if a.main.source.origin != b.main.source.origin:
            return a.main.source.origin > b.main.source.origin
        ka = a.main.kernel[0] * a.main.kernel[1]
        kb = b.main.kernel[0] * b.main.kernel[1]
        return ka >= kb

    def _scalar_arith(self, n: fx.Node, where: str) -> Any:
        tensors = [self._arg(a) for a in n.args[:2] if self._arg(a) is not None]
        if len(tensors) != 1:
            raise UnsupportedOperation(f"{where}: product of two activations is not supported")
        return tensors[0]

    def _reshape(self, x: Any, result: torch.Tensor, where: str) -> _Nodes:
        src = self._nodes(x, where)
        out_shape = tuple(int(v) for v in result.shape)
        if out_shape[0] != _BATCH:
            raise UnsupportedOperation(f"{where}: reshape mixes the batch dimension")
        table = src.table.reshape(*out_shape[1:], src.table.shape[-1])
        return _Nodes(table=table, origin=src.origin, duplicates=src.duplicates)

    def _pool(
        self,
        x: Any,
        kernel: Any,
        stride: Any,
        padding: Any,
        module: nn.Module | None,
        where: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> _Nodes:
        src = self._nodes(x, where)
        if src.table.ndim != 4:
            raise UnsupportedOperation(f"{where}: pooling expects a (C, H, W) input")
        kh, kw = _pair(kernel)
        sh, sw = _pair(stride if stride is not None else kernel)
        ph, pw = _pair(padding)
        ceil_mode = bool(getattr(module, "ceil_mode", (kwargs or {}).get("ceil_mode", False)))
        dilation = _pair(getattr(module, "dilation", (kwargs or {}).get("dilation", 1)))
        if dilation != (1, 1):
            raise UnsupportedOperation(f"{where}: dilated pooling is not supported")
        c, h, w, m = src.table.shape
        ho = _pool_out(h, kh, sh, ph, ceil_mode)
        wo = _pool_out(w, kw, sw, pw, ceil_mode)
        need_h = (ho - 1) * sh + kh
        need_w = (wo - 1) * sw + kw
        padded = np.full((c, max(need_h, h + 2 * ph), max(need_w, w + 2 * pw), m), -1, np.int64)
        padded[:, ph : ph + h, pw : pw + w, :] = src.table
        parts = [
            padded[:, a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw, :]
            for a in range(kh)
            for b in range(kw)
        ]
        table = np.concatenate(parts, axis=-1)
        overlap = sh < kh or sw < kw
        return _Nodes(
            table=_compact(table), origin=src.origin, duplicates=src.duplicates or overlap
        )

    def _adaptive_pool(self, x: Any, result: torch.Tensor, where: str) -> _Nodes:
        src = self._nodes(x, where)
        if src.table.ndim != 4:
            raise UnsupportedOperation(f"{where}: adaptive pooling expects a (C, H, W) input")
        c, h, w, m = src.table.shape
        ho, wo = (int(v) for v in result.shape[-2:])
        rows = _adaptive_windows(h, ho)
        cols = _adaptive_windows(w, wo)
        table = _gather_windows(src.table, rows, cols)
        overlap = h % ho != 0 or w % wo != 0
        return _Nodes(table=table, origin=src.origin, duplicates=src.duplicates or overlap)

    def _mean(self, n: fx.Node, x: Any, result: torch.Tensor, where: str) -> _Nodes:
        src = self._nodes(x, where)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        dims = kwargs.get("dim", args[1] if len(args) > 1 else None)
        keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 else False))
        nd = src.table.ndim  # element dims + 1
        if dims is None:
            raise UnsupportedOperation(f"{where}: mean over the batch dimension")
        dims = [dims] if isinstance(dims, int) else list(dims)
        dims = sorted({(d if d >= 0 else d + nd) - 1 for d in dims})  # element-dim indices
        if src.table.ndim != 4 or dims != [1, 2]:
            raise UnsupportedOperation(
                f"{where}: mean over dims {dims} is supported only as a global spatial average"
            )
        c, h, w, m = src.table.shape
        table = (
            src.table.reshape(c, 1, 1, h * w * m) if keepdim else src.table.reshape(c, h * w * m)
        )
        return _Nodes(table=table, origin=src.origin, duplicates=src.duplicates)


_BATCH = 2  # dummy batch size: 2 lets BatchNorm run and reshapes that mix the batch be detected


def _strip_fx(exc: BaseException) -> str:
    """The message without the fx interpreter's "While executing %node …" appendix."""
    return str(exc).split("\n\nWhile executing", 1)[0].strip()


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _conv_padding(module: nn.Conv2d, name: str) -> tuple[int, int]:
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            return (0, 0)
        k = _pair(module.kernel_size)
        if any(v % 2 == 0 for v in k):
            raise UnsupportedOperation(f"module {name!r}: padding='same' with an even kernel")
        return (k[0] // 2, k[1] // 2)
    return _pair(pad)


def _pool_out(size: int, k: int, s: int, p: int, ceil_mode: bool) -> int:
    num = size + 2 * p - k
    out = (math.ceil(num / s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # PyTorch: the last window must start inside the input or left padding
    return out


def _adaptive_windows(size: int, out: int) -> list[np.ndarray]:
    return [
        np.arange((i * size) // out, -(-((i + 1) * size) // out), dtype=np.int64)
        for i in range(out)
    ]


def _gather_windows(
    table: np.ndarray, rows: list[np.ndarray], cols: list[np.ndarray]
) -> np.ndarray:
    c, _, _, m = table.shape
    kh = max(len(r) for r in rows)
    kw = max(len(cc) for cc in cols)
    out = np.full((c, len(rows), len(cols), kh * kw * m), -1, np.int64)
    for i, r in enumerate(rows):
        for j, cc in enumerate(cols):
            block = table[:, r][:, :, cc]  # (c, len(r), len(cc), m)
            out[:, i, j, : block.shape[1] * block.shape[2] * m] = block.reshape(c, -1)
    return out


def _compact(table: np.ndarray) -> np.ndarray:
    """Drop the trailing slots that are -1 for every element (padding-only window slots)."""
    keep = (table >= 0).any(axis=tuple(range(table.ndim - 1)))
    if keep.all():
        return table
    return table[..., keep]


# --------------------------------------------------------------------------- public
def trace_plan(
    model: nn.Module,
    input_shape: Sequence[int],
    *,
    keep_input_padding: bool = True,
    identity_shortcuts: bool = False,
) -> Plan:
    """Trace ``model`` on a dummy input of ``input_shape`` (C, H, W) and return its MGE plan.

    Raises
    ------
    ValueError
        When the model cannot be traced by :func:`torch.fx.symbolic_trace`, when it uses an
        operation the MGE cannot represent (the message names the module and the operation), or
        when the input is too small for the model.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if len(input_shape) not in (1, 3) or min(input_shape) < 1:
        raise ValueError(f"input_shape must be (C, H, W) or (F,), got {input_shape}")
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds of errors
        raise ValueError(
            f"could not trace {type(model).__name__} with torch.fx ({type(exc).__name__}: {exc}). "
            "The MGE encoder needs a model whose forward has no data-dependent Python control "
            "flow; see https://pytorch.org/docs/stable/fx.html#limitations-of-symbolic-tracing"
        ) from exc
    interp = _Interpreter(gm, keep_input_padding, identity_shortcuts)
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros((_BATCH, *input_shape), dtype=dtype, device=device)
    was_training = model.training
    model.eval()
    gm.eval()
    try:
        with torch.no_grad():
            interp.run(x)
    except UnsupportedOperation as exc:
        raise UnsupportedOperation(_strip_fx(exc)) from None
    except RuntimeError as exc:
        raise ValueError(
            f"{type(model).__name__} cannot run on an input of shape {input_shape}: "
            f"{_strip_fx(exc)}. Does the shape match the one the model was built for, and is it "
            "large enough (pooling and strides must not shrink it below 1×1)?"
        ) from None
    finally:
        model.train(was_training)
    return _finalise(interp, input_shape, keep_input_padding, identity_shortcuts)


def _finalise(
    interp: _Interpreter,
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
