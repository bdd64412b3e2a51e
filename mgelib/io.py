"""The run store: one hive-style folder per run, atomic writes, provenance, ``collect``.

A *run* is one (model, dataset, pruner, sparsity, seed) cell (SPEC §1); the dense baseline is
``pruner=dense, sparsity=0``. Its folder, under a grid root (``mgelib.paths.runs_dir()/<profile>``)::

    model=resnet20/dataset=cifar10/pruner=snip/sparsity=0.9/seed=0/
        params.json  provenance.json        # parameters used and provenance, per stage
        masks.npz  init.pt  model.pt  checkpoint.pt
        layers.parquet  history.parquet  result.parquet            # 10_prune_and_train
        topometrics.parquet  bge_layers.parquet  ramanujan.parquet  # 20_graph_metrics
        metrics.parquet
        notebooks/10_prune_and_train.ipynb (+ .html), …

Every product is written to a temporary file in the same folder and renamed into place, so a
killed process never leaves a half-written product; a stage whose products exist is skipped.
Only this module knows the on-disk format.

Examples
--------
>>> spec = RunSpec("conv6", "digits", "snip", 0.9, 0)
>>> spec.relpath.as_posix()
'model=conv6/dataset=digits/pruner=snip/sparsity=0.9/seed=0'
>>> RunSpec.from_path(spec.relpath) == spec
True
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import socket
import subprocess
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgelib import paths
from mgelib.errors import CorruptFileError

__all__ = [
    "KEYS",
    "RunSpec",
    "STAGE_PRODUCTS",
    "atomic_path",
    "write_json",
    "read_json",
    "update_json",
    "write_table",
    "read_table",
    "save_masks",
    "load_masks",
    "save_torch",
    "load_torch",
    "provenance",
    "record_stage",
    "stage_done",
    "run_done",
    "iter_runs",
    "collect",
    "grid_root",
]

KEYS = ("model", "dataset", "pruner", "sparsity", "seed")

#: What each pipeline stage leaves in a run folder; a stage is complete when all exist.
STAGE_PRODUCTS: dict[str, tuple[str, ...]] = {
    "10_prune_and_train": ("masks.npz", "layers.parquet", "history.parquet", "result.parquet"),
    "20_graph_metrics": (
        "topometrics.parquet",
        "bge_layers.parquet",
        "ramanujan.parquet",
        "metrics.parquet",
    ),
}


def _fmt_sparsity(s: float) -> str:
    return format(float(s), ".10g")


@dataclass(frozen=True, order=True)
class RunSpec:
    """One cell of a grid (SPEC §1)."""

    model: str
    dataset: str
    pruner: str
    sparsity: float
    seed: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "sparsity", float(self.sparsity))
        object.__setattr__(self, "seed", int(self.seed))
        for key in ("model", "dataset", "pruner"):
            value = getattr(self, key)
            if not value or "/" in value or "=" in value:
                raise ValueError(f"{key} must be a plain name, got {value!r}")

    @property
    def dense(self) -> bool:
        return self.pruner == "dense"

    @property
    def relpath(self) -> Path:
        return Path(
            f"model={self.model}",
            f"dataset={self.dataset}",
            f"pruner={self.pruner}",
            f"sparsity={_fmt_sparsity(self.sparsity)}",
            f"seed={self.seed}",
        )

    def dir(self, root: str | os.PathLike) -> Path:
        return Path(root) / self.relpath

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"{self.model}/{self.dataset}/{self.pruner}/s={_fmt_sparsity(self.sparsity)}/"
            f"seed={self.seed}"
        )

    @classmethod
    def from_path(cls, path: str | os.PathLike) -> RunSpec:
        """Parse the last five hive components of a run folder path."""
        parts = dict(p.split("=", 1) for p in Path(path).parts if "=" in p)
        missing = [k for k in KEYS if k not in parts]
        if missing:
            raise ValueError(f"{path} is not a run folder (missing {missing})")
        return cls(
            parts["model"],
            parts["dataset"],
            parts["pruner"],
            float(parts["sparsity"]),
            int(parts["seed"]),
        )


def grid_root(profile: str, root: str | os.PathLike | None = None) -> Path:
    """The folder holding a profile's runs: ``runs_dir()/<profile>`` unless ``root`` is given."""
    return Path(root) if root else paths.runs_dir() / profile


# --------------------------------------------------------------------------- atomic writes
@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    If the body raises, the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=1, default=_json_default, sort_keys=True) + "\n")
    return Path(path)


def read_json(path: str | os.PathLike, default: Any = None) -> Any:
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


