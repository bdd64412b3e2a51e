"""The authors' published metric tables as tidy frames (method §9).

The tables come from the ``graph_data/`` folder of eliacunegatti/mge-snn and are read from
:func:`mgelib.paths.paper_data_dir` (never copied into the repository). Every quirk listed in the method
§9 — and a few more found while writing this module — is handled here, in one place, and recorded
in ``df.attrs["report"]`` (plain Python values) and in the ``mgelib.paperdata`` logger:

==========================  ===================================================================
table                       quirk and what we do
==========================  ===================================================================
``unrolled.csv``            2,337 rows of which 47 are exact duplicates (all Wide-ResNet-28-2 /
                            Tiny-ImageNet): dropped, leaving 2,290 networks with unique keys.
``unrolled.csv``            metrics are stored normalised (method §6, last column); ``raw_*``
                            columns de-normalise them (× nodes or × edges). Verified: the seven
                            counting metrics are integers × their divisor on every row.
``unrolled.csv``            4 networks (ResNet-32, ProsPr, s = 0.98, chance accuracy: collapsed
                            networks) have NaN in the five local metrics: kept, reported, or
                            dropped with ``dropna=True``.
``unrolled.csv``            ``sink_nodes`` < 0 in 2 rows: the authors' code subtracts the whole
                            output partition (method §6, reference compatibility). Kept as is.
``rolled*/*.csv``           two schemas: 57 columns with ``pruning_algorithm`` (the authors'
                            code names, method §9 says 68) and 21 columns with ``pruning`` (method §6
                            names) in ``rolled-tinyimagenet-CONV-6.csv`` and
                            ``rolled_channel-tinyimagenet-Resnet-32.csv``. Unified by renaming
                            the 57-column names to method §6 names (:data:`ROLLED_RENAME`), then the
                            union of columns (NaN where a schema lacks one); all-NaN columns
                            (``motifs``, ``coreness_out``, ``transitivity``) are dropped.
``rolled*/*.csv``           ``layer_sparsity`` is a density (= kept / total weights of the layer):
                            exposed as ``layer_density``.
``ramanunjan_results``      no algorithm column: rows align one-to-one with the rolled file of
                            the same model and dataset (checked on sparsity, seed, layer id/name,
                            accuracy, density and no_weights == edges); the pruner is attached
                            from there. ``degree_bound`` is −inf on 90 layers with 2–7 kept
                            weights (presumably ub = 0, all degrees 1): set to NaN.
==========================  ===================================================================

No dense accuracies are published, so analyses of these tables work within (model, dataset)
groups; :func:`add_accuracy_drop` documents the reference used.

Examples
--------
>>> from mgelib import paperdata
>>> df = paperdata.joined()                                     # doctest: +SKIP
>>> sets = paperdata.feature_sets(df)                           # doctest: +SKIP
>>> sorted(sets)                                                # doctest: +SKIP
['density', 'mge', 'mge+sparsity', 'ramanujan', 'ramanujan+density', 'rolled', ...]
"""

from __future__ import annotations

from mgelib.paperdata import features as _features
from mgelib.paperdata import loaders as _loaders
from mgelib.paperdata import schema as _schema
from mgelib.paperdata.features import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.paperdata.loaders import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.paperdata.schema import *  # noqa: F403 - re-exported, listed in __all__ below

# Not in __all__, but module attributes of the former single-file module: still importable.
from mgelib.paperdata.schema import Encoding as Encoding
from mgelib.paperdata.schema import logger as logger

# The package's API is its modules' APIs: derived, not listed twice.
__all__ = [
    *_schema.__all__,
    *_loaders.__all__,
    *_features.__all__,
]
