"""The steps the pipeline notebooks share, so that notebooks stay thin and readable.

- :func:`resolve_run_dir`, :func:`make_masks`, :func:`result_row` — ``10_prune_and_train``;
- :func:`load_run_model`, :func:`graph_tables` — ``20_graph_metrics``;
- :func:`with_accuracy_drop` — ``30_collect_runs``;
- :func:`reproduce` — the whole pipeline of a profile (grid + analysis notebooks), what
  ``invoke reproduce`` runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from mgelib import io, paths

__all__ = [
    "ANALYSIS_NOTEBOOKS",
    "resolve_run_dir",
    "make_masks",
    "result_row",
    "load_run_model",
    "graph_tables",
    "with_accuracy_drop",
    "reproduce",
]

#: Notebooks run once per grid, after the runs, in this order.
ANALYSIS_NOTEBOOKS = (
    "30_collect_runs",
    "40_ramanujan_vs_density",
    "50_predict_accuracy_drop",
    "55_rank_pruners",
    "60_mge_figures",
)


def resolve_run_dir(
    run_dir: str, profile: str, model: str, dataset: str, pruner: str, sparsity: float, seed: int
) -> Path:
    """``run_dir`` if given, else the run's hive folder under ``runs_dir()/<profile>``."""
    if run_dir:
        return Path(run_dir).expanduser().resolve()
    spec = io.RunSpec(model, dataset, pruner, sparsity, seed)
    return spec.dir(io.grid_root(profile))


