"""Masked training at the paper's protocol, with exact resume (method §3).

:func:`train` runs SGD + MultiStepLR with cross-entropy on a :class:`mgelib.data.Dataset`, keeping
the pruned weights exactly zero throughout: gradients are masked before every step (so momentum
and weight decay never move a pruned weight) *and* weights are multiplied by their masks after
every step. Conv/linear biases are frozen. All randomness (shuffling, augmentation) comes from one
CPU :class:`torch.Generator` seeded from :attr:`TrainConfig.seed`.

With ``run_dir``, a checkpoint (model, optimiser, scheduler, generator state, history) is written
atomically after every epoch, and a later call with the same arguments resumes from it; a run
killed and resumed ends with the same weights, bit for bit on the CPU, as an uninterrupted one.
The per-epoch table is also written there as ``history.parquet``.

:func:`paper_config` (in :mod:`mgelib.protocol`, re-exported here) gives the paper's protocol
(method §3).

Examples
--------
>>> from mgelib import data, models, train as tr
>>> ds = data.load("digits")
>>> net = models.build("resnet20", in_channels=1, input_size=8, seed=0)
>>> cfg = tr.paper_config("resnet20", "digits", epochs=1, progress=False)
>>> cfg.milestones
(1,)
>>> result = tr.train(net, None, ds, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mgelib import io
from mgelib import masks as masks_mod
from mgelib.data import Dataset, DeviceLoader
from mgelib.progress import quiet
from mgelib.protocol import TrainConfig, TrainResult, paper_config, resolve_device, scale_milestones

__all__ = [
    "TrainConfig",
    "TrainResult",
    "paper_config",
    "scale_milestones",
    "resolve_device",
    "train",
    "evaluate",
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
]

#: File names inside ``run_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.parquet"

_CHECKPOINT_FORMAT = 1
# Config fields that may differ between a checkpoint and the resuming call: they do not change
# the optimisation (where it runs, what is shown, how often the test set is scored).
_RESUMABLE_DIFFS = frozenset({"device", "progress", "eval_every"})
_HISTORY_COLUMNS = ["epoch", "loss", "train_acc", "test_acc", "lr", "seconds"]


def _bool_masks(
    model: nn.Module, masks: Mapping[str, torch.Tensor] | None
) -> dict[str, torch.Tensor]:
    if masks is None:
        return masks_mod.dense_masks(model)
    masks_mod.check_masks(model, masks)
    out = {}
    for key, m in masks.items():
        m = torch.as_tensor(m)
        if m.dtype != torch.bool:
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"mask {key!r} must be boolean (True = kept) or hold only 0 and 1")
            m = m.to(torch.bool)
        out[key] = m
    return out


def _mask_digest(masks: Mapping[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(masks):
        h.update(key.encode())
        h.update(np.packbits(masks[key].detach().cpu().numpy().reshape(-1)).tobytes())
    return h.hexdigest()


def evaluate(
    model: nn.Module,
    data: Dataset,
    device: str | torch.device = "cpu",
    *,
    batch_size: int = 512,
    amp: str = "none",
    channels_last: bool = False,
) -> float:
    """Top-1 accuracy (a fraction) of ``model`` on the test split, in eval mode, no augmentation.

    The model is left in eval mode on ``device``.

    Examples
    --------
    >>> from mgelib import data, models
    >>> ds = data.load("digits")
    >>> 0.0 <= evaluate(models.build("resnet20", 1, 10, 8, seed=0), ds) <= 1.0
    True
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    loader = DeviceLoader(data, "test", batch_size, dev, train=False, channels_last=channels_last)
    correct = torch.zeros((), dtype=torch.int64, device=dev)
    use_amp = amp == "bf16" and dev.type == "cuda"
    with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum()
    return int(correct) / max(1, len(data.y_test))


