"""The data of the study notebooks: a source's networks (:func:`load_networks`) and layers
(:func:`load_layers`), the target (:func:`target_column`), the method §8 feature sets that exist
in the data (:func:`select_feature_sets`), and :func:`synthetic_runs` — a ``runs.parquet``-shaped
table with a planted signal, for tests and examples.

Examples
--------
>>> runs = synthetic_runs(n_pruners=3, sparsities=(0.5, 0.9), seeds=(0,))
>>> sorted(runs["pruner"].unique())
['dense', 'grasp', 'snip', 'synflow']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mgelib import io, paperdata, paths

__all__ = [
    "SOURCES",
    "CI_SUBSET",
    "LAYER_SETS",
    "parse_list",
    "resolve_output_dir",
    "target_column",
    "load_networks",
    "load_layers",
    "select_feature_sets",
    "feature_correlations",
    "synthetic_runs",
    "record_params",
]

SOURCES: tuple[str, ...] = ("paper", "runs")


#: ``paper_subset="ci"``: CONV-6 and ResNet-20 on CIFAR-10, the 7 PaI pruners, sparsities 0.9
#: and 0.98 (where the pruners differ most), all seeds — a deterministic slice of the authors'
#: tables (2 groups × 7 pruners × 2 sparsities × 3 seeds = 84 networks) on which each notebook
#: runs end to end in well under a minute (used by the tests).
CI_SUBSET: dict[str, tuple] = {
    "groups": (("conv6", "cifar10"), ("resnet20", "cifar10")),
    "pruners": paperdata.PAI_PRUNERS,
    "sparsities": (0.9, 0.98),
}


#: Per-layer feature sets of method §8.1 (columns of :func:`load_layers`).
LAYER_SETS: dict[str, list[str]] = {
    "density": ["layer_density"],
    "ramanujan": list(paperdata.RAMANUJAN_METRICS),
    "ramanujan+density": [*paperdata.RAMANUJAN_METRICS, "layer_density"],
}


_KEY = list(paperdata.KEY)
_LAYER_COLS = ["layer_id", "layer_name", *paperdata.RAMANUJAN_METRICS, "layer_density"]


def parse_list(value: str, allowed: Sequence[str], what: str) -> list[str]:
    """``"a,b"`` → ``["a", "b"]``, each checked against ``allowed`` (``ValueError`` names it).

    Examples
    --------
    >>> parse_list("kfold, lopo", ("kfold", "lopo"), "folds")
    ['kfold', 'lopo']
    """
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise ValueError(f"{what}: {bad or value!r} not allowed; use a comma list of {allowed}")
    return items


def resolve_output_dir(output_dir: str, profile: str, stem: str) -> Path:
    """``output_dir`` or ``reports_dir()/<profile>/<stem>``, created."""
    out = Path(output_dir) if output_dir else paths.reports_dir() / profile / stem
    out.mkdir(parents=True, exist_ok=True)
    return out


def target_column(source: str) -> str:
    """``accuracy`` for the paper's tables (no dense runs published), ``accuracy_drop`` for runs.

    Within one (model, dataset) the drop is affine in the accuracy (method §1), so within-group
    R², MAE ratios and rankings agree for both; pooled analyses use group fixed effects.

    Examples
    --------
    >>> target_column("paper"), target_column("runs")
    ('accuracy', 'accuracy_drop')
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    return "accuracy" if source == "paper" else "accuracy_drop"


def _pruner_filter(df: pd.DataFrame, pruners: str) -> pd.DataFrame:
    if pruners == "all":
        return df
    if pruners == "pai":
        return df[df["pruner"].isin(paperdata.PAI_PRUNERS)]
    keep = parse_list(pruners, sorted(set(df["pruner"])), "pruners")
    return df[df["pruner"].isin(keep)]


