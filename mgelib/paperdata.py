"""The authors' published metric tables as tidy frames (SPEC §9).

The tables come from the ``graph_data/`` folder of eliacunegatti/mge-snn and are read from
:func:`mgelib.paths.paper_data_dir` (never copied into the repository). Every quirk listed in SPEC
§9 — and a few more found while writing this module — is handled here, in one place, and recorded
in ``df.attrs["report"]`` (plain Python values) and in the ``mgelib.paperdata`` logger:

==========================  ===================================================================
table                       quirk and what we do
==========================  ===================================================================
``unrolled.csv``            2,337 rows of which 47 are exact duplicates (all Wide-ResNet-28-2 /
                            Tiny-ImageNet): dropped, leaving 2,290 networks with unique keys.
``unrolled.csv``            metrics are stored normalised (SPEC §6, last column); ``raw_*``
                            columns de-normalise them (× nodes or × edges). Verified: the seven
                            counting metrics are integers × their divisor on every row.
``unrolled.csv``            4 networks (ResNet-32, ProsPr, s = 0.98, chance accuracy: collapsed
                            networks) have NaN in the five local metrics: kept, reported, or
                            dropped with ``dropna=True``.
``unrolled.csv``            ``sink_nodes`` < 0 in 2 rows: the authors' code subtracts the whole
                            output partition (SPEC §6, reference compatibility). Kept as is.
``rolled*/*.csv``           two schemas: 57 columns with ``pruning_algorithm`` (the authors'
                            code names, SPEC §9 says 68) and 21 columns with ``pruning`` (SPEC §6
                            names) in ``rolled-tinyimagenet-CONV-6.csv`` and
                            ``rolled_channel-tinyimagenet-Resnet-32.csv``. Unified by renaming
                            the 57-column names to SPEC §6 names (:data:`ROLLED_RENAME`), then the
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

import functools
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from mgelib import paths
from mgelib.vocabulary import DATASET_NAMES, MODEL_NAMES

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
    "load_unrolled",
    "load_rolled",
    "load_ramanujan",
    "network_features",
    "joined",
    "feature_sets",
    "add_accuracy_drop",
    "nan_report",
]

logger = logging.getLogger(__name__)

#: One row per sparse network is identified by these columns everywhere in mgelib.
KEY: tuple[str, ...] = ("model", "dataset", "pruner", "sparsity", "seed")

PAI_PRUNERS: tuple[str, ...] = ("snip", "grasp", "synflow", "prospr", "uniform", "er", "erk")
DST_PRUNERS: tuple[str, ...] = ("snfs", "rigl", "dsr", "itop")

#: The 16 MGE topometrics of SPEC §6, in its order, with the authors' column names.
MGE_METRICS: tuple[str, ...] = (
    "sink_nodes",
    "source_nodes",
    "disc_nodes",
    "r-out",
    "r-in",
    "1-hop_nei",
    "2-hop_nei",
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
#: Divisor of each stored MGE value (SPEC §6): "nodes" (V), "edges" (E) or None (stored raw).
#: Verified on the table: the integer metrics are integers × this divisor on every row; also
#: 1-hop × E = 1 + E/V, mean component size × number of components = 1 (so ÷ V), and
#: 2-hop × E × V, k-core × E × V and motif × E are integers. avg_node_strength (float16 weights)
#: has no integer invariant and is taken on SPEC's word.
NORMALISED_BY: dict[str, str | None] = {
    "sink_nodes": "nodes",
    "source_nodes": "nodes",
    "disc_nodes": "nodes",
    "r-out": "edges",
    "r-in": "edges",
    "1-hop_nei": "edges",
    "2-hop_nei": "edges",
    "motif": "edges",
    "avg_node_strength": "edges",
    "k-core": "edges",
    "cut-edges": "edges",
    "cut-nodes": "edges",
    "no_connected_components": None,
    "mean_connected_components": "nodes",
    "spectral_gap": None,
    "spectral_radius": None,
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
def _read_cached(path: str, mtime: float) -> pd.DataFrame:
    return pd.read_csv(path)


def _read(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"missing table {path}")
    # Cached by path and mtime; a copy so callers may modify what they get.
    return _read_cached(str(path), path.stat().st_mtime).copy()


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


# --------------------------------------------------------------------------- unrolled (MGE)
def load_unrolled(
    root: str | Path | None = None, *, dropna: bool = False, raw: bool = True
) -> pd.DataFrame:
    """The MGE topometrics table: one row per sparse network (``unrolled.csv``).

    Parameters
    ----------
    root : path, optional
        Folder holding ``graph_metrics/``; default :func:`mgelib.paths.paper_data_dir`.
    dropna : bool
        Drop the networks with a NaN metric (logged with their keys). Default keeps them; see
        :func:`nan_report` and ``df.attrs["report"]["nan_rows"]``.
    raw : bool
        Add ``raw_<metric>`` columns: the value × nodes or × edges (:data:`NORMALISED_BY`);
        counting metrics (:data:`INTEGER_METRICS`) are rounded to the integer they equal to
        within 1e-6 (the largest rounding is in the report).

    Returns
    -------
    DataFrame
        :data:`KEY` (our vocabulary), ``family`` (``pai``/``dst``), ``accuracy`` (fraction),
        ``density`` = 1 − sparsity, ``nodes``, ``edges``, the 16 :data:`MGE_METRICS` as the
        authors stored them (normalised) and, with ``raw``, their de-normalised values.

    Examples
    --------
    >>> df = load_unrolled()                                    # doctest: +SKIP
    >>> len(df), df.attrs["report"]["n_duplicates"]             # doctest: +SKIP
    (2290, 47)
    """
    base = _data_root(root)
    path = base / "graph_metrics" / "unrolled" / "unrolled.csv"
    df = _read(path)
    missing = [c for c in MGE_METRICS + ("nodes", "edges", "accuracy") if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: expected column(s) {missing} are missing")
    n_read = len(df)
    dup = df.duplicated()
    dup_where = df[dup].groupby(["model", "dataset"]).size()
    df = df[~dup].reset_index(drop=True)
    df = _tidy_keys(df, path.name)
    conflicts = int(df.duplicated(list(KEY)).sum())
    if conflicts:
        raise ValueError(f"{path}: {conflicts} networks appear twice with different values")

    report: dict[str, Any] = {
        "source": str(path),
        "n_read": n_read,
        "n_duplicates": int(dup.sum()),
        "duplicates_in": {f"{m}/{d}": int(n) for (m, d), n in dup_where.items()},
    }
    if raw:
        worst = 0.0
        for col, div in NORMALISED_BY.items():
            if div is None:
                continue
            value = df[col].astype(float) * df[div].astype(float)
            if col in INTEGER_METRICS:
                frac = (value - np.rint(value)).abs()
                worst = max(worst, float(np.nanmax(frac.to_numpy())))
                value = np.rint(value)
            df[f"raw_{col}"] = value
        report["max_integer_rounding"] = worst
        if worst > 1e-6:
            warnings.warn(
                f"{path.name}: a counting metric is not an integer × its divisor "
                f"(largest fractional part {worst:.3g}); check NORMALISED_BY",
                stacklevel=2,
            )
    nan = nan_report(df, MGE_METRICS)
    report["n_nan_rows"] = len(nan)
    report["nan_rows"] = nan.astype({"sparsity": float}).to_dict("records")
    if len(nan):
        logger.info(
            "%s: %d networks have NaN metrics (%s): %s",
            path.name,
            len(nan),
            "dropped" if dropna else "kept",
            nan[list(KEY) + ["nan_columns"]].to_dict("records"),
        )
    if dropna:
        df = df.drop(index=nan.index).reset_index(drop=True)
    logger.info(
        "%s: %d rows read, %d exact duplicates dropped, %d networks",
        path.name,
        n_read,
        report["n_duplicates"],
        len(df),
    )
    df = _front(df, [*KEY, "family", "accuracy", "density", "nodes", "edges", *MGE_METRICS])
    df.attrs["report"] = report
    return df


# --------------------------------------------------------------------------- rolled (BGE)
def _params_lookup(base: Path) -> pd.DataFrame:
    """(model, dataset, layer_name) -> no_params, from the Ramanujan tables (constant per layer)."""
    frames = []
    for f in sorted((base / "ramanunjan_results").glob("*/*.csv")):
        t = _read(f)[["model", "dataset", "layer_name", "no_params"]].drop_duplicates()
        frames.append(t)
    if not frames:
        return pd.DataFrame(columns=["model", "dataset", "layer_name", "no_params"])
    t = pd.concat(frames, ignore_index=True).drop_duplicates()
    if t.duplicated(["model", "dataset", "layer_name"]).any():
        raise ValueError("ramanunjan_results: a layer has two different no_params")
    t["model"] = t["model"].map(MODEL_NAMES)
    t["dataset"] = t["dataset"].map(DATASET_NAMES)
    return t


def load_rolled(
    encoding: Encoding = "rolled",
    root: str | Path | None = None,
    *,
    dropna: bool = False,
) -> pd.DataFrame:
    """Per-layer BGE metrics of every network: all ``graph_metrics/<encoding>/*.csv``.

    The two schemas are unified (:data:`ROLLED_RENAME`, :data:`SHORT_SCHEMA_FILES`): the union of
    columns with SPEC §6 names, NaN where a file's schema lacks one; ``schema`` (``"57"`` or
    ``"21"``) and ``source_file`` say where each row came from. Values are per layer and *raw*
    (not normalised). ``layer_sparsity`` is in fact a density and is exposed as
    ``layer_density``; ``no_params`` (from the Ramanujan tables, constant per layer) and
    ``no_weights`` = round(layer_density × no_params) are added so layers can be weighted.

    Parameters
    ----------
    encoding : {"rolled", "rolled_channel"}
        Which bipartite encoding (SPEC §5.2).
    root : path, optional
        Folder holding ``graph_metrics/``; default :func:`mgelib.paths.paper_data_dir`.
    dropna : bool
        Drop layers with a NaN in :data:`BGE_METRICS` (default keeps them and reports counts).

    Returns
    -------
    DataFrame
        One row per layer per network: :data:`KEY`, ``family``, ``accuracy``, ``density``,
        ``layer_id``, ``layer_name``, ``layer_density``, ``no_weights``, ``no_params``,
        ``nodes``, ``edges``, :data:`BGE_METRICS`, the other metrics of the 57-column schema,
        ``schema``, ``source_file``.

    Examples
    --------
    >>> layers = load_rolled("rolled_channel")                      # doctest: +SKIP
    >>> layers.attrs["report"]["short_schema_files"]                # doctest: +SKIP
    ['rolled_channel-tinyimagenet-Resnet-32.csv']
    """
    if encoding not in _ENCODINGS:
        raise ValueError(f"encoding must be one of {_ENCODINGS}, got {encoding!r}")
    base = _data_root(root)
    files = sorted((base / "graph_metrics" / encoding).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no {encoding} tables in {base / 'graph_metrics' / encoding}")
    frames, short, long_ = [], [], []
    for f in files:
        t = _read(f)
        n_cols = len(t.columns)
        if "pruning_algorithm" in t.columns:
            long_.append(f.name)
            t = t.rename(columns=ROLLED_RENAME)
        elif "pruning" in t.columns:
            short.append(f.name)
        else:
            raise ValueError(f"{f}: neither 'pruning_algorithm' nor 'pruning' column")
        t["schema"] = str(n_cols)
        t["source_file"] = f.name
        frames.append(_tidy_keys(t, f.name))
    df = pd.concat(frames, ignore_index=True, sort=False)
    empty = [c for c in df.columns if df[c].isna().all()]
    df = df.drop(columns=empty)
    df = df.rename(columns={"layer_sparsity": "layer_density"})
    dup = int(df.duplicated([*KEY, "layer_id"]).sum())
    if dup:
        raise ValueError(f"{encoding}: {dup} (network, layer_id) pairs appear twice")

    lookup = _params_lookup(base)
    df = df.merge(lookup, on=["model", "dataset", "layer_name"], how="left", validate="m:1")
    df["no_weights"] = np.rint(df["layer_density"].astype(float) * df["no_params"])
    n_no_params = int(df["no_params"].isna().sum())
    if n_no_params:
        logger.info(
            "%s: %d layers without no_params (Ramanujan tables absent?)", encoding, n_no_params
        )
    bad = [c for c in BGE_METRICS if c not in df.columns]
    if bad:
        raise ValueError(f"{encoding}: expected metric column(s) {bad} after unification")
    nan = nan_report(df, BGE_METRICS)
    report = {
        "encoding": encoding,
        "n_files": len(files),
        "long_schema_files": long_,
        "short_schema_files": short,
        "dropped_all_nan_columns": empty,
        "n_layers": len(df),
        "n_networks": int(df[list(KEY)].drop_duplicates().shape[0]),
        "n_nan_layers": len(nan),
        "nan_by_column": {c: int(df[c].isna().sum()) for c in BGE_METRICS if df[c].isna().any()},
        "n_layers_without_no_params": n_no_params,
    }
    logger.info(
        "%s: %d files (%d short schema: %s), %d layers of %d networks, %d layers with NaN metrics",
        encoding,
        len(files),
        len(short),
        short,
        len(df),
        report["n_networks"],
        len(nan),
    )
    if dropna:
        df = df.drop(index=nan.index).reset_index(drop=True)
    first = [*KEY, "family", "accuracy", "density", "layer_id", "layer_name", "layer_density"]
    first += ["no_weights", "no_params", "nodes", "edges", *BGE_METRICS]
    df = _front(df, first)
    df.attrs["report"] = report
    return df


# --------------------------------------------------------------------------- Ramanujan
def load_ramanujan(root: str | Path | None = None, *, rtol: float = 1e-6) -> pd.DataFrame:
    """Per-layer Ramanujan metrics (SPEC §7) with the pruner attached from the rolled tables.

    ``ramanunjan_results/<model>/rolled-<dataset>-<model>.csv`` has no algorithm column; its rows
    align one-to-one (same order, same count) with ``graph_metrics/rolled/`` of the same model
    and dataset. Alignment is checked on sparsity, seed, layer_id, layer_name, accuracy, layer
    density (``layer_sparsity``, ``rtol``) and ``no_weights == edges``; mismatches are warned
    about and counted in ``attrs["report"]["mismatches"]``; different row counts raise.

    Parameters
    ----------
    root : path, optional
        Folder holding ``graph_metrics/`` and ``ramanunjan_results/``.
    rtol : float
        Relative tolerance for the float comparisons.

    Returns
    -------
    DataFrame
        :data:`KEY`, ``family``, ``accuracy``, ``density``, ``layer_id``, ``layer_name``,
        ``degree_bound`` (Δr), ``iterative_spectral_gap`` (imsg), ``iterative_degree_bound``
        (imdb), ``layer_density``, ``no_weights``, ``no_params``, ``source_file``. ±inf (Δr on
        layers whose Ramanujan bound is 0) is replaced by NaN and counted.

    Examples
    --------
    >>> ram = load_ramanujan()                                      # doctest: +SKIP
    >>> ram.attrs["report"]["mismatches"]                           # doctest: +SKIP
    {}
    """
    base = _data_root(root)
    files = sorted((base / "ramanunjan_results").glob("*/*.csv"))
    if not files:
        raise FileNotFoundError(f"no Ramanujan tables under {base / 'ramanunjan_results'}")
    frames = []
    mismatches: dict[str, dict[str, int]] = {}
    for f in files:
        r = _read(f)
        rolled_path = base / "graph_metrics" / "rolled" / f.name
        g = _read(rolled_path)
        if len(r) != len(g):
            raise ValueError(
                f"{f.name}: {len(r)} Ramanujan rows but {len(g)} rows in {rolled_path.name}; "
                "rows can only be aligned one-to-one when the counts agree"
            )
        bad: dict[str, int] = {}
        for col in ("model", "dataset", "layer_name"):
            bad[col] = int((r[col].astype(str).to_numpy() != g[col].astype(str).to_numpy()).sum())
        for col in ("sparsity", "seed", "layer_id", "accuracy", "layer_sparsity"):
            a, b = r[col].to_numpy(float), g[col].to_numpy(float)
            bad[col] = int((~np.isclose(a, b, rtol=rtol, atol=1e-9)).sum())
        bad["no_weights==edges"] = int((r["no_weights"].to_numpy() != g["edges"].to_numpy()).sum())
        bad = {k: v for k, v in bad.items() if v}
        if bad:
            mismatches[f.name] = bad
            warnings.warn(f"{f.name}: rows disagree with {rolled_path.name}: {bad}", stacklevel=2)
        pruner_col = "pruning_algorithm" if "pruning_algorithm" in g.columns else "pruning"
        r["pruning"] = g[pruner_col].to_numpy()
        r["source_file"] = f"{f.parent.name}/{f.name}"
        frames.append(_tidy_keys(r, f.name))
    df = pd.concat(frames, ignore_index=True)
    metrics = list(RAMANUJAN_METRICS)
    vals = df[metrics].astype(float)
    inf = np.isinf(vals)
    n_inf = {c: int(inf[c].sum()) for c in metrics if inf[c].any()}
    df[metrics] = vals.mask(inf)
    df = df.rename(columns={"layer_sparsity": "layer_density"})
    dens_err = float(np.nanmax(np.abs(df["no_weights"] / df["no_params"] - df["layer_density"])))
    report = {
        "n_files": len(files),
        "n_layers": len(df),
        "n_networks": int(df[list(KEY)].drop_duplicates().shape[0]),
        "mismatches": mismatches,
        "inf_to_nan": n_inf,
        "nan_by_column": {c: int(df[c].isna().sum()) for c in metrics},
        "max_abs(no_weights/no_params - layer_density)": dens_err,
    }
    logger.info(
        "ramanunjan_results: %d files aligned with rolled/, %d layers; ±inf -> NaN: %s",
        len(files),
        len(df),
        n_inf,
    )
    cols = [*KEY, "family", "accuracy", "density", "layer_id", "layer_name", *metrics]
    cols += ["layer_density", "no_weights", "no_params", "source_file"]
    df = df[cols]
    df.attrs["report"] = report
    return df


