"""Every common CIFAR architecture encodes, and its MGE passes an end-to-end path oracle.

Oracle (shares no code with :mod:`mgelib.graphs`): the *linearised* copy of a masked model —
float64, conv/linear weights ``|w|·mask``, biases 1, every activation the identity and BatchNorm
``x + 1`` (positive values everywhere, so a product's factor never vanishes),
max pooling → average pooling (a :class:`torch.overrides.TorchFunctionMode`) — evaluated at a
positive input. Every factor is then non-negative, so no Jacobian entry cancels: output element
``j`` depends on input element ``i`` (a non-zero Jacobian entry) iff the MGE (with
``identity_shortcuts=True``, which encodes every parameter-free path) has a path from node ``i``
to node ``j``. Products (SE gates, swish) obey the product rule, so their Jacobian is the union.

Checked at the input → logits and at internal cuts: for every layer whose partition is its own
output (no shortcut merged into it), the rows of ``∂ layer / ∂ input`` for sampled output
elements, and for every layer the columns of ``∂ logits / ∂ layer``. Masks are random at
s = 0.98 (at least two kept weights per output unit, so thin layers stay connected): the
Jacobians are far from full.
"""

from __future__ import annotations

import copy
import hashlib

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode
from zoo import ZOO, build

from mgelib.graphs import encode, plan_for
from mgelib.graphs.plan import ConvStep, IdentityStep
from mgelib.masks import apply_masks

pytestmark = pytest.mark.usefixtures("torch_single_thread")

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Linear)


def sparse_masks(model: nn.Module, sparsity: float = 0.98, seed: int = 0) -> dict:
    """Random masks at ``sparsity``, with at least two kept weights per output unit."""
    gen = torch.Generator().manual_seed(seed)
    masks = {}
    for name, m in model.named_modules():
        if isinstance(m, WEIGHTED):
            fan_in = m.weight[0].numel()
            keep = max(1.0 - sparsity, min(1.0, 2.0 / fan_in))
            masks[f"{name}.weight"] = torch.rand(m.weight.shape, generator=gen) < keep
    return masks


def masked(name: str) -> tuple[nn.Module, tuple]:
    model, shape = build(name)
    masks = sparse_masks(model)
    with torch.no_grad():
        for name_, m in model.named_modules():
            if isinstance(m, WEIGHTED):
                m.weight.mul_(masks[f"{name_}.weight"])
    conv2d = {k: v for k, v in masks.items() if v.dim() != 3}
    apply_masks(model, conv2d)
    return model, shape


_IDENTITY = {F.relu, torch.relu, F.relu6, F.hardtanh, torch.sigmoid, F.sigmoid, torch.tanh,
             F.silu, torch.Tensor.sigmoid, torch.Tensor.relu, F.dropout}  # fmt: skip


