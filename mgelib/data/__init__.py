"""Datasets and on-device batching with augmentation (method §3).

Four datasets: ``digits`` (scikit-learn's ``load_digits``, embedded, no download), ``cifar10``,
``cifar100`` (the standard python-pickle layouts) and ``tinyimagenet`` (the standard
``tiny-imagenet-200/`` folder, resized once to 32×32 with a box filter as the authors did and
cached under :func:`mgelib.paths.interim_dir`). :func:`load` returns a :class:`Dataset` of uint8
tensors; :class:`DeviceLoader` (or :func:`batches`) moves a split to the device once and cuts,
shuffles, augments (random crop with zero padding + horizontal flip, as batched tensor ops) and
normalises mini-batches there. The test split is never augmented (the authors' CIFAR-100 test
transform augments by mistake; method §3 says not to copy that).

Examples
--------
>>> import torch
>>> from mgelib import data
>>> ds = data.load("digits", seed=0)
>>> ds.x_train.shape, ds.x_train.dtype, ds.num_classes
(torch.Size([1347, 1, 8, 8]), torch.uint8, 10)
>>> g = torch.Generator().manual_seed(0)
>>> x, y = next(iter(data.DeviceLoader(ds, "train", 32, "cpu", train=True, generator=g)))
>>> x.shape, x.dtype, y.shape
(torch.Size([32, 1, 8, 8]), torch.float32, torch.Size([32]))
"""

from __future__ import annotations

from mgelib.data import loader as _loader
from mgelib.data import sources as _sources
from mgelib.data.loader import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.data.sources import *  # noqa: F403 - re-exported, listed in __all__ below

# The package's API is its modules' APIs: derived, not listed twice.
__all__ = [
    *_sources.__all__,
    *_loader.__all__,
]
