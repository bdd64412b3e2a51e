"""Shared pytest fixtures (keep this file small; add fixtures, do not change others')."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="module")
def torch_single_thread() -> Iterator[None]:
    """Run a test module's torch ops on one CPU thread, then restore the thread count.

    Small CPU models run about as fast on one thread, and multi-threaded OpenMP slows down by
    10-20× when other processes (pytest-xdist workers, other jobs) share the 2 cores. Use with
    ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def fixtures_dir():
    """``../shared/fixtures`` (or ``MGELIB_FIXTURES``); skips the test when it is absent."""
    from mgelib import paths

    d = paths.fixtures_dir()
    if not (d / "conv6_erk_s0.98").is_dir():
        pytest.skip(f"reference fixtures not found at {d} (set MGELIB_FIXTURES)")
    return d


def load_fixture_model(fixtures_dir, name: str):  # noqa: ANN001, ANN201
    """The fixture's network (``conv6_erk_s0.98`` or ``resnet20_erk_s0.98``) with the authors'
    masked weights loaded, masks registered from the non-zero pattern, in eval mode."""
    import json

    import numpy as np

    from mgelib.masks import apply_masks, masks_from_weights
    from mgelib.models import build

    ref = json.loads((fixtures_dir / name / "reference.json").read_text())
    model = build(
        ref["model"],
        in_channels=ref["input_shape"][0],
        num_classes=ref["num_classes"],
        input_size=ref["input_shape"][1],
        seed=0,
    )
    with np.load(fixtures_dir / name / "masked_weights.npz") as arrays:
        apply_masks(model, masks_from_weights(model, dict(arrays)))
    return model.eval(), ref
