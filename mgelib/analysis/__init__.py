"""What the study notebooks 40, 50 and 55 share (SPEC §8), so that they stay thin.

========================================  =====================================================
module                                    what
========================================  =====================================================
:mod:`mgelib.analysis.data`               a source's networks and layers, feature sets that
                                          exist in it, the ``ci`` subset, synthetic runs
:mod:`mgelib.analysis.evaluation`         out-of-fold evaluation that skips (with a printed
                                          reason) what tiny data cannot estimate, claims
                                          tables, summaries, coefficients / importance / VIF
                                          per sparsity level and architecture
:mod:`mgelib.analysis.figures`            seaborn figures of scores, coefficients,
                                          importances and Kendall τ
========================================  =====================================================

Two sources, one code path: ``"paper"`` reads the authors' tables through
:func:`mgelib.paperdata.joined` (no dense accuracy is published, so the target is ``accuracy``
within (model, dataset) groups, where the drop is affine in it); ``"runs"`` reads our
``runs.parquet`` from ``30_collect_runs`` (the target is ``accuracy_drop``, SPEC §1). Both use
the column names of :func:`mgelib.paperdata.joined`.

Examples
--------
>>> from mgelib import analysis
>>> analysis.parse_list("kfold, lopo", ("kfold", "lopo"), "folds")
['kfold', 'lopo']
>>> analysis.fmt_ci(0.8123, 0.75, 0.86)
'0.81 [0.75, 0.86]'
"""

from __future__ import annotations

from mgelib.analysis.data import (
    CI_SUBSET,
    LAYER_SETS,
    SOURCES,
    feature_correlations,
    load_layers,
    load_networks,
    parse_list,
    record_params,
    resolve_output_dir,
    select_feature_sets,
    synthetic_runs,
    target_column,
)
from mgelib.analysis.evaluation import (
    PARALLEL_MIN_ROWS,
    coefficients_by,
    evaluate_or_skip,
    fmt_ci,
    group_summary,
    importance_by,
    insufficient_row,
    paired_differences,
    pooled_within_r2,
    resolve_jobs,
    safe_claim,
    units_by,
    vif_by_group,
    write_claims,
)
from mgelib.analysis.figures import (
    plot_coefficients,
    plot_correlations,
    plot_importance,
    plot_layer_scores,
    plot_overview,
    plot_ranks,
    plot_scores,
    plot_scores_by_sparsity,
    plot_tau,
)

__all__ = [
    "SOURCES",
    "CI_SUBSET",
    "LAYER_SETS",
    "parse_list",
    "resolve_output_dir",
    "target_column",
    "load_networks",
    "load_layers",
    "select_feature_sets",
    "feature_correlations",
    "synthetic_runs",
    "record_params",
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
    "plot_overview",
    "plot_scores",
    "plot_scores_by_sparsity",
    "plot_layer_scores",
    "plot_correlations",
    "plot_ranks",
    "plot_coefficients",
    "plot_importance",
    "plot_tau",
]
