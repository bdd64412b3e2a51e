"""The training protocol: :class:`TrainConfig` (hyper-parameters), :class:`TrainResult` (what a
run records) and the device a run uses. Re-exported by :mod:`mgelib.train`, with the
checkpoint format it writes (:func:`check_checkpoint`) and the :class:`StepHook` protocol.

:func:`paper_config` gives the protocol of the paper (SPEC §3):

| dataset            | epochs | milestones (lr × 0.1)                   | weight decay            |
|--------------------|--------|-----------------------------------------|-------------------------|
| CIFAR-10/100       | 160    | 80, 120                                 | 1e-4 (WRN-28-2: 5e-4)   |
| Tiny-ImageNet      | 100    | 30, 60, 80 (CONV-6: 20, 60, 80)         | 1e-4 (WRN-28-2: 5e-4)   |
| digits (ours)      | 30     | 15, 23 (the CIFAR fractions 1/2, 3/4)   | 1e-4 (WRN-28-2: 5e-4)   |

always SGD, lr 0.1, momentum 0.9, batch 128.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from mgelib.data import DATASETS, Dataset
from mgelib.models import MODELS

__all__ = [
    "TrainConfig",
    "TrainResult",
    "paper_config",
    "scale_milestones",
    "resolve_device",
    "StepHook",
    "CHECKPOINT_FORMAT",
    "RESUMABLE_DIFFS",
    "mask_digest",
    "hook_config",
    "check_checkpoint",
]


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
    from mgelib.specs import is_spec

    # A user model (a spec) gets the protocol of the generic CIFAR ResNets (weight decay 1e-4).
    if model_name not in MODELS and not is_spec(model_name):
        raise ValueError(
            f"unknown model {model_name!r}; choose one of {', '.join(MODELS)} or a spec "
            "'module:factory'"
        )
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


# --------------------------------------------------------------------------- the checkpoint

#: Version of the checkpoint written by :func:`mgelib.train.train`.
CHECKPOINT_FORMAT = 1
# Config fields that may differ between a checkpoint and the resuming call: they do not change
# the optimisation (where it runs, what is shown, how often the test set is scored).
RESUMABLE_DIFFS = frozenset({"device", "progress", "eval_every"})


class StepHook(Protocol):
    """What :func:`train` calls on a ``hook`` (a DST method: :class:`mgelib.dst.MaskUpdater`).

    ``attach(model, optimizer, masks, total_steps, steps_per_epoch)`` once before the first step
    (``masks``: the loop's float mask tensors by parameter name, which the hook may change in
    place); ``before_step(step)`` after each backward pass, while the gradients are still dense
    (``step`` is 1-based); ``after_step(step)`` after the optimiser step and the weight masking;
    ``state_dict()`` / ``load_state_dict(state)`` for the checkpoint (called after ``attach``).
    A hook with a ``config`` dataclass has it checked on resume like the training config.
    """

    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        masks: Mapping[str, torch.Tensor],
        total_steps: int,
        steps_per_epoch: int,
    ) -> None: ...

    def before_step(self, step: int) -> None: ...

    def after_step(self, step: int) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def mask_digest(masks: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of a mask set (keys and packed bits): identifies the masks a checkpoint belongs to."""
    h = hashlib.sha256()
    for key in sorted(masks):
        h.update(key.encode())
        h.update(np.packbits(masks[key].detach().cpu().numpy().reshape(-1)).tobytes())
    return h.hexdigest()


def hook_config(hook: StepHook | None) -> dict[str, Any] | None:
    """The hook's ``config`` dataclass as a dict (checked on resume), None without one."""
    cfg = getattr(hook, "config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else None


def check_checkpoint(
    state: Mapping[str, Any],
    config: TrainConfig,
    data: Dataset,
    digest: str,
    path: Path,
    hook: StepHook | None = None,
) -> None:
    """Raise a ``ValueError`` (saying how to start afresh) unless the checkpoint ``state`` at
    ``path`` was written by the same config, dataset, masks and hook config."""
    fix = f"delete {path} to start afresh, or use another run_dir"
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a checkpoint written by mgelib.train; {fix}")
    saved = state["config"]
    now = dataclasses.asdict(config)
    diffs = sorted(
        k for k in now if k not in RESUMABLE_DIFFS and _normal(saved.get(k)) != _normal(now[k])
    )
    if diffs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} → {now[k]!r}" for k in diffs)
        raise ValueError(f"{path} was written with a different config ({detail}); {fix}")
    if state["dataset"] != data.name:
        raise ValueError(f"{path} was trained on {state['dataset']!r}, not {data.name!r}; {fix}")
    if state["mask_digest"] != digest:
        raise ValueError(f"{path} was trained with different masks; {fix}")
    if ("hook" in state) != (hook is not None):
        had = "with" if "hook" in state else "without"
        raise ValueError(f"{path} was trained {had} a step hook (a DST method); {fix}")
    if hook is not None and state.get("hook_config") != hook_config(hook):
        raise ValueError(
            f"{path} was trained with a different DST config ({state.get('hook_config')} → "
            f"{hook_config(hook)}); {fix}"
        )


def _normal(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
