"""The tracer's handlers for pooling (fixed and adaptive), reshapes and spatial means."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from mgelib.graphs.geometry import _adaptive_windows, _gather_windows, _pair, pool_table
from mgelib.graphs.plan import UnsupportedOperation
from mgelib.graphs.values import _BATCH, _Nodes

__all__ = ["_PoolingOps"]


class _PoolingOps:
    """Pooling/reshape/mean handlers of :class:`mgelib.graphs.interpreter._Interpreter` (a mixin:
    they use its ``_nodes``)."""

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
        table, overlap = pool_table(src.table, (kh, kw), (sh, sw), (ph, pw), ceil_mode)
        return _Nodes(table=table, origin=src.origin, duplicates=src.duplicates or overlap)

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