# --------------------------------------------------------------------------- aggregation
_HOW = {"mean": "mean", "wmean": "wmean", "weighted_mean": "wmean"}


def network_features(
    layers_df: pd.DataFrame,
    columns: Sequence[str],
    how: Sequence[str] = ("mean", "wmean"),
    *,
    weight: str = "no_weights",
    key: Sequence[str] = KEY,
    keep: Sequence[str] = ("accuracy",),
    prefix: str = "",
) -> pd.DataFrame:
    """Per-network aggregates of per-layer features (SPEC §6, last paragraph).

    ``<prefix><col>__mean`` is the mean over the network's layers; ``<prefix><col>__wmean`` the
    mean weighted by ``weight`` — by default ``no_weights`` (kept weights = layer density ×
    layer size, a density-weighted mean); use ``weight="no_params"`` to weight by layer size
    only. NaN layer values are skipped (their weight too); a network with no value gets NaN.

    Parameters
    ----------
    layers_df : DataFrame
        One row per layer, with the ``key`` columns.
    columns : sequence of str
        Per-layer features to aggregate.
    how : sequence of {"mean", "wmean", "weighted_mean"}
        Aggregations (``weighted_mean`` is an alias of ``wmean``).
    weight : str
        Weight column for ``wmean``.
    key : sequence of str
        Columns that identify a network; default :data:`KEY`.
    keep : sequence of str
        Per-network columns carried over (first value; they must be constant per network).
    prefix : str
        Prepended to every aggregate's name (e.g. ``"rolled__"``).

    Returns
    -------
    DataFrame
        One row per network: ``key``, ``keep``, ``<prefix>n_layers`` and the aggregates.

    Examples
    --------
    >>> layers = pd.DataFrame({"net": [0, 0], "x": [1.0, 3.0], "no_weights": [1, 3]})
    >>> network_features(layers, ["x"], key=["net"], keep=())[["x__mean", "x__wmean"]]
       x__mean  x__wmean
    0      2.0       2.5
    """
    key, columns = list(key), list(columns)
    if not columns:
        raise ValueError("network_features: no columns to aggregate")
    unknown = [c for c in (*key, *columns, *keep) if c not in layers_df.columns]
    if unknown:
        raise ValueError(f"network_features: unknown column(s) {unknown}")
    bad_how = [h for h in how if h not in _HOW]
    if bad_how:
        raise ValueError(f"network_features: unknown aggregation(s) {bad_how}; use {sorted(_HOW)}")
    if len(layers_df) == 0:
        raise ValueError("network_features: layers_df is empty")
    hows = list(dict.fromkeys(_HOW[h] for h in how))
    if "wmean" in hows and weight not in layers_df.columns:
        raise ValueError(f"network_features: weight column {weight!r} not in layers_df")
    ids = layers_df[key]
    g = layers_df.groupby(key, sort=True, dropna=False)
    out = g.size().rename(f"{prefix}n_layers").to_frame()
    for c in keep:
        if (g[c].nunique(dropna=False) > 1).any():
            raise ValueError(f"network_features: {c!r} varies within a network")
    if keep:
        out = out.join(g[list(keep)].first())
    vals = layers_df[columns].astype(float)
    parts = []
    if "mean" in hows:
        m = pd.concat([ids, vals], axis=1).groupby(key, sort=True, dropna=False).mean()
        parts.append(m.add_prefix(prefix).add_suffix("__mean"))
    if "wmean" in hows:
        w = layers_df[weight].astype(float)
        num = vals.fillna(0.0).mul(w, axis=0)
        den = vals.notna().mul(w, axis=0)
        num = pd.concat([ids, num], axis=1).groupby(key, sort=True, dropna=False).sum()
        den = pd.concat([ids, den], axis=1).groupby(key, sort=True, dropna=False).sum()
        wm = num / den.where(den > 0)
        parts.append(wm.add_prefix(prefix).add_suffix("__wmean"))
    out = out.join(parts)
    # Interleave so each feature's aggregates sit together.
    agg_cols = [f"{prefix}{c}__{h}" for c in columns for h in hows]
    return out[[*keep, f"{prefix}n_layers", *agg_cols]].reset_index()


