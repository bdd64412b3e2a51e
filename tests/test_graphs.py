"""Tests of mgelib.graphs (method §5) with values known by hand: node counts, the bipartite
baselines, exports, determinism and caching, identity shortcuts and parallel edges.

The MGE's edges themselves are checked against the Jacobian oracle in ``test_graphs_oracle.py``,
against the authors' fixtures in ``test_graphs_fixtures.py``; bad input in
``test_graphs_errors.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from mgelib import models
from mgelib.graphs import (
    encode,
    estimate_edges,
    layer_weights,
    plan_for,
    read_edgelist,
    to_igraph,
    to_networkx,
    write_edgelist,
)
from mgelib.graphs.mge import count_edges
from mgelib.graphs.trace import trace_plan
from mgelib.masks import apply_masks, prunable_modules
from mgelib.pruning import erk

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: method §5.1, "Sizes to check against" (CIFAR-10, 3×32×32, with the 3×34×34 padded input);
#: MobileNetV2 from the ``nodes`` column of the authors' published table (method §9, unrolled.csv).
PAPER_NODES = {
    "conv6": 233_366,
    "resnet20": 191_894,
    "resnet32": 306_582,
    "wrn28_2": 478_614,
    "mobilenetv2": 1_676_182,
}


def random_masks(model: nn.Module, keep: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        f"{n}.weight": torch.rand(m.weight.shape, generator=gen) < keep
        for n, m in prunable_modules(model).items()
    }


def masked(name: str, size: int = 8, keep: float = 0.3) -> nn.Module:
    model = models.build(name, 3, 10, size, seed=0)
    return apply_masks(model, random_masks(model, keep)).eval()


def edge_keys(graph) -> np.ndarray:
    src, tgt, _ = graph.edges()
    return src.astype(np.int64) * graph.n_nodes + tgt.astype(np.int64)


# ------------------------------------------------------------------------------ node counts (§5.1)
@pytest.mark.parametrize("name", sorted(PAPER_NODES))
@pytest.mark.parametrize(("classes", "extra"), [(10, 0), (100, 90), (200, 190)])
def test_node_counts_equal_the_paper(name, classes, extra):
    """method §5.1: CIFAR-10 sizes; CIFAR-100 adds 90 nodes, Tiny-ImageNet (200 classes, resized to
    3×32×32) adds 190."""
    model = models.build(name, 3, classes, 32, seed=0)
    plan = plan_for(model, (3, 32, 32))
    assert plan.n_nodes == PAPER_NODES[name] + extra
    assert plan.dims[0] == 3 * 34 * 34 and plan.dims[-1] == classes


def test_node_count_of_a_built_graph_with_one_kept_weight():
    """A Graph (not only the plan) has the paper's node count; one kept tap of the stem conv
    yields one edge per output position whose read position exists in the padded grid."""
    model = models.build("resnet20", seed=0)
    masks = {k: torch.zeros_like(m, dtype=torch.bool) for k, m in random_masks(model).items()}
    masks["conv1.weight"][5, 2, 0, 1] = True  # W[o=5, i=2, dy=0, dx=1]
    graph = encode(model, (3, 32, 32), masks=masks)
    assert graph.n_nodes == PAPER_NODES["resnet20"]
    assert graph.n_edges == 32 * 32  # padded 34×34 input: every (p, q) reads (p + 0, q + 1)
    src, tgt, _ = graph.edges()
    info = graph.node_info(src)
    assert set(info["channel"]) == {2} and info["y"].max() == 31 and info["x"].min() == 1
    assert set(graph.node_info(tgt)["channel"]) == {5}


def test_binary_and_explicit_edge_weights():
    """``weights="binary"`` gives weight 1 on the same edges; a mapping of tensors replaces the
    model's weights (|·|, float16-rounded) without changing the pattern, which the masks define."""
    model = masked("resnet20")
    base = encode(model, (3, 8, 8))
    binary = encode(model, (3, 8, 8), weights="binary")
    assert np.array_equal(edge_keys(binary), edge_keys(base))
    assert set(binary.adjacency.data.tolist()) == {1.0} and binary.meta["weights"] == "binary"
    explicit = {
        f"{n}.weight": torch.full_like(m.weight, -0.1) for n, m in prunable_modules(model).items()
    }
    other = encode(model, (3, 8, 8), weights=explicit)
    assert np.array_equal(edge_keys(other), edge_keys(base)) and other.meta["weights"] == "explicit"
    assert set(other.adjacency.data.tolist()) == {float(_f16(0.1))}


