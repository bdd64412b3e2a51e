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

from mgelib.runner.grid import (
    EXECUTORS,
    PIPELINE,
    GridError,
    GridReport,
    RunStatus,
    expand_grid,
    pending_runs,
    run_complete,
    stages_for,
)
from mgelib.runner.run import run_chunk, run_one
from mgelib.runner.status import grid_status
from mgelib.runner.submit import run_grid

__all__ = [
    "PIPELINE",
    "EXECUTORS",
    "RunStatus",
    "GridReport",
    "GridError",
    "expand_grid",
    "pending_runs",
    "run_complete",
    "stages_for",
    "run_one",
    "run_chunk",
    "run_grid",
    "grid_status",
]
