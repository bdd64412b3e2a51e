"""The paper's three claims (method §8, end), each turned into computed table rows that state
their decision rule and a verdict: :func:`claim_mge_vs_bge`, :func:`claim_ramanujan_vs_density`,
:func:`claim_ranking` → :func:`claims_table`.

Verdicts are one of :data:`VERDICTS`, decided from a paired bootstrap CI of a difference d:

* **superiority** ("A is better than B", :func:`superiority`): *supported* when the CI lies
  above the margin (default 0), *contradicted* when it lies below it, otherwise *no
  difference shown* (a CI containing 0 never supports anything);
* **equivalence** ("A is only as good as B", :func:`equivalence`, TOST): *supported* when the
  CI lies inside ±margin, *contradicted* when it lies entirely beyond +margin or −margin,
  otherwise *no difference shown*;
* *insufficient data* comes only from an :class:`InsufficientData` condition (too few rows,
  pruners or cells to estimate); any other error is a bug and raises.

Examples
--------
>>> sorted(CLAIMS)
['mge_vs_bge', 'ramanujan_vs_density', 'ranking']
>>> superiority(0.01, 0.2)[0], superiority(-0.1, 0.2)[0], equivalence(-0.02, 0.03, 0.05)[0]
('supported', 'no difference shown', 'supported')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from mgelib.stats._common import InsufficientData, _check_columns
from mgelib.stats.ranking import compare_tau
from mgelib.stats.scores import compare

__all__ = [
    "CLAIMS",
    "CLAIMS_COLUMNS",
    "VERDICTS",
    "SUPPORTED",
    "CONTRADICTED",
    "NO_DIFFERENCE",
    "INSUFFICIENT",
    "InsufficientData",
    "superiority",
    "equivalence",
    "claim_mge_vs_bge",
    "claim_ramanujan_vs_density",
    "claim_ranking",
    "claims_table",
]

#: The three claims of the paper (method §8, end).
CLAIMS: dict[str, str] = {
    "mge_vs_bge": "MGE metrics predict the accuracy drop much better than BGE metrics",
    "ramanujan_vs_density": "Ramanujan metrics are only as good as density",
    "ranking": "A mixture of topometrics ranks PaI algorithms better than Ramanujan metrics",
}
SUPPORTED, CONTRADICTED, NO_DIFFERENCE = "supported", "contradicted", "no difference shown"
#: The verdict of a claim that the data cannot decide (too few rows, pruners or cells).
INSUFFICIENT = "insufficient data"
#: Every verdict a claims row may carry.
VERDICTS: tuple[str, ...] = (SUPPORTED, CONTRADICTED, NO_DIFFERENCE, INSUFFICIENT)
CLAIMS_COLUMNS: tuple[str, ...] = (
    "claim",
    "subset",
    "feature_set_or_comparison",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "rule",
    "verdict",
)


def superiority(low: float, high: float, margin: float = 0.0) -> tuple[str, str]:
    """Verdict and rule of "d > margin" from the CI ``[low, high]`` of d.

    Examples
    --------
    >>> superiority(-0.3, -0.1)
    ('contradicted', 'superiority: supported if CI low > 0, contradicted if CI high < 0, else no difference shown')
    """
    _finite(low, high)
    rule = (
        f"superiority: supported if CI low > {margin:g}, contradicted if CI high < {margin:g}, "
        "else no difference shown"
    )
    if low > margin:
        return SUPPORTED, rule
    if high < margin:
        return CONTRADICTED, rule
    return NO_DIFFERENCE, rule


def equivalence(low: float, high: float, margin: float) -> tuple[str, str]:
    """Verdict and rule of "|d| < margin" (TOST: both one-sided tests at (1 − level)/2 are the
    CI lying inside ±margin) from the CI ``[low, high]`` of d.

    Examples
    --------
    >>> equivalence(-0.2, 0.3, 0.05)[0], equivalence(0.1, 0.3, 0.05)[0]
    ('no difference shown', 'contradicted')
    """
    _finite(low, high)
    if not margin > 0:
        raise ValueError(f"equivalence: the margin must be > 0, got {margin}")
    rule = (
        f"equivalence (TOST): supported if the CI lies inside ±{margin:g}, contradicted if it "
        f"lies beyond +{margin:g} or −{margin:g}, else no difference shown"
    )
    if -margin < low and high < margin:
        return SUPPORTED, rule
    if low > margin or high < -margin:
        return CONTRADICTED, rule
    return NO_DIFFERENCE, rule


def _finite(low: float, high: float) -> None:
    if not (np.isfinite(low) and np.isfinite(high)):
        raise InsufficientData(f"the confidence interval [{low}, {high}] is not finite")


def _default_strata(scope: str, group_cols: Sequence[str], sparsity_col: str) -> list[str] | None:
    if scope == "per_group":
        return list(group_cols)
    if scope == "per_sparsity":
        return [*group_cols, sparsity_col]
    return None


def _pairs(oof: pd.DataFrame, scope: str) -> list[tuple[str, str]]:
    _check_columns(oof, ["scope", "feature_set", "learner", "folds"], "OOF column(s)")
    sub = oof[oof["scope"] == scope]
    if len(sub) == 0:
        raise InsufficientData(
            f"no OOF rows for scope {scope!r}; scopes: {sorted(oof['scope'].unique())}"
        )
    return sorted(sub[["learner", "folds"]].drop_duplicates().itertuples(index=False, name=None))


def _select(oof: pd.DataFrame, scope: str, fs: str, learner: str, folds: str) -> pd.DataFrame:
    if fs not in set(oof["feature_set"]):
        # A name that was never evaluated is a typo, not a lack of data.
        raise ValueError(
            f"feature set {fs!r} is not in the OOF table; it has {sorted(set(oof['feature_set']))}"
        )
    s = oof[
        (oof["scope"] == scope)
        & (oof["feature_set"] == fs)
        & (oof["learner"] == learner)
        & (oof["folds"] == folds)
    ]
    if len(s) == 0:
        raise InsufficientData(f"no OOF rows for feature set {fs!r} ({scope}, {learner}, {folds})")
    return s


def _stat_label(
    metric: str, scope: str, strata: Sequence[str] | None, folds: str, learner: str, agg: str
) -> str:
    what = {"r2": "ΔR²", "mae": "ΔMAE"}[metric]
    over = f"{agg} over ({', '.join(strata)})" if strata else "pooled"
    return f"{what}, {over}; {scope}, {folds}, {learner}"


def _claim_row(
    claim: str,
    comparison: str,
    statistic: str,
    r: Mapping[str, Any],
    decision: tuple[str, str],
    **extra: Any,
) -> dict[str, Any]:
    """One row of a claims table: a paired difference with its CI, rule and verdict."""
    verdict, rule = decision
    return {
        "claim": CLAIMS[claim],
        "subset": extra.pop("subset", ""),
        "feature_set_or_comparison": comparison,
        "statistic": statistic,
        "estimate": float(r["estimate"]),
        "ci_low": float(r["ci_low"]),
        "ci_high": float(r["ci_high"]),
        "rule": rule,
        "verdict": verdict,
        **extra,
    }


def claim_mge_vs_bge(
    oof: pd.DataFrame,
    *,
    mge: str = "mge",
    bge: Sequence[str] = ("rolled", "rolled_channel"),
    scope: str = "per_group",
    metric: Literal["r2", "mae"] = "r2",
    agg: Literal["mean", "median"] = "mean",
    margin: float = 0.0,
    group_cols: Sequence[str] = ("model", "dataset"),
    sparsity_col: str = "sparsity",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "MGE metrics predict the accuracy drop much better than BGE metrics".

    For each learner × fold scheme in ``oof`` and each BGE feature set: :func:`compare` of
    ``mge`` against it (stratified by (model, dataset) in the per-group scope).
    **Rule**: :func:`superiority` of R²(MGE) − R²(BGE) (for MAE of MAE(BGE) − MAE(MGE)) over
    ``margin``. The "much" is the margin (default 0: not tested; read the estimate).

    Returns
    -------
    list of dict
        Rows for :func:`claims_table` (plus ``scope``, ``learner``, ``folds``).
    """
    strata = _default_strata(scope, group_cols, sparsity_col)
    rows = []
    for learner, folds in _pairs(oof, scope):
        a = _select(oof, scope, mge, learner, folds)
        for b_name in bge:
            b = _select(oof, scope, b_name, learner, folds)
            r = compare(
                a, b, metric=metric, strata=strata, agg=agg, n_boot=n_boot, seed=seed, level=level
            )
            # MAE: lower is better, so MGE is better when the difference is negative.
            lo, hi = (
                (r["ci_low"], r["ci_high"]) if metric == "r2" else (-r["ci_high"], -r["ci_low"])
            )
            verdict, rule = superiority(lo, hi, margin)
            if metric == "mae":
                rule = "on MAE(BGE) − MAE(MGE): " + rule
            rows.append(
                _claim_row(
                    "mge_vs_bge",
                    f"{mge} − {b_name}",
                    _stat_label(metric, scope, strata, folds, learner, agg),
                    r,
                    (verdict, rule),
                    scope=scope,
                    learner=learner,
                    folds=folds,
                )
            )
    return rows


