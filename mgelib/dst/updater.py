"""The mask updater: the step hook through which :func:`mgelib.train.train` runs a DST method.

:class:`MaskUpdater` implements the hook protocol of :mod:`mgelib.train` (``attach``,
``before_step``, ``after_step``, ``state_dict``, ``load_state_dict``): the training loop calls
``before_step`` after the backward pass, while the gradients are still dense, and ``after_step``
after the optimiser step; on an update step the updater drops and regrows in the loop's own mask
tensors, zeroes the weights and the optimiser momentum of every position that is not a survivor
(so regrown weights start at zero, momentum too), and records one trajectory row.

Its state — current masks, the ever-active set (ITOP's exploration), its generator, DSR's
threshold, SNFS's momentum, the trajectory so far — goes into the training checkpoint, so a killed
and resumed DST run ends bit-identical to an uninterrupted one.

Examples
--------
>>> from mgelib.dst import MaskUpdater, dst_config
>>> upd = MaskUpdater(dst_config("set", dataset="digits"))
>>> upd.config.drop_fraction, upd.config.update_every, upd.records
(0.3, 0, [])

Training with it is ``mgelib.train.train(net, masks, data, config, hook=upd)`` (the example of
:mod:`mgelib.dst`); afterwards ``upd.masks()`` are the final masks and ``upd.records`` the
trajectory.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from mgelib.dst.config import DSTConfig, drop_fraction
from mgelib.dst.updates import update_masks
from mgelib.masks import prunable_modules, prunable_parameters

__all__ = ["MaskUpdater"]


class MaskUpdater:
    """Run one DST method (:class:`~mgelib.dst.DSTConfig`) inside :func:`mgelib.train.train`.

    Parameters
    ----------
    config
        The method's settings (:func:`mgelib.dst.dst_config`).
    probe
        Called as ``probe(masks)`` with the boolean CPU masks after every update; the dict it
        returns is added to the trajectory row (:func:`mgelib.dst.topology_probe` gives the cheap
        MGE metrics).

    Attributes
    ----------
    records
        One dict per update: ``step``, ``epoch``, ``drop_fraction``, ``dropped``, ``grown``,
        ``moved``, ``exploration``, ``threshold`` (DSR), ``seconds`` (the update's cost, probe
        excluded), ``density:<parameter>`` per layer, and the probe's values.
    """

    def __init__(
        self, config: DSTConfig, *, probe: Callable[[dict[str, torch.Tensor]], dict] | None = None
    ) -> None:
        self.config = config
        self.probe = probe
        self.records: list[dict[str, Any]] = []
        self.generator = torch.Generator().manual_seed(config.seed)
        self.threshold = float(config.threshold)
        self._masks: dict[str, torch.Tensor] = {}
        self._ever: dict[str, torch.Tensor] = {}
        self._momentum: dict[str, torch.Tensor] = {}
        self._grads: dict[str, torch.Tensor] | None = None

    # ------------------------------------------------------------------ hook protocol
    def attach(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        masks: Mapping[str, torch.Tensor],
        total_steps: int,
        steps_per_epoch: int,
    ) -> None:
        """Bind to a training session: ``masks`` are the loop's float mask tensors (changed in
        place on every update)."""
        self.model, self.optimizer = model, optimizer
        self.params = prunable_parameters(model)
        self.modules = {
            f"{n}.weight" if n else "weight": m for n, m in prunable_modules(model).items()
        }
        self._masks = dict(masks)
        self.total_steps, self.steps_per_epoch = int(total_steps), max(1, int(steps_per_epoch))
        if not self._ever:
            self._ever = {k: m.detach().cpu().bool().clone() for k, m in masks.items()}
        if self.config.growth == "momentum" and not self._momentum:
            self._momentum = {k: torch.zeros_like(p) for k, p in self.params.items()}

    def period(self) -> int:
        """Steps between updates (one epoch when ``update_every`` is 0)."""
        return self.config.update_every or self.steps_per_epoch

    def is_update(self, step: int) -> bool:
        """Whether the mask moves after ``step`` optimiser steps (1-based): every ``period``
        steps, before ``end_fraction`` of training, never after the last step."""
        return (
            step % self.period() == 0
            and step < self.total_steps
            and drop_fraction(self.config, step, self.total_steps) > 0.0
        )

    @torch.no_grad()
    def before_step(self, step: int) -> None:
        """See the dense gradients of step ``step`` (1-based) before the loop masks them."""
        if self._momentum:
            beta = self.config.momentum
            for k, p in self.params.items():
                if p.grad is not None:
                    self._momentum[k].mul_(beta).add_(p.grad)
        if self.config.growth == "gradient" and self.is_update(step):
            self._grads = {
                k: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
                for k, p in self.params.items()
            }

    @torch.no_grad()
    def after_step(self, step: int) -> bool:
        """Update the masks if ``step`` is an update step; True when it was."""
        if not self.is_update(step):
            return False
        t0 = time.perf_counter()
        cfg = self.config
        fraction = drop_fraction(cfg, step, self.total_steps)
        current = {k: m.bool() for k, m in self._masks.items()}
        scores = self._grads if cfg.growth == "gradient" else self._momentum or None
        shares: dict[str, float] | str | None = None
        if cfg.redistribution == "momentum":
            # SNFS: regrowth ∝ the mean momentum magnitude of each layer's active weights.
            shares = {
                k: float((self._momentum[k].abs() * current[k]).sum())
                / max(1, int(current[k].sum()))
                for k in current
            }
        elif cfg.redistribution == "survivors":
            shares = "survivors"
        threshold = self.threshold if cfg.prune == "threshold" else None
        new, info = update_masks(
            self.params,
            current,
            fraction=fraction,
            growth=cfg.growth,
            scores=scores,
            redistribution=shares,
            threshold=threshold,
            generator=self.generator,
        )
        for k, m in self._masks.items():
            keep = info["survivors"][k].to(self.params[k].dtype)
            self.params[k].mul_(keep)
            buf = self.optimizer.state.get(self.params[k], {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(keep)
            m.copy_(new[k].to(m.dtype))
            self._ever[k] |= new[k].cpu()
            if "weight_mask" in self.modules[k]._buffers:
                self.modules[k]._buffers["weight_mask"] = new[k].clone()
        if threshold is not None:
            self._adapt_threshold(int(info["dropped"]), sum(int(m.sum()) for m in current.values()))
        self._grads = None
        row = self._row(step, fraction, info, new, time.perf_counter() - t0)
        self.records.append(row)
        return True

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (CPU tensors, lists, floats)."""
        return {
            "masks": {k: m.detach().cpu().bool().clone() for k, m in self._masks.items()},
            "ever": {k: v.clone() for k, v in self._ever.items()},
            "momentum": {k: v.detach().cpu().clone() for k, v in self._momentum.items()},
            "generator": self.generator.get_state(),
            "threshold": self.threshold,
            "records": [dict(r) for r in self.records],
        }

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (after :meth:`attach`): masks are copied into the loop's
        tensors and the modules' ``weight_mask`` buffers."""
        for k, m in self._masks.items():
            m.copy_(state["masks"][k].to(device=m.device, dtype=m.dtype))
            if "weight_mask" in self.modules[k]._buffers:
                self.modules[k]._buffers["weight_mask"] = state["masks"][k].to(m.device).clone()
        self._ever = {k: v.clone().bool() for k, v in state["ever"].items()}
        if state["momentum"]:
            self._momentum = {
                k: v.to(self.params[k].device).clone() for k, v in state["momentum"].items()
            }
        self.generator.set_state(state["generator"])
        self.threshold = float(state["threshold"])
        self.records = [dict(r) for r in state["records"]]

    # ------------------------------------------------------------------ results
    def masks(self) -> dict[str, torch.Tensor]:
        """The current boolean masks (CPU copies)."""
        return {k: m.detach().cpu().bool().clone() for k, m in self._masks.items()}

    def exploration(self) -> float:
        """ITOP's exploration rate: the fraction of all prunable weights ever active."""
        total = sum(int(v.numel()) for v in self._ever.values())
        return sum(int(v.sum()) for v in self._ever.values()) / max(1, total)

    def _adapt_threshold(self, dropped: int, active: int) -> None:
        # DSR: keep the pruned count near the target Nₚ by doubling / halving H.
        target = self.config.drop_fraction * active
        if dropped < (1.0 - self.config.tolerance) * target:
            self.threshold *= 2.0
        elif dropped > (1.0 + self.config.tolerance) * target:
            self.threshold /= 2.0

    def _row(
        self, step: int, fraction: float, info: Mapping[str, Any], new: Mapping, seconds: float
    ) -> dict[str, Any]:
        cpu = {k: m.detach().cpu() for k, m in new.items()}
        row: dict[str, Any] = {
            "step": int(step),
            "epoch": int(math.ceil(step / self.steps_per_epoch)),
            "drop_fraction": float(fraction),
            "dropped": int(info["dropped"]),
            "grown": int(info["grown"]),
            "moved": int(info["moved"]),
            "exploration": self.exploration(),
            "threshold": self.threshold if self.config.prune == "threshold" else float("nan"),
            "seconds": float(seconds),
        }
        row.update({f"density:{k}": float(m.float().mean()) for k, m in cpu.items()})
        if self.probe is not None:
            row.update(self.probe(cpu))
        return row
