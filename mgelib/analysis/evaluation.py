"""Evaluation steps of the study notebooks that never crash on data too small to estimate:
out-of-fold scores (:func:`evaluate_or_skip`), claims rows and ``claims.csv``
(:func:`safe_claim`, :func:`insufficient_row`, :func:`write_claims`), summaries over units
(:func:`group_summary`, :func:`pooled_within_r2`, :func:`paired_differences`) and inference per
sparsity level and architecture (:func:`coefficients_by`, :func:`importance_by`,
:func:`vif_by_group`). What is skipped is printed with its reason.

Examples
--------
>>> fmt_ci(0.8123, 0.75, 0.86)
'0.81 [0.75, 0.86]'
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgelib import io, stats

__all__ = [
    "PARALLEL_MIN_ROWS",
    "resolve_jobs",
    "evaluate_or_skip",
    "safe_claim",
    "insufficient_row",
    "write_claims",
    "group_summary",
    "pooled_within_r2",
    "paired_differences",
    "units_by",
    "coefficients_by",
    "importance_by",
    "vif_by_group",
    "fmt_ci",
]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _stats_warnings() -> Iterator[list[str]]:
    log = logging.getLogger("mgelib.stats")
    handler, propagate = _Collect(), log.propagate
    log.addHandler(handler)
    log.propagate = False  # printed as reasons below instead of logged to stderr
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
        log.propagate = propagate


#: Below this many rows the out-of-fold fits run in-process: starting worker processes
#: (seconds) would cost more than the fits.
PARALLEL_MIN_ROWS = 500


def resolve_jobs(n_jobs: int, n_rows: int) -> int:
    """``n_jobs`` when positive; ``0`` means automatic: one worker process per usable core (at
    most 4) for ``n_rows`` ≥ :data:`PARALLEL_MIN_ROWS`, else 1.

    Examples
    --------
    >>> resolve_jobs(3, 10), resolve_jobs(0, 10)
    (3, 1)
    """
    if n_jobs > 0:
        return n_jobs
    if n_jobs < 0:
        raise ValueError(f"n_jobs must be ≥ 0 (0 means automatic), got {n_jobs}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(cores or 1, 4) if n_rows >= PARALLEL_MIN_ROWS else 1


def evaluate_or_skip(
    df: pd.DataFrame,
    feature_sets: Mapping[str, Sequence[str]],
    target: str,
    *,
    min_group_size: int = 10,
    **kwargs: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """:func:`mgelib.stats.evaluate` (with OOF) that never raises on data too small to estimate:
    the units, fold schemes or the whole call it skips are printed and returned as reasons;
    the frames are empty when nothing could be estimated.

    Examples
    --------
    >>> from mgelib.analysis import synthetic_runs
    >>> tiny = synthetic_runs(n_pruners=2, sparsities=(0.6, 0.9), seeds=(0,), dense=False)
    >>> scores, oof, reasons = evaluate_or_skip(tiny, {"s": ["sparsity"]}, "accuracy_drop")
    skipped: 4 rows < 10: nothing to estimate
    >>> len(scores), reasons
    (0, ['4 rows < 10: nothing to estimate'])
    """
    reasons: list[str] = []
    scores = oof = pd.DataFrame()
    with _stats_warnings() as caught:
        if not feature_sets:
            reasons.append("no feature set with usable columns")
        elif len(df) < min_group_size:
            reasons.append(f"{len(df)} rows < {min_group_size}: nothing to estimate")
        else:
            try:
                scores, oof = stats.evaluate(
                    df,
                    feature_sets,
                    target,
                    min_group_size=min_group_size,
                    return_oof=True,
                    **kwargs,
                )
            except stats.InsufficientData as err:  # any other error is a bug: it raises
                reasons.append(str(err))
    reasons = caught + reasons
    for r in reasons:
        print(f"skipped: {r}")
    return scores, oof, reasons


def insufficient_row(
    claim: str, comparison: str, statistic: str, reason: str, subset: str = ""
) -> dict[str, Any]:
    """A claims row that the data cannot decide (``verdict = "insufficient data"``).

    Examples
    --------
    >>> insufficient_row("ranking", "mge − ramanujan", "Δτ", "2 pruners")["verdict"]
    'insufficient data'
    """
    return {
        "claim": stats.CLAIMS.get(claim, claim),
        "subset": subset,
        "feature_set_or_comparison": comparison,
        "statistic": f"{statistic} — not estimable: {reason}",
        "estimate": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "rule": "insufficient data: too few rows, pruners or cells to estimate (InsufficientData)",
        "verdict": stats.INSUFFICIENT,
    }


def safe_claim(
    fn: Callable[..., list[dict[str, Any]]],
    data: pd.DataFrame,
    *,
    claim: str,
    comparison: str,
    statistic: str,
    subset: str = "",
    prefix: str = "",
    **kwargs: Any,
) -> list[dict[str, Any]]:
    """``fn(data, **kwargs)`` (a ``stats.claim_*``), or one :func:`insufficient_row` when the
    data are empty or the function raises :class:`mgelib.stats.InsufficientData`. Any other
    error (a typo in a feature-set name, a bad option) propagates: it is a bug, not a verdict.
    ``subset`` is stored on every row; ``prefix`` is prepended to each row's comparison.

    Examples
    --------
    >>> safe_claim(stats.claim_ranking, pd.DataFrame(), claim="ranking", comparison="a − b",
    ...            statistic="Δτ")[0]["verdict"]
    'insufficient data'
    """
    if data is None or len(data) == 0:
        return [
            insufficient_row(
                claim, prefix + comparison, statistic, "no out-of-fold predictions", subset
            )
        ]
    try:
        rows = fn(data, **kwargs)
    except stats.InsufficientData as err:
        return [insufficient_row(claim, prefix + comparison, statistic, str(err), subset)]
    return [
        {
            **r,
            "subset": subset,
            "feature_set_or_comparison": prefix + r["feature_set_or_comparison"],
        }
        for r in rows
    ]


def write_claims(rows: Sequence[Mapping[str, Any]], folder: str | Path) -> pd.DataFrame:
    """``claims.csv`` with exactly :data:`mgelib.stats.CLAIMS_COLUMNS` (and the extra keys —
    scope, learner, folds — in ``claims_detail.parquet``). :func:`mgelib.stats.claims_table`
    refuses a row without a rule, with a verdict outside :data:`mgelib.stats.VERDICTS`, or
    decided on a non-finite CI."""
    table = stats.claims_table(rows)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with io.atomic_path(folder / "claims.csv") as tmp:
        table[list(stats.CLAIMS_COLUMNS)].to_csv(tmp, index=False)
    io.write_table(table, folder / "claims_detail.parquet")
    return table


def group_summary(
    scores: pd.DataFrame, by: Sequence[str] = ("scope", "feature_set", "learner", "folds")
) -> pd.DataFrame:
    """Mean and median over units of R² and MAE — the median beside the mean because one
    group where OLS extrapolates wildly (an unseen pruner) can drag the mean far below 0."""
    agg = scores.groupby(list(by), sort=False).agg(
        n_units=("r2", "size"),
        r2_mean=("r2", "mean"),
        r2_median=("r2", "median"),
        mae_mean=("mae", "mean"),
        mae_median=("mae", "median"),
    )
    return agg.reset_index()


def pooled_within_r2(
    oof: pd.DataFrame, group_cols: Sequence[str] = ("model", "dataset")
) -> pd.DataFrame:
    """R² of the pooled scope against each group's own mean (1 − SS_res / Σ(y − ȳ_group)²):
    the pooled R² without the between-group variance that the fixed effects explain for free."""
    pooled = oof[oof["scope"] == "pooled"]
    rows = []
    for key, g in pooled.groupby(["feature_set", "learner", "folds"], sort=False):
        centred = g["y"] - g.groupby(list(group_cols))["y"].transform("mean")
        ss_res = float(((g["y"] - g["y_pred"]) ** 2).sum())
        ss_w = float((centred**2).sum())
        rows.append(
            {
                **dict(zip(["feature_set", "learner", "folds"], key)),
                "r2_within": 1.0 - ss_res / ss_w if ss_w > 0 else np.nan,
            }
        )
    return pd.DataFrame(rows, columns=["feature_set", "learner", "folds", "r2_within"])


def paired_differences(
    oof: pd.DataFrame,
    pairs: Sequence[tuple[str, str]],
    *,
    scope: str = "per_group",
    strata: Sequence[str] | None = ("model", "dataset"),
    agg: str = "median",
    metric: str = "r2",
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`mgelib.stats.compare` of feature set ``a`` against ``b`` for each pair, learner and
    fold scheme of ``scope`` (e.g. what MGE adds over the sparsity-only baseline)."""
    rows = []
    sub = oof[oof["scope"] == scope] if len(oof) else oof
    if len(sub) == 0:
        return pd.DataFrame()
    for (lr, fo), g in sub.groupby(["learner", "folds"], sort=False):
        for a, b in pairs:
            A, B = g[g["feature_set"] == a], g[g["feature_set"] == b]
            if len(A) == 0 or len(B) == 0:
                continue
            try:
                r = stats.compare(
                    A, B, metric=metric, strata=strata, agg=agg, n_boot=n_boot, seed=seed
                )
            except ValueError as err:
                print(f"skipped: {a} − {b} ({lr}, {fo}): {err}")
                continue
            rows.append({"comparison": f"{a} − {b}", "learner": lr, "folds": fo, **r.to_dict()})
    return pd.DataFrame(rows)