def make_masks(
    pruner: str,
    model: nn.Module,
    sparsity: float,
    *,
    data: Any = None,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks from a pruner name; ``"dense"`` (sparsity 0) keeps every weight."""
    from mgelib.masks import check_sparsity, dense_masks
    from mgelib.pruning import prune

    sparsity = check_sparsity(sparsity)
    if pruner == "dense":
        if sparsity != 0.0:
            raise ValueError(
                f"pruner 'dense' is the unpruned baseline: sparsity must be 0, got {sparsity}"
            )
        return dense_masks(model)
    return prune(pruner, model, sparsity, data=data, seed=seed, input_shape=input_shape)


def result_row(
    result, report: pd.DataFrame, *, dataset, extra: Mapping[str, Any] | None = None
) -> pd.DataFrame:  # noqa: ANN001
    """The one-row ``result.parquet`` of a trained run."""
    kept = int(report["kept"].sum())
    total = int(report["weights"].sum())
    row = {
        "accuracy": float(result.final_acc),
        "best_accuracy": float(result.best_acc),
        "epochs": int(result.epochs_run),
        "wall_time_s": float(result.wall_time_s),
        "device": str(result.device),
        "kept_weights": kept,
        "weights": total,
        "sparsity_realised": 1.0 - kept / total,
        "collapsed_layers": int(report["collapsed"].sum()),
        "path_connected": bool(report.attrs.get("path_connected", True)),
        "in_channels": int(dataset.in_channels),
        "input_size": int(dataset.input_size),
        "num_classes": int(dataset.num_classes),
    }
    row.update(extra or {})
    return pd.DataFrame([row])


def load_run_model(run_dir: str | os.PathLike, model: str, weights: str = "init") -> nn.Module:
    """Rebuild a run's network with its masks and its initial (``"init"``) or trained
    (``"trained"``) weights, in eval mode."""
    from mgelib.masks import apply_masks
    from mgelib.models import build

    run_dir = Path(run_dir)
    res = io.read_table(run_dir / "result.parquet").iloc[0]
    net = build(
        model,
        in_channels=int(res["in_channels"]),
        num_classes=int(res["num_classes"]),
        input_size=int(res["input_size"]),
    )
    name = {"init": "init.pt", "trained": "model.pt"}.get(weights)
    if name is None:
        raise ValueError(f"weights must be 'init' or 'trained', got {weights!r}")
    net.load_state_dict(io.load_torch(run_dir / name))
    apply_masks(net, io.load_masks(run_dir / "masks.npz"))
    return net.eval()


def graph_tables(
    net: nn.Module,
    input_shape: tuple[int, ...],
    *,
    seed: int = 0,
    weights: str = "init",
    compat: str | None = None,
    engine: str = "fast",
    n_jobs: int = 0,
    max_edges: int | None = None,
    motif_budget: float | None = None,
) -> dict[str, Any]:
    """Everything ``20_graph_metrics`` computes for one network.

    Returns a dict with the MGE (``graph``), ``topometrics`` (one row: the 16 metrics normalised
    as the authors stored them, ``raw__<metric>``, ``nodes``, ``edges``, seconds), ``bge_layers``
    (per-layer BGE metrics, both encodings), ``ramanujan`` (per layer) and ``network`` (one row of
    per-network features named as :func:`mgelib.paperdata.joined` names them, so one analysis
    code serves our runs and the authors' tables). ``n_jobs``: threads for the topometrics'
    kernels, ``0`` every available core (:func:`mgelib.metrics.available_cores`); the values
    do not depend on it.
    """
    from mgelib import encode
    from mgelib.metrics import (
        TOPOMETRICS,
        layer_metrics,
        network_aggregates,
        ramanujan,
        topometrics,
    )

    t0 = time.perf_counter()
    graph = encode(net, input_shape, weights=weights, compat=compat, max_edges=max_edges)
    t_encode = time.perf_counter() - t0
    budget = {} if motif_budget is None else {"motif_budget": motif_budget}
    topo = topometrics(graph, seed=seed, engine=engine, n_jobs=n_jobs, **budget)
    topo_row = {m: topo[m] for m in TOPOMETRICS}
    topo_row.update({f"raw__{m}": topo.raw[m] for m in TOPOMETRICS})
    topo_row.update(
        nodes=int(graph.n_nodes),
        edges=int(graph.n_edges),
        encode_seconds=t_encode,
        metrics_seconds=float(sum(topo.timings.values())),
        motif_se=float(topo.stderr.get("motif", float("nan"))),
        reasons="; ".join(f"{k}: {v}" for k, v in topo.reasons.items()),
    )
    # The authors' per-layer BGE tables hold raw values and their network aggregates weight by
    # kept weights (mgelib.paperdata.joined): do the same, so one analysis serves both sources.
    features: dict[str, Any] = {}
    layer_frames = []
    rolled = encode(net, encoding="rolled", weights=weights)
    for graphs in (rolled, encode(net, encoding="rolled_channel", weights=weights)):
        frame = layer_metrics(graphs, seed=seed, normalise=False, weight="kept")
        layer_frames.append(frame)
        features.update(network_aggregates(frame, weight="kept").iloc[0].to_dict())
    bge = pd.concat(layer_frames, ignore_index=True)
    ram = ramanujan(rolled, seed=seed)
    features.update(network_aggregates(ram, weight="kept").iloc[0].to_dict())
    network = pd.DataFrame(
        [
            {
                **{m: topo[m] for m in TOPOMETRICS},
                **features,
                "nodes": graph.n_nodes,
                "edges": graph.n_edges,
            }
        ]
    )
    return {
        "graph": graph,
        "topometrics": pd.DataFrame([topo_row]),
        "timings": topo.timings,
        "bge_layers": bge,
        "ramanujan": ram,
        "network": network,
    }


def with_accuracy_drop(df: pd.DataFrame, acc_col: str = "accuracy") -> pd.DataFrame:
    """Add ``acc_dense`` (mean dense accuracy of the same (model, dataset) over seeds),
    ``accuracy_drop = acc_dense − accuracy`` and ``relative_drop`` (SPEC §1)."""
    if "pruner" not in df.columns:
        raise ValueError(
            "with_accuracy_drop needs a 'pruner' column with the dense runs as 'dense'"
        )
    dense = (
        df[df["pruner"] == "dense"]
        .groupby(["model", "dataset"])[acc_col]
        .mean()
        .rename("acc_dense")
    )
    out = df.merge(dense.reset_index(), on=["model", "dataset"], how="left")
    out["accuracy_drop"] = out["acc_dense"] - out[acc_col]
    out["relative_drop"] = out["accuracy_drop"] / out["acc_dense"]
    return out


def reproduce(
    profile: str = "default",
    *,
    executor: str = "local",
    workers: int | None = None,
    force: bool = False,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Run a profile end to end: its grid (finished runs skipped), then the analysis notebooks.

    Returns the executed notebooks by stem. A killed call can simply be started again.
    """
    from mgelib.notebooks import load_profile, notebook_parameters, run_notebook
    from mgelib.runner import run_grid

    prof = load_profile(profile)
    report = run_grid(prof, executor=executor, workers=workers, force=force, progress=progress)
    print(report.summary())
    report.raise_for_failures()
    out: dict[str, Path] = {}
    reports = paths.reports_dir() / prof["name"]
    for stem in prof.get("analysis", ANALYSIS_NOTEBOOKS):
        params: dict[str, Any] = {}
        declared = notebook_parameters(stem)
        if "grid_dir" in declared:
            params["grid_dir"] = str(report.root)
        if "output_dir" in declared:
            params["output_dir"] = str(reports / stem)
        if "collected" in declared:
            params["collected"] = str(reports / "30_collect_runs" / "runs.parquet")
        t0 = time.perf_counter()
        out[stem] = run_notebook(stem, params, prof, output_dir=reports / stem)
        print(f"{stem}: {time.perf_counter() - t0:.0f} s → {out[stem]}")
    return out
