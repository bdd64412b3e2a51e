"""Masked training at the paper's protocol, with exact resume (SPEC §3).

:func:`train` runs SGD + MultiStepLR with cross-entropy on a :class:`mgelib.data.Dataset`, keeping
the pruned weights exactly zero throughout: gradients are masked before every step (so momentum
and weight decay never move a pruned weight) *and* weights are multiplied by their masks after
every step. Conv/linear biases are frozen. All randomness (shuffling, augmentation) comes from one
CPU :class:`torch.Generator` seeded from :attr:`TrainConfig.seed`.

With ``run_dir``, a checkpoint (model, optimiser, scheduler, generator state, history) is written
atomically after every epoch, and a later call with the same arguments resumes from it; a run
killed and resumed ends with the same weights, bit for bit on the CPU, as an uninterrupted one.
The per-epoch table is also written there as ``history.parquet``; both go through
:mod:`mgelib.io` (atomic writes).

A ``hook`` (:class:`StepHook`) runs inside the step loop: it sees the dense gradients before they
are masked and may move the masks after the step — this is how the dynamic sparse training
methods of :mod:`mgelib.dst` train — and its state is part of the checkpoint, so a resumed DST
run is bit-identical too.

The body of :func:`train` is a short driver over ``_setup`` (device, masks, optimiser),
``_resume`` / ``_save_checkpoint`` (the checkpoint format), ``_run_epoch`` (one epoch of masked
SGD and its history row) and ``_result``.

:func:`paper_config` (in :mod:`mgelib.protocol`, re-exported here) gives the paper's protocol
(SPEC §3).

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
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mgelib import io
from mgelib import masks as masks_mod
from mgelib.data import Dataset, DeviceLoader
from mgelib.progress import quiet
from mgelib.protocol import (
    CHECKPOINT_FORMAT,
    StepHook,
    TrainConfig,
    TrainResult,
    check_checkpoint,
    hook_config,
    mask_digest,
    paper_config,
    resolve_device,
    scale_milestones,
)

__all__ = [
    "TrainConfig",
    "TrainResult",
    "paper_config",
    "scale_milestones",
    "resolve_device",
    "train",
    "evaluate",
    "StepHook",
    "CHECKPOINT_NAME",
    "HISTORY_NAME",
]

#: File names inside ``run_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
HISTORY_NAME = "history.parquet"

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


@dataclasses.dataclass
class _Session:
    """Everything one call of :func:`train` holds while it runs."""

    model: nn.Module
    device: torch.device
    masks: dict[str, torch.Tensor]  # float masks on the device, by parameter name
    masked: list[tuple[torch.Tensor, torch.Tensor]]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator
    use_amp: bool
    channels_last: bool
    show: bool
    rows: list[dict[str, float]] = dataclasses.field(default_factory=list)
    epoch: int = 0
    step: int = 0
    elapsed: float = 0.0
    checked_output: bool = False


def train(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None,
    data: Dataset,
    config: TrainConfig,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    hook: StepHook | None = None,
) -> TrainResult:
    """Train ``model`` with its pruned weights held at exactly zero (SPEC §3).

    Parameters
    ----------
    model
        An initialised model (e.g. from :func:`mgelib.models.build`); trained in place and moved
        to the device.
    masks
        Mask set keyed by parameter name (``True`` = kept), as checked by
        :func:`mgelib.masks.check_masks`; ``None`` for the dense baseline. With a DST ``hook``,
        the initial masks.
    data
        The dataset (:func:`mgelib.data.load`).
    config
        Hyper-parameters, e.g. from :func:`paper_config`.
    run_dir
        If given: ``checkpoint.pt`` is written there atomically after every epoch and
        ``history.parquet`` with the per-epoch table; if a checkpoint exists, training resumes
        from it (a finished run returns at once). The checkpoint must come from the same
        config (up to ``device``/``progress``/``eval_every``), dataset, masks and hook config.
    progress
        Overrides ``config.progress``.
    callback
        Called as ``callback(epoch, row)`` after each epoch (after the checkpoint is written),
        with the 1-based epoch and that epoch's history row. An exception raised there stops
        training (used by the tests to simulate a killed run).
    hook
        A per-step hook (:class:`StepHook`), e.g. a DST method (:class:`mgelib.dst.MaskUpdater`)
        that moves the masks while the network trains; its state is checkpointed with the rest.

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
    bool_masks = _bool_masks(model, masks)
    sparsity = _check_trainable(bool_masks)
    sess = _setup(model, bool_masks, config, progress)
    loader = DeviceLoader(
        data,
        "train",
        config.batch_size,
        sess.device,
        train=True,
        generator=sess.generator,
        channels_last=sess.channels_last,
    )
    if hook is not None:
        hook.attach(model, sess.optimizer, sess.masks, config.epochs * len(loader), len(loader))
    ckpt_path = Path(run_dir) / CHECKPOINT_NAME if run_dir is not None else None
    digest = mask_digest(bool_masks)
    if ckpt_path is not None and ckpt_path.is_file():
        _resume(sess, ckpt_path, config, data, digest, hook)
    start_epoch = sess.epoch
    epochs_bar = tqdm(
        range(start_epoch, config.epochs),
        desc="epochs",
        initial=start_epoch,
        total=config.epochs,
        disable=not sess.show,
    )
    for epoch in epochs_bar:
        row = _run_epoch(sess, loader, data, config, hook, epoch)
        epochs_bar.set_postfix(loss=f"{row['loss']:.3f}", test_acc=f"{row['test_acc']:.3f}")
        if ckpt_path is not None:
            _save_checkpoint(sess, ckpt_path, config, data, digest, hook)
        if callback is not None:
            callback(epoch + 1, row)
    epochs_bar.close()
    return _result(sess, start_epoch, sparsity)


