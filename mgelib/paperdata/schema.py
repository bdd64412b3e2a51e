"""Names and helpers shared by :mod:`mgelib.paperdata`: the key columns, the pruner and metric
names of the authors' tables (SPEC §6, §7, §9), the rolled-schema renaming, the cached CSV reader,
key tidying and :func:`nan_report`."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from mgelib import paths
from mgelib.errors import PaperDataError
from mgelib.vocabulary import (
    DATASET_NAMES,
    MODEL_NAMES,
    PAI_PRUNERS,
    PAPER_DST_METHODS,
    TOPOMETRIC_NORMALISER,
)

__all__ = [
    "KEY",
    "MODEL_NAMES",
    "DATASET_NAMES",
    "PAI_PRUNERS",
    "DST_PRUNERS",
    "MGE_METRICS",
    "NORMALISED_BY",
    "INTEGER_METRICS",
    "BGE_METRICS",
    "RAMANUJAN_METRICS",
    "ROLLED_RENAME",
    "SHORT_SCHEMA_FILES",
    "nan_report",
    "check_tables",
]

# One logger for the whole package, named as before the split (the docstring promises it).
logger = logging.getLogger("mgelib.paperdata")

#: One row per sparse network is identified by these columns everywhere in mgelib.
KEY: tuple[str, ...] = ("model", "dataset", "pruner", "sparsity", "seed")

#: The DST methods of the authors' tables (the names themselves live in mgelib.vocabulary).
DST_PRUNERS: tuple[str, ...] = PAPER_DST_METHODS

#: The 16 MGE topometrics of SPEC §6, in its order, with the authors' column names.
MGE_METRICS: tuple[str, ...] = tuple(TOPOMETRIC_NORMALISER)
#: Divisor of each stored MGE value (SPEC §6): "nodes" (V), "edges" (E) or None (stored raw).
#: Verified on the table: the integer metrics are integers × this divisor on every row; also
#: 1-hop × E = 1 + E/V, mean component size × number of components = 1 (so ÷ V), and
#: 2-hop × E × V, k-core × E × V and motif × E are integers. avg_node_strength (float16 weights)
#: has no integer invariant and is taken on SPEC's word.
NORMALISED_BY: dict[str, str | None] = {
    metric: {"V": "nodes", "E": "edges"}.get(div) for metric, div in TOPOMETRIC_NORMALISER.items()
}
#: Metrics that count nodes or edges: their de-normalised values are exact integers.
INTEGER_METRICS: tuple[str, ...] = (
    "sink_nodes",
    "source_nodes",
    "disc_nodes",
    "r-out",
    "r-in",
    "cut-edges",
    "cut-nodes",
)
#: Per-layer BGE metrics present in both rolled schemas (SPEC §6 last paragraph), SPEC names.
BGE_METRICS: tuple[str, ...] = (
    "1-hop_nei",
    "motif",
    "avg_node_strength",
    "k-core",
    "cut-edges",
    "cut-nodes",
    "no_connected_components",
    "mean_connected_components",
    "spectral_gap",
    "spectral_radius",
)
#: Ramanujan metrics (SPEC §7): Δr, imsg, imdb, with the authors' column names.
RAMANUJAN_METRICS: tuple[str, ...] = (
    "degree_bound",
    "iterative_spectral_gap",
    "iterative_degree_bound",
)
#: 57-column rolled schema (the authors' code names) -> SPEC §6 names used by the 21-column
#: schema. Structural metrics were checked equal on layers whose graph is identical in both
#: schemas (data-free pruners, same seed); the weighted ones follow the authors' main.py, which
#: writes the 21-column values from the same variables (strenght_all, coreness_all,
#: spectral_*_weighted_undirected). Components: the 21-column code counts strong components of
#: the undirected graph, i.e. weak components (SPEC §6), hence weak_clusters / mean_weak.
ROLLED_RENAME: dict[str, str] = {
    "pruning_algorithm": "pruning",
    "bridges": "cut-edges",
    "a_point": "cut-nodes",
    "motifs_count": "motif",
    "nei_one_hop": "1-hop_nei",
    "nei_two_hop": "2-hop_nei",
    "strenght_all": "avg_node_strength",
    "coreness_all": "k-core",
    "weak_clusters": "no_connected_components",
    "mean_weak": "mean_connected_components",
    "spectral_gap_weighted_undirected": "spectral_gap",
    "spectral_radius_laplacian_weighted_undirected": "spectral_radius",
    "disconnected_nodes": "disc_nodes",
    "lost_out_edges": "r-out",
    "lost_in_edges": "r-in",
}
#: The two files with the short (21-column, ``pruning``) schema, as found in the tables.
SHORT_SCHEMA_FILES: tuple[str, ...] = (
    "rolled-tinyimagenet-CONV-6.csv",
    "rolled_channel-tinyimagenet-Resnet-32.csv",
)

Encoding = Literal["rolled", "rolled_channel"]
_ENCODINGS = ("rolled", "rolled_channel")
Check = Literal["auto", "manifest", "schema"]
_CHECKS = ("auto", "manifest", "schema")


# --------------------------------------------------------------------------- helpers
def _data_root(root: str | Path | None) -> Path:
    base = Path(root) if root is not None else paths.paper_data_dir()
    if not (base / "graph_metrics").is_dir():
        raise FileNotFoundError(
            f"the authors' tables are not at {base} (no graph_metrics/ folder): set "
            "MGELIB_PAPER_DATA, or fetch them from eliacunegatti/mge-snn (graph_data/)"
        )
    return base


@functools.lru_cache(maxsize=64)
def _read_cached(path: str, mtime: float, size: int) -> pd.DataFrame:
    if size == 0:
        raise PaperDataError(
            f"{path} is empty (0 bytes); fetch the tables again (invoke fetch-paper-data)"
        )
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise PaperDataError(
            f"{path} is not a readable CSV table ({type(err).__name__}: {err}); fetch the tables "
            "again (invoke fetch-paper-data)"
        ) from err


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(
            f"missing table {path}; fetch the tables again (invoke fetch-paper-data)"
        )
    st = path.stat()
    # Cached by path, mtime and size; a copy so callers may modify what they get.
    return _read_cached(str(path), st.st_mtime, st.st_size).copy()


def _numeric(df: pd.DataFrame, columns: Iterable[str], source: Path | str) -> None:
    """Convert ``columns`` to floats in place; a :class:`PaperDataError` names the file, the
    column, the first offending row and its value (pandas would only say "could not convert")."""
    for col in columns:
        if col not in df.columns or pd.api.types.is_numeric_dtype(df[col]):
            continue
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PaperDataError(
                f"{source}: column {col!r} is not numeric: row {row + 2} of the file holds "
                f"{df[col].iloc[row]!r} ({int(bad.sum())} such rows); the table is damaged: "
                "fetch it again (invoke fetch-paper-data)"
            )
        df[col] = values


# --------------------------------------------------------------------------- the pinned copy
@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, mtime: float, size: int) -> str:
    from mgelib.fetch import _sha256

    return _sha256(Path(path))


def _file_state(base: Path, rel: str, info: Mapping[str, object]) -> str:
    """``"ok"``, ``"missing"``, ``"size"`` or ``"checksum"`` for one manifest file."""
    f = base / rel
    if not f.is_file():
        return "missing"
    st = f.stat()
    if st.st_size != int(info["bytes"]):  # type: ignore[arg-type]
        return "size"
    return "ok" if _sha256_cached(str(f), st.st_mtime, st.st_size) == info["sha256"] else "checksum"


def check_tables(base: Path, prefixes: Sequence[str], check: Check = "auto") -> str:
    """Check the tables under ``base`` whose manifest path starts with one of ``prefixes``.

    ``check="manifest"``: every such file of the pinned manifest (what ``invoke
    fetch-paper-data`` downloads, :func:`mgelib.fetch.manifest`) must exist with its size and
    sha256, else a :class:`~mgelib.errors.PaperDataError` names the missing and altered files.
    ``"schema"``: no manifest check (an excerpt or a copy you changed on purpose); the loaders
    still check columns and types. ``"auto"`` (default): ``"manifest"`` when ``base`` holds the
    authors' copy — at least one manifest file with its pinned checksum — else ``"schema"``. So a
    truncated ``unrolled.csv``, a lost per-model file or a lost Ramanujan folder in a copy of the
    tables is named instead of silently shrinking every join. Returns the mode used.
    """
    if check not in _CHECKS:
        raise ValueError(f"check must be one of {_CHECKS}, got {check!r}")
    if check == "schema":
        return check
    from mgelib.fetch import manifest

    files = manifest()["files"]
    if check == "auto":
        # Cheapest evidence that this is the authors' copy: the smallest pinned file that exists.
        present = sorted(
            (rel for rel in files if (base / rel).is_file()), key=lambda r: files[r]["bytes"]
        )
        if not any(_file_state(base, rel, files[rel]) == "ok" for rel in present[:3]):
            return "schema"
    wanted = [rel for rel in files if any(rel.startswith(p) for p in prefixes)]
    states = {rel: _file_state(base, rel, files[rel]) for rel in wanted}
    bad = {rel: st for rel, st in states.items() if st != "ok"}
    if bad:
        words = {
            "missing": "missing",
            "size": "size differs (truncated?)",
            "checksum": "sha256 differs",
        }
        lines = [f"  {rel}: {words[st]}" for rel, st in sorted(bad.items())]
        raise PaperDataError(
            f"the authors' tables at {base} differ from the pinned copy in {len(bad)} of "
            f"{len(wanted)} files:\n"
            + "\n".join(lines[:20])
            + ("\n  …" if len(lines) > 20 else "")
            + "\nRun `invoke fetch-paper-data` (or mgelib.fetch.fetch_paper_data) to restore them, "
            "or pass check='schema' to load a copy you changed on purpose."
        )
    return "manifest"


def _map_names(series: pd.Series, mapping: Mapping[str, str], what: str, source: str) -> pd.Series:
    out = series.map(mapping)
    unknown = sorted(series[out.isna()].astype(str).unique())
    if unknown:
        raise ValueError(
            f"{source}: unknown {what} spelling(s) {unknown}; known: {sorted(mapping)}"
        )
    return out


def _tidy_keys(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Our vocabulary for model, dataset and pruner; a family column; density (SPEC §1)."""
    df = df.rename(columns={"pruning": "pruner"})
    missing = [c for c in KEY if c not in df.columns]
    if missing:
        raise ValueError(f"{source}: key column(s) {missing} missing; columns: {list(df.columns)}")
    df["model"] = _map_names(df["model"], MODEL_NAMES, "model", source)
    df["dataset"] = _map_names(df["dataset"], DATASET_NAMES, "dataset", source)
    pruners = {p: p for p in PAI_PRUNERS + DST_PRUNERS}
    df["pruner"] = _map_names(
        df["pruner"].astype(str).str.strip().str.lower(), pruners, "pruner", source
    )
    # Sparsities are written as 0.6 … 0.98: round so joins across files never miss on float noise.
    df["sparsity"] = df["sparsity"].astype(float).round(6)
    df["seed"] = df["seed"].astype(int)
    df["family"] = np.where(df["pruner"].isin(PAI_PRUNERS), "pai", "dst")
    df["density"] = 1.0 - df["sparsity"]
    acc = df["accuracy"].astype(float)
    if acc.max() > 1.0 or acc.min() < 0.0:
        raise ValueError(f"{source}: accuracy outside [0, 1] (expected a fraction)")
    return df


