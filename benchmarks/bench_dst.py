"""Mask-update overhead of the DST methods, as a share of training, at ΔT = 100 steps.

For each method of :mod:`mgelib.dst`, on a digits ResNet-20 (default sparsity 0.9):

- ``step ms``: one SGD step of the masked training loop (median epoch time of
  :func:`mgelib.train.train` over its steps, static masks);
- ``hook ms/step``: what the updater costs on every step (SNFS accumulates the dense-gradient
  momentum; the others only check the step number);
- ``update ms``: one mask update (drop, reallocate, regrow, zero the regrown weights and
  momentum), median of ``--repeats``;
- ``probe ms``: the cheap MGE metrics of the new mask (encode + sink/source/disconnected
  nodes, r-in/r-out, components), recorded in the trajectory;
- ``overhead``: ``(update + probe) / (ΔT · step) + hook / step`` — the share of training time
  the method adds at ΔT steps between updates (target ≤ 10 % at ΔT = 100).

Usage::

    python benchmarks/bench_dst.py [--device cpu] [--sparsity 0.9] [--interval 100]
                                   [--threads 1] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from mgelib import data, dst, models
from mgelib import train as tr
from mgelib.data import DeviceLoader
from mgelib.masks import apply_masks


def _median_seconds(fn, repeats: int, sync) -> float:  # noqa: ANN001
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _time_method(method, args, ds, device, batch, steps, step_s, sync) -> tuple:  # noqa: ANN001
    """(method, hook s/step, update s, probe s, overhead share) of one method."""
    shape = (ds.in_channels, ds.input_size, ds.input_size)
    model = models.build(args.model, ds.in_channels, ds.num_classes, ds.input_size, seed=0)
    model.to(device)
    init = dst.initial_masks(method, model, args.sparsity)
    apply_masks(model, init)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    float_masks = {k: m.to(device=device, dtype=torch.float32) for k, m in init.items()}
    extra = {"drop_fraction": 0.3} if method == "dsr" else {}  # a realistic-size update
    hook = dst.MaskUpdater(dst.dst_config(method, update_every=args.interval, **extra))
    hook.attach(model, opt, float_masks, total_steps=10**9, steps_per_epoch=steps)
    x, y = batch
    F.cross_entropy(model(x), y).backward()
    opt.step()

    def update() -> None:
        hook.before_step(args.interval)
        hook.after_step(args.interval)

    per_step = _median_seconds(lambda: hook.before_step(1), args.repeats, sync)
    upd = _median_seconds(update, args.repeats, sync)
    probe = dst.topology_probe(model, shape)
    probe_s = _median_seconds(lambda: probe(hook.masks()), args.repeats, sync)
    share = (upd + probe_s) / (args.interval * step_s) + per_step / step_s
    return method, per_step, upd, probe_s, share


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    ap.add_argument("--model", default="resnet20", choices=models.MODELS)
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--interval", type=int, default=100, help="ΔT, steps between updates")
    ap.add_argument("--epochs", type=int, default=3, help="static epochs timed (median)")
    ap.add_argument("--repeats", type=int, default=5, help="timed updates per method")
    ap.add_argument("--methods", nargs="+", default=list(dst.METHODS), choices=list(dst.METHODS))
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 3 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs, args.repeats = 2, 3
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("MGELIB_QUIET", "1")
    device = tr.resolve_device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    ds = data.load("digits", seed=0)
    net = models.build(args.model, ds.in_channels, ds.num_classes, ds.input_size, seed=0)
    masks = dst.initial_masks("rigl", net, args.sparsity)
    cfg = tr.TrainConfig(epochs=args.epochs, milestones=(), device=str(device), progress=False)
    res = tr.train(net, masks, ds, cfg)
    steps = len(DeviceLoader(ds, "train", cfg.batch_size, device, train=True))
    epoch_s = float(
        res.history["seconds"].iloc[1:].median() if args.epochs > 1 else res.wall_time_s
    )
    step_s = epoch_s / steps

    batch = next(iter(DeviceLoader(ds, "train", cfg.batch_size, device, train=True)))
    rows = [_time_method(m, args, ds, device, batch, steps, step_s, sync) for m in args.methods]
    print(
        f"\n{args.model} on digits, sparsity {args.sparsity}, {device}, "
        f"torch threads {torch.get_num_threads()}; static epoch {epoch_s:.2f} s "
        f"({steps} steps, {1e3 * step_s:.1f} ms/step); ΔT = {args.interval} steps\n"
    )
    print("| method | hook ms/step | update ms | probe ms | overhead at ΔT |")
    print("|---|---:|---:|---:|---:|")
    for method, per_step, upd, probe_s, share in rows:
        print(
            f"| {method} | {1e3 * per_step:.2f} | {1e3 * upd:.1f} | {1e3 * probe_s:.1f} | "
            f"{100 * share:.1f} % |"
        )


if __name__ == "__main__":
    main()
