"""A user's own code, as the tests of 'bring your own network' write it to disk: a model factory
module, a pruner module, and modules that go wrong in the ways mgelib must refuse clearly."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

MYMODELS = """
from torch import nn


def tiny_vgg(in_channels, num_classes, input_size):
    side = input_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * side * side, num_classes),
    )


def mlp(num_classes):  # declares only one of the three
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, num_classes))


def not_a_module(in_channels, num_classes):
    return {"in": in_channels, "out": num_classes}


def needs_depth(depth, num_classes):
    return nn.Linear(depth, num_classes)
"""

MYPRUNERS = '''
import torch

from mgelib.masks import prunable_parameters
from mgelib.pruning import masks_from_scores

CALLS = []


def magnitude(model, sparsity, *, seed=0):
    """Keep the largest |w| over the whole network."""
    CALLS.append({"seed": seed})
    scores = {k: p.detach().abs() for k, p in prunable_parameters(model).items()}
    return masks_from_scores(scores, sparsity)


def takes_everything(model, sparsity, **kwargs):
    CALLS.append(sorted(kwargs))
    return magnitude(model, sparsity)


def as_floats(model, sparsity):
    return {k: v.float() for k, v in magnitude(model, sparsity).items()}


def wrong_shape(model, sparsity):
    return {k: v.reshape(-1, 1) for k, v in magnitude(model, sparsity).items()}


def wrong_count(model, sparsity):
    return {k: torch.ones_like(p, dtype=torch.bool) for k, p in prunable_parameters(model).items()}


def missing_layer(model, sparsity):
    masks = magnitude(model, sparsity)
    masks.pop(next(iter(masks)))
    return masks


def not_binary(model, sparsity):
    return {k: v.float() * 0.5 for k, v in magnitude(model, sparsity).items()}


def one_argument(model):
    return {}
'''

BROKEN = """
import this_package_does_not_exist_anywhere  # noqa: F401


def tiny_vgg(in_channels, num_classes, input_size):
    raise AssertionError("never reached")
"""


USER_MODULES = ("mymodels", "mypruners", "broken")


def write_user_code(folder: Path) -> Path:
    """Write ``mymodels.py``, ``mypruners.py`` and ``broken.py`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in zip(USER_MODULES, (MYMODELS, MYPRUNERS, BROKEN), strict=True):
        (folder / f"{name}.py").write_text(text.lstrip())
    return folder


@contextlib.contextmanager
def user_code_on_path(folder: Path) -> Iterator[Path]:
    """The user's code written to ``folder`` and on ``sys.path`` (as if on PYTHONPATH), its
    modules forgotten before and after, so each test module imports them afresh."""
    write_user_code(folder)
    for name in USER_MODULES:
        sys.modules.pop(name, None)
    sys.path.insert(0, str(folder))
    try:
        yield folder
    finally:
        sys.path.remove(str(folder))
        for name in USER_MODULES:
            sys.modules.pop(name, None)
