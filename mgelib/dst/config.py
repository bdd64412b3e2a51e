"""The hyper-parameters of the five dynamic sparse training methods and their drop schedule.

Each method is one :class:`DSTConfig`; :data:`DEFAULTS` holds the values of the method's paper
(cited in :class:`DSTConfig`), :func:`dst_config` returns them with overrides, and
:func:`drop_fraction` is the schedule of the fraction of active weights dropped at a step.

Examples
--------
>>> cfg = dst_config("rigl")
>>> cfg.drop_fraction, cfg.update_every, cfg.end_fraction, cfg.init
(0.3, 100, 0.75, 'erk')
>>> round(drop_fraction(cfg, step=0, total_steps=1000), 3)
0.3
>>> round(drop_fraction(cfg, step=375, total_steps=1000), 3)  # half-way to T_end = 750
0.15
>>> drop_fraction(cfg, step=750, total_steps=1000)
0.0
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from mgelib.vocabulary import DST_METHODS

__all__ = ["DSTConfig", "DEFAULTS", "GROWTH", "DECAYS", "dst_config", "drop_fraction"]

#: How regrown positions are chosen among the inactive ones.
GROWTH: tuple[str, ...] = ("random", "gradient", "momentum")
#: Drop-fraction schedules.
DECAYS: tuple[str, ...] = ("constant", "cosine")
_REDISTRIBUTION = ("none", "momentum", "survivors")
_PRUNE = ("magnitude", "threshold")


@dataclasses.dataclass(frozen=True)
class DSTConfig:
    """One DST method's settings (defaults per method in :data:`DEFAULTS`).

    Attributes
    ----------
    method
        One of :data:`mgelib.vocabulary.DST_METHODS`.
    init
        Initial per-layer allocation of the random mask (a data-free pruner: ``uniform``, ``er``,
        ``erk``; :mod:`mgelib.pruning.random`).
    update_every
        Steps between mask updates (ΔT); ``0`` means once per epoch.
    drop_fraction
        Fraction of each layer's active weights dropped at the first update (SET's ζ, RigL's α,
        SNFS's prune rate); for DSR the target fraction of active weights below the threshold.
    decay
        ``"cosine"``: ``f(t) = f₀ (1 + cos(π t / T_end)) / 2`` (RigL's schedule, also SNFS's
        prune-rate decay); ``"constant"``: ``f(t) = f₀``.
    end_fraction
        No update after ``end_fraction`` of the training steps (RigL's T_end = 0.75).
    prune
        ``"magnitude"`` (drop the smallest ``|w|`` of each layer) or ``"threshold"`` (DSR: drop
        every ``|w| < H`` network-wide, ``H`` adapted towards the target count).
    growth
        ``"random"`` (SET, DSR), ``"gradient"`` (top ``|∂L/∂w|`` of the dense gradient: RigL,
        ITOP) or ``"momentum"`` (top ``|m|`` of the dense-gradient momentum: SNFS).
    redistribution
        How the dropped count is regrown across layers: ``"none"`` (each layer regrows what it
        dropped), ``"momentum"`` (∝ the mean ``|m|`` of the layer's active weights: SNFS) or
        ``"survivors"`` (∝ the layer's surviving weights: DSR).
    threshold, tolerance
        DSR only: the initial threshold ``H`` and the band ``δ``: after an update that dropped
        fewer than ``(1 − δ)`` times the target, ``H`` doubles; more than ``(1 + δ)`` times, it
        halves.
    momentum
        SNFS only: the decay of the dense-gradient momentum (the optimiser's 0.9).
    seed
        Seeds random growth (the updater's own generator; training's is untouched).

    The defaults (:data:`DEFAULTS`) follow the papers:

    - **SET** (Mocanu et al., *Nat. Commun.* 2018): ζ = 0.3 of each layer's weights closest to zero
      removed and as many regrown at random, after every epoch, all through training; Erdős–Rényi
      initial allocation.
    - **SNFS** (Dettmers & Zettlemoyer, 2019, *sparse momentum*): prune rate 0.5 decayed by a
      cosine to 0 over training, magnitude pruning per layer, regrowth redistributed across layers
      ∝ the mean momentum magnitude of their active weights and placed at the largest momentum
      magnitudes, once per epoch; uniform initial allocation.
    - **DSR** (Mostafa & Wang, ICML 2019): one adaptive global threshold ``H`` (initial 10⁻³,
      doubled/halved to keep the pruned count within ``δ`` = 10 % of the target ``Nₚ``), freed
      weights reallocated ∝ each layer's surviving weights and regrown at random; uniform initial
      allocation; every 100 steps, target ``Nₚ`` = 1 % of the active weights (the defaults of the
      authors' public code, to our reading).
    - **RigL** (Evci et al., ICML 2020): α = 0.3 decayed by a cosine, ΔT = 100 steps,
      T_end = 75 % of training, regrowth at the largest dense-gradient magnitudes, ERK
      initial allocation.
    - **ITOP** (Liu et al., ICML 2021): RigL-style gradient regrowth with drop rate 0.5
      cosine-decayed over all of training, ΔT = 1500 steps and ERK initial allocation (the CIFAR
      command of the authors' public code; ``growth="random"`` gives their SET-ITOP); the
      exploration rate — the fraction of all weights ever active — is what the method is about,
      and every method here reports it.

    Regrown weights start at zero, with zero optimiser momentum, in every method.

    Examples
    --------
    >>> DSTConfig("set", init="er", update_every=0, drop_fraction=0.3).growth
    'random'
    """

    method: str
    init: str = "erk"
    update_every: int = 100
    drop_fraction: float = 0.3
    decay: str = "constant"
    end_fraction: float = 1.0
    prune: str = "magnitude"
    growth: str = "random"
    redistribution: str = "none"
    threshold: float = 1e-3
    tolerance: float = 0.1
    momentum: float = 0.9
    seed: int = 0

    def __post_init__(self) -> None:
        def bad(field: str, want: str) -> ValueError:
            return ValueError(
                f"DSTConfig.{field} must be {want}, got {getattr(self, field)!r} "
                f"(method {self.method!r})"
            )

        if self.method not in DST_METHODS:
            raise ValueError(
                f"unknown DST method {self.method!r}; choose one of {', '.join(DST_METHODS)}"
            )
        if self.init not in ("uniform", "er", "erk"):
            raise bad("init", "'uniform', 'er' or 'erk'")
        if int(self.update_every) < 0:
            raise bad("update_every", "a number of steps >= 0 (0 = once per epoch)")
        if not 0.0 <= float(self.drop_fraction) <= 1.0:
            raise bad("drop_fraction", "in [0, 1]")
        if not 0.0 < float(self.end_fraction) <= 1.0:
            raise bad("end_fraction", "in (0, 1]")
        for field, allowed in (
            ("decay", DECAYS),
            ("growth", GROWTH),
            ("redistribution", _REDISTRIBUTION),
            ("prune", _PRUNE),
        ):
            if getattr(self, field) not in allowed:
                raise bad(field, f"one of {allowed}")
        if not float(self.threshold) > 0 or not 0 <= float(self.tolerance) < 1:
            raise bad("threshold", "> 0 (and tolerance in [0, 1))")
        object.__setattr__(self, "update_every", int(self.update_every))
        object.__setattr__(self, "seed", int(self.seed))


#: Each method's paper defaults (see :class:`DSTConfig` for the citations).
DEFAULTS: dict[str, DSTConfig] = {
    "set": DSTConfig("set", init="er", update_every=0, drop_fraction=0.3),
    "snfs": DSTConfig(
        "snfs",
        init="uniform",
        update_every=0,
        drop_fraction=0.5,
        decay="cosine",
        growth="momentum",
        redistribution="momentum",
    ),
    "dsr": DSTConfig(
        "dsr",
        init="uniform",
        update_every=100,
        drop_fraction=0.01,
        prune="threshold",
        redistribution="survivors",
    ),
    "rigl": DSTConfig(
        "rigl", init="erk", drop_fraction=0.3, decay="cosine", end_fraction=0.75, growth="gradient"
    ),
    "itop": DSTConfig(
        "itop", init="erk", update_every=1500, drop_fraction=0.5, decay="cosine", growth="gradient"
    ),
}


def dst_config(method: str, *, dataset: str | None = None, **overrides: Any) -> DSTConfig:
    """The paper defaults of ``method`` with ``overrides`` (fields of :class:`DSTConfig`).

    On ``dataset="digits"`` (our embedded set: 11 steps an epoch, so ΔT = 100 would mean one
    update in a whole run) every method updates once per epoch (``update_every=0``) unless
    overridden — the same convention as the digits training protocol, which is ours too.

    Examples
    --------
    >>> dst_config("rigl", dataset="digits").update_every
    0
    >>> dst_config("set", drop_fraction=0.0).drop_fraction
    0.0
    """
    if method not in DEFAULTS:
        raise ValueError(f"unknown DST method {method!r}; choose one of {', '.join(DEFAULTS)}")
    fields = {f.name for f in dataclasses.fields(DSTConfig)} - {"method"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown DSTConfig field(s) {unknown}; valid fields: {sorted(fields)}")
    if dataset == "digits":
        overrides = {"update_every": 0, **overrides}
    return dataclasses.replace(DEFAULTS[method], **overrides)


def drop_fraction(config: DSTConfig, step: int, total_steps: int) -> float:
    """The fraction of active weights dropped by an update at ``step`` (0-based) of
    ``total_steps``; 0 from ``end_fraction · total_steps`` on."""
    end = config.end_fraction * total_steps
    if step >= end:
        return 0.0
    f0 = float(config.drop_fraction)
    if config.decay == "constant":
        return f0
    return f0 * (1.0 + math.cos(math.pi * step / end)) / 2.0
