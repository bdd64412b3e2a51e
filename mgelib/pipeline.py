"""The steps the pipeline notebooks share, so that notebooks stay thin and readable.

- :func:`resolve_run_dir`, :func:`make_masks`, :func:`result_row` — ``10_prune_and_train``
  (:func:`run_label`: the run-folder label of a model or pruner spec);
  :func:`dst_hook`, :func:`record_dst` — its dynamic sparse training branch;
- :func:`load_run_model` (:func:`run_model_spec`), :func:`graph_tables` — ``20_graph_metrics``
  and ``15_import_networks`` (:mod:`mgelib.importing`);
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
    "run_label",
    "run_model_spec",
    "make_masks",
    "dst_hook",
    "record_dst",
    "result_row",
    "load_run_model",
    "graph_tables",
    "with_accuracy_drop",
    "reproduce",
]

#: Notebooks run once per grid, after the runs, in this order.
ANALYSIS_NOTEBOOKS = (
    "30_collect_runs",
    "25_topology_during_training",
    "40_ramanujan_vs_density",
    "50_predict_accuracy_drop",
    "55_rank_pruners",
    "60_mge_figures",
)


def resolve_run_dir(
    run_dir: str, profile: str, model: str, dataset: str, pruner: str, sparsity: float, seed: int
) -> Path:
    """``run_dir`` if given, else the run's hive folder under ``runs_dir()/<profile>``; a model
    or pruner given by a spec is named by its label (:func:`mgelib.specs.label`)."""
    if run_dir:
        return Path(run_dir).expanduser().resolve()
    spec = io.RunSpec(run_label(model), dataset, run_label(pruner), sparsity, seed)
    return spec.dir(io.grid_root(profile))


def run_label(name: str) -> str:
    """The run-folder label of a model or pruner name or spec (``+shuffle`` kept).

    Examples
    --------
    >>> run_label("mypruners:magnitude+shuffle"), run_label("snip")
    ('mypruners.magnitude+shuffle', 'snip')
    """
    from mgelib import specs

    base, transforms = specs.split_transforms(name)
    return specs.label(base) + "".join(f"+{t}" for t in transforms)


def run_model_spec(run_dir: str | os.PathLike, model: str) -> str:
    """The model a run folder was made with: ``model`` itself if it is a built-in name or a
    spec, else (a label, e.g. read from the folder name) the spec its ``params.json`` records."""
    from mgelib import specs
    from mgelib.models import MODELS

    if model in MODELS or specs.is_spec(model):
        return model
    recorded = io.read_json(Path(run_dir) / "params.json", default={}) or {}
    for stage_params in recorded.values():
        value = stage_params.get("model") if isinstance(stage_params, dict) else None
        if isinstance(value, str) and value and run_label(value) == model:
            return value
    for stage_params in recorded.values():  # a label that is not the folder's: any spec given
        value = stage_params.get("model") if isinstance(stage_params, dict) else None
        if specs.is_spec(value):
            return value
    return model


def make_masks(
    pruner: str,
    model: nn.Module,
    sparsity: float,
    *,
    data: Any = None,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
) -> dict[str, torch.Tensor]:
    """Masks from a pruner name; ``"dense"`` (sparsity 0) keeps every weight; a DST method
    (:data:`mgelib.vocabulary.DST_METHODS`) gives its random initial mask."""
    from mgelib.masks import check_sparsity, dense_masks
    from mgelib.pruning import prune
    from mgelib.vocabulary import DST_METHODS

    sparsity = check_sparsity(sparsity)
    if pruner == "dense":
        if sparsity != 0.0:
            raise ValueError(
                f"pruner 'dense' is the unpruned baseline: sparsity must be 0, got {sparsity}"
            )
        return dense_masks(model)
    if pruner in DST_METHODS:
        from mgelib.dst import initial_masks

        return initial_masks(pruner, model, sparsity, seed=seed)
    return prune(pruner, model, sparsity, data=data, seed=seed, input_shape=input_shape)


def dst_hook(
    pruner: str,
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    dataset: str,
    seed: int = 0,
    update_every: int = -1,
) -> Any:
    """The training hook of a DST run (a :class:`mgelib.dst.MaskUpdater` with the cheap MGE
    probe), or None for any other pruner. ``update_every`` < 0 keeps the method's default (on
    digits: once per epoch, :func:`mgelib.dst.dst_config`)."""
    from mgelib.vocabulary import DST_METHODS

    if pruner not in DST_METHODS:
        return None
    from mgelib import dst

    overrides: dict[str, Any] = {"seed": seed}
    if update_every >= 0:
        overrides["update_every"] = int(update_every)
    cfg = dst.dst_config(pruner, dataset=dataset, **overrides)
    return dst.MaskUpdater(cfg, probe=dst.topology_probe(model, input_shape, seed=seed))


def record_dst(
    run_dir: str | os.PathLike,
    hook: Any,
    model: nn.Module,
    input_shape: tuple[int, ...],
    masks: dict[str, torch.Tensor],
    *,
    epochs: int,
    seed: int = 0,
) -> pd.DataFrame:
    """Write a DST run's ``final_masks.npz`` and ``topology_trajectory.parquet`` (full
    topometrics of the initial and the final mask, the cheap ones at every update); return the
    trajectory."""
    from mgelib import dst

    run_dir = Path(run_dir)
    final = hook.masks()
    table = dst.trajectory(
        hook.records,
        initial=dst.full_topometrics(model, input_shape, masks, seed=seed),
        final=dst.full_topometrics(model, input_shape, final, seed=seed),
        masks_init=masks,
        masks_final=final,
        total_steps=hook.total_steps,
        epochs=epochs,
    )
    io.save_masks(final, run_dir / "final_masks.npz")
    io.write_table(table, run_dir / "topology_trajectory.parquet")
    return table


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


def load_run_model(
    run_dir: str | os.PathLike, model: str, weights: str = "init", mask_state: str = "init"
) -> nn.Module:
    """Rebuild a run's network with its masks and its initial (``"init"``) or trained
    (``"trained"``) weights, in eval mode.

    ``model`` is a built-in name, a spec, or a run folder's label (the spec is then read from
    the run's ``params.json``). A network imported by ``15_import_networks`` has only its
    checkpoint's weights (``model.pt``): ``"init"`` then reads those, with a warning.
    ``mask_state="final"`` uses the mask a DST run ended with (``final_masks.npz``); runs whose
    mask never moved (PaI, dense, imported) have only one, and both states give it.
    """
    import warnings

    from mgelib.errors import MissingRunFileError
    from mgelib.masks import apply_masks
    from mgelib.models import build

    run_dir = Path(run_dir)
    name = {"init": "init.pt", "trained": "model.pt"}.get(weights)
    if name is None:
        raise ValueError(f"weights must be 'init' or 'trained', got {weights!r}")
    if mask_state not in ("init", "final"):
        raise ValueError(f"mask_state must be 'init' or 'final', got {mask_state!r}")
    if not run_dir.is_dir():
        raise FileNotFoundError(
            f"run folder {run_dir} does not exist; pass the run_dir of a run trained by "
            "10_prune_and_train (or leave run_dir empty to use the profile's grid)"
        )
    # init.pt may be absent from an imported network (model.pt is read instead, below).
    weights_file = name if name == "model.pt" or not (run_dir / "model.pt").is_file() else None
    for product in ("result.parquet", "masks.npz", weights_file):
        if product is not None and not (run_dir / product).is_file():
            raise MissingRunFileError(
                f"run folder {run_dir} has no {product}: 10_prune_and_train has not finished "
                "there (or was killed); run it for this run first"
            )
    res = io.read_table(run_dir / "result.parquet").iloc[0]
    if name == "init.pt" and not (run_dir / name).exists() and (run_dir / "model.pt").exists():
        recorded = io.read_json(run_dir / "params.json", default={}) or {}
        if "15_import_networks" in recorded:
            warnings.warn(
                f"{run_dir} is an imported network without initial weights: its edge weights "
                "are the checkpoint's (model.pt)",
                stacklevel=2,
            )
            name = "model.pt"
    net = build(
        run_model_spec(run_dir, model),
        in_channels=int(res["in_channels"]),
        num_classes=int(res["num_classes"]),
        input_size=int(res["input_size"]),
    )
    net.load_state_dict(io.load_torch(run_dir / name))
    final = run_dir / "final_masks.npz"
    masks_file = final if mask_state == "final" and final.exists() else run_dir / "masks.npz"
    apply_masks(net, io.load_masks(masks_file))
    return net.eval()


def graph_tables(
    net: nn.Module,
    input_shape: tuple[int, ...],
    *,
    seed: int = 0,
    weights: str = "init",
    compat: str | None = None,
    engine: str = "fast",
    n_jobs: int = 1,
    max_edges: int | None = None,
    motif_budget: float | None = None,
) -> dict[str, Any]:
    """Everything ``20_graph_metrics`` computes for one network.

    Returns a dict with the MGE (``graph``), ``topometrics`` (one row: the 16 metrics normalised
    as the authors stored them, ``raw__<metric>``, ``nodes``, ``edges``, seconds), ``bge_layers``
    (per-layer BGE metrics, both encodings), ``ramanujan`` (per layer) and ``network`` (one row of
    per-network features named as :func:`mgelib.paperdata.joined` names them, so one analysis
    code serves our runs and the authors' tables).
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
    lock_timeout_s: float | None = 3600.0,
) -> dict[str, Path]:
    """Run a profile end to end: its grid (finished runs skipped), then the analysis notebooks.

    Returns the executed notebooks by stem. A killed call can simply be started again. Runs
    locked by another process (a second ``invoke reproduce`` on the same grid) are waited for, up
    to ``lock_timeout_s`` seconds (``None``: no limit) with a progress line every minute; the
    analysis notebooks run only on a complete grid, otherwise a
    :class:`~mgelib.errors.GridIncompleteError` names the runs still missing.
    """
    from mgelib.notebooks import load_profile, notebook_parameters, run_notebook
    from mgelib.runner import run_grid

    prof = load_profile(profile)
    report = run_grid(prof, executor=executor, workers=workers, force=force, progress=progress)
    print(report.summary())
    report.raise_for_failures()
    report = _complete_grid(prof, report, lock_timeout_s, executor, workers, progress)
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