def joined(
    root: str | Path | None = None,
    *,
    how: Literal["inner", "outer"] = "inner",
    aggregations: Sequence[str] = ("mean", "wmean"),
    weight: str = "no_weights",
    dropna: bool = False,
) -> pd.DataFrame:
    """One row per sparse network: MGE topometrics + BGE and Ramanujan aggregates.

    Joins :func:`load_unrolled` with :func:`network_features` of :func:`load_rolled` (both
    encodings, columns ``rolled__<metric>__<agg>``, ``rolled_channel__<metric>__<agg>``) and of
    :func:`load_ramanujan` (``<metric>__<agg>`` for Δr, imsg, imdb and ``layer_density``) on
    :data:`KEY`. ``density_realised`` = Σ kept / Σ weights over the Ramanujan layers (it differs
    from ``density`` = 1 − sparsity for some DST runs). Accuracies agree across tables (checked).

    Parameters
    ----------
    root : path, optional
        Folder of the authors' tables.
    how : {"inner", "outer"}
        ``inner`` keeps the networks present in all four tables (MobileNetV2 exists only in the
        MGE table); ``outer`` keeps all, with ``in_unrolled``, ``in_rolled``,
        ``in_rolled_channel``, ``in_ramanujan`` flags.
    aggregations : sequence of str
        Passed to :func:`network_features`.
    weight : str
        Weight of the weighted mean (``no_weights`` or ``no_params``).
    dropna : bool
        Passed to :func:`load_unrolled`.

    Returns
    -------
    DataFrame
        ``attrs["report"]["membership"]`` counts networks by the tables they appear in.

    Examples
    --------
    >>> df = joined()                                               # doctest: +SKIP
    >>> df.attrs["report"]["n_joined"]                              # doctest: +SKIP
    1932
    """
    if how not in ("inner", "outer"):
        raise ValueError(f"how must be 'inner' or 'outer', got {how!r}")
    key = list(KEY)
    u = load_unrolled(root, dropna=dropna)
    tables = {"unrolled": u}
    for enc in _ENCODINGS:
        layers = load_rolled(enc, root)
        tables[enc] = network_features(
            layers, BGE_METRICS, aggregations, weight=weight, keep=("accuracy",), prefix=f"{enc}__"
        )
    ram = load_ramanujan(root)
    rf = network_features(
        ram,
        [*RAMANUJAN_METRICS, "layer_density"],
        aggregations,
        weight=weight,
        keep=("accuracy",),
    )
    tot = ram.groupby(key, sort=True)[["no_weights", "no_params"]].sum()
    rf = rf.merge(
        (tot["no_weights"] / tot["no_params"]).rename("density_realised").reset_index(), on=key
    )
    tables["ramanujan"] = rf

    out: pd.DataFrame | None = None
    for name, t in tables.items():
        t = t.rename(columns={"accuracy": f"accuracy_{name}"}).assign(**{f"in_{name}": True})
        out = t if out is None else out.merge(t, on=key, how="outer")
    assert out is not None
    flags = [f"in_{n}" for n in tables]
    out[flags] = out[flags].fillna(False).astype(bool)
    accs = out[[f"accuracy_{n}" for n in tables]]
    spread = (accs.max(axis=1) - accs.min(axis=1)).fillna(0.0)
    n_acc_mismatch = int((spread > 1e-9).sum())
    if n_acc_mismatch:
        warnings.warn(f"joined: {n_acc_mismatch} networks with different accuracies", stacklevel=2)
    out["accuracy"] = accs.bfill(axis=1).iloc[:, 0]
    out = out.drop(columns=list(accs.columns))
    out["family"] = np.where(out["pruner"].isin(PAI_PRUNERS), "pai", "dst")
    out["density"] = 1.0 - out["sparsity"]
    pattern = out[flags].apply(lambda r: "+".join(n[3:] for n in flags if r[n]), axis=1)
    membership = {str(k): int(v) for k, v in pattern.value_counts().items()}
    n_all = int(out[flags].all(axis=1).sum())
    not_joined = out[~out[flags].all(axis=1)]
    report = {
        "n_networks_any": len(out),
        "n_joined": n_all,
        "membership": membership,
        "not_joined_by_model": {
            str(k): int(v) for k, v in not_joined["model"].value_counts().items()
        },
        "accuracy_mismatches": n_acc_mismatch,
        "unrolled": u.attrs.get("report", {}),
    }
    logger.info(
        "joined: %d networks in all four tables, %d not (%s)", n_all, len(out) - n_all, membership
    )
    if how == "inner":
        out = out[out[flags].all(axis=1)].drop(columns=flags)
    out = out.sort_values(key).reset_index(drop=True)
    out = _front(out, [*key, "family", "accuracy", "density", "density_realised", "nodes", "edges"])
    out.attrs["report"] = report
    return out


