"""Grids of runs, executed through submitit — locally (N worker processes) or on SLURM (one job
array) — with the same code path.

A grid (model × dataset × pruner × sparsity × seed, plus one dense baseline per (model, dataset,
seed)) expands into :class:`~mgelib.io.RunSpec` s. Each run executes the per-run notebooks
(``10_prune_and_train`` then ``20_graph_metrics``) into its run folder; a stage whose products
exist is skipped, so an interrupted grid resumes where it stopped. Failures are reported per run
(with the log/notebook to read), never swallowed: the other runs still finish.

Only this package knows about executors: :mod:`~mgelib.runner.grid` (what a grid and a
complete run are), :mod:`~mgelib.runner.run` (one run), :mod:`~mgelib.runner.submit`
(``run_grid``), :mod:`~mgelib.runner.slurm` (job arrays, squeue) and
:mod:`~mgelib.runner.status` (``grid_status``).

Examples
--------
>>> specs = expand_grid({"models": ["conv6"], "datasets": ["digits"], "pruners": ["snip"],
...                      "sparsities": [0.9], "seeds": [0, 1], "dense": True})
>>> [str(s) for s in specs]  # doctest: +NORMALIZE_WHITESPACE
['conv6/digits/dense/s=0/seed=0', 'conv6/digits/snip/s=0.9/seed=0',
 'conv6/digits/dense/s=0/seed=1', 'conv6/digits/snip/s=0.9/seed=1']
"""

from mgelib.runner import grid as _grid
from mgelib.runner import run as _run
from mgelib.runner import status as _status
from mgelib.runner import submit as _submit
from mgelib.runner.grid import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.runner.run import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.runner.status import *  # noqa: F403 - re-exported, listed in __all__ below
from mgelib.runner.submit import *  # noqa: F403 - re-exported, listed in __all__ below

# The package's API is its modules' APIs: derived, not listed twice.
__all__ = [
    *_grid.__all__,
    *_run.__all__,
    *_submit.__all__,
    *_status.__all__,
]
