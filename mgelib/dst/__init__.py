"""Dynamic sparse training (DST): SET, SNFS, DSR, RigL and ITOP behind one API (SPEC §4).

A DST run starts from a random sparse mask (:func:`initial_masks`, the method's allocation) and
moves it while it trains: every ΔT steps an update drops active weights (smallest ``|w|``, or
DSR's adaptive threshold) and regrows as many — at random (SET, DSR), at the largest dense
gradients (RigL, ITOP) or momenta (SNFS), across layers as the method reallocates — so the
number of active weights is exactly the target after every update. Regrown weights, and their
optimiser momentum, start at zero; updates are deterministic for a seed.

=======  =================  ==========  ============  ===============  ==================
method   initial masks      ΔT          drop          regrow           across layers
=======  =================  ==========  ============  ===============  ==================
set      ER                 1 epoch     ζ = 0.3       random           per layer
snfs     uniform            1 epoch     0.5, cosine   momentum         ∝ mean momentum
dsr      uniform            100 steps   ``|w| < H``   random           ∝ survivors
rigl     ERK                100 steps   0.3, cosine   dense gradient   per layer
itop     ERK                1500 steps  0.5, cosine   dense gradient   per layer
=======  =================  ==========  ============  ===============  ==================

(citations and every default in :class:`DSTConfig`; RigL stops at 75 % of training.)

The training loop is :func:`mgelib.train.train`; the method runs in it as a step hook,
:class:`MaskUpdater`, whose state is part of the training checkpoint (exact resume).
:mod:`mgelib.dst.topology` measures the MGE of each mask on the way.

Examples
--------
>>> from mgelib import data, models, train
>>> from mgelib import dst
>>> ds = data.load("digits")
>>> net = models.build("conv6", 1, 10, 8, seed=0)
>>> masks = dst.initial_masks("rigl", net, 0.9, seed=0)
>>> upd = dst.MaskUpdater(dst.dst_config("rigl", dataset="digits", seed=0))
>>> cfg = train.TrainConfig(epochs=3, milestones=(), progress=False, device="cpu")
>>> result = train.train(net, masks, ds, cfg, hook=upd)
>>> [r["step"] for r in upd.records]  # once per epoch on digits, until 75 % of training
[11, 22]
>>> kept = lambda ms: sum(int(m.sum()) for m in ms.values())
>>> kept(upd.masks()) == kept(masks)
True
"""

from __future__ import annotations

from torch import nn

from mgelib.dst.config import DECAYS, DEFAULTS, GROWTH, DSTConfig, drop_fraction, dst_config
from mgelib.dst.topology import (
    CHEAP_METRICS,
    TRAJECTORY_COLUMNS,
    full_topometrics,
    topology_probe,
    trajectory,
)
from mgelib.dst.updater import MaskUpdater
from mgelib.dst.updates import grow_positions, regrow_counts, smallest_active, update_masks
from mgelib.masks import Masks
from mgelib.vocabulary import DST_METHODS

__all__ = [
    "METHODS",
    "RUN_FILES",
    "DSTConfig",
    "DEFAULTS",
    "GROWTH",
    "DECAYS",
    "dst_config",
    "drop_fraction",
    "initial_masks",
    "MaskUpdater",
    "update_masks",
    "smallest_active",
    "grow_positions",
    "regrow_counts",
    "CHEAP_METRICS",
    "TRAJECTORY_COLUMNS",
    "topology_probe",
    "full_topometrics",
    "trajectory",
]

#: The DST methods (the vocabulary's names).
METHODS: tuple[str, ...] = DST_METHODS
#: What a DST run adds to its run folder (beside ``masks.npz``, the initial masks).
RUN_FILES: tuple[str, ...] = ("final_masks.npz", "topology_trajectory.parquet")


def initial_masks(
    method: str | DSTConfig, model: nn.Module, sparsity: float, *, seed: int = 0
) -> Masks:
    """The random initial mask of a DST method: its allocation (:attr:`DSTConfig.init`) at
    ``sparsity``, exactly ``round((1 − s) N)`` weights kept.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 4))
    >>> sum(int(m.sum()) for m in initial_masks("set", net, 0.5).values())
    70
    """
    from mgelib.pruning import prune

    cfg = dst_config(method) if isinstance(method, str) else method
    return prune(cfg.init, model, sparsity, seed=seed)
