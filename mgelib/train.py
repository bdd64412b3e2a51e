"""Masked training at the paper's protocol, with exact resume (SPEC §3).

:func:`train` runs SGD + MultiStepLR with cross-entropy on a :class:`mgelib.data.Dataset`, keeping
the pruned weights exactly zero throughout: gradients are masked before every step (so momentum
and weight decay never move a pruned weight) *and* weights are multiplied by their masks after
every step. Conv/linear biases are frozen. All randomness (shuffling, augmentation) comes from one
CPU :class:`torch.Generator` seeded from :attr:`TrainConfig.seed`.

With ``run_dir``, a checkpoint (model, optimiser, scheduler, generator state, history) is written
atomically after every epoch, and a later call with the same arguments resumes from it; a run
killed and resumed ends with the same weights, bit for bit on the CPU, as an uninterrupted one.
The per-epoch table is also written there as ``history.parquet``.

:func:`paper_config` gives the protocol of the paper (SPEC §3):

| dataset            | epochs | milestones (lr × 0.1)                   | weight decay            |
|--------------------|--------|-----------------------------------------|-------------------------|
| CIFAR-10/100       | 160    | 80, 120                                 | 1e-4 (WRN-28-2: 5e-4)   |
| Tiny-ImageNet      | 100    | 30, 60, 80 (CONV-6: 20, 60, 80)         | 1e-4 (WRN-28-2: 5e-4)   |
| digits (ours)      | 30     | 15, 23 (the CIFAR fractions 1/2, 3/4)   | 1e-4 (WRN-28-2: 5e-4)   |

always SGD, lr 0.1, momentum 0.9, batch 128.

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
import math
import os
import tempfile
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

from mgelib import masks as masks_mod
from mgelib.data import DATASETS, Dataset, DeviceLoader
from mgelib.models import MODELS
from mgelib.progress import quiet

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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (defaults: the CIFAR protocol of SPEC §3).

    Attributes
    ----------
    epochs
        Number of epochs.
    lr, momentum, weight_decay
        SGD settings.
    batch_size
        Training (and evaluation) batch size.
    milestones, gamma
        MultiStepLR: the lr is multiplied by ``gamma`` after each listed epoch.
    amp
        ``"none"`` or ``"bf16"`` (bfloat16 autocast; CUDA only, ignored with a warning on CPU).
    channels_last
        Use the channels-last memory format (CUDA only, ignored with a warning on CPU).
    seed
        Seeds the generator of all shuffling and augmentation.
    device
        ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, …
    progress
        Show tqdm bars (also silenced by ``MGELIB_QUIET=1``).
    eval_every
        Score the test set every this many epochs (and always after the last one).

    Examples
    --------
    >>> TrainConfig(epochs=2, milestones=(1,)).lr
    0.1
    """

    epochs: int = 160
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 128
    milestones: tuple[int, ...] = (80, 120)
    gamma: float = 0.1
    amp: str = "none"
    channels_last: bool = False
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    eval_every: int = 1

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, want: str) -> ValueError:
            return ValueError(f"TrainConfig.{field} must be {want}, got {value!r}")

        if int(self.epochs) < 1:
            raise bad("epochs", self.epochs, "a positive integer")
        if int(self.batch_size) < 1:
            raise bad("batch_size", self.batch_size, "a positive integer")
        if int(self.eval_every) < 1:
            raise bad("eval_every", self.eval_every, "a positive integer")
        if not float(self.lr) > 0:
            raise bad("lr", self.lr, "> 0")
        if float(self.momentum) < 0 or float(self.weight_decay) < 0 or float(self.gamma) <= 0:
            raise ValueError(
                "TrainConfig: momentum and weight_decay must be >= 0 and gamma > 0, got "
                f"momentum={self.momentum!r}, weight_decay={self.weight_decay!r}, gamma={self.gamma!r}"
            )
        if self.amp not in ("none", "bf16"):
            raise bad("amp", self.amp, "'none' or 'bf16'")
        try:
            milestones = tuple(sorted(int(m) for m in self.milestones))
        except (TypeError, ValueError):
            raise bad("milestones", self.milestones, "a sequence of epoch numbers") from None
        if any(m < 1 for m in milestones):
            raise bad("milestones", self.milestones, "positive epoch numbers")
        object.__setattr__(self, "milestones", milestones)
        for name in ("epochs", "batch_size", "eval_every", "seed"):
            object.__setattr__(self, name, int(getattr(self, name)))