def feature_sets(
    df: pd.DataFrame | None = None, *, aggregations: Sequence[str] = ("mean",)
) -> dict[str, list[str]]:
    """The SPEC §8 feature sets, named by the columns of :func:`joined`.

    ================  ==============================================================
    name              columns
    ================  ==============================================================
    sparsity          ``sparsity`` (the baseline that is always shown)
    density           ``density_realised``, ``layer_density__<agg>`` (layer-wise density)
    ramanujan         Δr, imsg, imdb aggregates
    ramanujan+density both of the above
    rolled            the 10 BGE metrics on the rolled encoding, aggregated
    rolled_channel    the same on the rolled-channel encoding
    mge               the 16 MGE topometrics (normalised, as the authors used them)
    mge+sparsity      MGE + ``sparsity``
    ================  ==============================================================

    Parameters
    ----------
    df : DataFrame, optional
        When given, every column must exist in it (``ValueError`` names those that do not).
    aggregations : sequence of str
        Which layer aggregates enter the BGE / Ramanujan sets (``mean``, ``wmean``).

    Examples
    --------
    >>> feature_sets()["ramanujan"]
    ['degree_bound__mean', 'iterative_spectral_gap__mean', 'iterative_degree_bound__mean']
    """
    hows = [_HOW[h] for h in aggregations]
    ram = [f"{m}__{h}" for m in RAMANUJAN_METRICS for h in hows]
    dens = ["density_realised", *[f"layer_density__{h}" for h in hows]]
    sets = {
        "sparsity": ["sparsity"],
        "density": dens,
        "ramanujan": ram,
        "ramanujan+density": ram + dens,
        "rolled": [f"rolled__{m}__{h}" for m in BGE_METRICS for h in hows],
        "rolled_channel": [f"rolled_channel__{m}__{h}" for m in BGE_METRICS for h in hows],
        "mge": list(MGE_METRICS),
        "mge+sparsity": [*MGE_METRICS, "sparsity"],
    }
    if df is not None:
        missing = sorted({c for cols in sets.values() for c in cols if c not in df.columns})
        if missing:
            raise ValueError(f"feature_sets: column(s) {missing} not in the frame (use joined())")
    return sets


