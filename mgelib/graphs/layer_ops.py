"""The tracer's handlers for conv and linear layers (module or functional) and residual adds."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from mgelib.graphs.geometry import _conv_padding, _pair
from mgelib.graphs.plan import UnsupportedOperation
from mgelib.graphs.values import _Nodes, _Pending, _Record

__all__ = ["_LayerOps"]


class _LayerOps:
    """Conv/linear/add handlers of :class:`mgelib.graphs.interpreter._Interpreter` (a mixin: they
    use its ``_nodes``, ``_arg``, ``order``, ``modules`` and ``identity_shortcuts``)."""

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
            groups=int(module.groups),
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
        a, b = (self._arg(v) for v in n.args[:2])
        return self._add_values(a, b, where)

    def _scalar_arith(self, n: fx.Node, where: str) -> Any:
        tensors = [self._arg(a) for a in n.args[:2] if self._arg(a) is not None]
        if len(tensors) != 1:
            raise UnsupportedOperation(f"{where}: product of two activations is not supported")
        return tensors[0]