def train(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None,
    data: Dataset,
    config: TrainConfig,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` with its pruned weights held at exactly zero (method §3).

    Parameters
    ----------
    model
        An initialised model (e.g. from :func:`mgelib.models.build`); trained in place and moved
        to the device.
    masks
        Mask set keyed by parameter name (``True`` = kept), as checked by
        :func:`mgelib.masks.check_masks`; ``None`` for the dense baseline.
    data
        The dataset (:func:`mgelib.data.load`).
    config
        Hyper-parameters, e.g. from :func:`paper_config`.
    run_dir
        If given: ``checkpoint.pt`` is written there atomically after every epoch and
        ``history.parquet`` with the per-epoch table; if a checkpoint exists, training resumes
        from it (a finished run returns at once). The checkpoint must come from the same
        config (up to ``device``/``progress``/``eval_every``), dataset and masks.
    progress
        Overrides ``config.progress``.
    callback
        Called as ``callback(epoch, row)`` after each epoch (after the checkpoint is written),
        with the 1-based epoch and that epoch's history row. An exception raised there stops
        training (used by the tests to simulate a killed run).

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Masks whose keys/shapes do not match the model, non-boolean masks, a mask set with
        every weight removed (sparsity 1), a model whose output does not match the number of
        classes, or a checkpoint written by a different run.

    Examples
    --------
    >>> from mgelib import data, models
    >>> ds = data.load("digits")
    >>> net = models.build("resnet20", in_channels=1, input_size=8, seed=0)
    >>> res = train(net, None, ds, TrainConfig(epochs=1, milestones=(), progress=False))
    >>> list(res.history.columns)
    ['epoch', 'loss', 'train_acc', 'test_acc', 'lr', 'seconds']
    """
    device = resolve_device(config.device)
    bool_masks = _bool_masks(model, masks)
    sparsity = masks_mod.global_sparsity(bool_masks)
    try:
        masks_mod.check_sparsity(sparsity)
    except ValueError:
        raise ValueError(
            f"the masks remove every prunable weight (sparsity {sparsity!r}); a network with no "
            "weights cannot be trained"
        ) from None
    show = (config.progress if progress is None else progress) and not quiet()
    on_cuda = device.type == "cuda"
    if config.amp != "none" and not on_cuda:
        warnings.warn(
            f"amp={config.amp!r} is used on CUDA only; training in float32 on {device}",
            stacklevel=2,
        )
    if config.channels_last and not on_cuda:
        warnings.warn(f"channels_last is used on CUDA only; ignored on {device}", stacklevel=2)
    use_amp = config.amp == "bf16" and on_cuda
    channels_last = config.channels_last and on_cuda

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    masks_mod.apply_masks(model, bool_masks)
    params = masks_mod.prunable_parameters(model)
    masked = [(params[k], bool_masks[k].to(device=device, dtype=params[k].dtype)) for k in params]
    # Biases of conv/linear layers are never trained (method §1).
    for module in masks_mod.prunable_modules(model).values():
        if getattr(module, "bias", None) is not None:
            module.bias.requires_grad_(False)

    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(config.milestones), gamma=config.gamma
    )
    generator = torch.Generator().manual_seed(config.seed)

    ckpt_path = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None
    digest = _mask_digest(bool_masks)
    rows: list[dict[str, float]] = []
    start_epoch, elapsed = 0, 0.0
    if ckpt_path is not None and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        _check_checkpoint(state, config, data, digest, ckpt_path)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        rows = list(state["history"])
        start_epoch, elapsed = int(state["epoch"]), float(state["wall_time_s"])
        with torch.no_grad():
            for p, m in masked:
                p.mul_(m)

    train_loader = DeviceLoader(
        data,
        "train",
        config.batch_size,
        device,
        train=True,
        generator=generator,
        channels_last=channels_last,
    )
    epochs_bar = tqdm(
        range(start_epoch, config.epochs),
        desc="epochs",
        initial=start_epoch,
        total=config.epochs,
        disable=not show,
    )
    checked_output = False
    for epoch in epochs_bar:
        t0 = time.perf_counter()
        model.train()
        lr = float(optimizer.param_groups[0]["lr"])
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        correct = torch.zeros((), dtype=torch.int64, device=device)
        seen = 0
        for x, y in tqdm(train_loader, desc=f"epoch {epoch + 1}", leave=False, disable=not show):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                out = model(x)
            if not checked_output:
                if out.ndim != 2 or out.shape[1] != data.num_classes:
                    raise ValueError(
                        f"the model outputs shape {tuple(out.shape)} but {data.name!r} has "
                        f"{data.num_classes} classes; build it with num_classes={data.num_classes}"
                    )
                checked_output = True
            loss = F.cross_entropy(out.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                # Masked gradients keep momentum and weight decay off the pruned weights ...
                for p, m in masked:
                    if p.grad is not None:
                        p.grad.mul_(m)
                optimizer.step()
                # ... and masking the weights after the step keeps them exactly zero (method §3).
                for p, m in masked:
                    p.mul_(m)
                loss_sum += loss.detach().double() * len(y)
                correct += (out.argmax(1) == y).sum()
            seen += len(y)
        scheduler.step()
        last = epoch + 1 == config.epochs
        test_acc = float("nan")
        if last or (epoch + 1) % config.eval_every == 0:
            test_acc = evaluate(
                model,
                data,
                device,
                batch_size=max(config.batch_size, 256),
                amp=config.amp,
                channels_last=channels_last,
            )
        seconds = time.perf_counter() - t0
        elapsed += seconds
        row = {
            "epoch": epoch + 1,
            "loss": float(loss_sum) / max(1, seen),
            "train_acc": int(correct) / max(1, seen),
            "test_acc": test_acc,
            "lr": lr,
            "seconds": seconds,
        }
        rows.append(row)
        epochs_bar.set_postfix(loss=f"{row['loss']:.3f}", test_acc=f"{test_acc:.3f}")
        if ckpt_path is not None:
            state = {
                "format": _CHECKPOINT_FORMAT,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "generator": generator.get_state(),
                "history": rows,
                "wall_time_s": elapsed,
                "config": dataclasses.asdict(config),
                "dataset": data.name,
                "mask_digest": digest,
            }
            with io.atomic_path(ckpt_path) as tmp:
                torch.save(state, tmp)
            with io.atomic_path(ckpt_path.with_name(HISTORY_NAME)) as tmp:
                pd.DataFrame(rows, columns=_HISTORY_COLUMNS).to_parquet(tmp, index=False)
        if callback is not None:
            callback(epoch + 1, row)
    epochs_bar.close()

    history = pd.DataFrame(rows, columns=_HISTORY_COLUMNS)
    scored = history["test_acc"].dropna()
    return TrainResult(
        final_acc=float(history["test_acc"].iloc[-1]) if len(history) else float("nan"),
        best_acc=float(scored.max()) if len(scored) else float("nan"),
        history=history,
        wall_time_s=elapsed,
        device=str(device),
        epochs_run=len(history),
        resumed_from=start_epoch,
        sparsity=sparsity,
    )


def _check_checkpoint(
    state: Mapping[str, Any], config: TrainConfig, data: Dataset, digest: str, path: Path
) -> None:
    fix = f"delete {path} to start afresh, or use another run_dir"
    if state.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by mgelib.train; {fix}")
    saved = state["config"]
    now = dataclasses.asdict(config)
    diffs = sorted(
        k for k in now if k not in _RESUMABLE_DIFFS and _normal(saved.get(k)) != _normal(now[k])
    )
    if diffs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in diffs)
        raise ValueError(f"{path} was written with a different config ({detail}); {fix}")
    if state["dataset"] != data.name:
        raise ValueError(f"{path} was trained on {state['dataset']!r}, not {data.name!r}; {fix}")
    if state["mask_digest"] != digest:
        raise ValueError(f"{path} was trained with different masks; {fix}")


def _normal(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