def _check_trainable(bool_masks: Mapping[str, torch.Tensor]) -> float:
    sparsity = masks_mod.global_sparsity(bool_masks)
    try:
        masks_mod.check_sparsity(sparsity)
    except ValueError:
        raise ValueError(
            f"the masks remove every prunable weight (sparsity {sparsity!r}); a network with no "
            "weights cannot be trained"
        ) from None
    return sparsity


def _setup(
    model: nn.Module,
    bool_masks: Mapping[str, torch.Tensor],
    config: TrainConfig,
    progress: bool | None,
) -> _Session:
    """Device, masks, frozen biases, optimiser, scheduler and generator of a fresh session."""
    device = resolve_device(config.device)
    on_cuda = device.type == "cuda"
    if config.amp != "none" and not on_cuda:
        warnings.warn(
            f"amp={config.amp!r} is used on CUDA only; training in float32 on {device}",
            stacklevel=3,
        )
    if config.channels_last and not on_cuda:
        warnings.warn(f"channels_last is used on CUDA only; ignored on {device}", stacklevel=3)
    channels_last = config.channels_last and on_cuda
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    masks_mod.apply_masks(model, bool_masks)
    params = masks_mod.prunable_parameters(model)
    float_masks = {k: bool_masks[k].to(device=device, dtype=params[k].dtype) for k in params}
    # Biases of conv/linear layers are never trained (SPEC §1).
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
    return _Session(
        model=model,
        device=device,
        masks=float_masks,
        masked=[(params[k], float_masks[k]) for k in params],
        optimizer=optimizer,
        scheduler=scheduler,
        generator=torch.Generator().manual_seed(config.seed),
        use_amp=config.amp == "bf16" and on_cuda,
        channels_last=channels_last,
        show=(config.progress if progress is None else progress) and not quiet(),
    )