@dataclasses.dataclass
class TrainResult:
    """What a run records (SPEC §3): accuracies are fractions in [0, 1].

    ``history`` has one row per epoch: ``epoch`` (1-based), ``loss`` (mean training loss),
    ``train_acc`` (on the augmented batches), ``test_acc`` (NaN where the test set was not scored),
    ``lr`` (used during the epoch), ``seconds``. ``wall_time_s`` sums the epochs' seconds, over
    all sessions of a resumed run; ``resumed_from`` is the epoch the last call started at (0 for
    a fresh run); ``sparsity`` is the global sparsity of the masks.
    """

    final_acc: float
    best_acc: float
    history: pd.DataFrame
    wall_time_s: float
    device: str
    epochs_run: int
    resumed_from: int = 0
    sparsity: float = 0.0


def scale_milestones(
    milestones: tuple[int, ...] | list[int], epochs: int, new_epochs: int
) -> tuple[int, ...]:
    """Move lr milestones from a schedule of ``epochs`` to one of ``new_epochs``, same fractions.

    Each milestone ``m`` becomes ``round(m · new_epochs / epochs)`` (halves round up), at least 1;
    duplicates collapse.

    Examples
    --------
    >>> scale_milestones((80, 120), 160, 30)
    (15, 23)
    >>> scale_milestones((30, 60, 80), 100, 10)
    (3, 6, 8)
    """
    if int(epochs) < 1 or int(new_epochs) < 1:
        raise ValueError(f"epochs must be positive, got {epochs!r} and {new_epochs!r}")
    scaled = {max(1, math.floor(m * new_epochs / epochs + 0.5)) for m in milestones}
    return tuple(sorted(scaled))


def paper_config(model_name: str, dataset_name: str, **overrides: Any) -> TrainConfig:
    """The paper's training protocol for a (model, dataset) pair (SPEC §3; table in the module).

    ``overrides`` replace fields of :class:`TrainConfig`. Overriding ``epochs`` without
    ``milestones`` rescales the milestones to the same fractions of training
    (:func:`scale_milestones`). The ``digits`` protocol (ours, not the paper's) is the CIFAR one
    shrunk to 30 epochs.

    Raises
    ------
    ValueError
        Unknown model or dataset (the message lists the valid names) or unknown override.

    Examples
    --------
    >>> paper_config("wrn28_2", "cifar100").weight_decay
    0.0005
    >>> paper_config("conv6", "tinyimagenet").milestones
    (20, 60, 80)
    >>> paper_config("resnet20", "cifar10", epochs=16).milestones
    (8, 12)
    """
    if model_name not in MODELS:
        raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(MODELS)}")
    if dataset_name not in DATASETS:
        raise ValueError(f"unknown dataset {dataset_name!r}; choose one of {', '.join(DATASETS)}")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid fields: {sorted(fields)}")
    weight_decay = 5e-4 if model_name == "wrn28_2" else 1e-4
    if dataset_name in ("cifar10", "cifar100"):
        epochs, milestones = 160, (80, 120)
    elif dataset_name == "tinyimagenet":
        epochs, milestones = 100, ((20, 60, 80) if model_name == "conv6" else (30, 60, 80))
    else:  # digits: the CIFAR schedule at 30 epochs
        epochs, milestones = 30, scale_milestones((80, 120), 160, 30)
    if "epochs" in overrides and "milestones" not in overrides:
        milestones = scale_milestones(milestones, epochs, int(overrides["epochs"]))
    params: dict[str, Any] = {
        "epochs": epochs,
        "milestones": milestones,
        "weight_decay": weight_decay,
        "lr": 0.1,
        "momentum": 0.9,
        "batch_size": 128,
        "gamma": 0.1,
    }
    params.update(overrides)
    return TrainConfig(**params)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` → CUDA if available, else CPU; any other name is checked to exist here.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'cuda:<index>'"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} requested but CUDA is not available here; use 'cpu' or 'auto'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available; use 'cpu'")
    return dev


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file in the same folder, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
    """Train ``model`` with its pruned weights held at exactly zero (SPEC §3).

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
                # ... and masking the weights after the step keeps them exactly zero (SPEC §3).
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
            _atomic_write(ckpt_path, lambda tmp, s=state: torch.save(s, tmp))
            frame = pd.DataFrame(rows, columns=_HISTORY_COLUMNS)
            _atomic_write(
                ckpt_path.with_name(HISTORY_NAME),
                lambda tmp, f=frame: f.to_parquet(tmp, index=False),
            )
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
