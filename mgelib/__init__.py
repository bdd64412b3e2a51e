"""mgelib — sparse neural networks through their topology.

The public entry points are re-exported here and imported lazily, so ``import mgelib`` stays cheap:

- :func:`mgelib.encode` — multipartite (MGE) and bipartite (rolled, rolled-channel) graph encodings;
- :func:`mgelib.topometrics`, :func:`mgelib.layer_metrics`, :func:`mgelib.ramanujan` — metrics;
- :mod:`mgelib.models`, :mod:`mgelib.data`, :mod:`mgelib.train` (its protocol in :mod:`mgelib.protocol`),
  :mod:`mgelib.pruning` (pruning at initialisation), :mod:`mgelib.dst` (dynamic sparse training);
- :mod:`mgelib.io` (run store), :mod:`mgelib.runner` (grids), :mod:`mgelib.notebooks` (papermill).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "encode": "mgelib.graphs",
    "Graph": "mgelib.graphs",
    "topometrics": "mgelib.metrics",
    "layer_metrics": "mgelib.metrics",
    "ramanujan": "mgelib.metrics",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mgelib' has no attribute {name!r}")