# ------------------------------------------------------------------------------ BGEs (§5.2)
def _bge_conv() -> tuple[nn.Module, dict, np.ndarray, np.ndarray]:
    """Conv2d(2, 3, 2) with chosen weights and mask (slice W[1, 0] wholly pruned; pruned weights
    stay non-zero in the model, so only the mask can hide them)."""
    w = np.random.default_rng(4).normal(size=(3, 2, 2, 2)).astype(np.float32)
    kept = (np.arange(24) % 5 != 1).reshape(3, 2, 2, 2)
    kept[1, 0] = False
    net = nn.Sequential(nn.Conv2d(2, 3, 2, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.from_numpy(w))
    return net, {"0.weight": torch.from_numpy(kept)}, w, kept


def _f16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def _edges_by_key(graph) -> dict[tuple[int, int], float]:
    src, tgt, w = graph.edges()
    return dict(zip(zip(src.tolist(), tgt.tolist()), w.tolist()))


@pytest.mark.parametrize("precision", ["float16", "float32"])
def test_rolled_bge_of_a_hand_made_conv(precision):
    """Rolled (Hoang et al.): C_in·k·k + C_out nodes, left order (c_in, dy, dx) row-major, one
    edge per kept weight, weight |w| (float16-rounded in paper mode)."""
    net, masks, w, kept = _bge_conv()
    g = encode(net, encoding="rolled", masks=masks, weight_precision=precision)["0"]
    assert g.n_nodes == 2 * 2 * 2 + 3 and list(g.dims) == [8, 3]
    assert g.shapes == [(2, 2, 2), (3,)] and g.layers == ["0:in", "0"]
    assert g.n_edges == int(kept.sum())
    rnd = _f16 if precision == "float16" else (lambda v: np.float32(v))
    want = {
        (i * 4 + dy * 2 + dx, 8 + o): float(rnd(abs(w[o, i, dy, dx])))
        for o, i, dy, dx in zip(*np.nonzero(kept))
    }
    assert _edges_by_key(g) == want
    assert g.meta["kept"] == int(kept.sum()) and g.meta["weights"] == 24
    assert g.meta["density"] == pytest.approx(kept.sum() / 24)


def test_rolled_channel_bge_of_a_hand_made_conv():
    """Rolled-channel (Prabhu et al.): C_in + C_out nodes, an edge iff the k×k slice has a kept
    weight, weight = L2 norm of the kept weights, rounded to float16 AFTER the norm."""
    net, masks, w, kept = _bge_conv()
    g = encode(net, encoding="rolled_channel", masks=masks)["0"]
    assert list(g.dims) == [2, 3]
    norms = np.sqrt(((np.abs(w) * kept).astype(np.float64) ** 2).sum(axis=(2, 3)))
    want = {
        (i, 2 + o): float(_f16(norms[o, i])) for o, i in zip(*np.nonzero(kept.any(axis=(2, 3))))
    }
    assert len(want) == 5  # W[1, 0] is wholly pruned: no edge 0 → 3
    assert _edges_by_key(g) == want
    # the test discriminates: norm-then-round differs from round-then-norm on these weights
    rounded_first = np.sqrt(((_f16(np.abs(w)) * kept).astype(np.float64) ** 2).sum(axis=(2, 3)))
    assert (_f16(rounded_first) != _f16(norms)).any()
    g32 = encode(net, encoding="rolled_channel", masks=masks, weight_precision="float32")["0"]
    assert _edges_by_key(g32) == {k: float(np.float32(norms[k[1] - 2, k[0]])) for k in want}


def test_bges_of_a_depthwise_conv():
    """Depthwise Conv2d(2, 4, 3, groups=2): rolled reshapes the 4×1×3×3 weight (9 left nodes);
    rolled-channel joins input channel o // 2 to output o only."""
    net = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2, bias=False))
    w = net[0].weight.detach().numpy()
    kept = np.ones((4, 1, 3, 3), dtype=bool)
    kept[3] = False  # output 3 fully pruned
    kept[0, 0, 1, :] = False
    masks = {"0.weight": torch.from_numpy(kept)}
    rolled = encode(net, encoding="rolled", masks=masks)["0"]
    assert list(rolled.dims) == [9, 4] and rolled.n_edges == int(kept.sum())
    assert _edges_by_key(rolled) == {
        (dy * 3 + dx, 9 + o): float(_f16(abs(w[o, 0, dy, dx])))
        for o, _, dy, dx in zip(*np.nonzero(kept))
    }
    chan = encode(net, encoding="rolled_channel", masks=masks)["0"]
    assert list(chan.dims) == [2, 4]
    norms = np.sqrt(((np.abs(w) * kept).astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    assert _edges_by_key(chan) == {(o // 2, 2 + o): float(_f16(norms[o])) for o in range(3)}


@pytest.mark.parametrize("encoding", ["rolled", "rolled_channel"])
def test_bges_of_a_linear_layer(encoding):
    """Linear(3, 2): left = in-features, right = out-features, edge iff kept, weight |w|."""
    net = nn.Sequential(nn.Linear(3, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    kept = np.array([[True, False, True], [False, True, True]])
    masks = {"0.weight": torch.from_numpy(kept), "2.weight": torch.ones(1, 2, dtype=torch.bool)}
    graphs = encode(net, encoding=encoding, masks=masks)
    assert list(graphs) == ["0", "2"]  # module names, registration order
    g = graphs["0"]
    w = net[0].weight.detach().numpy()
    assert list(g.dims) == [3, 2]
    assert _edges_by_key(g) == {
        (i, 3 + o): float(_f16(abs(w[o, i]))) for o, i in zip(*np.nonzero(kept))
    }


# ------------------------------------------------------------------------------ exports
@pytest.fixture(scope="module")
def resnet_graph():
    return encode(masked("resnet20"), (3, 8, 8))


def test_to_igraph_has_the_same_edges_and_weights(resnet_graph):
    g = to_igraph(resnet_graph)
    src, tgt, w = resnet_graph.edges()
    assert g.is_directed() and g.vcount() == resnet_graph.n_nodes
    assert g.ecount() == resnet_graph.n_edges
    got = np.array(g.get_edgelist(), dtype=np.int64)
    assert np.array_equal(got[:, 0], src) and np.array_equal(got[:, 1], tgt)
    assert np.array_equal(np.array(g.es["weight"]), w.astype(np.float64))
    subset = np.array(g.vs["subset"])
    assert np.array_equal(np.bincount(subset), resnet_graph.dims)


def test_to_networkx_of_a_small_graph():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    graph = encode(net, (1, 4, 4))
    g = to_networkx(graph)
    assert g.is_directed() and g.number_of_nodes() == graph.n_nodes == 36 + 32 + 3
    src, tgt, w = graph.edges()
    assert g.number_of_edges() == graph.n_edges
    assert {(u, v): d["weight"] for u, v, d in g.edges(data=True)} == dict(
        zip(zip(src.tolist(), tgt.tolist()), w.astype(float).tolist())
    )
    subsets = [g.nodes[n]["subset"] for n in (0, 35, 36, 67, 68, 70)]
    assert subsets == [0, 0, 1, 1, 2, 2]


def test_edgelist_parquet_round_trip(resnet_graph, tmp_path):
    path = write_edgelist(resnet_graph, tmp_path / "sub" / "g.parquet")
    back = read_edgelist(path)
    a, b = resnet_graph.adjacency, back.adjacency
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.data, b.data) and b.data.dtype == np.float32
    assert list(back.dims) == list(resnet_graph.dims)
    assert back.layers == resnet_graph.layers and back.shapes == resnet_graph.shapes
    assert back.encoding == "mge" and back.meta == resnet_graph.meta
    assert not list(tmp_path.glob("sub/.*tmp"))  # atomic write left no temporary


def test_node_info_recovers_partition_channel_and_position(resnet_graph):
    """Nodes are numbered partition by partition, (channel, y, x) row-major within (method §5)."""
    g = resnet_graph
    off = g.offsets
    assert g.shapes[0] == (3, 10, 10)  # 3×8×8 input kept with its padding border
    ids = [
        1 * 100 + 2 * 10 + 3,  # input (c=1, y=2, x=3) on the padded grid
        off[2] + 1 * 64 + 5 * 8 + 7,  # layer1.0.conv1 (16×8×8): c=1, y=5, x=7
        off[9] + 31 * 16 + 3 * 4 + 0,  # layer2.0.conv2 (32×4×4): c=31, y=3, x=0
        g.n_nodes - 1,  # the last class of the classifier
    ]
    info = g.node_info(ids)
    assert info["partition"].tolist() == [0, 2, 9, len(g.dims) - 1]
    assert info["layer"].tolist() == ["input", "layer1.0.conv1", "layer2.0.conv2", "linear"]
    assert info["channel"].tolist() == [1, 1, 31, 9]
    assert info["y"].tolist() == [2, 5, 3, 0] and info["x"].tolist() == [3, 7, 0, 0]
    with pytest.raises(ValueError, match="node ids"):
        g.node_info([g.n_nodes])


# ------------------------------------------------------------------------------ determinism, caching
def test_encoding_twice_gives_identical_csr_arrays():
    model = masked("resnet20")
    a, b = (encode(model, (3, 8, 8)) for _ in range(2))
    for attr in ("indptr", "indices", "data"):
        x, y = getattr(a.adjacency, attr), getattr(b.adjacency, attr)
        assert x.dtype == y.dtype and np.array_equal(x, y)
    assert a.adjacency.has_sorted_indices and a.adjacency.data.dtype == np.float32


def test_plan_cache_returns_the_same_plan_for_the_same_architecture():
    a = models.build("resnet20", 3, 10, 8, seed=0)
    b = apply_masks(models.build("resnet20", 3, 10, 8, seed=1), random_masks(a))
    assert plan_for(a, (3, 8, 8)) is plan_for(b, (3, 8, 8))
    assert plan_for(a, (3, 8, 8)) is not plan_for(a, (3, 12, 12))
    assert plan_for(a, (3, 8, 8)) is not plan_for(a, (3, 8, 8), keep_input_padding=False)


class _Toggle(nn.Module):
    """Same modules (same ``repr``) whether or not it pools: the flag changes only ``forward``."""

    def __init__(self, pool: bool) -> None:
        super().__init__()
        self.pool = pool
        self.c = nn.Conv2d(1, 2, 3, padding=1)
        self.d = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.c(x)
        if self.pool:
            x = F.max_pool2d(x, 2)
        return self.d(x)


def test_plan_cache_tells_apart_models_whose_repr_is_equal():
    """BUG (plan cache key): the cache is keyed on ``repr(model)``, which does not show plain
    attributes that change ``forward``; the second model silently gets the first one's plan."""
    shape = (1, 4, 4)
    assert repr(_Toggle(True)) == repr(_Toggle(False))
    plan_for(_Toggle(True), shape)
    plan = plan_for(_Toggle(False), shape)
    assert plan.dims == trace_plan(_Toggle(False), shape).dims == [36, 32, 32]


def test_estimate_edges_equals_the_built_edge_count():
    for name in models.MODELS:
        model = masked(name)
        for kwargs in ({}, {"compat": "mge-snn"}, {"identity_shortcuts": True}):
            graph = encode(model, (3, 8, 8), **kwargs)
            assert estimate_edges(model, (3, 8, 8), **kwargs) == graph.n_edges, (name, kwargs)


def test_identity_shortcuts_add_one_unit_edge_per_position_of_each_identity_block():
    """ResNet-20 at 3×32×32: the 7 identity blocks (layer1.0–2, layer2.1–2, layer3.1–2) each add
    an edge block-input (c, y, x) → block-output (c, y, x) of weight 1: 3·16·32² + 2·32·16² +
    2·64·8² = 73,728 edges; every other edge is unchanged."""
    model = models.build("resnet20", seed=0)
    apply_masks(model, erk(model, 0.98, seed=0))
    base = encode(model, (3, 32, 32))
    ident = encode(model, (3, 32, 32), identity_shortcuts=True)
    layers = base.layers
    blocks = ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    src, tgt = [], []
    for block in blocks:
        first = layers.index(f"{block}.conv1")
        p_in, p_out = first - 1, layers.index(f"{block}.conv2")
        n = int(base.dims[p_in])
        assert n == int(base.dims[p_out])
        src.append(base.offsets[p_in] + np.arange(n))
        tgt.append(base.offsets[p_out] + np.arange(n))
    src, tgt = np.concatenate(src), np.concatenate(tgt)
    assert src.size == 73_728
    assert ident.n_edges == base.n_edges + 73_728
    assert ident.layers == base.layers and list(ident.dims) == list(base.dims)
    extra = sp.csr_array((np.ones(src.size, np.float32), (src, tgt)), shape=base.adjacency.shape)
    assert (base.adjacency.multiply(extra)).nnz == 0  # disjoint from the paper's edges
    diff = ident.adjacency - base.adjacency - extra
    assert diff.count_nonzero() == 0


# ------------------------------------------------------------------------------ parallel edges
@pytest.mark.parametrize("name", models.MODELS)
def test_models_have_no_parallel_edges(name):
    """None of the five models creates parallel edges (non-overlapping pools, shortcuts that skip
    the inner partition): nothing is merged and no edge is lost to scipy's duplicate summing."""
    model = masked(name)
    graph = encode(model, (3, 8, 8))
    assert graph.meta["merged_duplicate_edges"] == 0
    assert not plan_for(model, (3, 8, 8)).may_duplicate
    assert graph.n_edges == estimate_edges(model, (3, 8, 8))


def test_overlapping_pool_windows_merge_parallel_edges_keeping_the_largest_weight():
    """method §5.1: overlapping windows would create parallel edges; they are merged (keeping the
    largest |w|, so every weight is one real weight) and the number merged is recorded.
    A 3×3 map, max pool 2 stride 1 (four windows, the centre in all four), flatten, Linear(4, 1):
    the centre node gets 4 copies, edge nodes 2, corners 1 → 16 raw edges, 9 kept, 7 merged."""
    net = nn.Sequential(
        nn.Conv2d(1, 1, 1, bias=False), nn.MaxPool2d(2, stride=1), nn.Flatten(), nn.Linear(4, 1)
    )
    with torch.no_grad():
        net[3].weight.copy_(torch.tensor([[0.5, -2.0, 0.25, 1.0]]))
    graph = encode(net, (1, 3, 3), weight_precision="float32")
    # estimate_edges is exact after merging (issue 17; it used to count the 9 + 16 raw edges)
    assert estimate_edges(net, (1, 3, 3)) == graph.n_edges == 9 + 9
    assert graph.meta["merged_duplicate_edges"] == 7
    off = graph.offsets
    block = graph.adjacency[off[1] : off[2], off[2] :].toarray().ravel()
    # windows: (0,0) w 0.5, (0,1) w 2, (1,0) w 0.25, (1,1) w 1 — max over windows holding (y, x)
    want = [0.5, 2.0, 2.0, 0.5, 2.0, 2.0, 0.25, 1.0, 1.0]
    assert block.tolist() == want


class _DoubleShortcut(nn.Module):
    """A block whose output adds a 1×1 shortcut conv *and* the identity of the same input."""

    def __init__(self) -> None:
        super().__init__()
        self.c0 = nn.Conv2d(2, 3, 3, padding=1)
        self.c1 = nn.Conv2d(3, 3, 3, padding=1)
        self.c2 = nn.Conv2d(3, 3, 3, padding=1)
        self.sc = nn.Conv2d(3, 3, 1)
        self.fc = nn.Linear(3 * 4 * 4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.c0(x))
        out = self.c2(F.relu(self.c1(x))) + self.sc(x) + x
        return self.fc(torch.flatten(out, 1))


def test_identity_and_conv_shortcut_on_one_add_merge_parallel_edges():
    """BUG (duplicate detection): with identity_shortcuts=True, the identity edge (c,y,x) →
    (c,y,x) and the 1×1 shortcut tap W[c, c] join the same two nodes. The plan does not flag this,
    so scipy sums the pair (weight |w| + 1, not a real weight) and the merge count says 0."""
    net = _DoubleShortcut()
    shape = (2, 4, 4)
    graph = encode(net, shape, identity_shortcuts=True, weight_precision="float32")
    plan = plan_for(net, shape, identity_shortcuts=True)
    raw = count_edges(plan, layer_weights(net, weights="binary"))  # before merging
    assert graph.meta["merged_duplicate_edges"] == raw - graph.n_edges
    assert estimate_edges(net, shape, identity_shortcuts=True) == graph.n_edges  # exact
    allowed = {1.0} | {
        float(v) for m in prunable_modules(net).values() for v in m.weight.detach().abs().flatten()
    }
    assert set(graph.adjacency.data.tolist()) <= allowed


# ------------------------------------------------------------------------------ bipartite flag
@pytest.mark.parametrize("name", models.MODELS)
@pytest.mark.parametrize("kwargs", [{}, {"compat": "mge-snn"}, {"identity_shortcuts": True}])
def test_bipartite_flag_matches_the_parity_of_every_edge(name, kwargs):
    """``meta["bipartite"]`` (method §6: the ±σ(B) spectrum shortcut) is true iff every edge joins
    partitions whose indices differ by an odd number — checked on the edges themselves."""
    graph = encode(masked(name), (3, 8, 8), **kwargs)
    src, tgt, _ = graph.edges()
    odd = bool(np.all((graph.partition_of(tgt) - graph.partition_of(src)) % 2 == 1))
    assert graph.meta["bipartite"] == odd
