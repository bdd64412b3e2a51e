"""Batching on the device: :func:`augment` (random crop + flip as tensor ops),
:func:`normalize`, and :class:`DeviceLoader` / :func:`batches`, which move a split to the device
once and cut, shuffle, augment and normalise mini-batches there.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from mgelib.data.sources import Augment, Dataset

__all__ = ["DeviceLoader", "batches", "augment", "normalize"]


def augment(
    x: torch.Tensor, spec: Augment, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Randomly crop (from a zero-padded copy) and flip a batch of images, as tensor ops.

    Random numbers are drawn on the CPU from ``generator`` (so a run's randomness does not depend
    on the device) and moved to ``x``'s device; the crop is one advanced-indexing gather from an
    ``unfold`` view of the padded batch and the flip a :func:`torch.where`, with no per-sample
    Python loop.

    Parameters
    ----------
    x
        ``(B, C, H, W)`` images of any dtype (uint8 in the loader), on any device.
    spec
        Padding of the crop and whether to flip.
    generator
        CPU generator; ``None`` uses the global one.

    Examples
    --------
    >>> x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4)
    >>> augment(x, Augment(0, False)).equal(x)
    True
    >>> augment(x, Augment(1, False), torch.Generator().manual_seed(0)).shape
    torch.Size([1, 1, 4, 4])
    """
    b, c, h, w = x.shape
    p = int(spec.crop_padding)
    if b == 0:
        return x
    if p > 0:
        offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=generator).to(x.device)
        padded = F.pad(x, (p, p, p, p))  # zeros, like RandomCrop(padding=p)
        # All (2p+1)² crops as a strided view (B, C, 2p+1, 2p+1, H, W), no copy; one gather
        # picks each sample's crop. The indexed dims are split by a slice, so the batch dim
        # comes first: the result is (B, C, H, W).
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)
        x = windows[torch.arange(b, device=x.device), :, offsets[:, 0], offsets[:, 1]]
    if spec.flip:
        flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 images → float32 ``(x / 255 − mean) / std`` per channel.

    Examples
    --------
    >>> normalize(torch.full((1, 1, 1, 1), 255, dtype=torch.uint8), (0.5,), (0.5,)).item()
    1.0
    """
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=x.device).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], device=x.device).view(1, -1, 1, 1)
    return x.to(torch.float32).mul_(scale).sub_(shift)


# Per-dataset cache of splits already moved to a device: {dataset: {(split, device): (x, y)}}.
_ON_DEVICE: weakref.WeakKeyDictionary[
    Dataset, dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]]
]
_ON_DEVICE = weakref.WeakKeyDictionary()

#: Fraction of the free accelerator memory a dataset split may take to be kept there.
_DEVICE_FRACTION = 0.4


def _split_on(
    ds: Dataset, split: str, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """The split's tensors on ``device`` if they fit (cached), else on the CPU (flag False)."""
    x, y = ds.split(split)
    if device.type == "cpu":
        return x, y, True
    per_ds = _ON_DEVICE.setdefault(ds, {})
    key = (split, str(device))
    if key in per_ds:
        return (*per_ds[key], True)
    fits = True
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        fits = x.numel() + 8 * y.numel() < _DEVICE_FRACTION * free
    if not fits:
        return x.pin_memory(), y.pin_memory(), False
    moved = (x.to(device), y.to(device))
    per_ds[key] = moved
    return (*moved, True)


class DeviceLoader:
    """Mini-batches of one split, shuffled, augmented and normalised on the device.

    The split is moved to ``device`` once as uint8 (cached per dataset and device; a split that
    does not fit in 40 % of the free accelerator memory stays on the CPU and each batch is copied
    over). When ``train`` is true, each pass draws a permutation and then, batch by batch, the
    augmentation from ``generator``; the same generator state gives the same batches. With
    ``train=False`` batches come in order, unaugmented. In training, a last batch of a single
    sample is dropped (BatchNorm cannot normalise one sample).

    Parameters
    ----------
    ds
        The dataset.
    split
        ``"train"`` or ``"test"``.
    batch_size
        Samples per batch.
    device
        Where batches are produced.
    train
        Shuffle (from ``generator``) and, for the train split only, augment. The test split is
        never augmented, even with ``train=True``.
    generator
        CPU :class:`torch.Generator` for the shuffling and augmentation; ``None`` = global RNG.
    channels_last
        Return batches in ``torch.channels_last`` memory format.

    Examples
    --------
    >>> from mgelib.data import load
    >>> ds = load("digits")
    >>> loader = DeviceLoader(ds, "test", 100, "cpu", train=False)
    >>> len(loader), sum(len(y) for _, y in loader)
    (5, 450)
    """

    def __init__(
        self,
        ds: Dataset,
        split: str,
        batch_size: int,
        device: str | torch.device = "cpu",
        *,
        train: bool,
        generator: torch.Generator | None = None,
        channels_last: bool = False,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        ds.split(split)  # validates the name
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(
                "the generator must be a CPU torch.Generator (randomness is drawn on the CPU)"
            )
        self.ds = ds
        self.split = split
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.train = bool(train)
        self.generator = generator
        self.channels_last = channels_last
        self._augment = split == "train" and self.train

    def _n(self) -> int:
        return len(self.ds.split(self.split)[1])

    def __len__(self) -> int:
        n, b = self._n(), self.batch_size
        full, rest = divmod(n, b)
        if self.train and rest == 1:
            return full
        return full + (rest > 0)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        x, y, on_device = _split_on(self.ds, self.split, self.device)
        n = len(y)
        if self.train:
            order = torch.randperm(n, generator=self.generator)
            if on_device:
                order = order.to(self.device)
        else:
            order = None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            if order is None:
                xb, yb = x[sl], y[sl]
            else:
                idx = order[sl]
                xb, yb = x[idx], y[idx]
            if not on_device:
                xb = xb.to(self.device, non_blocking=True)
                yb = yb.to(self.device, non_blocking=True)
            if self._augment:
                xb = augment(xb, self.ds.augment, self.generator)
            xb = normalize(xb, self.ds.mean, self.ds.std)
            if self.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            yield xb, yb


def batches(
    ds: Dataset,
    split: str,
    batch_size: int,
    device: str | torch.device = "cpu",
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate once over ``(x, y)`` mini-batches; a functional wrapper of :class:`DeviceLoader`.

    Examples
    --------
    >>> from mgelib.data import load
    >>> ds = load("digits")
    >>> x, y = next(batches(ds, "test", 8, "cpu", train=False))
    >>> x.shape
    torch.Size([8, 1, 8, 8])
    """
    return iter(DeviceLoader(ds, split, batch_size, device, train=train, generator=generator))
