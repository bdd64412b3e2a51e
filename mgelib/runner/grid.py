"""What a grid is: its runs (expanded from a profile's ``grid`` section), their pipeline stages,
when a run counts as complete, the per-run and per-grid reports — and the progress bar and
SIGTERM handling every executor's wait shares."""

from __future__ import annotations

import os
import signal
import sys
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
    "grid_names",
    "prepare_profile",
    "user_pythonpath",
    "pending_runs",
    "run_complete",
    "stages_for",
    "check_profile",
]

PIPELINE = ("10_prune_and_train", "20_graph_metrics")


def stages_for(spec: io.RunSpec) -> tuple[str, ...]:
    """The pipeline stages of a run. A dense baseline is only trained: its accuracy is the
    reference of the accuracy drop (SPEC §1), no analysis uses its graph, and the graph of an
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


def grid_names(grid: Mapping[str, Any], *, check: bool = True) -> dict[str, dict[str, str]]:
    """``{"model": {label: name}, "pruner": {label: name}}`` for the grid's models and pruners:
    the run-folder label (:func:`mgelib.pipeline.run_label`) of every name or spec, refusing two
    entries that share a label. With ``check`` (the driver), names are checked and specs
    imported; workers pass ``check=False``: they only map labels back and leave the imports to
    the notebook kernels, whose ``PYTHONPATH`` carries the profile's ``pythonpath``."""
    from mgelib.models import MODELS
    from mgelib.pipeline import run_label
    from mgelib.pruning import check_pruner
    from mgelib.specs import is_spec, resolve
    from mgelib.vocabulary import DST_METHODS

    out: dict[str, dict[str, str]] = {"model": {}, "pruner": {}}
    for key, values in (("model", grid.get("models")), ("pruner", grid.get("pruners"))):
        for name in _as_list(values):
            if not isinstance(name, str):
                raise ValueError(f"grid {key}s must be names or specs, got {name!r}")
            if not check:
                pass
            elif key == "model":
                if is_spec(name):
                    resolve(name)
                elif name not in MODELS:
                    raise ValueError(
                        f"unknown model(s) [{name!r}]; choose from {list(MODELS)} or give a spec "
                        "'package.module:factory' / 'path/to/file.py:factory'"
                    )
            elif name not in DST_METHODS:
                try:
                    check_pruner(name)
                except ValueError as exc:
                    raise ValueError(f"grid pruners: {exc}") from None
            lab = run_label(name)
            if out[key].get(lab, name) != name:
                raise ValueError(
                    f"grid {key}s {out[key][lab]!r} and {name!r} share the run-folder label "
                    f"{lab!r}; give one of them another name"
                )
            out[key][lab] = name
    return out


