"""The MGE *plan*: its partitions and the conv/linear and identity steps that give its edges.

A plan depends only on the architecture and the input shape; :func:`mgelib.graphs.trace.trace_plan`
builds it from a :mod:`torch.fx` or ATen trace and :mod:`mgelib.graphs.mge` turns it into edges.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Plan", "Partition", "ConvStep", "IdentityStep", "UnsupportedOperation"]


class UnsupportedOperation(ValueError):
    """A module or operation the MGE cannot represent (method §5.1, last rule)."""


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
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1  # conv groups: output channel o reads the input channels of its group


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
        adjacency spectrum is ±-symmetric, method §6)."""
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