def load_networks(
    source: str,
    *,
    collected: str = "",
    paper_data: str = "",
    paper_subset: str = "",
    profile: str = "adhoc",
    pruners: str = "pai",
) -> pd.DataFrame:
    """One row per sparse network with a finite target (see :func:`target_column`).

    ``pruners``: ``"pai"`` (the 7 PaI algorithms), ``"all"`` (every pruner in the data: the
    authors' DST runs, our DST and ``+shuffle`` runs) or a comma list of the data's labels. ``paper_subset``: ``""`` or ``"ci"`` (:data:`CI_SUBSET`; paper source only).
    Dense runs (``pruner == "dense"``) are dropped.
    """
    target = target_column(source)
    if paper_subset not in ("", "ci"):
        raise ValueError(f"paper_subset must be '' or 'ci', got {paper_subset!r}")
    if source == "paper":
        df = paperdata.joined(paper_data or None)
        if paper_subset == "ci":
            groups = pd.MultiIndex.from_frame(df[["model", "dataset"]])
            df = df[groups.isin(CI_SUBSET["groups"]) & df["pruner"].isin(CI_SUBSET["pruners"])]
            df = df[df["sparsity"].isin(CI_SUBSET["sparsities"])]
    else:
        path = (
            Path(collected)
            if collected
            else (paths.reports_dir() / profile / "30_collect_runs" / "runs.parquet")
        )
        if not path.is_file():
            raise FileNotFoundError(
                f"no collected runs at {path}: run 30_collect_runs for profile {profile!r} "
                "or pass collected"
            )
        df = io.read_table(path)
        df = df[df["pruner"] != "dense"]
    df = _pruner_filter(df, pruners)
    df = df[np.isfinite(df[target].to_numpy(float))]
    return df.sort_values(_KEY).reset_index(drop=True)


def load_layers(
    source: str,
    networks: pd.DataFrame,
    *,
    paper_data: str = "",
    grid_dir: str = "",
    profile: str = "adhoc",
) -> pd.DataFrame:
    """Per-layer Ramanujan metrics and layer density of the ``networks`` (method §7), with their
    target: the authors' ``ramanunjan_results`` or each run's ``ramanujan.parquet`` under
    ``grid_dir`` (default ``runs_dir()/<profile>``). Empty when there is none."""
    target = target_column(source)
    if source == "paper":
        layers = paperdata.load_ramanujan(paper_data or None)
    else:
        root = Path(grid_dir) if grid_dir else io.grid_root(profile)
        # no grid folder (e.g. only a collected runs.parquet was shared): no per-layer table
        layers = io.collect(root, "ramanujan.parquet") if root.is_dir() else pd.DataFrame()
    if len(layers) == 0 or not set(_LAYER_COLS) <= set(layers.columns):
        return pd.DataFrame(columns=[*_KEY, *_LAYER_COLS, target])
    out = layers[[*_KEY, *_LAYER_COLS]].merge(networks[[*_KEY, target]], on=_KEY, how="inner")
    return out.sort_values([*_KEY, "layer_id"]).reset_index(drop=True)


def select_feature_sets(
    df: pd.DataFrame,
    names: Sequence[str],
    aggregations: Sequence[str] = ("mean",),
    *,
    layer_density: Sequence[str] = (),
) -> tuple[dict[str, list[str]], list[str]]:
    """The method §8 feature sets ``names`` (:func:`mgelib.paperdata.feature_sets`) restricted to
    the columns ``df`` has with at least one value; sets left empty are dropped. Returns the
    sets and notes saying what was dropped.

    ``"layer_density"`` is the per-layer density set (the columns ``layer_density`` names, from
    :func:`mgelib.analysis.add_layer_densities`); ``"<set>+layer_density"`` adds it to a set.
    A name that is none of these raises ``ValueError`` (a typo is never "no data").

    Examples
    --------
    >>> runs = synthetic_runs(n_pruners=2, sparsities=(0.5,), seeds=(0,))
    >>> select_feature_sets(runs, ["sparsity"])[0]
    {'sparsity': ['sparsity']}
    """
    known = paperdata.feature_sets(aggregations=aggregations)
    sets, notes = {}, []
    for name in names:
        base, _, extra = name.partition("+layer_density")
        if name == "layer_density":
            cols = list(layer_density)
        elif extra == "" and base != name and base in known:
            cols = [*known[base], *layer_density]
        elif name in known:
            cols = known[name]
        else:
            raise ValueError(
                f"unknown feature set {name!r}; use one of {sorted(known)}, 'layer_density' or "
                "'<set>+layer_density'"
            )
        ok = [c for c in cols if c in df.columns and df[c].notna().any()]
        if len(ok) < len(cols):
            missing = sorted(set(cols) - set(ok))
            notes.append(
                f"{name}: column(s) {missing[:6]}{' …' * (len(missing) > 6)} absent or all NaN"
            )
        if ok:
            sets[name] = ok
        else:
            notes.append(f"{name}: no usable column, feature set skipped")
    return sets, notes


