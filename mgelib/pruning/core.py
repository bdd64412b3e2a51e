"""Shared machinery of the pruners: scores → masks, exact allocation, data and model handling.

Every pruner in :mod:`mgelib.pruning` is *functional* (method §4, STYLE "torch.nn.utils.prune,
Synaptic-Flow"): it computes one score per prunable weight on a copy of the model and turns the
scores into a mask set with :func:`masks_from_scores`. This module holds that last step, the exact
integer allocation used by the per-layer pruners, and the handling of the ``data`` argument; the
diagnostics :func:`layer_report` and :func:`path_connected` are in :mod:`mgelib.pruning.report`.

Examples
--------
>>> import torch
>>> scores = {"a.weight": torch.tensor([[3.0, 1.0], [2.0, 2.0]]), "b.weight": torch.tensor([2.0, 0.0])}
>>> masks = masks_from_scores(scores, sparsity=0.5)
>>> masks["a.weight"].tolist(), masks["b.weight"].tolist()
([[True, False], [True, True]], [False, False])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from mgelib.errors import BatchError, WeightError
from mgelib.masks import Masks, check_sparsity, prunable_modules, prunable_parameters

__all__ = [
    "DATA_FREE",
    "DATA_PRUNERS",
    "kept_count",
    "masks_from_scores",
    "apportion",
    "check_seed",
    "check_finite_weights",
    "check_labels",
    "check_options",
    "forward_checked",
]

#: Pruners that need no data (SynFlow uses an all-ones input; the random ones use nothing).
DATA_FREE: frozenset[str] = frozenset({"synflow", "uniform", "er", "erk"})
#: Pruners that need a batch or an iterable of batches.
DATA_PRUNERS: frozenset[str] = frozenset({"snip", "grasp", "prospr"})

Batch = tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- counts and selection
def kept_count(sparsity: float, total: int) -> int:
    """Number of weights a mask set of ``total`` weights keeps at ``sparsity``: ``round(d · total)``.

    Python's ``round`` (half to even) on ``(1 - sparsity) * total``; every pruner uses this one
    definition, so "exact global sparsity" means ``kept == kept_count(sparsity, total)``.

    Examples
    --------
    >>> kept_count(0.9, 1000), kept_count(0.0, 7)
    (100, 7)
    """
    s = check_sparsity(sparsity)
    return int(round((1.0 - s) * int(total)))


def _top_k_flat(flat: torch.Tensor, k: int, largest: bool = True) -> torch.Tensor:
    """Boolean keep-vector with exactly ``k`` entries: the ``k`` largest (or smallest) of ``flat``.

    Ties at the threshold go to the lower flat index. ``kthvalue`` finds the threshold *value*
    (a value, so the same on CPU and CUDA); everything strictly beyond it is kept, and the remaining
    places go to the first indices equal to it. O(n), deterministic, exact.
    """
    n = flat.numel()
    keep = torch.zeros(n, dtype=torch.bool, device=flat.device)
    if k <= 0:
        return keep
    if k >= n:
        return ~keep
    key = flat if largest else -flat
    threshold = torch.kthvalue(key, n - k + 1).values
    keep = key > threshold
    need = k - int(keep.sum())
    if need > 0:
        tied = torch.nonzero(key == threshold).flatten()[:need]
        keep[tied] = True
    return keep


def _flat_scores(scores: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Flattened, detached score tensors; a ``ValueError`` names any layer with NaN scores."""
    if not scores:
        raise ValueError("scores is empty: pass one score tensor per prunable weight")
    out = []
    for name, t in scores.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"score {name!r} is a {type(t).__name__}, expected a torch.Tensor")
        t = t.detach().reshape(-1)
        if t.is_complex():
            raise ValueError(f"score {name!r} is complex; scores must be real numbers")
        if not t.is_floating_point():
            t = t.to(torch.float64)
        if t.is_floating_point() and bool(torch.isnan(t).any()):
            raise ValueError(
                f"score {name!r} contains NaN; the pruner's scores are undefined for this model "
                "(check the data and the model's output)"
            )
        out.append(t)
    return out


def _select(
    scores: Mapping[str, torch.Tensor], k: int, *, largest: bool = True
) -> dict[str, torch.Tensor]:
    """Global top-k over a dict of score tensors; masks stay on the scores' device."""
    flats = _flat_scores(scores)
    keep = _top_k_flat(torch.cat(flats), k, largest)
    out: dict[str, torch.Tensor] = {}
    start = 0
    for (name, t), f in zip(scores.items(), flats):
        out[name] = keep[start : start + f.numel()].reshape(t.shape)
        start += f.numel()
    return out