def _run_epoch(
    sess: _Session,
    loader: DeviceLoader,
    data: Dataset,
    config: TrainConfig,
    hook: StepHook | None,
    epoch: int,
) -> dict[str, float]:
    """Train one epoch (0-based ``epoch``), score it, append and return its history row."""
    t0 = time.perf_counter()
    model, optimizer, device = sess.model, sess.optimizer, sess.device
    model.train()
    lr = float(optimizer.param_groups[0]["lr"])
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not sess.show):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=sess.use_amp):
            out = model(x)
        if not sess.checked_output:
            _check_output(out, data)
            sess.checked_output = True
        loss = F.cross_entropy(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sess.step += 1
        if hook is not None:
            hook.before_step(sess.step)
        with torch.no_grad():
            # Masked gradients keep momentum and weight decay off the pruned weights ...
            for p, m in sess.masked:
                if p.grad is not None:
                    p.grad.mul_(m)
            optimizer.step()
            # ... and masking the weights after the step keeps them exactly zero (SPEC §3).
            for p, m in sess.masked:
                p.mul_(m)
            loss_sum += loss.detach().double() * len(y)
            correct += (out.argmax(1) == y).sum()
        seen += len(y)
        if hook is not None:
            hook.after_step(sess.step)
    sess.scheduler.step()
    test_acc = float("nan")
    if epoch + 1 == config.epochs or (epoch + 1) % config.eval_every == 0:
        test_acc = evaluate(
            model,
            data,
            device,
            batch_size=max(config.batch_size, 256),
            amp=config.amp,
            channels_last=sess.channels_last,
        )
    seconds = time.perf_counter() - t0
    sess.elapsed += seconds
    sess.epoch = epoch + 1
    row = {
        "epoch": epoch + 1,
        "loss": float(loss_sum) / max(1, seen),
        "train_acc": int(correct) / max(1, seen),
        "test_acc": test_acc,
        "lr": lr,
        "seconds": seconds,
    }
    sess.rows.append(row)
    return row


def _check_output(out: torch.Tensor, data: Dataset) -> None:
    if out.ndim != 2 or out.shape[1] != data.num_classes:
        raise ValueError(
            f"the model outputs shape {tuple(out.shape)} but {data.name!r} has "
            f"{data.num_classes} classes; build it with num_classes={data.num_classes}"
        )


def _save_checkpoint(
    sess: _Session,
    path: Path,
    config: TrainConfig,
    data: Dataset,
    digest: str,
    hook: StepHook | None,
) -> None:
    """The checkpoint (atomically, through :mod:`mgelib.io`) and ``history.parquet``."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "epoch": sess.epoch,
        "step": sess.step,
        "model": sess.model.state_dict(),
        "optimizer": sess.optimizer.state_dict(),
        "scheduler": sess.scheduler.state_dict(),
        "generator": sess.generator.get_state(),
        "history": sess.rows,
        "wall_time_s": sess.elapsed,
        "config": dataclasses.asdict(config),
        "dataset": data.name,
        "mask_digest": digest,
    }
    if hook is not None:
        state["hook"] = hook.state_dict()
        state["hook_config"] = hook_config(hook)
    io.save_torch(state, path)
    io.write_table(pd.DataFrame(sess.rows, columns=_HISTORY_COLUMNS), path.with_name(HISTORY_NAME))


def _resume(
    sess: _Session,
    path: Path,
    config: TrainConfig,
    data: Dataset,
    digest: str,
    hook: StepHook | None,
) -> None:
    """Load a checkpoint into the session (and the hook), after checking it belongs to it."""
    state = io.load_torch(path)
    check_checkpoint(state, config, data, digest, path, hook)
    sess.model.load_state_dict(state["model"])
    sess.optimizer.load_state_dict(state["optimizer"])
    sess.scheduler.load_state_dict(state["scheduler"])
    sess.generator.set_state(state["generator"])
    sess.rows = list(state["history"])
    sess.epoch, sess.elapsed = int(state["epoch"]), float(state["wall_time_s"])
    sess.step = int(state.get("step", 0))
    if hook is not None:
        hook.load_state_dict(state["hook"])
    with torch.no_grad():
        for p, m in sess.masked:
            p.mul_(m)


def _result(sess: _Session, start_epoch: int, sparsity: float) -> TrainResult:
    history = pd.DataFrame(sess.rows, columns=_HISTORY_COLUMNS)
    scored = history["test_acc"].dropna()
    return TrainResult(
        final_acc=float(history["test_acc"].iloc[-1]) if len(history) else float("nan"),
        best_acc=float(scored.max()) if len(scored) else float("nan"),
        history=history,
        wall_time_s=sess.elapsed,
        device=str(sess.device),
        epochs_run=len(history),
        resumed_from=start_epoch,
        sparsity=sparsity,
    )