def _front(df: pd.DataFrame, first: Sequence[str]) -> pd.DataFrame:
    first = [c for c in first if c in df.columns]
    return df[first + [c for c in df.columns if c not in first]]


def nan_report(df: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Rows with a NaN in ``columns`` (default: every metric column), with the NaN columns named.

    Parameters
    ----------
    df : DataFrame
        Any frame from this module.
    columns : iterable of str, optional
        Columns to inspect; default :data:`MGE_METRICS` present in ``df``, else all numeric ones.

    Returns
    -------
    DataFrame
        The key columns, ``accuracy`` and ``nan_columns`` (comma-separated), one row per row of
        ``df`` that has a NaN.

    Examples
    --------
    >>> df = pd.DataFrame({"model": ["a"], "sink_nodes": [np.nan], "accuracy": [0.1]})
    >>> nan_report(df)["nan_columns"].tolist()
    ['sink_nodes']
    """
    if columns is None:
        columns = [c for c in MGE_METRICS if c in df.columns] or list(
            df.select_dtypes("number").columns
        )
    columns = list(columns)
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"nan_report: unknown column(s) {missing}")
    isna = df[columns].isna()
    rows = isna.any(axis=1)
    names = isna[rows].apply(lambda r: ",".join(r.index[r.to_numpy()]), axis=1)
    ident = [c for c in (*KEY, "layer_name", "accuracy") if c in df.columns]
    out = df.loc[rows, ident].copy()
    out["nan_columns"] = names.astype(str) if len(names) else pd.Series(dtype=str)
    return out