def apportion(quotas: Sequence[float], caps: Sequence[int], total: int) -> np.ndarray:
    """Integers ``c_l ≤ caps[l]`` that sum to exactly ``total`` and lie within one of ``quotas``.

    The largest-remainder method: every layer gets ``floor(quota)``; the weights still missing to
    reach ``total`` go one each to the layers with the largest fractional remainders (ties to the
    earlier layer), skipping layers already at their cap. This is how every per-layer pruner
    (``scope="layer"``, Uniform, ER, ERK) makes the global count exact.

    Examples
    --------
    >>> apportion([2.5, 2.5, 1.0], [4, 4, 4], 6).tolist()
    [3, 2, 1]
    """
    q = np.asarray(quotas, dtype=np.float64)
    cap = np.asarray(caps, dtype=np.int64)
    if total < 0 or total > int(cap.sum()):
        raise ValueError(f"cannot keep {total} weights out of {int(cap.sum())}")
    base = np.clip(np.floor(q), 0, cap).astype(np.int64)
    rem = q - base
    extra = int(total - base.sum())
    while extra > 0:
        eligible = np.flatnonzero(base < cap)
        take = eligible[np.argsort(-rem[eligible], kind="stable")][:extra]
        base[take] += 1
        rem[take] -= 1.0
        extra -= len(take)
    while extra < 0:  # only when float error pushed the quotas above ``total``
        eligible = np.flatnonzero(base > 0)
        take = eligible[np.argsort(rem[eligible], kind="stable")][:-extra]
        base[take] -= 1
        rem[take] += 1.0
        extra += len(take)
    return base


def masks_from_scores(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    scope: str = "global",
    *,
    largest: bool = True,
) -> Masks:
    """Keep the top-k (``largest=True``) or bottom-k scores; exactly ``k = round(d · N)`` kept.

    Parameters
    ----------
    scores
        One score tensor per prunable weight, keyed by parameter name (any device).
    sparsity
        Fraction of weights to remove, in [0, 1).
    scope
        ``"global"``: one ranking over all weights (SNIP, GraSP, SynFlow, ProsPr).
        ``"layer"``: each layer keeps its own top ``d · n_l`` weights, the integer counts chosen by
        :func:`apportion` so the global count is still exactly ``round(d · N)``.
    largest
        Keep the largest scores (``False``: keep the smallest, as GraSP does).

    Returns
    -------
    dict[str, torch.BoolTensor]
        CPU boolean masks with the scores' shapes, ``True`` = kept.

    Notes
    -----
    Ties at the threshold are broken by position: the weight that comes first in the
    concatenation of the flattened tensors (in the order of ``scores``) is kept. The threshold is
    found with ``torch.kthvalue``, so the result is the same on CPU and CUDA. NaN scores raise.

    Examples
    --------
    >>> import torch
    >>> s = {"w": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    >>> masks_from_scores(s, 0.5)["w"].tolist()  # ties go to the lower index
    [True, True, False, False]
    >>> masks_from_scores(s, 0.5, largest=False)["w"].tolist()
    [True, True, False, False]
    """
    s = check_sparsity(sparsity)
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    flats = _flat_scores(scores)
    sizes = [f.numel() for f in flats]
    k = kept_count(s, sum(sizes))
    if scope == "global":
        masks = _select(scores, k, largest=largest)
    else:
        counts = apportion([(1.0 - s) * n for n in sizes], sizes, k)
        masks = {
            name: _top_k_flat(f, int(c), largest).reshape(t.shape)
            for (name, t), f, c in zip(scores.items(), flats, counts)
        }
    return {name: m.cpu() for name, m in masks.items()}


# --------------------------------------------------------------------------- model and data handling
def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for a stateless model."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's first floating parameter (float32 if none)."""
    for t in model.parameters():
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def prepare(model: nn.Module, sparsity: float) -> tuple[float, dict[str, torch.Tensor]]:
    """Validate ``sparsity`` and the model; return the sparsity and the prunable weights."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    s = check_sparsity(sparsity)
    params = prunable_parameters(model)
    if not params:
        raise ValueError(
            f"{type(model).__name__} has no prunable layer (no Conv1d, Conv2d or Linear weight); "
            "nothing to prune"
        )
    for name, module in prunable_modules(model).items():
        if hasattr(module, "weight_orig"):
            raise ValueError(
                f"module {name!r} is pruned with torch.nn.utils.prune; call "
                "torch.nn.utils.prune.remove on it before scoring"
            )
    return s, params


def require_data(pruner: str, data: Any) -> None:
    """Raise the standard ``ValueError`` when a data pruner gets no data."""
    if data is None:
        raise ValueError(
            f"pruner {pruner!r} needs data: pass data=(x, y) or an iterable of (x, y) batches "
            f"(e.g. a DataLoader); the data-free pruners are {', '.join(sorted(DATA_FREE))}"
        )


def _is_batch(obj: Any) -> bool:
    return (
        isinstance(obj, (tuple, list))
        and len(obj) == 2
        and isinstance(obj[0], torch.Tensor)
        and isinstance(obj[1], torch.Tensor)
    )


def iter_batches(data: Any) -> Iterator[Batch]:
    """Yield ``(x, y)`` batches from one batch or an iterable of batches (e.g. a DataLoader)."""
    if _is_batch(data):
        yield data[0], data[1]
        return
    if isinstance(data, torch.Tensor) or not isinstance(data, Iterable):
        raise ValueError(
            f"data must be an (x, y) tuple of tensors or an iterable of such batches, "
            f"got {type(data).__name__}"
        )
    for i, batch in enumerate(data):
        if not _is_batch(batch):
            raise ValueError(
                f"batch {i} of data is a {type(batch).__name__}, expected an (x, y) pair of tensors"
            )
        yield batch[0], batch[1]


def first_batch(data: Any) -> Batch:
    """The first ``(x, y)`` batch of ``data``; a ``ValueError`` if there is none."""
    for batch in iter_batches(data):
        return batch
    raise ValueError("data yielded no batch")


def cycle_batches(data: Any, n: int) -> list[Batch]:
    """``n`` batches from ``data``, cycling through the batches already read when it runs out.

    Batches are cycled from memory rather than by iterating ``data`` again, so a one-shot iterator
    works and a shuffling loader is not asked for a new epoch.
    """
    seen: list[Batch] = []
    for batch in iter_batches(data):
        seen.append(batch)
        if len(seen) == n:
            return seen
    if not seen:
        raise ValueError("data yielded no batch")
    return [seen[i % len(seen)] for i in range(n)]


def to_model(batch: Batch, device: torch.device, dtype: torch.dtype) -> Batch:
    """Move a batch to the model's device; floating inputs take the model's dtype."""
    x, y = batch
    x = x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device)
    return x, y.to(device)


@contextlib.contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Run a block with the global RNG (CPU and ``device``) seeded, restoring it afterwards.

    Dropout in a training-mode forward and a shuffling DataLoader draw from the global RNG; forking
    it makes them deterministic for ``seed`` without disturbing the caller's random stream.
    """
    # torch.manual_seed would also reseed every other GPU without restoring it: seed only the
    # generators that fork_rng saves.
    devices = []
    if device.type == "cuda":
        devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(int(seed))
        for index in devices:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