class Linearised(TorchFunctionMode):
    """Activations and BatchNorm → identity, max pooling → average pooling."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _IDENTITY:
            return args[0]
        if func is F.batch_norm:  # identity plus a positive shift: a product's factor never
            return args[0] + 1.0  # vanishes because a masked channel made it zero
        if func in (F.max_pool2d, F.max_pool1d, torch.max_pool2d, torch.max_pool1d):
            a = list(args) + [None] * 6
            k = kwargs.get("kernel_size", a[1])
            s = kwargs.get("stride", a[2]) or k
            p = kwargs.get("padding", a[3]) or 0
            ceil = kwargs.get("ceil_mode", a[5]) or False
            pool = F.avg_pool2d if func in (F.max_pool2d, torch.max_pool2d) else F.avg_pool1d
            return pool(args[0], k, s, p, ceil_mode=ceil)
        if func is F.adaptive_max_pool2d:
            return F.adaptive_avg_pool2d(
                args[0], args[1] if len(args) > 1 else kwargs["output_size"]
            )
        if func is torch.maximum:
            return args[0] + args[1]
        return func(*args, **kwargs)


def oracle_copy(model: nn.Module) -> nn.Module:
    oracle = copy.deepcopy(model).double().eval()
    for m in oracle.modules():
        if isinstance(m, WEIGHTED):
            mask = getattr(m, "weight_mask", None)
            w = m.weight.detach()
            kept = mask.bool() if isinstance(mask, torch.Tensor) else w != 0
            if hasattr(m, "weight_orig"):
                torch.nn.utils.prune.remove(m, "weight")
            with torch.no_grad():
                m.weight.copy_(w.abs() * kept)
                if m.bias is not None:
                    m.bias.fill_(1.0)
    return oracle


def reach_back(adj: sp.csr_array, offsets: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """``(len(seeds), V)`` bool: which nodes have a path to each seed node. Edges go from lower
    to higher partitions, so one sweep over partitions in reverse order suffices."""
    n = adj.shape[0]
    y = np.zeros((len(seeds), n))
    y[np.arange(len(seeds)), seeds] = 1.0
    adj = sp.csr_array(adj, dtype=np.float64)
    adj.data[:] = 1.0
    for p in range(len(offsets) - 2, -1, -1):
        a, b = offsets[p], offsets[p + 1]
        later = adj[a:b, b:]  # edges from partition p to later partitions
        if later.nnz:
            y[:, a:b] = np.maximum(y[:, a:b], (later @ y[:, b:].T).T > 0)
    return y > 0


def jacobian_rows(oracle: nn.Module, shape: tuple, cut: str | None, picks: np.ndarray,
                  at: str | None = None) -> np.ndarray:  # fmt: skip
    """Rows ``picks`` of ``∂ out / ∂ leaf`` (``out`` = layer ``cut``'s output or the logits;
    ``leaf`` = the input, or layer ``at``'s output) as a bool matrix."""
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, *shape, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    store: dict = {}
    handles = []
    modules = dict(oracle.named_modules())
    if at is not None:

        def leaf(_m, _a, out):
            store["leaf"] = out.detach().requires_grad_()
            return store["leaf"]

        handles.append(modules[at].register_forward_hook(leaf))
    if cut is not None:
        handles.append(
            modules[cut].register_forward_hook(lambda _m, _a, out: store.__setitem__("out", out))
        )
    try:
        with Linearised():
            logits = oracle(x)
    finally:
        for h in handles:
            h.remove()
    out = (store["out"] if cut is not None else logits).reshape(-1)
    src = store["leaf"] if at is not None else x
    rows = []
    for j in picks:
        (g,) = torch.autograd.grad(out[int(j)], src, retain_graph=True, allow_unused=True)
        rows.append(np.zeros(src.numel(), bool) if g is None else (g.reshape(-1) != 0).numpy())
    return np.array(rows)


def check_paths(name: str) -> dict:
    model, shape = masked(name)
    graph = encode(model, shape, keep_input_padding=False, identity_shortcuts=True)
    plan = plan_for(model, shape, keep_input_padding=False, identity_shortcuts=True)
    merged = {plan.partitions[s.target].layer for s in plan.steps
              if isinstance(s, IdentityStep) or (isinstance(s, ConvStep) and s.role == "shortcut")}  # fmt: skip
    oracle = oracle_copy(model)
    off = graph.offsets
    rng = np.random.default_rng(0)
    last = len(graph.dims) - 1
    n_out = int(graph.dims[last])
    # end to end, and ∂ logits / ∂ layer for every layer (one backward sweep from the logits)
    back = reach_back(graph.adjacency, off, np.arange(off[last], off[last + 1]))
    want = jacobian_rows(oracle, shape, None, np.arange(n_out))
    got = back[:, off[0] : off[1]]
    assert np.array_equal(want, got), (
        f"{name}: input → logits paths differ ({(want != got).sum()} entries)"
    )
    stats = {"checked": 1, "nonzero": int(want.sum()), "entries": int(want.size)}
    for p, layer in enumerate(graph.layers[1:last], start=1):
        want = jacobian_rows(oracle, shape, None, np.arange(n_out), at=layer)
        got = back[:, off[p] : off[p + 1]]
        assert np.array_equal(want, got), (
            f"{name}: {layer} → logits paths differ ({(want != got).sum()})"
        )
        stats["checked"] += 1
        if layer in merged:
            continue  # its partition is the sum of the layer and a shortcut
        picks = rng.choice(int(graph.dims[p]), size=min(12, int(graph.dims[p])), replace=False)
        want = jacobian_rows(oracle, shape, layer, picks)
        got = reach_back(graph.adjacency, off, off[p] + picks)[:, off[0] : off[1]]
        assert np.array_equal(want, got), (
            f"{name}: input → {layer} paths differ ({(want != got).sum()})"
        )
        stats["checked"] += 1
        stats["nonzero"] += int(want.sum())
        stats["entries"] += int(want.size)
    return stats


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_encodes_and_passes_the_path_oracle(name):
    stats = check_paths(name)
    assert 0 < stats["nonzero"] < stats["entries"], "the Jacobians must be neither empty nor full"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_encodes_with_paper_conventions(name):
    """Default options (input padding kept, identity shortcuts not encoded) and compat mode
    encode too; without identity edges the graph has at most as many edges."""
    model, shape = masked(name)
    full = encode(model, shape, identity_shortcuts=True)
    paper = encode(model, shape)
    assert 0 < paper.n_edges <= full.n_edges
    assert encode(model, shape, compat="mge-snn").n_edges > 0


def test_option_a_shortcut_adds_identity_edges_only_when_asked():
    """akamaster's option-A shortcut (strided slice + channel zero-pad) has no parameters: no
    edges by default, weight-1 identity edges to the kept channels with identity_shortcuts=True."""
    model, shape = masked("resnet20_option_a")
    plain = encode(model, shape, keep_input_padding=False)
    ident = encode(model, shape, keep_input_padding=False, identity_shortcuts=True)
    assert plain.layers == ident.layers
    extra = ident.n_edges - plain.n_edges
    # 3 blocks per... 6 blocks: 4 same-shape identities + 2 option-A (half the channels each)
    per_block = [4 * 32 * 32] * 2 + [8 * 16 * 16 // 2, 8 * 16 * 16, 16 * 8 * 8 // 2, 16 * 8 * 8]
    assert extra == sum(per_block)


def _hash(graph) -> str:
    s, t, w = graph.edges()
    return hashlib.sha256(s.tobytes() + t.tobytes() + w.tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["mobilenet", "vgg", "alexnet_like"])
def test_fx_and_aten_paths_give_identical_graphs(name):
    """The fast fx path and the ATen path agree on models both handle."""
    from mgelib.graphs import layer_weights
    from mgelib.graphs.mge import build_mge
    from mgelib.graphs.trace import _trace_aten, _trace_fx

    model, shape = masked(name)
    lw = layer_weights(model)
    for kip, ident in [(True, False), (False, True)]:
        a = build_mge(_trace_fx(model, shape, kip, ident), lw)
        b = build_mge(_trace_aten(model, shape, kip, ident), lw)
        assert a.layers == b.layers and list(a.dims) == list(b.dims)
        assert _hash(a) == _hash(b)