def update_json(path: str | os.PathLike, key: str, value: Any) -> dict:
    """Set ``data[key] = value`` in a JSON object file (created if absent), atomically."""
    data = read_json(path, default={})
    data[key] = value
    write_json(data, path)
    return data


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a tidy table as Parquet, atomically."""
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A table written by :func:`write_table`; a named error if it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise CorruptFileError(
            f"{path} is not a readable Parquet table ({type(err).__name__}: {err}); delete it "
            "and rerun the stage that writes it"
        ) from err


def save_masks(masks: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Masks as a compressed ``.npz`` of boolean arrays keyed by parameter name."""
    arrays = {
        k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=bool)
        for k, v in masks.items()
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def load_masks(path: str | os.PathLike) -> dict[str, Any]:
    """Masks saved by :func:`save_masks`, as CPU ``torch.BoolTensor`` s."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"masks file {path} does not exist; 10_prune_and_train writes masks.npz into each run"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise CorruptFileError(
            f"{path} is not a masks file written by mgelib.io.save_masks (truncated or corrupt: "
            f"{type(err).__name__}: {err}); delete it and rerun 10_prune_and_train for this run"
        ) from err
    if not arrays:
        raise CorruptFileError(f"{path} holds no masks; rerun 10_prune_and_train for this run")
    out = {}
    for k, a in arrays.items():
        if a.dtype != bool and not np.isin(a, (0, 1)).all():
            raise CorruptFileError(f"{path}: mask {k!r} holds values other than 0/1 ({a.dtype})")
        out[k] = torch.from_numpy(a.astype(bool))
    return out


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def load_torch(path: str | os.PathLike, map_location: str = "cpu") -> Any:
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CorruptFileError(
            f"{path} is not a readable torch file (truncated or corrupt: {first[:200]}); delete "
            "it and rerun the stage that wrote it (a checkpoint.pt: training restarts from epoch 0)"
        ) from err


# --------------------------------------------------------------------------- provenance
_PACKAGES = (
    "mgelib",
    "torch",
    "numpy",
    "scipy",
    "igraph",
    "numba",
    "pandas",
    "pyarrow",
    "scikit-learn",
    "statsmodels",
    "papermill",
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=paths.root(), capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(device: str | None = None) -> dict[str, Any]:
    """Where and with what a result was computed: git SHA (and whether the tree was dirty),
    package versions, Python, platform, host, device, UTC time."""
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    sha = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    if device is None:
        try:
            import torch

            device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        except Exception:  # noqa: BLE001 - provenance must never fail
            device = "unknown"
    return {
        "git_sha": sha,
        "git_dirty": bool(dirty) if dirty is not None else None,
        "versions": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "device": device,
        "time_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def record_stage(
    run_dir: str | os.PathLike, stage: str, params: Mapping[str, Any], device: str | None = None
) -> None:
    """Store the parameters a stage used and its provenance in the run folder.

    A model or pruner given by a spec (``mymodels:tiny_vgg``) adds ``specs`` to the provenance:
    the spec, its run-folder label, its source file and that file's sha256.
    """
    from mgelib.specs import describe

    run_dir = Path(run_dir)
    update_json(run_dir / "params.json", stage, dict(params))
    prov = provenance(device)
    user = describe(params)
    if user:
        prov["specs"] = user
    update_json(run_dir / "provenance.json", stage, prov)


# --------------------------------------------------------------------------- completion
def stage_done(run_dir: str | os.PathLike, stage: str, *, executed: bool = False) -> bool:
    """Whether every product of ``stage`` exists in ``run_dir`` — and, with ``executed``, its
    executed notebook (``notebooks/<stage>.ipynb``, saved by the runner after the last cell), so
    a run killed between its last table and that copy is redone rather than left without it."""
    if stage not in STAGE_PRODUCTS:
        raise ValueError(f"unknown stage {stage!r}; stages are {list(STAGE_PRODUCTS)}")
    names = list(STAGE_PRODUCTS[stage]) + ([f"notebooks/{stage}.ipynb"] if executed else [])
    return all((Path(run_dir) / name).exists() for name in names)


def run_done(
    run_dir: str | os.PathLike,
    stages: Iterable[str] = tuple(STAGE_PRODUCTS),
    *,
    executed: bool = False,
) -> bool:
    return all(stage_done(run_dir, s, executed=executed) for s in stages)


def iter_runs(root: str | os.PathLike) -> Iterator[tuple[RunSpec, Path]]:
    """Every run folder under a grid root (any folder five hive levels deep)."""
    root = Path(root)
    if not root.is_dir():
        return
    for d in sorted(root.glob("model=*/dataset=*/pruner=*/sparsity=*/seed=*")):
        if d.is_dir():
            yield RunSpec.from_path(d.relative_to(root)), d


def collect(
    root: str | os.PathLike, table: str = "metrics.parquet", *, missing: str = "skip"
) -> pd.DataFrame:
    """One tidy DataFrame of ``table`` across all runs under ``root``.

    Each run's rows get the run keys (model, dataset, pruner, sparsity, seed) as leading columns.
    ``missing="skip"`` ignores runs without the table; ``"raise"`` refuses them.
    """
    if not Path(root).is_dir():
        raise FileNotFoundError(
            f"grid folder {root} does not exist; run the grid first (invoke reproduce) or pass "
            "the folder that holds the model=…/dataset=… run folders"
        )
    if missing not in ("skip", "raise"):
        raise ValueError(f"missing must be 'skip' or 'raise', got {missing!r}")
    frames = []
    absent = []
    for spec, d in iter_runs(root):
        f = d / table
        if not f.exists():
            absent.append(str(spec))
            continue
        df = pd.read_parquet(f)
        for key in KEYS:
            if key in df.columns:
                df = df.drop(columns=key)
        keys = pd.DataFrame([spec.as_dict()] * len(df))
        frames.append(pd.concat([keys, df.reset_index(drop=True)], axis=1))
    if absent and missing == "raise":
        raise FileNotFoundError(f"{len(absent)} runs under {root} lack {table}: {absent[:5]}")
    if not frames and not absent:
        raise FileNotFoundError(
            f"no run folders (model=…/dataset=…/pruner=…/sparsity=…/seed=…) under {root}; is it "
            "the grid folder? Run the grid first (invoke reproduce)"
        )
    if not frames:
        return pd.DataFrame(columns=list(KEYS))
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(list(KEYS), kind="stable").reset_index(drop=True)
