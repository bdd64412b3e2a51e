"""Time the MGE encoding and the 16 topometrics against the authors' code (issues 6 and 18).

Cases: CONV-6 and ResNet-20 (CIFAR-10 shape) pruned with ERK at s = 0.98 — the fixture masks the
authors' code was timed on (``tests/fixtures/<case>/masked_weights.npz``; ERK seed 0 if
absent) — and at s = 0.9 (``mgelib.pruning.erk(model, 0.9, seed=0)`` on
``mgelib.models.build(name, seed=0)``: not the authors' exact 0.9 masks, the same sizes); and
the paper's densest kind of MGE, CONV-6 pruned by SynFlow at s = 0.6 (``conv6-synflow/0.6``,
172.6 M edges; the authors published its metrics but no time: target ≤ 120 s, ≤ 12 GiB, no
NaN). Graphs are encoded in paper mode (exact geometry, ``compat=None``; ``--compat``
reproduces the authors' strided-conv numbering instead).

Each measurement runs in a fresh subprocess: the numba kernels are loaded from their cache on a
tiny graph, and the encoder on a tiny model, first (the "jit" column, not part of the total: a
once-per-process cost like the imports), then ``encode`` and ``topometrics``
are timed; total = encoding + all 16 metrics. Configurations:

- ``fast, n_jobs=0``: the defaults — every core this process may use (``os.sched_getaffinity``);
- with ``--configs all`` also ``fast, n_jobs=1`` and ``igraph, n_jobs=0`` (the reference engine:
  the edge list is copied into igraph).

``CPU s`` is the user + system CPU time of encoding and metrics: on a loaded machine it is the
steadier figure; speed-ups and the ≥ 30× check use wall time. ``--repeat k`` runs every case
``k`` times and reports the median total (the other columns are of the median run).

Memory: ``peak`` is the process's peak resident set (VmHWM: imports, torch and model included, as
the authors' peaks are), ``growth`` the rise of the peak over the resident set just before
encoding (the peak is reset there through ``/proc/self/clear_refs``).

The authors' code (commit 02ba1eb) timed here (same machine kind, quiet, 2 cores): whole ``main()``
(MGE + 16 topometrics) CONV-6 67.6 s (0.98) / 228.5 s (0.9), peaks 2.3 / 8.7 GiB; ResNet-20
14.5 s / 48.3 s, peaks 1.3 / 4.1 GiB. Target: ≥ 30× faster (CONV-6 ≤ 2.25 s / 7.6 s, ResNet-20
≤ 0.48 s / 1.6 s).

Usage::

    python benchmarks/bench_metrics.py [--quick] [--cases conv6/0.98 ...] [--configs all]
                                       [--repeat 3] [--compat]

``--quick``: the two s = 0.98 cases only. The machine is shared: run it when ``uptime`` shows a
load below 1; the table header prints the load averages before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

#: Authors' end-to-end seconds and peak GiB per case (NOTES.md, fixtures' reference.json).
AUTHORS = {
    "conv6/0.98": (67.6, 2.3),
    "conv6/0.9": (228.5, 8.7),
    "resnet20/0.98": (14.5, 1.3),
    "resnet20/0.9": (48.3, 4.1),
}
#: The densest case: no published time; its own targets (seconds, GiB).
DENSE = {"conv6-synflow/0.6": (120.0, 12.0)}
TARGET_SPEEDUP = 30.0
CASES = (*AUTHORS, *DENSE)
CONFIGS = (("fast", 0), ("fast", 1), ("igraph", 0))


# ---------------------------------------------------------------- worker (one subprocess)
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its (waited-for) children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux ≥ 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _model(case: str):  # noqa: ANN202
    """The masked model of ``case`` ("conv6/0.98", …) and where its masks came from."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _measure import benchmark_network

    name, sparsity = case.split("/")
    if name == "conv6-synflow":
        from mgelib import models
        from mgelib.masks import apply_masks

        model = models.build("conv6", 3, 10, 32, seed=0)
        return apply_masks(model, _synflow_masks(model, float(sparsity))).eval(), "SynFlow seed 0"
    model, source = benchmark_network(name, float(sparsity))
    return model, {"fixture": "fixture masks", "erk": "ERK seed 0"}[source]


