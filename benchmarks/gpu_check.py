"""GPU check: prune → train (static and RigL) → graph metrics, with the data kept on the device.

On CUDA, training runs in bfloat16 autocast with the channels-last memory format (the settings of
the paper profile), the dataset lives on the GPU as uint8 and is augmented there in batches
(:class:`mgelib.data.DeviceLoader`); the same static training on the CPU is timed beside it.
Without CUDA the script says so and runs every step on the CPU (float32, contiguous): the
numbers are then CPU numbers, and the check still exercises the code path end to end.

Prints a markdown table: stage, device, settings, seconds, images/s, test accuracy.

Usage::

    python benchmarks/gpu_check.py [--model resnet20] [--upsample 32] [--epochs 3]
                                   [--sparsity 0.9] [--cpu-epochs 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mgelib import data, dst, models, pipeline
from mgelib import train as tr


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train(net, masks, ds, cfg, device, hook=None) -> tuple[float, float]:  # noqa: ANN001
    """(seconds, test accuracy) of one training call, synchronised."""
    _sync(device)
    t0 = time.perf_counter()
    res = tr.train(net, masks, ds, cfg, hook=hook)
    _sync(device)
    return time.perf_counter() - t0, res.final_acc


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20", choices=models.MODELS)
    ap.add_argument("--upsample", type=int, default=32, help="digits resized to this size")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--pruner", default="snip", help="PaI pruner of the static run")
    ap.add_argument("--epochs", type=int, default=3, help="epochs on the device")
    ap.add_argument("--cpu-epochs", type=int, default=1, help="epochs of the CPU baseline")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cuda, cpu")
    ap.add_argument("--quick", action="store_true", help="8×8 digits, 2 epochs (one RigL update)")
    args = ap.parse_args(argv)
    if args.quick:
        args.upsample, args.epochs, args.cpu_epochs = 0, 2, 1
    os.environ.setdefault("MGELIB_QUIET", "1")
    device = tr.resolve_device(args.device)
    on_cuda = device.type == "cuda"
    if on_cuda:
        print(f"CUDA: {torch.cuda.get_device_name(device)}; bf16 autocast, channels_last")
    else:
        print("CUDA is not available: running every stage on the CPU (float32, contiguous)")

    ds = data.load("digits", seed=0, upsample=args.upsample or None)
    shape = (ds.in_channels, ds.input_size, ds.input_size)
    n_train = len(ds.y_train)

    def build() -> torch.nn.Module:
        return models.build(args.model, ds.in_channels, ds.num_classes, ds.input_size, seed=0)

    def config(dev: torch.device, epochs: int) -> tr.TrainConfig:
        cuda = dev.type == "cuda"
        return tr.TrainConfig(
            epochs=epochs,
            milestones=(),
            device=str(dev),
            amp="bf16" if cuda else "none",
            channels_last=cuda,
            progress=False,
        )

    rows: list[dict] = []

    def add(stage: str, dev: torch.device, seconds: float, images: int, acc: float) -> None:
        settings = "bf16, channels_last" if dev.type == "cuda" else "float32"
        rows.append(
            {
                "stage": stage,
                "device": str(dev),
                "settings": settings,
                "seconds": seconds,
                "images/s": images / seconds if images else float("nan"),
                "accuracy": acc,
            }
        )

    # Prune on the device (SNIP reads one training batch there).
    net = build().to(device)
    loader = data.DeviceLoader(ds, "train", 128, device, train=True)
    _sync(device)
    t0 = time.perf_counter()
    masks = pipeline.make_masks(args.pruner, net, args.sparsity, data=loader, input_shape=shape)
    _sync(device)
    add(f"prune ({args.pruner})", device, time.perf_counter() - t0, 0, float("nan"))

    seconds, acc = _train(net, masks, ds, config(device, args.epochs), device)
    add("train static", device, seconds, args.epochs * n_train, acc)

    rigl_net = build().to(device)
    rigl_masks = dst.initial_masks("rigl", rigl_net, args.sparsity)
    hook = pipeline.dst_hook("rigl", rigl_net, shape, dataset="digits", update_every=-1)
    seconds, acc = _train(rigl_net, rigl_masks, ds, config(device, args.epochs), device, hook)
    add(f"train RigL ({len(hook.records)} updates)", device, seconds, args.epochs * n_train, acc)

    if on_cuda:  # the CPU loop beside it
        cpu = torch.device("cpu")
        cpu_net = build()
        cpu_masks = {k: m.cpu() for k, m in masks.items()}
        seconds, acc = _train(cpu_net, cpu_masks, ds, config(cpu, args.cpu_epochs), cpu)
        add("train static", cpu, seconds, args.cpu_epochs * n_train, acc)

    t0 = time.perf_counter()
    tables = pipeline.graph_tables(net.cpu().eval(), shape, seed=0, motif_budget=1e8)
    add(
        f"graph metrics ({tables['graph'].n_edges:,} MGE edges)",
        torch.device("cpu"),
        time.perf_counter() - t0,
        0,
        float("nan"),
    )

    print(f"\n{args.model}, digits {ds.input_size}×{ds.input_size}, sparsity {args.sparsity}\n")
    print("| stage | device | settings | seconds | images/s | test accuracy |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        ips = f"{r['images/s']:,.0f}" if r["images/s"] == r["images/s"] else "–"
        accs = f"{r['accuracy']:.3f}" if r["accuracy"] == r["accuracy"] else "–"
        print(
            f"| {r['stage']} | {r['device']} | {r['settings']} | {r['seconds']:.2f} | {ips} | "
            f"{accs} |"
        )
    return rows


if __name__ == "__main__":
    main()
