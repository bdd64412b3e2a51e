"""Time the bipartite encodings, their per-layer topometrics and the Ramanujan metrics.

For each model (CIFAR shape 3×32×32, 10 classes) and mask set — the committed fixtures' masks at
sparsity 0.98 (the authors' ERK networks, when ``tests/fixtures`` is present) and ERK masks
at 0.9 from :func:`mgelib.pruning.erk` (seed 0) — and each encoding (``rolled``,
``rolled_channel``), time :func:`mgelib.graphs.encode`, :func:`mgelib.metrics.layers.layer_metrics`
and :func:`mgelib.metrics.ramanujan.ramanujan`, best of ``--repeat`` runs after one warm-up, and
print a markdown table. The authors' code takes 4–34 s per network for the BGE metrics and the
Ramanujan metrics (``main.py``, ``ramanunjan_metric.py``; Python loops over edges and float32
ARPACK solves).

Usage::

    python benchmarks/bench_bge.py [--models conv6 resnet20] [--repeat 3] [--threads 1]

Run it on a quiet machine: BLAS and torch are limited to ``--threads`` threads (default 1), as on
the 2-core development machine other jobs would otherwise distort the numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

from mgelib import models
from mgelib.graphs import encode
from mgelib.metrics.layers import layer_metrics
from mgelib.metrics.ramanujan import ramanujan

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import benchmark_network  # noqa: E402

FIXTURES = {"conv6": "conv6_erk_s0.98", "resnet20": "resnet20_erk_s0.98"}


def fixture_model(name: str) -> torch.nn.Module | None:
    """The fixture network with the authors' masked weights, or None when absent."""
    model, source = benchmark_network(name, 0.98)
    return model if source == "fixture" else None


def erk_model(name: str, sparsity: float) -> torch.nn.Module:
    return benchmark_network(name, sparsity)[0]


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["conv6", "resnet20"], choices=models.MODELS)
    ap.add_argument("--sparsity", type=float, default=0.9, help="ERK sparsity (default 0.9)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (default 1)")
    ap.add_argument("--quick", action="store_true", help="ResNet-20 only, best of 1")
    args = ap.parse_args(argv)
    if args.quick:
        args.models, args.repeat = ["resnet20"], 1
    os.environ.setdefault("MGELIB_QUIET", "1")
    torch.set_num_threads(args.threads)

    cases: list[tuple[str, str, torch.nn.Module]] = []
    for name in args.models:
        fixture = fixture_model(name)
        if fixture is not None:
            cases.append((name, "0.98 (fixture)", fixture))
        cases.append((name, f"{args.sparsity} (erk)", erk_model(name, args.sparsity)))

    rows = []
    with threadpool_limits(args.threads):
        # Warm-up: numba kernels load from their cache, scipy/igraph import.
        warm = encode(erk_model("resnet20", 0.9), encoding="rolled")
        layer_metrics(warm)
        ramanujan(warm)
        for name, label, model in cases:
            for enc in ("rolled", "rolled_channel"):
                t_enc, graphs = best_of(lambda m=model, e=enc: encode(m, encoding=e), args.repeat)
                t_lm, _ = best_of(lambda g=graphs: layer_metrics(g), args.repeat)
                t_ram, _ = best_of(lambda g=graphs: ramanujan(g), args.repeat)
                edges = sum(g.n_edges for g in graphs.values())
                rows.append((name, label, enc, len(graphs), edges, t_enc, t_lm, t_ram))

    print(
        f"{platform.processor() or platform.machine()}, {args.threads} thread(s), torch "
        f"{torch.__version__}; best of {args.repeat} after a warm-up\n"
    )
    print(
        "| model | sparsity | encoding | layers | edges | encode s | layer_metrics s "
        "| ramanujan s | total s |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name, label, enc, n_layers, edges, t_enc, t_lm, t_ram in rows:
        total = t_enc + t_lm + t_ram
        print(
            f"| {name} | {label} | {enc} | {n_layers} | {edges:,} | {t_enc:.3f} | {t_lm:.3f} "
            f"| {t_ram:.3f} | {total:.3f} |"
        )


if __name__ == "__main__":
    main()