# --------------------------------------------------------------------------- accuracy drop
def add_accuracy_drop(
    df: pd.DataFrame,
    dense: pd.DataFrame | Mapping[tuple[str, str], float] | None = None,
    *,
    acc_col: str = "accuracy",
    group_cols: Sequence[str] = ("model", "dataset"),
) -> pd.DataFrame:
    """Add the accuracy drop (SPEC §1) against a per-group reference accuracy.

    With ``dense`` (our own runs), the reference is the mean dense accuracy of the same
    (model, dataset): ``accuracy_drop = acc_dense − acc`` and ``accuracy_drop_rel =
    (acc_dense − acc) / acc_dense``. The authors' tables publish no dense accuracy; with
    ``dense=None`` the reference is the **best** accuracy in the group (``accuracy_ref_source``
    says which). Within one group both drops are affine in accuracy (slope −1 or −1/ref), so
    any within-group R², MAE ratio or rank statistic is the same whether the target is the
    accuracy, the drop or the relative drop; the analyses therefore use ``accuracy`` within
    groups, and these columns are for display.

    Parameters
    ----------
    df : DataFrame
        Runs with ``group_cols`` and ``acc_col``.
    dense : DataFrame or mapping, optional
        Dense runs (rows with ``group_cols`` and ``acc_col``; their mean per group is taken), or
        a mapping ``(model, dataset) -> dense accuracy``.
    acc_col : str
        Accuracy column (fraction).
    group_cols : sequence of str
        Grouping of the reference.

    Returns
    -------
    DataFrame
        A copy with ``accuracy_ref``, ``accuracy_ref_source``, ``accuracy_drop``,
        ``accuracy_drop_rel``.

    Examples
    --------
    >>> runs = pd.DataFrame({"model": ["m", "m"], "dataset": ["d", "d"], "accuracy": [0.8, 0.6]})
    >>> add_accuracy_drop(runs, {("m", "d"): 0.9})["accuracy_drop"].round(3).tolist()
    [0.1, 0.3]
    """
    group_cols = list(group_cols)
    missing = [c for c in (*group_cols, acc_col) if c not in df.columns]
    if missing:
        raise ValueError(f"add_accuracy_drop: column(s) {missing} not in df")
    out = df.copy()
    keys = pd.MultiIndex.from_frame(out[group_cols])
    if dense is None:
        ref = out.groupby(group_cols)[acc_col].transform("max")
        source = "best"
    else:
        if isinstance(dense, pd.DataFrame):
            miss = [c for c in (*group_cols, acc_col) if c not in dense.columns]
            if miss:
                raise ValueError(f"add_accuracy_drop: dense frame lacks column(s) {miss}")
            table = dense.groupby(group_cols)[acc_col].mean()
        else:
            table = pd.Series(dict(dense), dtype=float)
            if len(group_cols) > 1:
                table.index = pd.MultiIndex.from_tuples(table.index, names=group_cols)
        ref = pd.Series(table.reindex(keys).to_numpy(), index=out.index)
        lacking = sorted(
            {tuple(k) if isinstance(k, tuple) else (k,) for k in keys[ref.isna().to_numpy()]}
        )
        if lacking:
            raise ValueError(f"add_accuracy_drop: no dense accuracy for group(s) {lacking}")
        source = "dense"
    out["accuracy_ref"] = ref.astype(float)
    out["accuracy_ref_source"] = source
    out["accuracy_drop"] = out["accuracy_ref"] - out[acc_col]
    out["accuracy_drop_rel"] = out["accuracy_drop"] / out["accuracy_ref"]
    return out
