"""Training throughput: mgelib's on-device batching vs a per-sample DataLoader pipeline.

Both pipelines feed the same ResNet-20 (3×32×32 random uint8 images, 10 classes, batch 128) with
CIFAR augmentation (random crop with 4-pixel zero padding + horizontal flip, then normalisation):

- ``mgelib DeviceLoader``: the split lives on the device as uint8; shuffling, crop (one gather),
  flip (``torch.where``) and normalisation are batched tensor ops there;
- ``DataLoader (per-sample)``: a ``torch.utils.data.Dataset`` whose ``__getitem__`` pads, crops,
  flips and normalises one image, collated by ``torch.utils.data.DataLoader`` and copied over.

Each pipeline runs one untimed warm-up epoch, then ``--epochs`` timed epochs of SGD steps
(forward, cross-entropy, backward, step); a second column times the pipeline alone (no model).

Usage::

    python benchmarks/bench_train.py [--device cpu|cuda|auto] [--quick] [--workers N] [--threads N]

On a shared CPU, compare runs with ``--threads 1``: multi-threaded OpenMP slows down badly when
other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F

from mgelib import data, models
from mgelib.train import resolve_device

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


class PerSampleDataset(torch.utils.data.Dataset):
    """The usual torchvision-style pipeline, written on tensors: one image at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, padding: int = 4) -> None:
        self.x, self.y, self.p = x, y, padding
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img = self.x[i]
        h, w = img.shape[-2:]
        padded = F.pad(img, (self.p, self.p, self.p, self.p))
        dy, dx = torch.randint(0, 2 * self.p + 1, (2,)).tolist()
        img = padded[:, dy : dy + h, dx : dx + w]
        if torch.rand(()) < 0.5:
            img = img.flip(-1)
        return (img.float() / 255 - self.mean) / self.std, self.y[i]


def _epochs(
    make_iter: Callable[[], Iterable], epochs: int, step: Callable | None, device: torch.device
) -> float:
    """Images per second over ``epochs`` passes (after one warm-up pass)."""
    for i in range(epochs + 1):
        if i == 1:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, seen = time.perf_counter(), 0
        for x, y in make_iter():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if step is not None:
                step(x, y)
            elif device.type == "cuda":
                x.sum()  # touch the batch
            if i >= 1:
                seen += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--quick", action="store_true", help="512 images, 1 timed epoch")
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs (default 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (default 0)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (0: torch default)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    n, epochs = (512, 1) if args.quick else (args.images, args.epochs)
    device = resolve_device(args.device)

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    ds = data.Dataset(
        name="random",
        x_train=x,
        y_train=y,
        x_test=x[:0],
        y_test=y[:0],
        num_classes=10,
        in_channels=3,
        input_size=32,
        mean=MEAN,
        std=STD,
        augment=data.Augment(4, True),
    )
    model = models.build("resnet20", seed=0).to(device)
    opt = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9, weight_decay=1e-4
    )

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    ours_gen = torch.Generator().manual_seed(1)

    def ours() -> Iterable:
        return data.DeviceLoader(
            ds, "train", args.batch_size, device, train=True, generator=ours_gen
        )

    torch.manual_seed(1)
    per_sample = PerSampleDataset(x, y)

    def theirs() -> Iterable:
        return torch.utils.data.DataLoader(
            per_sample,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )

    rows = []
    for label, make in (("mgelib DeviceLoader", ours), ("DataLoader (per-sample)", theirs)):
        model.train()
        train_ips = _epochs(make, epochs, step, device)
        data_ips = _epochs(make, epochs, None, device)
        workers = "-" if make is ours else str(args.workers)
        rows.append((label, str(device), workers, train_ips, data_ips))

    print(
        f"\nResNet-20, {n} random 3×32×32 images, batch {args.batch_size}, {epochs} timed "
        f"epoch(s), torch {torch.__version__}, {torch.get_num_threads()} threads\n"
    )
    print("| method | device | workers | images/s (training) | images/s (data only) |")
    print("|---|---|---|---:|---:|")
    for label, dev, workers, t_ips, d_ips in rows:
        print(f"| {label} | {dev} | {workers} | {t_ips:,.0f} | {d_ips:,.0f} |")


if __name__ == "__main__":
    main()