def prepare_profile(profile: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a loaded profile ready to travel to worker processes and SLURM jobs: file specs
    made absolute (notebook kernels run in the run folder, not in the caller's), and
    ``pythonpath`` extended by the folders this process imports the grid's module specs from
    (an entry of the profile's own ``pythonpath`` list is made absolute too)."""
    from mgelib.specs import canonical, import_root, is_spec, split_transforms

    prof = dict(profile)
    extra = [str(Path(p).expanduser().resolve()) for p in _as_list(prof.get("pythonpath"))]
    for folder in extra:  # the profile's own folders: this process must import from them too
        if folder not in sys.path:
            sys.path.insert(0, folder)
    grid = dict(prof.get("grid") or {})
    for key in ("models", "pruners"):
        if key not in grid:
            continue
        names = []
        for name in _as_list(grid[key]):
            base, transforms = split_transforms(name) if isinstance(name, str) else (name, ())
            if is_spec(base):
                root = import_root(base)
                if root and root not in extra:
                    extra.append(root)
                name = canonical(base) + "".join(f"+{t}" for t in transforms)
            names.append(name)
        grid[key] = names
    if "grid" in prof:
        prof["grid"] = grid
    if extra:
        prof["pythonpath"] = extra
    return prof


@contextmanager
def user_pythonpath(profile: Mapping[str, Any]):
    """Prepend the profile's ``pythonpath`` folders to ``PYTHONPATH`` (what notebook kernels
    inherit) while the block runs."""
    extra = [str(p) for p in _as_list(profile.get("pythonpath"))]
    if not extra:
        yield
        return
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(extra + ([before] if before else []))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def expand_grid(grid: Mapping[str, Any]) -> list[io.RunSpec]:
    """The runs of a grid: every (model, dataset, pruner, sparsity, seed), and with
    ``dense: true`` one dense baseline (``pruner="dense"``, sparsity 0) per (model, dataset, seed).

    Keys: ``models``, ``datasets``, ``pruners``, ``sparsities``, ``seeds``, ``dense``, and
    ``extra``: a list of sub-grids (e.g. ``{pruners: [rigl], sparsities: [0.9]}``) that inherit
    the other keys and add their runs (no second dense baseline). Models and pruners may be specs
    of the user's code and pruners may end in ``+shuffle``; a run is keyed by their labels
    (:func:`grid_names`), e.g. ``model=mymodels.tiny_vgg/…/pruner=snip+shuffle``. Pruners are the
    PaI pruners, the DST methods (:data:`mgelib.vocabulary.DST_METHODS`) or user specs.
    """
    from mgelib.data import DATASETS

    known = {"models", "datasets", "pruners", "sparsities", "seeds", "dense", "extra"}
    unknown = sorted(set(grid) - known)
    if unknown:
        raise ValueError(f"unknown grid keys {unknown}; a grid has {sorted(known)}")
    datasets = _as_list(grid.get("datasets"))
    sparsities = [check_sparsity(s) for s in _as_list(grid.get("sparsities"))]
    seeds = _as_list(grid.get("seeds", [0]))
    if not seeds:
        raise ValueError("the grid's seeds list is empty; give at least one seed, e.g. seeds: [0]")
    bad_seeds = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int)]
    if bad_seeds:
        raise ValueError(f"grid seeds must be integers, got {bad_seeds}")
    dense = grid.get("dense", True)
    if not isinstance(dense, bool):
        raise ValueError(
            f"grid key 'dense' must be true or false, got {dense!r} ({type(dense).__name__}); "
            "a quoted 'false' would count as true"
        )
    dup = sorted(
        {
            str(v)
            for v in _as_list(grid.get("pruners"))
            if _as_list(grid.get("pruners")).count(v) > 1
        }
    )
    if dup:
        raise ValueError(f"the grid lists pruner(s) {dup} twice")
    for name, values in (
        ("model", grid.get("models")),
        ("dataset", datasets),
        ("pruner", grid.get("pruners")),
    ):
        if not _as_list(values):
            raise ValueError(f"the grid names no {name}s")
    bad = [v for v in datasets if v not in DATASETS]
    if bad:
        raise ValueError(f"unknown dataset(s) {bad}; choose from {list(DATASETS)}")
    names = grid_names(grid)
    models, pruners = list(names["model"]), list(names["pruner"])
    if pruners and not sparsities:
        raise ValueError("the grid names pruners but no sparsities")
    specs: list[io.RunSpec] = []
    for model in models:
        for dataset in datasets:
            for seed in seeds:
                if dense:
                    specs.append(io.RunSpec(model, dataset, "dense", 0.0, seed))
                for pruner in pruners:
                    for s in sparsities:
                        if s == 0.0:
                            continue  # the dense baseline covers it
                        specs.append(io.RunSpec(model, dataset, pruner, s, seed))
    for sub in _as_list(grid.get("extra")):
        if not isinstance(sub, Mapping) or "extra" in sub:
            raise ValueError(
                f"grid 'extra' holds sub-grids (mappings without 'extra'), got {sub!r}"
            )
        inherited = {k: v for k, v in grid.items() if k not in ("extra", "pruners", "sparsities")}
        more = expand_grid({**inherited, **sub, "dense": False})
        specs.extend(s for s in more if s not in specs)
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


#: Top-level sections of a profile YAML, and the keys of its ``executor`` section.
PROFILE_SECTIONS = (
    "name",
    "description",
    "grid",
    "executor",
    "notebooks",
    "slurm",
    "analysis",
    "pythonpath",
)
EXECUTOR_KEYS = ("workers", "timeout_min")


def check_profile(prof: Mapping[str, Any], *, allow_unknown: bool = False) -> None:
    """Refuse a profile with an unknown section, an unknown ``executor`` key, a bad worker count,
    a ``notebooks`` entry for a notebook that does not exist or a notebook parameter that
    notebook does not declare — before any run starts, not after hours of grid.
    ``allow_unknown`` lets other sections through (a custom ``task`` may read its own).

    Examples
    --------
    >>> check_profile({"name": "x", "grid": {}, "notebook": {}})
    Traceback (most recent call last):
    ...
    ValueError: profile 'x': unknown section(s) ['notebook'] (did you mean 'notebooks'?); a profile has name, description, grid, executor, notebooks, slurm, analysis, pythonpath
    """
    import difflib

    from mgelib.notebooks import check_params, list_notebooks

    name = prof.get("name", "custom")
    unknown = [k for k in prof if k not in PROFILE_SECTIONS]
    if unknown and not allow_unknown:
        close = difflib.get_close_matches(str(unknown[0]), PROFILE_SECTIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"profile {name!r}: unknown section(s) {unknown}{hint}; a profile has "
            f"{', '.join(PROFILE_SECTIONS)}"
        )
    for section in ("grid", "executor", "notebooks", "slurm"):
        value = prof.get(section)
        if value is not None and not isinstance(value, Mapping):
            raise ValueError(
                f"profile {name!r}: section {section!r} must be a mapping of key: value, got "
                f"{type(value).__name__} {value!r}"
            )
    executor = prof.get("executor") or {}
    bad = [k for k in executor if k not in EXECUTOR_KEYS]
    if bad:
        raise ValueError(f"profile {name!r}: unknown executor key(s) {bad}; use {EXECUTOR_KEYS}")
    for key in EXECUTOR_KEYS:
        v = executor.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(
                f"profile {name!r}: executor.{key} must be a positive integer, got {v!r}"
            )
    stems = list_notebooks()
    analysis = prof.get("analysis")
    for stem in [*(prof.get("notebooks") or {}), *(analysis or [])]:
        if stem not in stems:
            close = difflib.get_close_matches(str(stem), stems, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"profile {name!r}: no notebook {stem!r}{hint}; notebooks are {', '.join(stems)}"
            )
    for stem, params in (prof.get("notebooks") or {}).items():
        if params is not None and not isinstance(params, Mapping):
            raise ValueError(
                f"profile {name!r}: notebooks.{stem} must be a mapping of parameter: value, got "
                f"{params!r}"
            )
        check_params(stem, params or {})


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