def feature_correlations(df: pd.DataFrame, features: Sequence[str], target: str) -> pd.DataFrame:
    """Spearman correlation of each feature with ``target`` within each (model, dataset) group:
    one row per group (``"model · dataset"``), one column per feature (NaN where constant).

    Examples
    --------
    >>> runs = synthetic_runs(n_pruners=3, sparsities=(0.5, 0.9), seeds=(0,), dense=False)
    >>> feature_correlations(runs, ["sparsity"], "accuracy_drop").round(2).iloc[0, 0]
    np.float64(0.88)
    """
    rows = {}
    for (m, d), g in df.groupby(["model", "dataset"], sort=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant feature: NaN, as documented
            rows[f"{m} · {d}"] = g[list(features)].corrwith(g[target], method="spearman")
    return pd.DataFrame(rows, index=list(features)).T


def synthetic_runs(
    n_pruners: int = 7,
    sparsities: Sequence[float] = (0.6, 0.9, 0.95, 0.98),
    seeds: Sequence[int] = (0, 1),
    *,
    model: str = "conv6",
    dataset: str = "digits",
    dense: bool = True,
    seed: int = 0,
) -> pd.DataFrame:
    """A ``runs.parquet``-shaped table (the columns ``30_collect_runs`` writes) with a planted
    signal — for tests and examples, never for conclusions.

    Each pruner has a latent quality ``q``; the accuracy drop is linear in sparsity and ``q``;
    every metric is linear in sparsity, plus ``q`` (clearly for the MGE topometrics, faintly
    for the BGE and Ramanujan aggregates, not at all for density), plus noise.

    Parameters
    ----------
    n_pruners : int
        The first ``n_pruners`` PaI pruners (1–7).
    sparsities, seeds : sequences
        The grid; dense runs (``pruner="dense"``, sparsity 0) are added per seed with ``dense``.
    model, dataset : str
        The single (model, dataset) group.
    seed : int
        Seed of the random numbers.
    """
    if not 1 <= n_pruners <= len(paperdata.PAI_PRUNERS):
        raise ValueError(f"n_pruners must be in 1…{len(paperdata.PAI_PRUNERS)}, got {n_pruners}")
    rng = np.random.default_rng(seed)
    pruners = list(paperdata.PAI_PRUNERS[:n_pruners])
    quality = dict(zip(pruners, rng.normal(size=n_pruners)))
    grid = [(p, s, k) for p in pruners for s in sparsities for k in seeds]
    if dense:
        grid += [("dense", 0.0, k) for k in seeds]
    df = pd.DataFrame(grid, columns=["pruner", "sparsity", "seed"])
    s = df["sparsity"].to_numpy(float)
    q = df["pruner"].map(quality).fillna(0.0).to_numpy(float)
    n = len(df)

    def metric(weight_q: float) -> np.ndarray:
        a, b = rng.uniform(0.5, 2.0), rng.choice([-1.0, 1.0]) * weight_q
        return 1.0 + a * s + b * q + 0.02 * rng.normal(size=n)

    cols: dict[str, Any] = {"model": model, "dataset": dataset}
    acc_dense = 0.95
    drop = 0.2 * s + 0.03 * q * (s > 0) + 0.002 * rng.normal(size=n)
    cols.update(accuracy=acc_dense - drop)
    for m in paperdata.MGE_METRICS:
        cols[m] = metric(0.3)
    for enc in ("rolled", "rolled_channel"):
        for m in paperdata.BGE_METRICS:
            cols.update({f"{enc}__{m}__{h}": metric(0.01) for h in ("mean", "wmean")})
    for m in paperdata.RAMANUJAN_METRICS:
        cols.update({f"{m}__{h}": metric(0.01) for h in ("mean", "wmean")})
    for h in ("mean", "wmean"):
        cols[f"layer_density__{h}"] = (1.0 - s) * (1.0 + 0.02 * rng.normal(size=n))
    cols.update(density_realised=1.0 - s, density=1.0 - s)
    df = df.assign(**cols)
    dense_acc = df.loc[df["pruner"] == "dense", "accuracy"]
    df["acc_dense"] = dense_acc.mean() if len(dense_acc) else acc_dense
    df["accuracy_drop"] = df["acc_dense"] - df["accuracy"]
    df["relative_drop"] = df["accuracy_drop"] / df["acc_dense"]
    first = [*_KEY, "accuracy", "accuracy_drop", "relative_drop", "acc_dense"]
    return df[first + [c for c in df.columns if c not in first]].sort_values(
        _KEY, ignore_index=True
    )


def record_params(folder: str | Path, params: Mapping[str, Any]) -> None:
    """``params.json`` (what the notebook ran with) and ``provenance.json`` in ``folder``."""
    io.write_json(dict(params), Path(folder) / "params.json")
    io.write_json(io.provenance(), Path(folder) / "provenance.json")
