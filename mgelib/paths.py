"""Every location the package reads or writes, derived from one project root.

The cookiecutter-data-science layout: ``data/raw`` holds datasets as downloaded (immutable),
``data/external`` third-party tables (the authors' published metrics), ``data/interim`` caches of
expensive steps, ``data/processed`` the run store, ``data/reports`` executed notebooks of runs.
Each location can be overridden by an environment variable, so notebooks executed elsewhere (a
SLURM node, a papermill call from another folder) resolve the same places.

| function            | default                         | override                |
|---------------------|---------------------------------|-------------------------|
| ``root()``          | the checkout holding ``mgelib`` | ``MGELIB_ROOT``         |
| ``data_dir()``      | ``root()/data``                 | ``MGELIB_DATA``         |
| ``datasets_dir()``  | ``data_dir()/raw``              | ``MGELIB_DATASETS``     |
| ``interim_dir()``   | ``data_dir()/interim``          | —                       |
| ``runs_dir()``      | ``data_dir()/processed/runs``   | ``MGELIB_RUNS``         |
| ``reports_dir()``   | ``data_dir()/reports``          | ``MGELIB_REPORTS``      |
| ``paper_data_dir()``| ``data_dir()/external/paper-data`` | ``MGELIB_PAPER_DATA``   |
| ``fixtures_dir()``  | ``root()/tests/fixtures``       | ``MGELIB_FIXTURES``     |

Examples
--------
>>> from mgelib import paths
>>> paths.notebooks_dir().name
'notebooks'
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "root",
    "data_dir",
    "datasets_dir",
    "interim_dir",
    "runs_dir",
    "reports_dir",
    "notebooks_dir",
    "profiles_dir",
    "paper_data_dir",
    "fixtures_dir",
]


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().resolve() if value else None


def root() -> Path:
    """The project root: ``MGELIB_ROOT``, else the checkout that contains this package.

    For an installed (non-editable) copy without a checkout, the current directory is used, so a
    user can still point a run store somewhere with the other variables.
    """
    env = _env_path("MGELIB_ROOT")
    if env is not None:
        return env
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").exists() or (here / "notebooks").is_dir():
        return here
    return Path.cwd().resolve()


def data_dir() -> Path:
    return _env_path("MGELIB_DATA") or root() / "data"


def datasets_dir() -> Path:
    """Where raw datasets live (``cifar-10-batches-py/``, ``tiny-imagenet-200/``, …)."""
    return _env_path("MGELIB_DATASETS") or data_dir() / "raw"


def interim_dir() -> Path:
    """Caches of expensive, reproducible steps (e.g. Tiny-ImageNet resized to 32×32)."""
    return data_dir() / "interim"


def runs_dir() -> Path:
    """The run store: one hive-style folder per run (see :mod:`mgelib.io`)."""
    return _env_path("MGELIB_RUNS") or data_dir() / "processed" / "runs"


def reports_dir() -> Path:
    """Executed analysis notebooks and their figures."""
    return _env_path("MGELIB_REPORTS") or data_dir() / "reports"


def notebooks_dir() -> Path:
    return root() / "notebooks"


def profiles_dir() -> Path:
    return notebooks_dir() / "params"


def paper_data_dir() -> Path:
    """The authors' published tables (``graph_metrics/``, ``ramanunjan_results/``).

    ``MGELIB_PAPER_DATA`` (an existing copy of the authors' ``graph_data/``) wins; else
    ``data/external/paper-data``, where ``invoke fetch-paper-data`` puts them.
    """
    return _env_path("MGELIB_PAPER_DATA") or data_dir() / "external" / "paper-data"


def fixtures_dir() -> Path:
    """Reference values computed by the authors' code on fixed masks (committed under ``tests/``)."""
    return _env_path("MGELIB_FIXTURES") or root() / "tests" / "fixtures"