# --------------------------------------------------------------------------- input checks
def check_seed(seed: Any) -> int:
    """``seed`` as an int, or a ``TypeError`` naming it (a float such as 1.5 is no seed)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        if isinstance(seed, (float, np.floating)) and float(seed).is_integer():
            return int(seed)
        raise TypeError(f"seed must be an integer, got {seed!r} ({type(seed).__name__})")
    return int(seed)


def check_finite_weights(model: nn.Module, pruner: str) -> None:
    """Raise a :class:`~mgelib.errors.WeightError` naming the first parameter or buffer holding
    NaN or ±inf: every score of a pruner would be NaN, and the message would blame the scores."""
    for kind, items in (("parameter", model.named_parameters()), ("buffer", model.named_buffers())):
        for name, t in items:
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                n_nan = int(torch.isnan(t).sum())
                n_inf = int(torch.isinf(t).sum())
                raise WeightError(
                    f"{pruner}: {kind} {name!r} holds {n_nan} NaN and {n_inf} infinite values "
                    f"(of {t.numel()}); pruning scores of such a model are undefined. Re-initialise "
                    "the model (mgelib.models.build) or fix the weights before pruning"
                )


def check_options(pruner: str, fn: Any, options: Mapping[str, Any]) -> None:
    """A ``TypeError`` naming any option ``fn`` does not take, with the ones it does (and the
    closest spelling), before any scoring."""
    import difflib
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    fixed = {"model", "sparsity", "data", "seed", "input_shape"}
    accepted = sorted(
        n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in fixed
    )
    for key in options:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"pruner {pruner!r} has no option {key!r}{hint}. It accepts: "
                f"{', '.join(accepted) or 'no options'}"
            )


def forward_checked(net: nn.Module, x: torch.Tensor, pruner: str, *, what: str = "batch") -> Any:
    """``net(x)``, with a shape mismatch reported as a :class:`~mgelib.errors.BatchError` that
    names the input shape instead of torch's ``mat1 and mat2 shapes cannot be multiplied``."""
    try:
        return net(x)
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BatchError(
            f"{pruner}: {type(net).__name__} cannot run on the {what} of shape "
            f"{tuple(x.shape)} (one input: {tuple(x.shape[1:])}): {first}. Check that the data "
            "(or input_shape) matches the model's in_channels and input size"
        ) from err


def check_labels(
    pruner: str, logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batch: int = 0
) -> None:
    """Labels a classifier with ``logits.shape[-1]`` outputs can take: integer class indices in
    ``[0, outputs)``, one per input — checked before ``cross_entropy`` fails with
    ``IndexError: Target 50 is out of bounds``."""
    if y.dtype.is_floating_point or y.is_complex() or y.dtype == torch.bool:
        raise BatchError(
            f"{pruner}: labels of batch {batch} are {y.dtype}; they must be integer class "
            "indices (torch.long), e.g. y.long()"
        )
    if y.dim() != 1 or len(y) != len(x):
        raise BatchError(
            f"{pruner}: batch {batch} has {len(x)} inputs but labels of shape {tuple(y.shape)}; "
            "give one class index per input"
        )
    outputs = int(logits.shape[-1])
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= outputs):
        raise BatchError(
            f"{pruner}: labels of batch {batch} range from {int(y.min())} to {int(y.max())} but "
            f"the model has {outputs} outputs (classes 0 … {outputs - 1}); build the model with "
            "num_classes = the dataset's number of classes"
        )
