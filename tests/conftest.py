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
