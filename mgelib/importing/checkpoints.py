"""Reading one checkpoint into a network: the state-dict layouts, the mask sources and the
checks (see :mod:`mgelib.importing` for the rules).

Examples
--------
>>> import torch, tempfile, pathlib
>>> from mgelib import models
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> net = models.build("conv6", 1, 10, 8, seed=0)
>>> torch.save(net.state_dict(), folder / "dense.pt")
>>> state = read_checkpoint(folder / "dense.pt")
>>> len(state) == len(net.state_dict())
True
>>> (folder / "junk.pt").write_text("not a checkpoint")
16
>>> read_checkpoint(folder / "junk.pt")
Traceback (most recent call last):
...
ValueError: .../junk.pt: not a torch checkpoint (torch.load failed: ...); save the network's model.state_dict() with torch.save
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgelib import io

__all__ = ["MASK_SOURCES", "read_checkpoint", "parse_input_shape", "checkpoint_network"]

#: The named mask sources (besides a ``.npz`` masks-file path).
MASK_SOURCES: tuple[str, ...] = ("auto", "zeros", "weight_mask", "torch_prune")
_NESTED = ("state_dict", "model_state_dict", "model", "net", "state")


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (see the module docstring for the layouts read).

    Raises
    ------
    ValueError
        Naming the file: not loadable with ``weights_only=True``, or holding no state dict.
    """
    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is refused the same way
        # the first sentence only: torch's own advice (weights_only=False) would be unsafe
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
        raise ValueError(
            f"{path}: not a torch checkpoint (torch.load failed: {type(exc).__name__}: "
            f"{first[:200]}); save the network's model.state_dict() with torch.save"
        ) from None
    if not _is_state_dict(obj) and isinstance(obj, Mapping):
        for key in _NESTED:
            if _is_state_dict(obj.get(key)):
                obj = obj[key]
                break
    if not _is_state_dict(obj):
        what = (
            f"a dict with keys {list(obj)[:6]}" if isinstance(obj, Mapping) else type(obj).__name__
        )
        raise ValueError(
            f"{path}: not a state dict ({what}); expected a mapping of parameter names to "
            f"tensors, directly or under one of {', '.join(_NESTED)}"
        )
    state = dict(obj)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def parse_input_shape(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,8,8"`` / ``"(3, 32, 32)"`` / ``[3, 32, 32]`` → ``(C, H, W)``.

    Examples
    --------
    >>> parse_input_shape("(3, 32, 32)")
    (3, 32, 32)
    """
    if isinstance(text, str):
        parts = [p for p in re.split(r"[,\sx×]+", text.strip().strip("()[]")) if p]
    else:
        parts = list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"input_shape must be one input's C,H,W, e.g. '3,32,32' or '1,8,8'; got {text!r}"
        )
    return shape


def _masks_and_weights(
    state: dict[str, torch.Tensor], params: Sequence[str], source: str, ckpt: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Resolve ``source`` into a state dict without mask entries, and the masks it implies
    (``None`` for ``zeros``: read off the loaded weights)."""
    bases = [p[: -len(".weight")] if p.endswith(".weight") else p for p in params]
    if source == "auto":
        if any(k.endswith(".weight_orig") for k in state):
            source = "torch_prune"
        elif any(k.endswith(".weight_mask") for k in state):
            source = "weight_mask"
        else:
            source = "zeros"
    if source == "zeros":
        return state, None
    if source.endswith(".npz"):
        file = Path(source.replace("{stem}", ckpt.stem)).expanduser()
        file = file if file.is_absolute() else ckpt.parent / file
        if not file.is_file():
            raise ValueError(f"{ckpt}: masks file {file} does not exist")
        return state, io.load_masks(file)
    if source not in MASK_SOURCES:
        raise ValueError(
            f"unknown mask_source {source!r}; choose one of {', '.join(MASK_SOURCES)} or a "
            "path to a .npz masks file"
        )
    out = dict(state)
    masks = {}
    for base, name in zip(bases, params):
        mask = out.pop(f"{base}.weight_mask", None)
        if mask is None:
            raise ValueError(
                f"{ckpt}: mask_source {source!r} but no {base}.weight_mask entry for {name!r}"
            )
        if source == "torch_prune":
            orig = out.pop(f"{base}.weight_orig", None)
            if orig is None:
                raise ValueError(f"{ckpt}: torch_prune layout but no {base}.weight_orig entry")
            if tuple(orig.shape) != tuple(mask.shape):
                raise ValueError(
                    f"{ckpt}: {base}.weight_orig has shape {tuple(orig.shape)} but "
                    f"{base}.weight_mask {tuple(mask.shape)}"
                )
            out[name] = orig * mask.to(orig.dtype)
        masks[name] = mask != 0
    return out, masks


def _check_state(net: nn.Module, state: Mapping[str, torch.Tensor], ckpt: Path) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' …' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"unexpected {extra[:5]}{' …' if len(extra) > 5 else ''}")
        raise ValueError(
            f"{ckpt}: its keys do not match the model's state dict: {'; '.join(parts)} "
            f"(checkpoint {len(state)} keys, model {len(expected)}); is this the right model?"
        )
    bad = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tuple(state[k].shape) != tuple(v.shape)
    ]
    if bad:
        raise ValueError(
            f"{ckpt}: shapes differ from the model's (checkpoint vs model): {bad[:5]}; check "
            "model, input_shape and num_classes"
        )
    nonfinite = [
        k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if nonfinite:
        raise ValueError(f"{ckpt}: NaN or inf values in {nonfinite[:5]}")


def checkpoint_network(
    path: str | os.PathLike,
    model: str,
    input_shape: Sequence[int],
    *,
    num_classes: int = 0,
    mask_source: str = "auto",
) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """Load one checkpoint into ``model`` (a name or spec); return the masked network (eval
    mode) and its masks. ``num_classes=0`` reads the classifier size off the checkpoint (the
    output size of the model's last prunable layer).

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it (see the module docstring).
    """
    from mgelib.masks import apply_masks, check_masks, prunable_parameters
    from mgelib.models import build

    ckpt = Path(path)
    c, h, w = parse_input_shape(input_shape)
    state = read_checkpoint(ckpt)
    if num_classes <= 0:
        probe = list(prunable_parameters(build(model, c, 10, h, seed=0)))
        last = state.get(probe[-1], state.get(probe[-1].replace(".weight", ".weight_orig")))
        if last is None:
            raise ValueError(f"{ckpt}: no entry {probe[-1]!r} (the model's classifier)")
        num_classes = int(last.shape[0])
    net = build(model, c, num_classes, h, seed=0)
    params = list(prunable_parameters(net))
    state, masks = _masks_and_weights(state, params, mask_source, ckpt)
    _check_state(net, state, ckpt)
    net.load_state_dict(state)
    if masks is None:
        masks = {k: p.detach().cpu() != 0 for k, p in prunable_parameters(net).items()}
    try:
        check_masks(net, masks)
    except ValueError as exc:
        raise ValueError(f"{ckpt}: {exc}") from None
    apply_masks(net, masks)
    return net.eval(), masks