def _synflow_masks(model, sparsity: float) -> dict:  # noqa: ANN001
    """SynFlow's masks (seed 0), pruned once (about 2 minutes here, float64 scores) and kept in
    ``data/bench-cache/`` under a key of the pruning code's source, so reruns skip it."""
    import hashlib

    import torch

    import mgelib.pruning as pruning
    from mgelib.pruning import prune

    source = hashlib.sha256()
    for path in sorted(Path(pruning.__file__).parent.glob("*.py")):
        source.update(path.read_bytes())
    root = Path(__file__).resolve().parents[1]
    cache = root / "data" / "bench-cache" / f"conv6-synflow-{sparsity}-{source.hexdigest()[:12]}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    masks = prune("synflow", model, sparsity, seed=0, input_shape=(3, 32, 32))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(masks, tmp)
    tmp.replace(cache)  # atomic: a killed run leaves no half-written cache
    return masks


def _warm_up(engine: str, n_jobs: int, case: str) -> None:
    """Load every compiled kernel from its cache (or compile it) on small graphs, untimed: the
    encoder on a CONV-6 and a ResNet-20 of 8 × 8 inputs (its CSR step, and what the tracer loads on
    first use), a chain of 400 nodes in 4 partitions (the sparse eigensolver paths, bipartite)
    and the same with one shortcut (not bipartite), plus the 2-hop classes and the cut
    RAND-ESU — these two in the kernels' form the timed run uses (the serial twins when its
    metrics run side by side: 2–3 cores, and not the 172.6 M-edge case)."""
    import contextlib
    import math

    import numpy as np
    import scipy.sparse as sp

    from mgelib import encode, models
    from mgelib.graphs import Graph
    from mgelib.metrics import available_cores, kernels, topo, topometrics, twohop

    # Only the dense case is past the edge bound (its edges are not known before encoding).
    edges = math.inf if case in DENSE else 0
    side_by_side = topo.runs_side_by_side(engine, n_jobs or available_cores(), edges)
    form = kernels.serial_kernels if side_by_side else contextlib.nullcontext

    # The encoder (its parallel CSR passes, int32 indices as every graph here has).
    for name in ("conv6", "resnet20"):  # plain and residual: the op kinds the cases use
        encode(models.build(name, 3, 10, 8, seed=0).eval(), (3, 8, 8))

    # Four partitions of 100 nodes, node k of each feeding node k of the next (edges join
    # distinct partitions, as in an MGE); the second pass adds a shortcut from partition 0 to 2.
    n, part = 400, 100
    src = np.arange(n - part)
    for extra in ([], [(0, 2 * part)]):
        rows = np.concatenate([src, [a for a, _ in extra]]).astype(np.int64)
        cols = np.concatenate([src + part, [b for _, b in extra]]).astype(np.int64)
        adj = sp.csr_array((np.ones(rows.size, np.float32), (rows, cols)), shape=(n, n))
        graph = Graph(adj, [n // 4] * 4, ["i", "a", "b", "c"], [(1, 10, 10)] * 4)
        topometrics(graph, engine=engine, n_jobs=n_jobs)
        with form():
            twohop.two_hop_classes(adj, graph.dims, graph.shapes)
            kernels.esu4_estimates(kernels.undirected_view(adj), np.arange(4), 0.5, 0.5)


def worker(case: str, engine: str, n_jobs: int, compat: str | None) -> dict:
    import torch

    from mgelib import encode
    from mgelib.metrics import topometrics

    torch.set_num_threads(1)
    model, source = _model(case)

    # Load the numba kernels (compiled once into their cache) on a tiny graph, untimed.
    t0 = time.perf_counter()
    _warm_up(engine, n_jobs, case)
    jit = time.perf_counter() - t0

    cpu0 = _cpu_seconds()
    rss0 = _status_kib("VmRSS")
    reset = _reset_peak()
    t0 = time.perf_counter()
    graph = encode(model, (3, 32, 32), compat=compat)
    t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = topometrics(graph, seed=0, engine=engine, n_jobs=n_jobs)
    t_met = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    peak = _status_kib("VmHWM")
    from mgelib.metrics import TOPOMETRICS, available_cores

    return {
        "case": case,
        "engine": engine,
        "n_jobs": n_jobs,
        "masks": source,
        "nodes": graph.n_nodes,
        "edges": graph.n_edges,
        "jit_s": jit,
        "encode_s": t_enc,
        "metrics_s": t_met,
        "total_s": t_enc + t_met,
        "cpu_s": cpu,
        "timings": dict(result.timings),
        "peak_gib": peak / 2**20,
        "growth_mib": (peak - rss0) / 2**10 if reset else float("nan"),
        "threads": available_cores() if n_jobs == 0 else n_jobs,
        "nan": [m for m in TOPOMETRICS if result[m] != result[m]],
        "motif_note": result.reasons.get("motif", ""),
    }


# ---------------------------------------------------------------- driver
def run_case(case: str, engine: str, n_jobs: int, compat: str | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps([case, engine, n_jobs, compat])]
    env = {**os.environ, "MGELIB_QUIET": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{case} {engine} n_jobs={n_jobs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _median_run(runs: list[dict]) -> dict:
    runs = sorted(runs, key=lambda r: r["total_s"])
    out = dict(runs[len(runs) // 2])
    out["all_totals"] = [r["total_s"] for r in runs]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="s = 0.98 cases only")
    ap.add_argument("--cases", nargs="+", choices=CASES, default=None)
    ap.add_argument("--configs", choices=("default", "all"), default="default")
    ap.add_argument("--repeat", type=int, default=1, help="runs per case (median reported)")
    ap.add_argument("--compat", action="store_true", help='encode with compat="mge-snn"')
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*json.loads(args.worker))))
        return

    cases = args.cases or (("conv6/0.98", "resnet20/0.98") if args.quick else CASES)
    configs = CONFIGS if args.configs == "all" else CONFIGS[:1]
    compat = "mge-snn" if args.compat else None
    load_before = _load()
    rows = []
    for case in cases:
        for engine, n_jobs in configs:
            runs = [run_case(case, engine, n_jobs, compat) for _ in range(max(1, args.repeat))]
            rows.append(_median_run(runs))
            totals = ", ".join(f"{t:.2f}" for t in rows[-1]["all_totals"])
            print(f"  {case} {engine} n_jobs={n_jobs}: {totals} s", file=sys.stderr)
    import mgelib

    print(
        f"\nbench_metrics: {platform.machine()}, {os.cpu_count()} cores "
        f"({len(os.sched_getaffinity(0))} available), python {platform.python_version()}, "
        f"mgelib {getattr(mgelib, '__version__', '?')}; encoding "
        f"{'compat=mge-snn' if compat else 'paper mode (exact geometry)'}; load average "
        f"{load_before} before, {_load()} after; median of {max(1, args.repeat)} run(s)\n"
    )
    print(
        "| case | masks | edges | engine | threads | encode s | metrics s | total s | CPU s "
        "| authors s | speed-up | target s | met | peak GiB (authors) | growth MiB | NaN |"
    )
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---:|---|")
    for r in rows:
        if r["case"] in AUTHORS:
            theirs, their_peak = AUTHORS[r["case"]]
            target = theirs / TARGET_SPEEDUP
            speedup = f"{theirs / r['total_s']:.1f}×"
            ok = r["total_s"] <= target
        else:
            theirs, their_peak = "—", "—"
            target, peak_target = DENSE[r["case"]]
            speedup = "—"
            ok = r["total_s"] <= target and r["peak_gib"] <= peak_target and not r["nan"]
        print(
            f"| {r['case']} | {r['masks']} | {r['edges']:,} | {r['engine']} | {r['threads']} "
            f"| {r['encode_s']:.2f} | {r['metrics_s']:.2f} | {r['total_s']:.2f} "
            f"| {r['cpu_s']:.2f} | {theirs} | {speedup} | {target:.2f} "
            f"| {'yes' if ok else 'no'} | {r['peak_gib']:.2f} ({their_peak}) "
            f"| {r['growth_mib']:,.0f} | {', '.join(r['nan']) or 'none'} |"
        )
    for r in rows:
        if r["motif_note"]:
            print(f"\n{r['case']} motif: {r['motif_note']}")

    fast = [r for r in rows if r["engine"] == "fast" and r["n_jobs"] == configs[0][1]]
    steps = list(dict.fromkeys(k for r in fast for k in r["timings"]))
    print(
        f"\nPer-step seconds and share of their sum, fast engine, n_jobs={configs[0][1]} (on 2–3"
        " cores and up to 50 M edges the metrics run side by side: their seconds overlap, and sum"
        " to more than the total):\n"
    )
    print("| step | " + " | ".join(r["case"] for r in fast) + " |")
    print("|---|" + "---:|" * len(fast))
    for step in ["jit (untimed)", "encode", *steps]:
        cells = []
        for r in fast:
            value = {"jit (untimed)": r["jit_s"], "encode": r["encode_s"]}.get(
                step, r["timings"].get(step)
            )
            summed = r["encode_s"] + sum(r["timings"].values())
            share = "" if step.startswith("jit") else f" ({100 * (value or 0) / summed:.0f} %)"
            cells.append("" if value is None else f"{value:.3f}{share}")
        print(f"| {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
