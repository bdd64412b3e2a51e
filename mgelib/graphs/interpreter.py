"""The :class:`torch.fx` interpreter that derives the MGE plan's index tables node by node (see
:mod:`mgelib.graphs.trace` for how it sees a tensor); the per-operation handlers live in
:mod:`mgelib.graphs.layer_ops` and :mod:`mgelib.graphs.pool_ops`."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from mgelib.graphs.builder import _PlanBuilder
from mgelib.graphs.geometry import _conv_padding, _pair
from mgelib.graphs.layer_ops import _LayerOps
from mgelib.graphs.plan import UnsupportedOperation
from mgelib.graphs.pool_ops import _PoolingOps
from mgelib.graphs.values import _Nodes, _Pending

__all__ = ["_Interpreter"]


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


class _Interpreter(_PlanBuilder, _LayerOps, _PoolingOps, fx.Interpreter):
    """Runs the traced module on a real dummy input and, node by node, derives index tables."""

    def __init__(
        self,
        gm: fx.GraphModule,
        keep_input_padding: bool,
        identity_shortcuts: bool,
    ) -> None:
        super().__init__(gm)
        self._init_builder(keep_input_padding, identity_shortcuts)
        self.values: dict[fx.Node, Any] = {}
        self.modules = dict(gm.named_modules())
        self.param_owner = {id(p): n for n, p in gm.named_parameters()}

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
            "MGE encoder (it changes connectivity in a way method §5.1 does not define)"
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
