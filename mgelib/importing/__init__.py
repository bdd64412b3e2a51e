"""Networks trained elsewhere — the user's own method, a DST run, the authors' checkpoints —
imported as standard run folders, so that ``30_collect_runs`` … ``60_mge_figures`` read them
unchanged (what ``15_import_networks`` runs).

One checkpoint → one run folder with the products of ``10_prune_and_train`` (``masks.npz``,
``model.pt``, ``layers.parquet``, an empty ``history.parquet``, ``result.parquet`` with the
accuracy) and of ``20_graph_metrics`` (computed by :func:`mgelib.pipeline.graph_tables` on the
checkpoint's masked weights), plus ``params.json``/``provenance.json`` under the stage
``15_import_networks`` (the checkpoint's path and sha256, the model spec and its source hash).
There are no initial weights: :func:`mgelib.pipeline.load_run_model` reads ``model.pt`` for
both ``"init"`` and ``"trained"`` (with a warning for ``"init"``).

**A checkpoint** is a file :func:`torch.load` reads with ``weights_only=True`` holding a state
dict — directly, or under ``state_dict`` / ``model_state_dict`` / ``model`` / ``net`` /
``state``; a ``module.`` prefix (``DataParallel``) is dropped. Our models carry the authors'
parameter names (SPEC §2), so their published state dicts load as they are.

**The mask** (``mask_source``): ``zeros`` — a weight is pruned iff it is exactly 0;
``weight_mask`` — ``<layer>.weight_mask`` entries beside ``<layer>.weight`` (what
:func:`mgelib.masks.apply_masks` registers); ``torch_prune`` — ``<layer>.weight_orig`` and
``<layer>.weight_mask`` of :mod:`torch.nn.utils.prune` (the weight is their product); a path
ending in ``.npz`` — a masks file (:func:`mgelib.io.save_masks` format), where ``{stem}`` is
replaced by the checkpoint's file stem and a relative path is read beside the checkpoint;
``auto`` (default) — ``torch_prune`` if ``weight_orig`` entries exist, else ``weight_mask`` if
those exist, else ``zeros``.

**The run key** of each checkpoint (decided here, documented in ``docs/bring_your_own.md``):
columns ``pruner``, ``sparsity``, ``seed``, ``dataset`` of ``accuracy_csv`` where present;
otherwise ``pruner`` = ``dense`` for a network without pruned weights, else the file stem
(made filesystem-safe); ``sparsity`` = the shortest decimal whose exact kept count
``round((1 - s) · N)`` is the mask's (0.9 for a network pruned to 0.9, not 0.90021; a CSV
sparsity must agree with the realised one to 1e-3, or the checkpoint is refused: the
recorded sparsity is always the one the network has; ``result.parquet`` also holds the
realised value); ``seed`` = the ``seed``
argument; ``dataset`` = the ``dataset`` argument, else ``imported``. ``model`` is the model's
label (:func:`mgelib.pipeline.run_label`). Two checkpoints with the same key: the second is
refused.

**Refusals** are per checkpoint, each naming the file and the reason (not a state dict, missing
or unexpected keys, wrong shapes, NaN/inf values, a mask that does not match, no accuracy for
it); the others are imported.

Examples
--------
>>> from mgelib.importing import MASK_SOURCES, parse_input_shape
>>> MASK_SOURCES
('auto', 'zeros', 'weight_mask', 'torch_prune')
>>> parse_input_shape("1,8,8")
(1, 8, 8)
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from mgelib import io
from mgelib.importing.checkpoints import (
    MASK_SOURCES,
    checkpoint_network,
    parse_input_shape,
    read_checkpoint,
)

__all__ = [
    "MASK_SOURCES",
    "read_checkpoint",
    "checkpoint_network",
    "parse_input_shape",
    "import_checkpoints",
]

_SAFE = re.compile(r"[^A-Za-z0-9._+-]")
STAGE = "15_import_networks"


def _csv_rows(accuracy_csv: str) -> pd.DataFrame:
    table = pd.read_csv(accuracy_csv)
    lacking = [c for c in ("checkpoint", "accuracy") if c not in table.columns]
    if lacking:
        raise ValueError(
            f"{accuracy_csv} lacks column(s) {lacking}; it needs checkpoint, accuracy (and may "
            "give pruner, sparsity, seed, dataset)"
        )
    return table


def _csv_row(table: pd.DataFrame | None, ckpt: Path) -> dict[str, Any] | None:
    if table is None:
        return None
    names = table["checkpoint"].astype(str)
    hit = table[
        (names == ckpt.name)
        | (names == ckpt.stem)
        | (names.map(lambda s: str(Path(s).expanduser().resolve())) == str(ckpt.resolve()))
    ]
    if len(hit) == 0:
        raise ValueError(f"{ckpt}: no row for it in accuracy_csv (column 'checkpoint')")
    if len(hit) > 1:
        raise ValueError(f"{ckpt}: {len(hit)} rows for it in accuracy_csv")
    return {k: v for k, v in hit.iloc[0].to_dict().items() if not pd.isna(v)}


def _nominal_sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """The shortest decimal sparsity whose exact kept count (``round((1 - s) · N)``, the
    pruners' definition) is the mask's: 0.9 for a 0.9-pruned network rather than 0.90021."""
    from mgelib.pruning import kept_count

    total = sum(int(m.numel()) for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    realised = 1.0 - kept / total
    for digits in range(1, 7):
        s = round(realised, digits)
        if 0.0 <= s < 1.0 and kept_count(s, total) == kept:
            return float(s)
    return round(realised, 6)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_checkpoints(
    checkpoints: str | Sequence[str | os.PathLike],
    model: str,
    input_shape: str | Sequence[int],
    *,
    root: str | os.PathLike,
    accuracy_csv: str = "",
    dataset: str = "",
    data_root: str = "",
    mask_source: str = "auto",
    num_classes: int = 0,
    seed: int = 0,
    force: bool = False,
    params: Mapping[str, Any] | None = None,
    graph: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Import every checkpoint of a glob (or list) as a run folder under ``root``.

    Parameters
    ----------
    checkpoints
        A glob (``"ckpts/*.pt"``, ``**`` allowed) or a list of files.
    model, input_shape, num_classes, mask_source
        See :func:`checkpoint_network`.
    root
        The grid root the run folders go under (``runs_dir()/<profile>``).
    accuracy_csv, dataset, data_root
        Accuracies from a CSV (``checkpoint, accuracy`` [, ``pruner, sparsity, seed,
        dataset``]), else evaluated on ``dataset``'s test split (read from ``data_root``; the
        split of the run's seed).
    seed
        The run key's seed where the CSV gives none; also seeds the graph metrics.
    force
        Reimport checkpoints whose run folder is complete (else they are skipped).
    params
        Recorded in each run's ``params.json`` (the notebook's parameters).
    graph
        Keyword arguments of :func:`mgelib.pipeline.graph_tables` (``engine``, ``n_jobs``,
        ``motif_budget``, ``max_edges``, ``compat``).

    Returns
    -------
    pandas.DataFrame
        One row per checkpoint: ``checkpoint``, ``status`` (``imported``, ``skipped``,
        ``refused``), ``reason``, ``run_dir`` and the run key and accuracy.
    """
    from mgelib import pipeline

    files = (
        sorted(glob.glob(os.path.expanduser(checkpoints), recursive=True))
        if isinstance(checkpoints, str)
        else [str(f) for f in checkpoints]
    )
    if not files:
        raise ValueError(f"no checkpoint matches {checkpoints!r}")
    if not accuracy_csv and not dataset:
        raise ValueError(
            "give accuracy_csv (columns checkpoint, accuracy) or dataset (to evaluate each "
            "network on its test split)"
        )
    shape = parse_input_shape(input_shape)
    table = _csv_rows(accuracy_csv) if accuracy_csv else None
    label = pipeline.run_label(model)
    rows: list[dict[str, Any]] = []
    taken: dict[io.RunSpec, str] = {}
    for file in files:
        ckpt = Path(file).resolve()
        row: dict[str, Any] = {"checkpoint": str(ckpt), "status": "refused", "reason": ""}
        try:
            row.update(
                _import_one(
                    ckpt, model, label, shape, table, root, taken,
                    dataset=dataset, data_root=data_root, mask_source=mask_source,
                    num_classes=num_classes, seed=seed, force=force,
                    params=params or {}, graph=graph or {},
                )
            )  # fmt: skip
        except ValueError as exc:
            row["reason"] = str(exc)
        rows.append(row)
    return pd.DataFrame(rows)


def _import_one(
    ckpt: Path,
    model: str,
    label: str,
    shape: tuple[int, ...],
    table: pd.DataFrame | None,
    root: str | os.PathLike,
    taken: dict[io.RunSpec, str],
    *,
    dataset: str,
    data_root: str,
    mask_source: str,
    num_classes: int,
    seed: int,
    force: bool,
    params: Mapping[str, Any],
    graph: Mapping[str, Any],
) -> dict[str, Any]:
    from mgelib import pipeline
    from mgelib.masks import global_sparsity
    from mgelib.pruning import layer_report

    meta = _csv_row(table, ckpt) or {}
    net, masks = checkpoint_network(
        ckpt, model, shape, num_classes=num_classes, mask_source=mask_source
    )
    realised = global_sparsity(masks)
    sparsity = float(meta.get("sparsity", _nominal_sparsity(masks)))
    if abs(sparsity - realised) > 1e-3:
        raise ValueError(
            f"{ckpt}: accuracy_csv gives sparsity {sparsity:g} but its mask has "
            f"{realised:.6f}; fix the CSV (or the mask_source)"
        )
    pruner = str(meta.get("pruner", "dense" if realised == 0 else _SAFE.sub("_", ckpt.stem)))
    run_seed = int(meta.get("seed", seed))
    ds_name = str(meta.get("dataset", dataset or "imported"))
    spec = io.RunSpec(label, ds_name, pruner, sparsity, run_seed)
    if spec in taken:
        raise ValueError(f"{ckpt}: same run key {spec} as {taken[spec]}; give it its own CSV row")
    taken[spec] = str(ckpt)
    run_dir = spec.dir(root)
    key = {**spec.as_dict(), "run_dir": str(run_dir)}
    if not force and io.run_done(run_dir):
        return {**key, "status": "skipped", "reason": "run folder complete (force=True redoes)"}
    if "accuracy" in meta:
        accuracy = float(meta["accuracy"])
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"{ckpt}: accuracy {accuracy} is not a fraction in [0, 1]")
    else:
        from mgelib import data
        from mgelib.train import evaluate

        ds = data.load(dataset, data_root or None, seed=run_seed)
        if (ds.in_channels, ds.input_size, ds.input_size) != tuple(shape):
            raise ValueError(
                f"{ckpt}: dataset {dataset!r} has inputs {ds.in_channels}×{ds.input_size}×"
                f"{ds.input_size}, input_shape says {shape}"
            )
        accuracy = float(evaluate(net, ds, "cpu"))
        net.eval()
    report = layer_report(net, masks, input_shape=shape)
    # Everything is computed before anything is written: a refused network leaves no folder.
    tables = pipeline.graph_tables(net, shape, seed=run_seed, weights="trained", **graph)
    kept, total = int(report["kept"].sum()), int(report["weights"].sum())
    out_classes = int(np.prod(net(torch.zeros(1, *shape)).shape[1:]))
    result = pd.DataFrame(
        [
            {
                "accuracy": accuracy,
                "best_accuracy": accuracy,
                "epochs": 0,
                "wall_time_s": float("nan"),
                "device": "imported",
                "kept_weights": kept,
                "weights": total,
                "sparsity_realised": 1.0 - kept / total,
                "collapsed_layers": int(report["collapsed"].sum()),
                "path_connected": bool(report.attrs.get("path_connected", True)),
                "in_channels": int(shape[0]),
                "input_size": int(shape[1]),
                "num_classes": out_classes,
                "checkpoint": str(ckpt),
            }
        ]
    )
    io.save_masks(masks, run_dir / "masks.npz")
    io.save_torch(net.state_dict(), run_dir / "model.pt")
    io.write_table(report.assign(shape=report["shape"].astype(str)), run_dir / "layers.parquet")
    io.write_table(
        pd.DataFrame(columns=["epoch", "loss", "train_acc", "test_acc", "lr", "seconds"]),
        run_dir / "history.parquet",
    )
    recorded = {
        **params,
        "model": model,
        "pruner": pruner,
        "checkpoint": str(ckpt),
        "checkpoint_sha256": _sha256(ckpt),
        "mask_source": mask_source,
        "accuracy_from": "accuracy_csv" if "accuracy" in meta else f"test split of {dataset}",
    }
    io.record_stage(run_dir, STAGE, recorded)
    io.write_table(result, run_dir / "result.parquet")
    network = tables["network"].assign(accuracy=accuracy, density=1.0 - sparsity)
    io.write_table(tables["topometrics"], run_dir / "topometrics.parquet")
    io.write_table(tables["bge_layers"], run_dir / "bge_layers.parquet")
    io.write_table(tables["ramanujan"], run_dir / "ramanujan.parquet")
    io.write_table(network, run_dir / "metrics.parquet")  # last: marks the metrics complete
    return {**key, "status": "imported", "accuracy": accuracy}
