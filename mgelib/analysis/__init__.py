"""What the study notebooks 40, 50 and 55 share (method §8), so that they stay thin.

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
:mod:`mgelib.analysis.study`              one setup for 40/50/55, the pruner subsets (PaI,
                                          DST, all) and the checks of their last cell
:mod:`mgelib.analysis.baselines`          layer-wise density features, ``+shuffle`` survival
========================================  =====================================================

Two sources, one code path: ``"paper"`` reads the authors' tables through
:func:`mgelib.paperdata.joined` (no dense accuracy is published, so the target is ``accuracy``
within (model, dataset) groups, where the drop is affine in it); ``"runs"`` reads our
``runs.parquet`` from ``30_collect_runs`` (the target is ``accuracy_drop``, method §1). Both use
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

from mgelib.analysis import baselines as _baselines
from mgelib.analysis import data as _data
from mgelib.analysis import evaluation as _evaluation
from mgelib.analysis import figures as _figures
from mgelib.analysis import study as _study
from mgelib.analysis.baselines import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.analysis.data import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.analysis.evaluation import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.analysis.figures import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.analysis.study import *  # noqa: F403 - re-exported, listed in __all__ below

# The package's API is its modules' APIs: derived, not listed twice.
__all__ = [
    *_baselines.__all__,
    *_data.__all__,
    *_evaluation.__all__,
    *_figures.__all__,
    *_study.__all__,
]