def fmt_ci(estimate: float, low: float, high: float, digits: int = 2) -> str:
    """``"0.81 [0.75, 0.86]"``; ``"n/a"`` for a non-finite estimate."""
    if not np.isfinite(estimate):
        return "n/a"
    return f"{estimate:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def units_by(df: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(kind, label, rows)`` per sparsity level and per architecture (method §8.3)."""
    out = [("sparsity", f"s = {s:g}", g) for s, g in df.groupby("sparsity", sort=True)]
    return out + [("architecture", str(m), g) for m, g in df.groupby("model", sort=True)]


#: Fixed effects per unit kind: a sparsity level pools every (model, dataset) group; an
#: architecture pools its datasets and sparsity levels.
_FIXED = {"sparsity": ("group",), "architecture": ("dataset", "sparsity_level")}


def _with_unit_columns(df: pd.DataFrame) -> pd.DataFrame:
    return df.assign(
        group=df["model"].astype(str) + "/" + df["dataset"].astype(str),
        sparsity_level=df["sparsity"].map(lambda s: f"{s:g}"),
    )


def coefficients_by(
    df: pd.DataFrame, features: Sequence[str], target: str, *, mixed: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """Standardised coefficients (:func:`mgelib.stats.coefficients`, target standardised too;
    cluster-robust by configuration, or a random intercept per configuration with ``mixed``)
    per sparsity level and per architecture, with the unit's fixed effects. Units that cannot
    be fitted are skipped with a reason."""
    frames, reasons = [], []
    for kind, label, sub in units_by(_with_unit_columns(df)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = stats.coefficients(
                    sub,
                    features,
                    target,
                    cluster=None if mixed else "config",
                    mixed=mixed,
                    fixed_effects=_FIXED[kind],
                    standardise_target=True,
                )
        except (ValueError, np.linalg.LinAlgError) as err:
            reasons.append(f"coefficients, {kind} {label}: {err}")
            continue
        if c["n_groups"].iloc[0] <= len(features):
            reasons.append(
                f"coefficients, {kind} {label}: {c['n_groups'].iloc[0]} clusters for "
                f"{len(features)} features — its standard errors are unreliable (kept)"
            )
        frames.append(c.assign(kind=kind, unit=label))
    for r in reasons:
        print(f"note: {r}")
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), reasons


def importance_by(
    df: pd.DataFrame, features: Sequence[str], target: str, **kwargs: Any
) -> tuple[pd.DataFrame, list[str]]:
    """Out-of-fold permutation importance (:func:`mgelib.stats.permutation_importance_oof`) per
    sparsity level (``features``) and per architecture (``features`` + ``sparsity``), the
    unit's fixed effects as unscored categoricals."""
    frames, reasons = [], []
    for kind, label, sub in units_by(_with_unit_columns(df)):
        feats = list(features) + (["sparsity"] if kind == "architecture" else [])
        cats = [c for c in _FIXED[kind] if c != "sparsity_level" and sub[c].nunique() > 1]
        try:
            imp = stats.permutation_importance_oof(sub, feats, target, categoricals=cats, **kwargs)
        except stats.InsufficientData as err:
            reasons.append(f"importance, {kind} {label}: {err}")
            continue
        for r in imp[imp["status"] == "undefined"].itertuples():
            reasons.append(f"importance, {kind} {label}: {r.feature} undefined ({r.reason})")
        frames.append(imp.assign(kind=kind, unit=label))
    for r in reasons:
        print(f"skipped: {r}")
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), reasons


def vif_by_group(df: pd.DataFrame, features: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """:func:`mgelib.stats.vif` of ``features`` within each (model, dataset) group."""
    frames, reasons = [], []
    for (m, d), sub in df.groupby(["model", "dataset"], sort=True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # ill-conditioning is what the table reports
                frames.append(stats.vif(sub, features).assign(model=m, dataset=d))
        except ValueError as err:
            reasons.append(f"VIF, {m}/{d}: {err}")
    for r in reasons:
        print(f"skipped: {r}")
    return (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()), reasons
