"""The MGE against an independent oracle: the Jacobian of the masked network (method §5.1).

method §5.1 defines a conv/linear layer's MGE edges as "exactly the non-zero pattern of the Jacobian
of the masked layer (with positive weights)", with pooling encoded as window fan-in. The oracle
below computes that Jacobian with PyTorch itself and shares no code with :mod:`mgelib.graphs`:

* an **oracle copy** of the model: conv/linear weights := ``|w| · mask``, biases := 0, BatchNorm in
  eval with mean 0, variance 1, ``eps`` 0, weight 1, bias 0 (exactly the identity), every
  ``MaxPool2d`` replaced by an ``AvgPool2d`` of the same geometry. Every activation of a
  non-negative input is then non-negative, ReLU is the identity on it, and the network between two
  conv/linear layers is *linear*: its Jacobian is its action on basis vectors, every entry is a sum
  of products of non-negative factors (so no entry cancels to zero), and zeros are exact;
* **dataflow** of the copy, found by autograd on one positive sample: which conv/linear outputs
  (or the input) each layer reads. A layer's *source partition* is the latest-executed non-shortcut
  layer it reads (identity shortcuts are not encoded, method §5.1); a shortcut conv (module name
  contains "shortcut") targets the source partition of its first consumer, i.e. its block's
  output;
* **the Jacobian** ``∂ out_L / ∂ act_S`` by pushing basis vectors of ``act_S`` through the copy in
  batches, with every other conv/linear output replaced by zeros (in a linear network that is
  "detached"); layer ``L`` is evaluated twice, with ``|w|·mask`` and with ``mask``: the pattern is
  where the second is non-zero, and the tap's weight is the ratio (pooling factors cancel).

Numerics: the copy runs in float32 up to the layer (an entry reached by one probe is a single
product of average-pooling factors, with exact zeros elsewhere) and the layer in float64, where
``(f·|w|) / f`` of two float32 numbers is exactly ``|w|``. So the comparison is exact: the edge set
as sorted int64 keys, the weights after rounding to float32 (and float16 in paper mode). Each test
model is small (CIFAR models at 6×6 or 8×8 inputs, see :data:`ORACLE_SIZE`).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from mgelib import models
from mgelib.graphs import Graph, encode
from mgelib.masks import apply_masks, prunable_modules

pytestmark = pytest.mark.usefixtures("torch_single_thread")

#: Oracle batches hold at most this many float32 elements per probe tensor (~16 MB).
_MAX_ELEMS = 4_000_000


# --------------------------------------------------------------------------------- test models
class MixedNet(nn.Module):
    """Every operation of method §5.1 in one small network (input 3×16×16).

    stem conv (with bias) → max pool 2 → block A: strided 3×3 main path + **1×1 strided shortcut
    conv** read from the pooled map → block B: **identity shortcut** → **depthwise conv**
    (multiplier 2) → avg pool 2 → 1×1 conv → adaptive avg pool → flatten → linear.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1, bias=True)
        self.bn0 = nn.BatchNorm2d(4)
        self.pool1 = nn.MaxPool2d(2)
        self.a_conv1 = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
        self.a_bn1 = nn.BatchNorm2d(6)
        self.a_conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.a_bn2 = nn.BatchNorm2d(6)
        self.a_shortcut = nn.Sequential(nn.Conv2d(4, 6, 1, stride=2, bias=False), nn.BatchNorm2d(6))
        self.b_conv1 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.b_conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.dw = nn.Conv2d(6, 12, 3, padding=1, groups=6, bias=False)
        self.pool2 = nn.AvgPool2d(2)
        self.pw = nn.Conv2d(12, 8, 1, bias=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.bn0(self.stem(x))))  # 4×8×8
        out = self.a_bn2(self.a_conv2(F.relu(self.a_bn1(self.a_conv1(x)))))  # 6×4×4
        x = F.relu(out + self.a_shortcut(x))
        x = F.relu(self.b_conv2(F.relu(self.b_conv1(x))) + x)
        x = self.pool2(F.relu(self.dw(x)))  # 12×2×2
        return self.fc(self.flatten(self.gap(F.relu(self.pw(x)))))


