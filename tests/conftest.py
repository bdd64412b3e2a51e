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
    """The committed fidelity fixtures, ``tests/fixtures`` (or ``MGELIB_FIXTURES``).

    They are part of the repository, so a missing folder is an error, never a skip."""
    from mgelib import paths

    d = paths.fixtures_dir()
    if not (d / "conv6_erk_s0.98").is_dir():
        raise FileNotFoundError(f"fidelity fixtures not found at {d}: restore tests/fixtures/")
    return d


def load_reference_edges(fixtures_dir, name: str):  # noqa: ANN001, ANN201
    """The authors' MGE of a fixture network: sorted int64 keys ``src·V + tgt``, their float16
    weights (as float32) in that order, and the partition sizes (``tests/fixtures/README.md``)."""
    import numpy as np

    with np.load(fixtures_dir / name / "reference_edges_sorted.npz") as ref:
        keys = np.cumsum(ref["key_delta"].astype(np.int64))
        return keys, ref["weight"].astype(np.float32), ref["dimension"].astype(np.int64)


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
