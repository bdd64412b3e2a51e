"""What a grid is: its runs (expanded from a profile's ``grid`` section), their pipeline stages,
when a run counts as complete, the per-run and per-grid reports — and the progress bar and
SIGTERM handling every executor's wait shares."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgelib import io
from mgelib.masks import check_sparsity
from mgelib.progress import show_progress

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
]

PIPELINE = ("10_prune_and_train", "20_graph_metrics")


def stages_for(spec: io.RunSpec) -> tuple[str, ...]:
    """The pipeline stages of a run. A dense baseline is only trained: its accuracy is the
    reference of the accuracy drop (method §1), no analysis uses its graph, and the graph of an
    unpruned network is the most expensive one to measure (its motif enumeration alone can take
    hours)."""
    return PIPELINE[:1] if spec.dense else PIPELINE


EXECUTORS = ("local", "slurm", "debug")
_SUBMITIT = "_submitit"


class GridError(RuntimeError):
    """Some runs of a grid failed; ``.report`` lists them with their logs."""

    def __init__(self, report: GridReport) -> None:
        lines = [f"{len(report.failed)} of {report.total} runs failed:"]
        for st in report.failed[:20]:
            lines.append(f"  {st.spec}: {st.error_line} (log: {st.log})")
        super().__init__("\n".join(lines))
        self.report = report


@dataclass
class RunStatus:
    spec: io.RunSpec
    status: str  # "done", "skipped", "failed", "locked"
    seconds: float = 0.0
    error: str | None = None
    log: str | None = None

    @property
    def error_line(self) -> str:
        return (self.error or "").strip().splitlines()[-1] if self.error else ""


@dataclass
class GridReport:
    root: Path
    total: int
    statuses: list[RunStatus] = field(default_factory=list)
    submitted: int = 0
    job_ids: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[RunStatus]:
        return [s for s in self.statuses if s.status == "failed"]

    @property
    def executed(self) -> list[RunStatus]:
        return [s for s in self.statuses if s.status == "done"]

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for s in self.statuses:
            counts[s.status] = counts.get(s.status, 0) + 1
        parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        return f"{self.total} runs under {self.root}: {parts or 'nothing to do'}"

    def raise_for_failures(self) -> GridReport:
        if self.failed:
            raise GridError(self)
        return self


# --------------------------------------------------------------------------- grid
def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    return list(value)


def expand_grid(grid: Mapping[str, Any]) -> list[io.RunSpec]:
    """The runs of a grid: every (model, dataset, pruner, sparsity, seed), and with
    ``dense: true`` one dense baseline (``pruner="dense"``, sparsity 0) per (model, dataset, seed).

    Keys: ``models``, ``datasets``, ``pruners``, ``sparsities``, ``seeds``, ``dense``.
    """
    from mgelib.data import DATASETS
    from mgelib.models import MODELS
    from mgelib.pruning import PRUNERS

    known = {"models", "datasets", "pruners", "sparsities", "seeds", "dense"}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise ValueError(f"unknown grid keys {unknown}; a grid has {sorted(known)}")
    models = _as_list(grid.get("models"))
    datasets = _as_list(grid.get("datasets"))
    pruners = _as_list(grid.get("pruners"))
    sparsities = [check_sparsity(s) for s in _as_list(grid.get("sparsities"))]
    seeds = [int(s) for s in _as_list(grid.get("seeds", [0]))]
    for name, values, allowed in (
        ("model", models, MODELS),
        ("dataset", datasets, DATASETS),
        ("pruner", pruners, tuple(PRUNERS)),
    ):
        if not values:
            raise ValueError(f"the grid names no {name}s")
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"unknown {name}(s) {bad}; choose from {list(allowed)}")
    if pruners and not sparsities:
        raise ValueError("the grid names pruners but no sparsities")
    specs: list[io.RunSpec] = []
    for model in models:
        for dataset in datasets:
            for seed in seeds:
                if grid.get("dense", True):
                    specs.append(io.RunSpec(model, dataset, "dense", 0.0, seed))
                for pruner in pruners:
                    for s in sparsities:
                        if s == 0.0:
                            continue  # the dense baseline covers it
                        specs.append(io.RunSpec(model, dataset, pruner, s, seed))
    return specs


def pending_runs(
    specs: Iterable[io.RunSpec],
    root: str | os.PathLike,
    stages: Sequence[str] | None = None,
    *,
    executed: bool = True,
) -> list[io.RunSpec]:
    """The runs whose products are not all there yet."""
    return [s for s in specs if not run_complete(s, root, stages, executed=executed)]


def run_complete(
    spec: io.RunSpec,
    root: str | os.PathLike,
    stages: Sequence[str] | None = None,
    *,
    executed: bool = True,
) -> bool:
    """Whether a run has the products of ``stages`` (default: its own :func:`stages_for`) and,
    with ``executed``, the executed notebook of each (what a notebook run leaves last)."""
    wanted = stages_for(spec) if stages is None else [s for s in stages if s in stages_for(spec)]
    return io.run_done(spec.dir(root), wanted, executed=executed)


# --------------------------------------------------------------------------- waiting
def _bar(total: int, initial: int, progress: bool | None):  # noqa: ANN202
    from tqdm.auto import tqdm

    return tqdm(
        total=total, initial=initial, desc="runs", unit="run", disable=not show_progress(progress)
    )


@contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt while waiting, so a killed driver cancels its jobs."""

    def on_term(signum, frame):  # noqa: ANN001
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _advance(bar, finished: int) -> None:  # noqa: ANN001
    """Move a progress bar to ``finished`` (only when it changed: no log spam)."""
    if finished != bar.n:
        bar.update(finished - bar.n)