def claim_ramanujan_vs_density(
    oof: pd.DataFrame,
    *,
    ramanujan: str = "ramanujan",
    density: str = "density",
    scope: str = "per_group",
    margin: float = 0.05,
    agg: Literal["mean", "median"] = "mean",
    group_cols: Sequence[str] = ("model", "dataset"),
    sparsity_col: str = "sparsity",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "Ramanujan metrics are only as good as density" (method §8.1).

    Difference R²(Ramanujan) − R²(density), paired, per learner × fold scheme.
    **Rule**: :func:`equivalence` (TOST) with ``margin``: supported only when the CI lies
    inside ±margin; a wide CI that merely contains 0 is "no difference shown".

    Returns
    -------
    list of dict
        Rows for :func:`claims_table`.
    """
    strata = _default_strata(scope, group_cols, sparsity_col)
    rows = []
    for learner, folds in _pairs(oof, scope):
        a = _select(oof, scope, ramanujan, learner, folds)
        b = _select(oof, scope, density, learner, folds)
        r = compare(a, b, strata=strata, agg=agg, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            _claim_row(
                "ramanujan_vs_density",
                f"{ramanujan} − {density}",
                _stat_label("r2", scope, strata, folds, learner, agg),
                r,
                equivalence(r["ci_low"], r["ci_high"], margin),
                scope=scope,
                learner=learner,
                folds=folds,
            )
        )
    return rows


def claim_ranking(
    tau_cells: pd.DataFrame,
    *,
    mixture: str = "mge",
    ramanujan: str = "ramanujan",
    scope: str = "per_group",
    cell_cols: Sequence[str] = ("model", "dataset", "sparsity"),
    margin: float = 0.0,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "a mixture of topometrics ranks PaI algorithms better than Ramanujan metrics".

    ``tau_cells`` is :func:`rank_agreement` of OOF predictions. Per learner × fold scheme,
    :func:`compare_tau` of the ``mixture`` feature set against ``ramanujan`` over the cells.
    **Rule**: :func:`superiority` of mean τ(mixture) − mean τ(Ramanujan) over ``margin``.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table`.
    """
    _check_columns(tau_cells, ["scope", "feature_set", "learner", "folds", "tau"], "column(s)")
    for name in (mixture, ramanujan):
        if name not in set(tau_cells["feature_set"]):
            raise ValueError(
                f"claim_ranking: feature set {name!r} is not in the τ table; it has "
                f"{sorted(set(tau_cells['feature_set']))}"
            )
    rows = []
    for learner, folds in _pairs(tau_cells, scope):
        sel = (
            (tau_cells["scope"] == scope)
            & (tau_cells["learner"] == learner)
            & (tau_cells["folds"] == folds)
            & tau_cells["tau"].notna()
        )
        a = tau_cells[sel & (tau_cells["feature_set"] == mixture)]
        b = tau_cells[sel & (tau_cells["feature_set"] == ramanujan)]
        if len(a) < 2 or len(b) < 2:
            raise InsufficientData(f"claim_ranking: < 2 cells with a τ ({learner}, {folds})")
        r = compare_tau(a, b, cell_cols, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            _claim_row(
                "ranking",
                f"{mixture} − {ramanujan}",
                f"Δ mean Kendall τ over {int(r['n_cells'])} cells; {scope}, {folds}, {learner}",
                r,
                superiority(r["ci_low"], r["ci_high"], margin),
                scope=scope,
                learner=learner,
                folds=folds,
            )
        )
    return rows


def claims_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A tidy claims table: :data:`CLAIMS_COLUMNS` first, any extra keys after.

    Parameters
    ----------
    rows : iterable of mappings
        E.g. the concatenated outputs of :func:`claim_mge_vs_bge`,
        :func:`claim_ramanujan_vs_density` and :func:`claim_ranking`. ``verdict`` must be one
        of :data:`VERDICTS` and ``rule`` non-empty; a decided row needs a finite estimate and
        CI (``subset`` may be absent: empty).

    Examples
    --------
    >>> claims_table([{"claim": "c", "feature_set_or_comparison": "a − b", "statistic": "ΔR²",
    ...                "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2, "rule": "CI low > 0",
    ...                "verdict": "supported"}]).shape
    (1, 9)
    """
    rows = [{"subset": "", **dict(r)} for r in rows]
    if not rows:
        raise ValueError("claims_table: no rows")
    for i, r in enumerate(rows):
        missing = [c for c in CLAIMS_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"claims_table: row {i} lacks {missing}")
        if r["verdict"] not in VERDICTS:
            raise ValueError(f"claims_table: row {i} has verdict {r['verdict']!r}; use {VERDICTS}")
        if not str(r["rule"]).strip():
            raise ValueError(f"claims_table: row {i} states no decision rule")
        vals = np.array([r["estimate"], r["ci_low"], r["ci_high"]], dtype=float)
        if r["verdict"] != INSUFFICIENT and not np.isfinite(vals).all():
            raise ValueError(f"claims_table: row {i} is decided ({r['verdict']}) on {vals}")
    out = pd.DataFrame(rows)
    return out[list(CLAIMS_COLUMNS) + [c for c in out.columns if c not in CLAIMS_COLUMNS]]