MIXED_SHAPE = (3, 16, 16)


class FunctionalNet(nn.Module):
    """Functional spellings (input 2×10×10): ``F.avg_pool2d``, an unpadded strided conv on an odd
    map, ``mean(dim=(2, 3), keepdim=True)`` as global pooling, ``view(x.size(0), -1)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)  # 5×5 → 2×2
        self.conv3 = nn.Conv2d(6, 5, 1)
        self.fc = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
        x = self.conv3(F.relu(self.conv2(x)))
        x = x.mean(dim=(2, 3), keepdim=True)
        return self.fc(x.view(x.size(0), -1))


def _mlp() -> nn.Module:
    """A plain MLP on a flat (F,) input, with BatchNorm1d and dropout."""
    return nn.Sequential(
        nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 4)
    )


#: Hand-written models for the oracle: constructor and input shape.
HAND_MADE = {
    "mixed": (lambda: MixedNet(), MIXED_SHAPE),
    "functional": (lambda: FunctionalNet(), (2, 10, 10)),
    "mlp": (_mlp, (12,)),
}

#: Input side per model in the oracle tests: the smallest that keeps every stage (even maps), or
#: 6 (odd maps after the first stride: 6 → 3 → 2) to cover strided convs on odd sizes.
ORACLE_SIZE = {"conv6": 8, "resnet20": 8, "resnet32": 6, "wrn28_2": 6, "mobilenetv2": 8}


def random_masks(model: nn.Module, keep: float = 0.3, seed: int = 0) -> dict[str, torch.Tensor]:
    """Keep each prunable weight independently with probability ``keep`` (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    return {
        f"{name}.weight": torch.rand(m.weight.shape, generator=gen) < keep
        for name, m in prunable_modules(model).items()
    }


def masked_model(name: str, size: int | None = None, keep: float = 0.3) -> tuple[nn.Module, tuple]:
    """A model of :data:`mgelib.models.MODELS` (or ``"mixed"``), randomly masked in place, and its
    input shape (side ``size``, default :data:`ORACLE_SIZE`)."""
    if name in HAND_MADE:
        make, shape = HAND_MADE[name]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = models.init_weights(make())
    else:
        size = size or ORACLE_SIZE[name]
        model, shape = models.build(name, 3, 10, size, seed=0), (3, size, size)
    apply_masks(model, random_masks(model, keep))
    return model.eval(), shape


# --------------------------------------------------------------------------------- the oracle
class _Stop(Exception):
    """Raised by the layer under test to end the forward pass with its outputs."""

    def __init__(self, outputs: tuple) -> None:
        super().__init__()
        self.outputs = outputs


def is_shortcut(name: str) -> bool:
    return "shortcut" in name.lower()


def oracle_copy(model: nn.Module) -> nn.Module:
    """The positive, linear copy of ``model`` described in the module docstring."""
    oracle = copy.deepcopy(model).float().eval()
    for module in list(oracle.modules()):
        with torch.no_grad():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                mask = getattr(module, "weight_mask", None)
                kept = mask.bool() if isinstance(mask, torch.Tensor) else module.weight != 0
                module.weight.copy_(module.weight.abs() * kept)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.zero_()
                module.running_var.fill_(1.0)
                module.weight.fill_(1.0)
                module.bias.zero_()
                module.eps = 0.0
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.MaxPool2d):
                avg = nn.AvgPool2d(child.kernel_size, child.stride, child.padding, child.ceil_mode)
                setattr(module, child_name, avg)
    return oracle


def functional_pools(model: nn.Module) -> list[str]:
    """Functional max-pool calls in ``model``'s forward (the oracle copy cannot replace them)."""
    banned = {F.max_pool2d, torch.max_pool2d, F.adaptive_max_pool2d, F.max_pool1d}
    graph = fx.symbolic_trace(model).graph
    return [n.name for n in graph.nodes if n.op == "call_function" and n.target in banned]


