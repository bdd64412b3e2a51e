"""What the MGE tracer attaches to each fx node: index tables (:class:`_Nodes`) and the
not-yet-materialised outputs of conv/linear layers (:class:`_Pending` of :class:`_Record`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

__all__ = ["_Nodes", "_Record", "_Pending", "_BATCH", "zero_input"]


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
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    part_shape: tuple[int, ...] | None = None  # partition shape when not out_shape (Conv1d)


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


_BATCH = 2  # dummy batch size: 2 lets BatchNorm run and reshapes that mix the batch be detected


def zero_input(model: nn.Module, input_shape: tuple[int, ...]) -> torch.Tensor:
    """The tracers' probe: zeros of shape ``(_BATCH, *input_shape)`` in the model's floating
    dtype and on its device (float32 on the CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    return torch.zeros((_BATCH, *input_shape), dtype=dtype, device=device)
