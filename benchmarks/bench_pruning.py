"""Time every pruner of :mod:`mgelib.pruning` on one model (default: ResNet-20, CIFAR shape).

Random data: ``--batches`` batches of ``--batch-size`` images of 3×``--input-size``² with labels
cycling over 10 classes. SNIP reads the first batch, GraSP gathers 10 samples per class (100
images), ProsPr reads ``steps + 1 = 4`` batches, SynFlow runs its 100 rounds on an all-ones input,
Uniform/ER/ERK read no data. Prints a markdown table (pruner, seconds, kept, sparsity) and the
process's peak resident memory.

Usage::

    python benchmarks/bench_pruning.py [--device cpu] [--sparsity 0.9] [--model resnet20]
                                       [--threads 1]

On a shared machine, compare ``--threads 1`` with the default: SynFlow's 100 batch-1 rounds are
many small ops, which intra-op threads slow down badly when the cores are busy.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import torch

from mgelib import models
from mgelib.masks import prunable_parameters
from mgelib.pruning import PRUNERS, kept_count, prune


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="torch device of the model (default cpu)")
    ap.add_argument("--model", default="resnet20", choices=models.MODELS)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--pruners", nargs="+", default=list(PRUNERS), choices=list(PRUNERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's)"
    )
    ap.add_argument("--quick", action="store_true", help="16×16 inputs, 1 batch of 32")
    args = ap.parse_args(argv)
    if args.quick:
        args.input_size, args.batches, args.batch_size = 16, 1, 32
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MGELIB_QUIET", "1")

    device = torch.device(args.device)
    model = models.build(args.model, 3, 10, args.input_size, seed=args.seed).to(device)
    total = sum(p.numel() for p in prunable_parameters(model).values())
    gen = torch.Generator().manual_seed(args.seed)
    data = [
        (
            torch.randn(args.batch_size, 3, args.input_size, args.input_size, generator=gen),
            torch.randint(0, 10, (args.batch_size,), generator=gen),
        )
        for _ in range(args.batches)
    ]
    shape = (3, args.input_size, args.input_size)

    rows = []
    for name in args.pruners:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        masks = prune(name, model, args.sparsity, data=data, input_shape=shape, seed=args.seed)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        kept = sum(int(m.sum()) for m in masks.values())
        assert kept == kept_count(args.sparsity, total), (name, kept)
        rows.append((name, seconds, kept, 1.0 - kept / total))

    print(
        f"{args.model} on {args.device} ({platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}); input 3×{args.input_size}²,"
        f" batch {args.batch_size}, target sparsity {args.sparsity}, {total:,} prunable weights\n"
    )
    print("| pruner | seconds | kept | sparsity |")
    print("|---|---:|---:|---:|")
    for name, seconds, kept, sparsity in rows:
        print(f"| {name} | {seconds:.3f} | {kept:,} | {sparsity:.6f} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak resident memory of the process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