def dataflow(oracle: nn.Module, input_shape: tuple) -> dict:
    """Execution order, source/target partition and output shape of every conv/linear layer."""
    leaves: dict[str, torch.Tensor] = {}
    raw: dict[str, torch.Tensor] = {}
    order: list[str] = []

    def hook(name: str) -> Callable:
        def record(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            order.append(name)
            raw[name] = out
            leaves[name] = out.detach().requires_grad_()
            return leaves[name]

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in prunable_modules(oracle).items()]
    x = torch.ones(1, *input_shape, requires_grad=True)
    try:
        oracle(x)
    finally:
        for h in handles:
            h.remove()
    names = ["input", *order]
    rank = {n: i for i, n in enumerate(names)}
    inputs = [x] + [leaves[n] for n in order]
    reads = {}
    for n in order:
        grads = torch.autograd.grad(raw[n].sum(), inputs, allow_unused=True, retain_graph=True)
        reads[n] = [names[i] for i, g in enumerate(grads) if g is not None and names[i] != n]
    source = {n: max((r for r in reads[n] if not is_shortcut(r)), key=rank.get) for n in order}
    target = {}
    for n in order:
        if is_shortcut(n):
            consumer = next(c for c in order if n in reads[c])
            target[n] = source[consumer]
        else:
            target[n] = n
    shapes = {"input": tuple(input_shape)} | {n: tuple(raw[n].shape[1:]) for n in order}
    return {"order": order, "source": source, "target": target, "shapes": shapes}


