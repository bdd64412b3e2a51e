"""Benchmark the MGE encoder (method §5.1) on CONV-6 and ResNet-20 at CIFAR shape.

Cases: sparsity 0.98 (the authors' fixture masks from ``tests/fixtures``, ERK seed 0 where
absent), 0.9 and 0.6 (``mgelib.pruning.erk(model, s, seed=0)`` on ``models.build(…, seed=0)``).
Each case runs in a fresh subprocess, so its peak resident memory is its own. Reported per case:
edges; encode seconds cold (the first call of the process: fx tracing + plan + build) and warm
(a second call: plan cached); edges per second (warm); the peak RSS growth over the RSS just
before the cold call (the graph and every temporary) and the whole process's peak; the authors'
reference numbers beside ours, with the speed-up factor (their encoding seconds / our cold
seconds). CONV-6 at 0.6 (~200 M edges) either builds or is refused by the memory budget
(default: 80 % of the memory available), whose message is printed.

Usage::

    python benchmarks/bench_graphs.py [--quick] [--cases conv6:0.98 resnet20:0.9 …]
                                      [--memory-budget GIB] [--threads 1]

Torch and BLAS/OpenMP pools run on ``--threads`` threads (default 1, as the encoder is numpy
index arithmetic; see ``threadpoolctl``).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import FIXTURES, benchmark_network, measure, peak_kib, run_isolated  # noqa: E402

SHAPE = (3, 32, 32)
CASES = [(m, s) for m in ("conv6", "resnet20") for s in (0.98, 0.9, 0.6)]

#: The authors' code on the fixtures' machine kind (quiet, 2 cores): graph-encoding seconds and
#: the whole run's peak RSS in GiB (encoding + metrics; fixtures' reference.json and issue 5).
REFERENCE = {
    ("conv6", 0.98): (32.5, 2.3),
    ("conv6", 0.9): (69.4, 8.7),
    ("resnet20", 0.98): (8.1, 1.3),
    ("resnet20", 0.9): (24.3, 4.1),
}


def _masked_model(name: str, sparsity: float):  # noqa: ANN202 - torch is imported lazily
    """The benchmark network: fixture masks at 0.98 where present, else ERK (seed 0)."""
    return benchmark_network(name, sparsity)


def worker(name: str, sparsity: float, threads: int, budget_gib: float | None) -> dict:
    """One case, in this (fresh) process; returns the row as a dict."""
    import torch
    from threadpoolctl import threadpool_limits

    from mgelib.graphs import GraphTooLarge, encode, estimate_edges

    torch.set_num_threads(threads)
    budget = None if budget_gib is None else int(budget_gib * 2**30)
    with threadpool_limits(threads):
        model, source = _masked_model(name, sparsity)
        row: dict = {"model": name, "sparsity": sparsity, "masks": source}
        run = lambda: encode(model, SHAPE, memory_budget=budget)  # noqa: E731
        try:
            graph, cold = measure(run)
        except GraphTooLarge as exc:
            row["refused"] = str(exc)
            row["edges"] = estimate_edges(model, SHAPE)
            return row
        row.update(edges=graph.n_edges, cold_s=cold["seconds"], peak_mib=cold["peak_growth_mib"])
        del graph
        gc.collect()
        graph, warm = measure(run)
        row.update(warm_s=warm["seconds"], process_peak_mib=peak_kib() / 1024)
        row["exact_peak"] = cold["exact_peak"]
    return row


def _fmt_row(r: dict) -> str:
    ref_s, ref_gib = REFERENCE.get((r["model"], r["sparsity"]), (None, None))
    ref = f"{ref_s:.1f} | {ref_gib:.1f}" if ref_s else "— | —"
    if "error" in r:
        return f"| {r['model']} | {r['sparsity']} | | error: {r['error']} | | | | | {ref} | |"
    if "refused" in r:
        return (
            f"| {r['model']} | {r['sparsity']} | {r['masks']} | {r['edges']:,} | refused | | | | "
            f"{ref} | |"
        )
    speedup = f"{ref_s / r['cold_s']:,.0f}×" if ref_s else "—"
    return (
        f"| {r['model']} | {r['sparsity']} | {r['masks']} | {r['edges']:,} | {r['cold_s']:.2f} | "
        f"{r['warm_s']:.2f} | {r['edges'] / r['warm_s'] / 1e6:.1f} M | {r['peak_mib']:,.0f} / "
        f"{r['process_peak_mib']:,.0f} | {ref} | {speedup} |"
    )


def _parse_case(text: str) -> tuple[str, float]:
    name, _, s = text.partition(":")
    if name not in FIXTURES or not s:
        raise argparse.ArgumentTypeError(
            f"case must be MODEL:SPARSITY with MODEL in {list(FIXTURES)}"
        )
    return name, float(s)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip sparsity 0.6 (~200 M edges)")
    ap.add_argument("--cases", nargs="+", type=_parse_case, help="e.g. conv6:0.98 resnet20:0.9")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--memory-budget", type=float, default=None, help="GiB (default: encoder's)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per case")
    ap.add_argument("--worker", nargs=2, metavar=("MODEL", "SPARSITY"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        row = worker(args.worker[0], float(args.worker[1]), args.threads, args.memory_budget)
        print(json.dumps(row))
        return

    os.environ.setdefault("MGELIB_QUIET", "1")
    cases = args.cases or [c for c in CASES if not (args.quick and c[1] == 0.6)]
    rows = []
    for name, sparsity in cases:
        cmd = [__file__, "--worker", name, str(sparsity), "--threads", str(args.threads)]
        if args.memory_budget is not None:
            cmd += ["--memory-budget", str(args.memory_budget)]
        row = run_isolated(cmd, timeout=args.timeout)
        row.setdefault("model", name)
        row.setdefault("sparsity", sparsity)
        rows.append(row)
        print(f"  done {name} s={sparsity} in {row['process_seconds']:.1f} s", file=sys.stderr)

    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"MGE encoding, input {'×'.join(map(str, SHAPE))}, {platform.machine()} "
        f"({os.cpu_count()} CPUs, load {load[0]:.1f}), {args.threads} thread(s), "
        f"torch {torch.__version__}; each case in a fresh process\n"
    )
    print(
        "| model | sparsity | masks | edges | cold s | warm s | edges/s (warm) | peak MiB: encode "
        "growth / process | authors s | authors peak GiB (whole run) | speed-up (cold) |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(_fmt_row(r))
    for r in rows:
        if "refused" in r:
            print(f"\n{r['model']} at {r['sparsity']}: refused — {r['refused']}")
    if any(not r.get("exact_peak", True) for r in rows):
        print("\n(peak growth from ru_maxrss: /proc/self/clear_refs was not writable)")
    print(
        "\ncold = first encode() of the process (fx trace + plan + build); warm = second call "
        "(plan cached). Authors' peaks cover their whole run (encoding + metrics); ours the "
        "encoding's growth over the pre-encode RSS, and the whole benchmark process."
    )


if __name__ == "__main__":
    main()
