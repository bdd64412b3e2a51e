"""Graph metrics: topometrics on the MGE (method §6), per-layer metrics on the BGEs, and the
Ramanujan metrics (method §7)."""

from mgelib.metrics.layers import LAYER_METRICS, layer_metrics, network_aggregates
from mgelib.metrics.linalg import available_cores
from mgelib.metrics.ramanujan import ramanujan
from mgelib.metrics.topo import (
    GROUPS,
    NORMALISER,
    TOPOMETRICS,
    TopoResult,
    motif_sample_size,
    normalised,
    topometrics,
)

__all__ = [
    "topometrics",
    "layer_metrics",
    "network_aggregates",
    "LAYER_METRICS",
    "ramanujan",
    "TopoResult",
    "TOPOMETRICS",
    "NORMALISER",
    "GROUPS",
    "normalised",
    "motif_sample_size",
    "available_cores",
]
