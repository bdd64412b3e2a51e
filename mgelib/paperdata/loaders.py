"""Readers of the authors' tables (SPEC §9): :func:`load_unrolled` (MGE, one row per network),
:func:`load_rolled` (BGE, one row per layer) and :func:`load_ramanujan` (Ramanujan metrics, one
row per layer), each with its quirks handled and reported in ``df.attrs["report"]``."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgelib.errors import PaperDataError
from mgelib.paperdata.schema import (
    _ENCODINGS,
    BGE_METRICS,
    DATASET_NAMES,
    INTEGER_METRICS,
    KEY,
    MGE_METRICS,
    MODEL_NAMES,
    NORMALISED_BY,
    RAMANUJAN_METRICS,
    ROLLED_RENAME,
    Check,
    Encoding,
    _data_root,
    _front,
    _numeric,
    _read,
    _tidy_keys,
    check_tables,
    logger,
    nan_report,
)

__all__ = ["load_unrolled", "load_rolled", "load_ramanujan"]


# --------------------------------------------------------------------------- unrolled (MGE)
def load_unrolled(
    root: str | Path | None = None,
    *,
    dropna: bool = False,
    raw: bool = True,
    check: Check = "auto",
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
    check : {"auto", "manifest", "schema"}
        Compare the file with the pinned manifest (:func:`check_tables`): ``auto`` does so when
        ``root`` holds the authors' copy; ``schema`` skips it (an excerpt, a copy you changed).

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
    check_tables(base, ("graph_metrics/unrolled/",), check)
    path = base / "graph_metrics" / "unrolled" / "unrolled.csv"
    df = _read(path)
    missing = [c for c in MGE_METRICS + ("nodes", "edges", "accuracy") if c not in df.columns]
    if missing:
        raise PaperDataError(
            f"{path}: expected column(s) {missing} are missing (it has {list(df.columns)}); "
            "fetch the tables again (invoke fetch-paper-data)"
        )
    if df.empty:
        raise PaperDataError(f"{path} has a header but no rows; fetch the tables again")
    _numeric(df, (*MGE_METRICS, "nodes", "edges", "accuracy", "sparsity", "seed"), path)
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
    check: Check = "auto",
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
    check : {"auto", "manifest", "schema"}
        See :func:`load_unrolled`; checks these tables and the Ramanujan ones (``no_params``).

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
    mode = check_tables(base, (f"graph_metrics/{encoding}/", "ramanunjan_results/"), check)
    files = sorted((base / "graph_metrics" / encoding).glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"no {encoding} tables in {base / 'graph_metrics' / encoding}")
    if mode == "schema" and not (base / "ramanunjan_results").is_dir():
        warnings.warn(
            f"{base / 'ramanunjan_results'} is missing: no_params and no_weights will be NaN",
            stacklevel=2,
        )
    frames, short, long_ = [], [], []
    for f in files:
        t = _read(f)
        if t.empty:
            raise PaperDataError(f"{f} has a header but no rows; fetch the tables again")
        metrics = set(BGE_METRICS) | set(ROLLED_RENAME) - {"pruning_algorithm"}
        _numeric(t, [c for c in t.columns if c in metrics], f)
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
def load_ramanujan(
    root: str | Path | None = None, *, rtol: float = 1e-6, check: Check = "auto"
) -> pd.DataFrame:
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
    check : {"auto", "manifest", "schema"}
        See :func:`load_unrolled`; checks these tables and ``graph_metrics/rolled/``.

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
    check_tables(base, ("ramanunjan_results/", "graph_metrics/rolled/"), check)
    files = sorted((base / "ramanunjan_results").glob("*/*.csv"))
    if not files:
        raise FileNotFoundError(f"no Ramanujan tables under {base / 'ramanunjan_results'}")
    frames = []
    mismatches: dict[str, dict[str, int]] = {}
    for f in files:
        r = _read(f)
        _numeric(r, [c for c in RAMANUJAN_METRICS if c in r.columns], f)
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