def _complete_grid(prof, report, lock_timeout_s, executor, workers, progress):  # noqa: ANN001, ANN202
    """Wait for the runs another process holds, run those it left unfinished, and refuse to go on
    (``GridIncompleteError``) while any run of the grid is missing: an analysis of an incomplete
    grid would silently drop networks."""
    from mgelib.errors import GridIncompleteError
    from mgelib.runner import run_grid
    from mgelib.runner.grid import expand_grid, pending_runs
    from mgelib.runner.run import lock_owner, wait_for_locked

    specs = expand_grid(prof["grid"])
    for attempt in range(2):
        missing = pending_runs(specs, report.root)
        if not missing:
            return report
        still_locked = wait_for_locked(missing, report.root, timeout_s=lock_timeout_s)
        if still_locked or attempt == 1:
            break
        # The other process released them: run whatever it left unfinished (killed, failed).
        report = run_grid(prof, executor=executor, workers=workers, progress=progress)
        print(report.summary())
        report.raise_for_failures()
    missing = pending_runs(specs, report.root)
    lines = []
    for spec in missing[:10]:
        owner = lock_owner(spec.dir(report.root))
        lines.append(f"  {spec}: " + (f"locked by {owner}" if owner else "not finished"))
    raise GridIncompleteError(
        f"{len(missing)} of {len(specs)} runs of profile {prof['name']!r} are not finished "
        f"under {report.root}, so the analysis notebooks were not run:\n"
        + "\n".join(lines)
        + ("\n  …" if len(missing) > 10 else "")
        + "\nAnother `invoke reproduce` (or a SLURM job) may still be running them: rerun when "
        "it has finished, or raise lock_timeout_s to wait longer."
    )
