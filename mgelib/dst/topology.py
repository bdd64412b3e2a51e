"""The topology of a network while its mask moves: MGE metrics on every mask of a DST run.

:func:`topology_probe` gives the probe a :class:`~mgelib.dst.MaskUpdater` calls after every
update: it encodes the mask (:func:`mgelib.encode`, binary edge weights) and computes the
:data:`CHEAP_METRICS` — sink, source and disconnected nodes, r-in, r-out, the connected
components — with :func:`mgelib.metrics.topometrics` restricted to them: 0.1–0.3 s on a digits
ResNet-20, mostly the encoding. :func:`full_topometrics` gives all 16 (init and end of a run),
and :func:`trajectory` assembles the run's ``topology_trajectory.parquet`` table.

Examples
--------
>>> import torch
>>> from mgelib.dst import initial_masks
>>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
...                           torch.nn.Flatten(), torch.nn.Linear(4 * 64, 10))
>>> probe = topology_probe(net, (1, 8, 8))
>>> row = probe(initial_masks("rigl", net, 0.9))
>>> sorted(row)[:3]
['disc_nodes', 'edges', 'mean_connected_components']
>>> row["raw__no_connected_components"] >= 1
True
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

__all__ = [
    "CHEAP_METRICS",
    "topology_probe",
    "full_topometrics",
    "trajectory",
    "TRAJECTORY_COLUMNS",
]

#: The MGE metrics recomputed after every mask update (all from degrees and components).
CHEAP_METRICS: tuple[str, ...] = (
    "sink_nodes",
    "source_nodes",
    "disc_nodes",
    "r-out",
    "r-in",
    "no_connected_components",
    "mean_connected_components",
)

#: The leading columns of ``topology_trajectory.parquet`` (then ``density:<parameter>`` per
#: layer, the metrics normalised as the authors store them and their ``raw__`` values).
TRAJECTORY_COLUMNS: tuple[str, ...] = (
    "kind",
    "step",
    "epoch",
    "drop_fraction",
    "dropped",
    "grown",
    "moved",
    "exploration",
    "threshold",
    "seconds",
    "metrics_seconds",
    "nodes",
    "edges",
)


def _measure(
    net: nn.Module,
    input_shape: Sequence[int],
    masks: Mapping[str, torch.Tensor],
    metrics: tuple[str, ...] | None,
    seed: int,
) -> dict[str, Any]:
    import time

    from mgelib import encode
    from mgelib.metrics import topometrics

    t0 = time.perf_counter()
    graph = encode(net, tuple(input_shape), masks=dict(masks), weights="binary")
    topo = topometrics(graph, metrics=metrics, seed=seed)
    names = [m for m in topo if m not in ("nodes", "edges")]
    row: dict[str, Any] = {m: float(topo[m]) for m in names}
    row.update({f"raw__{m}": float(topo.raw[m]) for m in names})
    row.update(
        nodes=int(graph.n_nodes),
        edges=int(graph.n_edges),
        metrics_seconds=time.perf_counter() - t0,
    )
    return row


def topology_probe(
    model: nn.Module,
    input_shape: Sequence[int],
    metrics: tuple[str, ...] = CHEAP_METRICS,
    *,
    seed: int = 0,
) -> Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]:
    """A function ``masks → {metric: value, raw__metric: value, nodes, edges, metrics_seconds}``.

    The model is copied once to the CPU (its structure is all the encoder needs: edges come from
    the masks, weights are binary), so the probe never touches the training model or device.
    """
    net = copy.deepcopy(model).cpu().eval()

    def probe(masks: Mapping[str, torch.Tensor]) -> dict[str, Any]:
        return _measure(net, input_shape, masks, metrics, seed)

    return probe


def full_topometrics(
    model: nn.Module,
    input_shape: Sequence[int],
    masks: Mapping[str, torch.Tensor],
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """All 16 topometrics (SPEC §6) of the MGE of ``masks``, binary edge weights."""
    net = copy.deepcopy(model).cpu().eval()
    return _measure(net, input_shape, masks, None, seed)


def trajectory(
    records: Sequence[Mapping[str, Any]],
    *,
    initial: Mapping[str, Any],
    final: Mapping[str, Any],
    masks_init: Mapping[str, torch.Tensor],
    masks_final: Mapping[str, torch.Tensor],
    total_steps: int,
    epochs: int,
) -> pd.DataFrame:
    """The ``topology_trajectory`` table: an ``init`` row (step 0, full topometrics), one
    ``update`` row per mask update (cheap metrics), a ``final`` row (full topometrics)."""

    def densities(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
        return {f"density:{k}": float(m.float().mean()) for k, m in masks.items()}

    ever = {k: m.clone().bool() for k, m in masks_init.items()}
    total = sum(int(m.numel()) for m in ever.values())
    start = {
        "kind": "init",
        "step": 0,
        "epoch": 0,
        "exploration": sum(int(m.sum()) for m in ever.values()) / max(1, total),
        **densities(masks_init),
        **initial,
    }
    updates = [{"kind": "update", **r} for r in records]
    last_explore = updates[-1]["exploration"] if updates else start["exploration"]
    end = {
        "kind": "final",
        "step": int(total_steps),
        "epoch": int(epochs),
        "exploration": last_explore,
        **densities(masks_final),
        **final,
    }
    frame = pd.DataFrame([start, *updates, end])
    for col in ("dropped", "grown", "moved"):
        frame[col] = frame.get(col, pd.Series(dtype=float)).fillna(0).astype("int64")
    rest = [c for c in frame.columns if c not in TRAJECTORY_COLUMNS]
    for col in TRAJECTORY_COLUMNS:
        if col not in frame.columns:
            frame[col] = float("nan")
    return frame[list(TRAJECTORY_COLUMNS) + rest]
