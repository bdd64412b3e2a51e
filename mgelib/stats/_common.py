"""Small helpers shared by the :mod:`mgelib.stats` modules (bootstrap indices, percentiles,
per-unit random streams, thread limits, column checks). Private: not re-exported."""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

__all__: list[str] = []


class InsufficientData(ValueError):
    """The data are too few to estimate (rows, pruners, cells): the one condition that makes a
    claims row say "insufficient data". A ``ValueError`` subclass, so callers that catch
    ``ValueError`` still do; the claims code catches only this. Public as
    :class:`mgelib.stats.InsufficientData`."""


def _boot_idx(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int32 if n < 2**31 else np.int64)


def _r2_rows(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    ss_res = ((Y - P) ** 2).sum(axis=-1)
    ss_tot = ((Y - Y.mean(axis=-1, keepdims=True)) ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


def _metric_rows(metric: str, Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    if metric == "r2":
        return _r2_rows(Y, P)
    if metric == "mae":
        return np.abs(Y - P).mean(axis=-1)
    raise ValueError(f"unknown metric {metric!r}; use 'r2' or 'mae'")


def _pct(values: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (np.nan, np.nan)
    lo, hi = np.quantile(v, [a, 1.0 - a])
    return float(lo), float(hi)


def _unit_rng(seed: int, label: str) -> np.random.Generator:
    # Stable per unit, whatever else is evaluated: the same rows get the same resamples in every
    # call, so feature sets, learners and fold schemes are paired.
    return np.random.default_rng([seed, zlib.crc32(label.encode())])


def _progress(progress: bool | None) -> bool:
    if progress is None:
        return os.environ.get("MGELIB_QUIET", "") in ("", "0")
    return progress


def _single_thread() -> Any:
    """Limit OpenMP/BLAS to one thread: the fits here are tiny, and on a busy machine the
    tree model's OpenMP threads can spin for seconds (oversubscription) on a 100-row fit."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def _check_columns(df: pd.DataFrame, cols: Iterable[str], what: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"unknown {what} {missing}; not a column of the frame")