def sparse_jacobian(
    in_shape: tuple, n_out: int, run: Callable[[torch.Tensor], tuple]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input index, output index, tap weight)`` of every non-zero Jacobian entry.

    ``run(probes)`` maps a batch of basis vectors of shape ``(B, *in_shape)`` to what
    :func:`apply_layer` returns for the layer. Batches are aligned to channels where they fit, so
    that the layer sees few non-zero input channels.
    """
    n_in = int(np.prod(in_shape))
    per_channel = int(np.prod(in_shape[1:])) if len(in_shape) == 3 else n_in
    cap = max(1, _MAX_ELEMS // max(n_in, n_out))
    chunk = cap if per_channel > cap else per_channel * (cap // per_channel)
    cols, rows, vals = [], [], []
    for start in range(0, n_in, chunk):
        stop = min(n_in, start + chunk)
        b = stop - start
        probes = torch.zeros(b, n_in)
        probes[torch.arange(b), torch.arange(start, stop)] = 1.0
        with torch.no_grad():
            out_w, out_1, out_index = run(probes.reshape(b, *in_shape))
        out_w, out_1 = out_w.reshape(b, -1), out_1.reshape(b, -1)
        j, i = torch.nonzero(out_1, as_tuple=True)
        cols.append((j + start).numpy())
        rows.append(out_index[i].numpy())
        vals.append((out_w[j, i] / out_1[j, i]).numpy())
    return np.concatenate(cols), np.concatenate(rows), np.concatenate(vals)


def apply_layer(module: nn.Module, x: torch.Tensor, out_shape: tuple) -> tuple:
    """``module`` applied to ``x`` with ``|w|·mask`` and with ``mask`` (float64), and the flat
    output index of each computed output element.

    Input channels that are zero in the whole batch contribute nothing to a convolution, so they
    are sliced away first (a large speed-up for channel-aligned probe batches); a depthwise conv
    then computes only the output channels that read them.
    """
    x = x.double()
    w = module.weight.double()
    one = (w != 0).double()
    everything = torch.arange(int(np.prod(out_shape)))
    if isinstance(module, nn.Linear):
        return F.linear(x, w), F.linear(x, one), everything
    conv = functools.partial(
        F.conv2d, stride=module.stride, padding=module.padding, dilation=module.dilation
    )
    used = torch.nonzero(x.flatten(2).amax(dim=(0, 2)) > 0).flatten()
    x = x[:, used]
    if module.groups == 1:
        return conv(x, w[:, used]), conv(x, one[:, used]), everything
    # depthwise (PyTorch's groups semantics): output channel o reads input channel o // multiplier
    mult = module.out_channels // module.in_channels
    outs = (used[:, None] * mult + torch.arange(mult)).flatten()
    plane = int(np.prod(out_shape[1:]))
    index = (outs[:, None] * plane + torch.arange(plane)).flatten()
    n = len(used)
    return conv(x, w[outs], groups=n), conv(x, one[outs], groups=n), index


def layer_jacobian(
    oracle: nn.Module, flow: dict, layer: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero entries of ``∂ out_layer / ∂ act_source`` of the oracle copy."""
    shapes = flow["shapes"]
    src = flow["source"][layer]
    input_shape = shapes["input"]
    modules = prunable_modules(oracle)
    batch = {}

    def forward(name: str, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if name == src:
            return batch["probes"]
        if name != layer:  # another layer's output: zero (a linear network, so "detached")
            return torch.zeros(1, *shapes[name])
        if x.shape[0] == 1:  # the probes did not reach this layer (cannot happen: it reads src)
            x = x.expand(batch["probes"].shape[0], *x.shape[1:])
        raise _Stop(apply_layer(module, x, shapes[name]))

    def run(probes: torch.Tensor) -> tuple:
        batch["probes"] = probes
        x = probes if src == "input" else torch.zeros(1, *input_shape)
        try:
            oracle(x)
        except _Stop as stop:
            return stop.outputs
        raise AssertionError(f"the forward pass never reached {layer!r}")

    saved = {name: module.forward for name, module in modules.items()}
    for name, module in modules.items():
        module.forward = functools.partial(forward, name, module)
    try:
        return sparse_jacobian(shapes[src], int(np.prod(shapes[layer])), run)
    finally:
        for name, module in modules.items():
            module.forward = saved[name]


def _block(graph: Graph, s: int, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Edges from partition ``s`` to partition ``t``: sorted keys ``src_local·n_t + tgt_local``
    and their weights."""
    off = graph.offsets
    sub = graph.adjacency[off[s] : off[s + 1], off[t] : off[t + 1]].tocoo()
    keys = sub.row.astype(np.int64) * int(graph.dims[t]) + sub.col.astype(np.int64)
    order = np.argsort(keys)
    return keys[order], sub.data[order]


def expected_weights(ratio: np.ndarray, precision: str) -> np.ndarray:
    """Tap weights recovered by the oracle, rounded as the encoder stores them (method §5)."""
    w = ratio.astype(np.float32)  # float64 of a float32 |w| up to ~1 ulp of float64
    return w.astype(np.float16).astype(np.float32) if precision == "float16" else w


def assert_layer_matches(
    graph: Graph, layer: str, s: int, t: int, jac: tuple, precision: str
) -> int:
    cols, rows, ratio = jac
    keys = cols.astype(np.int64) * int(graph.dims[t]) + rows.astype(np.int64)
    order = np.argsort(keys)
    keys, ratio = keys[order], ratio[order]
    got_keys, got_w = _block(graph, s, t)
    same = keys.size == got_keys.size and np.array_equal(keys, got_keys)
    missing = 0 if same else int((~np.isin(keys, got_keys, assume_unique=True)).sum())
    extra = 0 if same else int((~np.isin(got_keys, keys, assume_unique=True)).sum())
    assert same, (
        f"{layer}: partition {s} → {t}: {missing} Jacobian edges missing from the MGE, "
        f"{extra} MGE edges not in the Jacobian (of {keys.size})"
    )
    want = expected_weights(ratio, precision)
    bad = np.flatnonzero(want != got_w)
    assert bad.size == 0, (
        f"{layer}: {bad.size} weights differ, e.g. {want[bad[:3]]} vs {got_w[bad[:3]]}"
    )
    return int(keys.size)


def check_against_oracle(model: nn.Module, shape: tuple, graphs: dict[str, Graph]) -> dict:
    """Compare every layer of ``graphs`` (precision → MGE without input padding) to the oracle."""
    oracle = oracle_copy(model)
    flow = dataflow(oracle, shape)
    main = [n for n in flow["order"] if not is_shortcut(n)]
    counts = dict.fromkeys(graphs, 0)
    for graph in graphs.values():
        # partitions: the input, then one per main-path layer in forward execution order (§5)
        assert graph.layers == ["input", *main]
        index = {name: i for i, name in enumerate(graph.layers)}
        for layer in flow["order"]:
            s, t = index[flow["source"][layer]], index[flow["target"][layer]]
            assert graph.shapes[s] == flow["shapes"][flow["source"][layer]]
            assert graph.shapes[t] == flow["shapes"][layer]
    pairs = [(flow["source"][n], flow["target"][n]) for n in flow["order"]]
    assert len(set(pairs)) == len(pairs), "two layers share a (source, target) partition pair"
    for layer in flow["order"]:
        jac = layer_jacobian(oracle, flow, layer)
        for precision, graph in graphs.items():
            index = {name: i for i, name in enumerate(graph.layers)}
            s, t = index[flow["source"][layer]], index[flow["target"][layer]]
            counts[precision] += assert_layer_matches(graph, layer, s, t, jac, precision)
    for precision, graph in graphs.items():  # and no edge anywhere else
        assert counts[precision] == graph.n_edges
    return flow


# --------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("name", models.MODELS)
def test_models_use_no_functional_max_pooling(name):
    """The oracle copy swaps MaxPool2d *modules* for AvgPool2d; no model calls F.max_pool2d."""
    assert functional_pools(models.build(name, 3, 10, 8, seed=0)) == []
    assert all(functional_pools(make()) == [] for make, _ in HAND_MADE.values())


@pytest.mark.parametrize("name", [*models.MODELS, *HAND_MADE])
def test_mge_edges_equal_jacobian_pattern_of_every_layer(name):
    """Oracle: the Jacobian of each masked layer with |w| (composed with average pooling where
    pooling sits between), for every conv/linear layer incl. 1×1 shortcut convs; edge weights are
    |w| of the tap, float16-rounded in paper mode and exact in float32 mode (method §5, §5.1)."""
    model, shape = masked_model(name)
    graphs = {
        precision: encode(model, shape, keep_input_padding=False, weight_precision=precision)
        for precision in ("float16", "float32")
    }
    flow = check_against_oracle(model, shape, graphs)
    shortcuts = [n for n in flow["order"] if is_shortcut(n)]
    if name in ("resnet20", "resnet32", "wrn28_2", "mobilenetv2", "mixed"):
        assert shortcuts, "the model has parametric shortcuts: they must be covered"
    for n in shortcuts:  # a shortcut skips its block's inner partition (method §5.1)
        graph = graphs["float16"]
        src, tgt = graph.layers.index(flow["source"][n]), graph.layers.index(flow["target"][n])
        assert tgt - src >= 2


def test_mixed_net_covers_every_supported_operation():
    """The hand-written model has max/avg/adaptive pooling, flatten, a strided 1×1 shortcut conv,
    an identity shortcut and a depthwise conv, so the oracle test above exercises them all."""
    model = MixedNet()
    kinds = {type(m) for m in model.modules()}
    assert {nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten} <= kinds
    assert model.a_shortcut[0].stride == (2, 2) and model.a_shortcut[0].kernel_size == (1, 1)
    assert model.dw.groups == model.dw.in_channels and model.dw.out_channels == 2 * 6
    code = fx.symbolic_trace(model).code
    assert code.count("add") >= 2  # the parametric and the identity residual adds


@pytest.mark.parametrize("name", [*models.MODELS, "mixed", "functional"])
def test_first_layer_padding_is_jacobian_of_unpadded_conv_over_padded_input(name):
    """Paper convention (method §5.1): with keep_input_padding=True the input partition is the
    zero-padded C·(H+2p)·(W+2p) grid and the first conv's edges equal the Jacobian of the same conv
    *without* padding applied to that grid as the leaf; every other edge is the unpadded encoding's
    edge shifted by the extra input nodes."""
    model, shape = masked_model(name)
    padded = encode(model, shape, keep_input_padding=True)
    plain = encode(model, shape, keep_input_padding=False)
    first = prunable_modules(model)[padded.layers[1]]
    ph, pw = first.padding
    c, h, w = shape
    grid = (c, h + 2 * ph, w + 2 * pw)
    assert padded.shapes[0] == grid and int(padded.dims[0]) == int(np.prod(grid))
    assert list(padded.dims[1:]) == list(plain.dims[1:])

    oracle = oracle_copy(model)
    conv = prunable_modules(oracle)[padded.layers[1]]
    unpadded = nn.Conv2d(c, conv.out_channels, conv.kernel_size, conv.stride, 0, groups=conv.groups)
    unpadded.weight = conv.weight
    out_shape = tuple(padded.shapes[1])
    jac = sparse_jacobian(
        grid, int(np.prod(out_shape)), lambda p: apply_layer(unpadded, p, out_shape)
    )
    n_first = assert_layer_matches(padded, padded.layers[1], 0, 1, jac, "float16")
    assert n_first == int((padded.partition_of(padded.edges()[0]) == 0).sum())

    shift = int(padded.dims[0] - plain.dims[0])
    ps, pt, pw_ = padded.edges()
    qs, qt, qw = plain.edges()
    rest_p = ps >= padded.dims[0]
    rest_q = qs >= plain.dims[0]
    key_p = (ps[rest_p].astype(np.int64) - shift) * plain.n_nodes + (pt[rest_p] - shift)
    key_q = qs[rest_q].astype(np.int64) * plain.n_nodes + qt[rest_q]
    assert np.array_equal(key_p, key_q) and np.array_equal(pw_[rest_p], qw[rest_q])


def test_mixed_net_compat_keeps_exact_geometry_for_strided_conv_on_pooled_map():
    """The reference-compatibility defect applies to strided main-path convs on an unpooled
    partition only; MixedNet's strided main conv reads a pooled map, so compat changes nothing."""
    model, shape = masked_model("mixed")
    a = encode(model, shape, keep_input_padding=False)
    b = encode(model, shape, keep_input_padding=False, compat="mge-snn")
    assert b.meta["compat_layers"] == []
    assert (a.adjacency != b.adjacency).nnz == 0


@pytest.mark.fixtures
def test_fixture_resnet20_default_strided_layers_pass_oracle(fixtures_dir):
    """Default (exact geometry) edges of ResNet-20's two strided main-path convs on the authors'
    fixture network at 3×32×32 equal the Jacobian oracle (the compat encoding does not, method §5.1)."""
    from conftest import load_fixture_model

    model, ref = load_fixture_model(fixtures_dir, "resnet20_erk_s0.98")
    shape = tuple(ref["input_shape"])
    graph = encode(model, shape, keep_input_padding=False)
    oracle = oracle_copy(model)
    flow = dataflow(oracle, shape)
    index = {name: i for i, name in enumerate(graph.layers)}
    for layer in ("layer2.0.conv1", "layer3.0.conv1"):
        s, t = index[flow["source"][layer]], index[layer]
        assert t == s + 1
        n = assert_layer_matches(graph, layer, s, t, layer_jacobian(oracle, flow, layer), "float16")
        assert n > 0


def test_oracle_detects_a_wrong_edge():
    """The oracle is not vacuous: one flipped edge of the MGE fails the comparison."""
    model, shape = masked_model("resnet20")
    graph = encode(model, shape, keep_input_padding=False)
    oracle = oracle_copy(model)
    flow = dataflow(oracle, shape)
    layer = "layer2.0.conv1"
    jac = layer_jacobian(oracle, flow, layer)
    s = graph.layers.index(flow["source"][layer])
    t = graph.layers.index(layer)
    adj = graph.adjacency.tolil()
    off = graph.offsets
    row = off[s] + int(jac[0][0])
    col = off[t] + int(jac[1][0])
    adj[row, col] = 0
    adj = adj.tocsr()
    adj.eliminate_zeros()
    broken = Graph(adj, graph.dims, graph.layers, graph.shapes)
    with pytest.raises(AssertionError, match="missing"):
        assert_layer_matches(broken, layer, s, t, jac, "float16")
