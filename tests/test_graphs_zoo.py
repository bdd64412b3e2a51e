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

from mgelib.graphs import encode, estimate_edges, plan_for
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
    apply_masks(model, masks)
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


def jacobians(oracle: nn.Module, shape: tuple, layers: list[str], picks: dict) -> tuple:
    """One forward pass of the linearised copy at a positive input, then (as bool patterns):
    ``∂ logits / ∂ input`` and ``∂ logits / ∂ layer`` for every layer (one backward pass per
    logit), and rows ``picks[layer]`` of ``∂ layer / ∂ input``."""
    gen = torch.Generator().manual_seed(1)
    x = (torch.rand(1, *shape, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    outs: dict = {}
    modules = dict(oracle.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda _m, _a, out, n=n: outs.__setitem__(n, out))
        for n in layers
    ]
    try:
        with Linearised():
            logits = oracle(x).reshape(-1)
    finally:
        for h in handles:
            h.remove()
    leaves = [x, *(outs[n] for n in layers)]
    down = [[] for _ in leaves]
    for j in range(logits.numel()):
        grads = torch.autograd.grad(logits[j], leaves, retain_graph=True, allow_unused=True)
        for k, (g, leaf) in enumerate(zip(grads, leaves)):
            down[k].append(
                np.zeros(leaf.numel(), bool) if g is None else (g.reshape(-1) != 0).numpy()
            )
    up = {}
    for n, rows in picks.items():
        flat = outs[n].reshape(-1)
        up[n] = np.array([
            (torch.autograd.grad(flat[int(r)], x, retain_graph=True)[0].reshape(-1) != 0).numpy()
            for r in rows
        ])  # fmt: skip
    return [np.array(d) for d in down], up


def check_paths(name: str) -> dict:
    model, shape = masked(name)
    graph = encode(model, shape, keep_input_padding=False, identity_shortcuts=True)
    plan = plan_for(model, shape, keep_input_padding=False, identity_shortcuts=True)
    merged = {plan.partitions[s.target].layer for s in plan.steps
              if isinstance(s, IdentityStep) or (isinstance(s, ConvStep) and s.role == "shortcut")}  # fmt: skip
    off = graph.offsets
    rng = np.random.default_rng(0)
    last = len(graph.dims) - 1
    layers = graph.layers[1:last]
    picks = {
        n: rng.choice(int(graph.dims[p]), size=min(6, int(graph.dims[p])), replace=False)
        for p, n in enumerate(layers, start=1)
        if n not in merged  # a merged partition is the sum of the layer and a shortcut
    }
    down, up = jacobians(oracle_copy(model), shape, layers, picks)
    back = reach_back(graph.adjacency, off, np.arange(off[last], off[last + 1]))
    stats = {"checked": 0, "nonzero": 0, "entries": 0}
    for p, want in enumerate(down):  # input (p = 0) and every layer → logits
        got = back[:, off[p] : off[p + 1]]
        where = graph.layers[p]
        assert np.array_equal(want, got), (
            f"{name}: {where} → logits paths differ ({(want != got).sum()})"
        )
        stats["checked"] += 1
    for n, rows in picks.items():  # input → layer, at internal cuts
        p = graph.layers.index(n)
        got = reach_back(graph.adjacency, off, off[p] + rows)[:, off[0] : off[1]]
        want = up[n]
        assert np.array_equal(want, got), (
            f"{name}: input → {n} paths differ ({(want != got).sum()})"
        )
        stats["checked"] += 1
        stats["nonzero"] += int(want.sum())
        stats["entries"] += int(want.size)
    return stats


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_encodes_and_passes_the_path_oracle(name):
    stats = check_paths(name)
    assert 0 < stats["nonzero"] < stats["entries"], "the Jacobians must be neither empty nor full"


#: Models where parallel edges arise (overlapping pools, SE broadcast, shared-source roots).
_FAST = {"alexnet_like", "senet18", "dla", "googlenet", "resnet20_option_a"}


@pytest.mark.parametrize(
    "name", [n if n in _FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(ZOO)]
)
def test_zoo_model_encodes_with_paper_conventions(name):
    """Default options (input padding kept, identity shortcuts not encoded) and compat mode
    encode too; without identity edges the graph has at most as many edges; ``estimate_edges``
    is exact (after parallel edges are merged, e.g. overlapping pools)."""
    model, shape = masked(name)
    full = encode(model, shape, identity_shortcuts=True)
    paper = encode(model, shape)
    assert 0 < paper.n_edges <= full.n_edges
    assert estimate_edges(model, shape) == paper.n_edges
    assert estimate_edges(model, shape, identity_shortcuts=True) == full.n_edges
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


@pytest.mark.parametrize(
    "name",
    [
        "alexnet_like",
        pytest.param("mobilenet", marks=pytest.mark.slow),
        pytest.param("vgg", marks=pytest.mark.slow),
    ],
)
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


@pytest.mark.parametrize("name", sorted(ZOO))
@pytest.mark.parametrize("identity", [False, True], ids=["plain", "identity"])
def test_straight_into_csr_equals_the_edge_list_path(name, identity, monkeypatch):
    """The builder writes plain plans straight into the CSR (``csr.steps_to_csr``); the edge
    list → CSR path is the reference: the same arrays bit for bit, on every zoo model, on 1 and
    2 threads (plans that may repeat an edge take the edge-list path either way)."""
    import numba

    from mgelib.graphs import mge

    model, shape = masked(name)
    graphs = []
    previous = numba.get_num_threads()
    try:
        for direct, threads in (
            (False, 1),
            (True, 1),
            (True, min(2, numba.config.NUMBA_NUM_THREADS)),
        ):
            monkeypatch.setattr(mge, "DIRECT", direct)
            numba.set_num_threads(threads)
            graphs.append(encode(model, shape, identity_shortcuts=identity).adjacency)
    finally:
        numba.set_num_threads(previous)
    want = graphs[0]
    for got in graphs[1:]:
        assert got.indices.dtype == want.indices.dtype and got.has_sorted_indices
        for a, b in zip(
            (got.indptr, got.indices, got.data), (want.indptr, want.indices, want.data)
        ):
            assert np.array_equal(a, b)
