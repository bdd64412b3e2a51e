"""The paper's three claims (method §8, end), each turned into a computed table row with a
stated decision rule: :func:`claim_mge_vs_bge`, :func:`claim_ramanujan_vs_density`,
:func:`claim_ranking` → :func:`claims_table`.

Examples
--------
>>> sorted(CLAIMS)
['mge_vs_bge', 'ramanujan_vs_density', 'ranking']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import pandas as pd

from mgelib.stats._common import _check_columns
from mgelib.stats.ranking import compare_tau
from mgelib.stats.scores import compare

__all__ = [
    "CLAIMS",
    "CLAIMS_COLUMNS",
    "claim_mge_vs_bge",
    "claim_ramanujan_vs_density",
    "claim_ranking",
    "claims_table",
    "INSUFFICIENT",
]

#: The three claims of the paper (method §8, end).
CLAIMS: dict[str, str] = {
    "mge_vs_bge": "MGE metrics predict the accuracy drop much better than BGE metrics",
    "ramanujan_vs_density": "Ramanujan metrics are only as good as density",
    "ranking": "A mixture of topometrics ranks PaI algorithms better than Ramanujan metrics",
}
#: ``supported`` of a claim that the data cannot decide (too few rows, pruners or cells).
INSUFFICIENT = "insufficient data"
CLAIMS_COLUMNS: tuple[str, ...] = (
    "claim",
    "feature_set_or_comparison",
    "statistic",
    "estimate",
    "ci_low",
    "ci_high",
    "supported",
)


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
        raise ValueError(
            f"no OOF rows for scope {scope!r}; scopes: {sorted(oof['scope'].unique())}"
        )
    return sorted(sub[["learner", "folds"]].drop_duplicates().itertuples(index=False, name=None))


def _select(oof: pd.DataFrame, scope: str, fs: str, learner: str, folds: str) -> pd.DataFrame:
    s = oof[
        (oof["scope"] == scope)
        & (oof["feature_set"] == fs)
        & (oof["learner"] == learner)
        & (oof["folds"] == folds)
    ]
    if len(s) == 0:
        raise ValueError(f"no OOF rows for feature set {fs!r} ({scope}, {learner}, {folds})")
    return s


def _stat_label(
    metric: str,
    scope: str,
    strata: Sequence[str] | None,
    folds: str,
    learner: str,
    agg: str = "mean",
) -> str:
    what = {"r2": "ΔR²", "mae": "ΔMAE"}[metric]
    over = f"{agg} over ({', '.join(strata)})" if strata else "pooled"
    return f"{what}, {over}; {scope}, {folds}, {learner}"


def _claim_row(
    claim: str,
    comparison: str,
    statistic: str,
    r: Mapping[str, Any],
    supported: bool,
    *,
    scope: str,
    learner: str,
    folds: str,
    rule: str,
) -> dict[str, Any]:
    """One row of a claims table: a paired difference with its CI and the verdict."""
    return {
        "claim": CLAIMS[claim],
        "feature_set_or_comparison": comparison,
        "statistic": statistic,
        "estimate": r["estimate"],
        "ci_low": r["ci_low"],
        "ci_high": r["ci_high"],
        "supported": bool(supported),
        "scope": scope,
        "learner": learner,
        "folds": folds,
        "rule": rule,
    }


def claim_mge_vs_bge(
    oof: pd.DataFrame,
    *,
    mge: str = "mge",
    bge: Sequence[str] = ("rolled", "rolled_channel"),
    scope: str = "per_group",
    metric: Literal["r2", "mae"] = "r2",
    agg: Literal["mean", "median"] = "mean",
    group_cols: Sequence[str] = ("model", "dataset"),
    sparsity_col: str = "sparsity",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "MGE metrics predict the accuracy drop much better than BGE metrics".

    For each learner × fold scheme in ``oof`` and each BGE feature set: :func:`compare` of
    ``mge`` against it (stratified by (model, dataset) in the per-group scope).
    **Rule**: supported when the CI of R²(MGE) − R²(BGE) lies above 0 (for MAE: below 0). The
    "much" is not tested; read the estimate.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table` (plus ``scope``, ``learner``, ``folds``, ``rule``).
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
            ok = r["ci_low"] > 0 if metric == "r2" else r["ci_high"] < 0
            rows.append(
                _claim_row(
                    "mge_vs_bge",
                    f"{mge} − {b_name}",
                    _stat_label(metric, scope, strata, folds, learner, agg),
                    r,
                    ok,
                    scope=scope,
                    learner=learner,
                    folds=folds,
                    rule="CI of the difference excludes 0 in MGE's favour",
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
    rule: Literal["includes_zero_or_margin", "equivalence"] = "includes_zero_or_margin",
    agg: Literal["mean", "median"] = "mean",
    group_cols: Sequence[str] = ("model", "dataset"),
    sparsity_col: str = "sparsity",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "Ramanujan metrics are only as good as density" (method §8.1).

    Difference R²(Ramanujan) − R²(density), paired, per learner × fold scheme.
    **Rules** (``rule``): ``"includes_zero_or_margin"`` (default, the project's rule) — supported
    when the CI contains 0 or lies within [−margin, +margin]; ``"equivalence"`` (stricter, TOST
    style) — supported only when the CI lies within [−margin, +margin]. A wide CI that merely
    contains 0 supports the claim under the first rule only: read ``ci_low``/``ci_high``.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table`.
    """
    if rule not in ("includes_zero_or_margin", "equivalence"):
        raise ValueError(f"unknown rule {rule!r}")
    strata = _default_strata(scope, group_cols, sparsity_col)
    rows = []
    for learner, folds in _pairs(oof, scope):
        a = _select(oof, scope, ramanujan, learner, folds)
        b = _select(oof, scope, density, learner, folds)
        r = compare(a, b, strata=strata, agg=agg, n_boot=n_boot, seed=seed, level=level)
        within = -margin <= r["ci_low"] and r["ci_high"] <= margin
        zero = r["ci_low"] <= 0 <= r["ci_high"]
        ok = within if rule == "equivalence" else (within or zero)
        rows.append(
            _claim_row(
                "ramanujan_vs_density",
                f"{ramanujan} − {density}",
                _stat_label("r2", scope, strata, folds, learner, agg),
                r,
                ok,
                scope=scope,
                learner=learner,
                folds=folds,
                rule=(
                    f"CI within ±{margin}"
                    if rule == "equivalence"
                    else f"CI contains 0 or lies within ±{margin}"
                ),
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
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Evidence for "a mixture of topometrics ranks PaI algorithms better than Ramanujan metrics".

    ``tau_cells`` is :func:`rank_agreement` of PaI-only OOF predictions. Per learner × fold
    scheme, :func:`compare_tau` of the ``mixture`` feature set against ``ramanujan`` over the
    cells. **Rule**: supported when the CI of mean τ(mixture) − mean τ(Ramanujan) lies above 0.

    Returns
    -------
    list of dict
        Rows for :func:`claims_table`.
    """
    _check_columns(tau_cells, ["scope", "feature_set", "learner", "folds", "tau"], "column(s)")
    rows = []
    for learner, folds in _pairs(tau_cells, scope):
        sel = (
            (tau_cells["scope"] == scope)
            & (tau_cells["learner"] == learner)
            & (tau_cells["folds"] == folds)
        )
        a = tau_cells[sel & (tau_cells["feature_set"] == mixture)]
        b = tau_cells[sel & (tau_cells["feature_set"] == ramanujan)]
        if len(a) == 0 or len(b) == 0:
            raise ValueError(f"claim_ranking: feature set {mixture!r} or {ramanujan!r} missing")
        r = compare_tau(a, b, cell_cols, n_boot=n_boot, seed=seed, level=level)
        rows.append(
            _claim_row(
                "ranking",
                f"{mixture} − {ramanujan}",
                f"Δ mean Kendall τ over {int(r['n_cells'])} cells; {scope}, {folds}, {learner}",
                r,
                r["ci_low"] > 0,
                scope=scope,
                learner=learner,
                folds=folds,
                rule="CI of the τ difference excludes 0 in the mixture's favour",
            )
        )
    return rows


def claims_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A tidy claims table: :data:`CLAIMS_COLUMNS` first, any extra keys after.

    Parameters
    ----------
    rows : iterable of mappings
        E.g. the concatenated outputs of :func:`claim_mge_vs_bge`,
        :func:`claim_ramanujan_vs_density` and :func:`claim_ranking`. ``supported`` is a bool,
        or :data:`INSUFFICIENT` for a claim the data cannot decide.

    Examples
    --------
    >>> claims_table([{"claim": "c", "feature_set_or_comparison": "a − b", "statistic": "ΔR²",
    ...                "estimate": 0.1, "ci_low": 0.05, "ci_high": 0.2, "supported": True}]).shape
    (1, 7)
    """
    rows = [dict(r) for r in rows]
    if not rows:
        raise ValueError("claims_table: no rows")
    for i, r in enumerate(rows):
        missing = [c for c in CLAIMS_COLUMNS if c not in r]
        if missing:
            raise ValueError(f"claims_table: row {i} lacks {missing}")
        if isinstance(r["supported"], str) and r["supported"] != INSUFFICIENT:
            raise ValueError(
                f"claims_table: row {i} has supported={r['supported']!r}; use a bool or "
                f"{INSUFFICIENT!r}"
            )
    out = pd.DataFrame(rows)
    verdicts = [v if v == INSUFFICIENT else bool(v) for v in out["supported"]]
    # bool dtype when every claim could be decided; object (bools + INSUFFICIENT) otherwise.
    out["supported"] = pd.Series(
        verdicts, index=out.index, dtype=object if INSUFFICIENT in verdicts else bool
    )
    return out[list(CLAIMS_COLUMNS) + [c for c in out.columns if c not in CLAIMS_COLUMNS]]
