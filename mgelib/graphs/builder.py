"""The state both tracers share while they derive an MGE plan: partitions, their ancestry, and
the three rules that combine two activations (method §5.1 and ``docs/operations.md``).

- **sum** (``add``/``sub``): two pending conv/linear outputs merge into one partition (the main
  path keeps it, the shortcut's edges are retargeted onto it); an operand whose partitions are all
  ancestors of the other's is an *identity shortcut* (no edges by default, weight-1 edges — or,
  when no partition is left to attach them to, the union below — with ``identity_shortcuts``);
  anything else is the union of the operands' dependencies.
- **product** (``mul``/``div``/``maximum`` of two activations): by the product rule
  ``∂(ab) = b·∂a + a·∂b`` each output position depends on both operands' positions, so its node set
  is the union of theirs (broadcast first: a squeeze-excitation gate of shape ``(C, 1, 1)``
  stands beside the identity path at every position).
- **concatenation** and every other index-only operation juxtapose existing node sets.

A node set is an index table (see :mod:`mgelib.graphs.trace`); a union concatenates tables along
their last axis, padding the shorter with ``-1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mgelib.graphs.plan import Partition, UnsupportedOperation
from mgelib.graphs.values import _Nodes, _Pending, _Record

__all__ = ["_PlanBuilder", "union_tables"]


def union_tables(tables: list[np.ndarray]) -> np.ndarray:
    """Position-wise union of index tables of broadcastable element shapes."""
    shape = np.broadcast_shapes(*(t.shape[:-1] for t in tables))
    parts = [np.broadcast_to(t, (*shape, t.shape[-1])) for t in tables]
    return np.concatenate(parts, axis=-1)


class _PlanBuilder:
    """Partitions, steps and the combination rules (a base of both tracers)."""

    def _init_builder(self, keep_input_padding: bool, identity_shortcuts: bool) -> None:
        self.partitions: list[Partition] = []
        self.steps: list[tuple[_Record, int, str] | tuple[_Nodes, int]] = []
        self.ancestors: list[set[int]] = []
        self.keep_input_padding = keep_input_padding
        self.identity_shortcuts = identity_shortcuts
        self.order = 0
        self.next_id = 0
        self.may_duplicate = False
        self.notes: list[str] = []

    # -- partitions ---------------------------------------------------------------
    def _new_partition(
        self, layer: str, shape: tuple[int, ...], order: int, parents: set[int] | None = None
    ) -> _Nodes:
        size = int(np.prod(shape))
        base = self.next_id
        self.next_id += size
        index = len(self.partitions)
        self.partitions.append(Partition(layer=layer, shape=shape, base=base, order=order))
        closure: set[int] = set()
        for p in parents or ():
            closure |= {p} | self.ancestors[p]
        self.ancestors.append(closure)
        table = (base + np.arange(size, dtype=np.int64)).reshape(*shape, 1)
        return _Nodes(table=table, origin=index, plain=index)

    def _parts_of(self, table: np.ndarray) -> set[int]:
        """Partitions whose nodes appear in ``table``."""
        ids = table[table >= 0]
        if ids.size == 0:
            return set()
        bases = np.fromiter((p.base for p in self.partitions), np.int64, len(self.partitions))
        return set(np.unique(np.searchsorted(bases, ids, side="right") - 1).tolist())

    def _closure(self, parts: set[int]) -> set[int]:
        out = set(parts)
        for p in parts:
            out |= self.ancestors[p]
        return out

    def _pending_parents(self, value: _Pending) -> set[int]:
        parents: set[int] = set()
        for rec in [value.main, *value.extras]:
            parents |= self._parts_of(rec.source.table)
        for ident in value.identities:
            parents |= self._parts_of(ident.table)
        return parents

    def _materialise(self, value: Any) -> Any:
        if not isinstance(value, _Pending):
            return value
        if value.nodes is not None:
            return value.nodes
        rec = value.main
        shape = rec.part_shape or rec.out_shape
        nodes = self._new_partition(rec.layer, shape, rec.order, self._pending_parents(value))
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

    def _nodes(self, x: Any, where: str) -> _Nodes:
        x = self._materialise(x)
        if not isinstance(x, _Nodes):
            raise UnsupportedOperation(f"{where}: its input does not come from the model input")
        return x

    # -- combination rules ----------------------------------------------------------
    def _union(self, values: list[_Nodes]) -> _Nodes:
        parts = [self._parts_of(v.table) for v in values]
        overlap = sum(len(p) for p in parts) != len(set().union(*parts))
        shape = np.broadcast_shapes(*(v.table.shape[:-1] for v in values))
        # a broadcast operand (an SE gate) is read at many positions of one conv window
        overlap = overlap or any(v.table.shape[:-1] != shape for v in values)
        return _Nodes(
            table=union_tables([v.table for v in values]),
            origin=max(v.origin for v in values),
            duplicates=overlap or any(v.duplicates for v in values),
        )

    def _product(self, a: Any, b: Any, where: str) -> _Nodes:
        """Element-wise product (or quotient, maximum) of two activations: the union."""
        return self._union([self._nodes(a, where), self._nodes(b, where)])

    def _add_values(self, a: Any, b: Any, where: str) -> Any:
        """The sum rule of the module docstring."""
        if a is None or b is None:
            return b if a is None else a  # activation + constant
        if isinstance(a, _Pending) and a.nodes is not None:
            a = a.nodes
        if isinstance(b, _Pending) and b.nodes is not None:
            b = b.nodes
        if isinstance(a, _Pending) and isinstance(b, _Pending):
            if a.out_shape != b.out_shape:
                raise UnsupportedOperation(f"{where}: residual add of different shapes")
            main, short = (a, b) if self._is_main(a, b) else (b, a)
            same_source = main.main.source.origin == short.main.source.origin or bool(
                self._pending_parents(main) & self._pending_parents(short)
            )
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
            shortcut = self._parts_of(nodes.table) <= self._closure(self._pending_parents(pending))
            if shortcut and nodes.table.shape[:-1] == pending.out_shape:
                if not self.identity_shortcuts:
                    return pending  # paper convention: identity shortcuts add no edges
                # An identity from a partition that a conv of this sum also reads can duplicate
                # that conv's edges (a 1×1 shortcut conv and the identity of the same input).
                origins = {r.source.origin for r in [pending.main, *pending.extras]}
                origins |= {i.origin for i in pending.identities}
                read = self._pending_parents(pending)
                shared = nodes.origin in origins or bool(self._parts_of(nodes.table) & read)
                return _Pending(
                    main=pending.main,
                    extras=pending.extras,
                    identities=pending.identities + [nodes],
                    duplicates=pending.duplicates or shared,
                )
            a, b = self._materialise(pending), nodes
        if not (isinstance(a, _Nodes) and isinstance(b, _Nodes)):
            raise UnsupportedOperation(f"{where}: cannot add these operands")
        if not self.identity_shortcuts:  # drop an identity shortcut (paper convention)
            pa, pb = self._parts_of(a.table), self._parts_of(b.table)
            if pa and pa <= self._strict_ancestors(pb):
                return b
            if pb and pb <= self._strict_ancestors(pa):
                return a
        return self._union([a, b])

    def _strict_ancestors(self, parts: set[int]) -> set[int]:
        out: set[int] = set()
        for p in parts:
            out |= self.ancestors[p]
        return out

    @staticmethod
    def _is_main(a: _Pending, b: _Pending) -> bool:
        """The main path is fed by the later partition (the block's inner one); ties go to the
        larger kernel, then to the first operand."""
        if a.main.source.origin != b.main.source.origin:
            return a.main.source.origin > b.main.source.origin
        ka = a.main.kernel[0] * a.main.kernel[1]
        kb = b.main.kernel[0] * b.main.kernel[1]
        return ka >= kb
