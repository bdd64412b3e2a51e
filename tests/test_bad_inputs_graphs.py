"""Bad inputs to the graph encoder get an error that names the culprit (issue 15, graphs part)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.utils.prune
from torch import nn

from mgelib import models
from mgelib.graphs import Graph, GraphTooLarge, UnsupportedOperation, encode

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _graph(src, tgt, w, meta=None) -> Graph:
    adj = sp.csr_array((np.asarray(w, np.float32), (src, tgt)), shape=(4, 4))
    return Graph(adj, dims=[2, 2], layers=["input", "fc"], shapes=[(2,), (2,)], meta=meta or {})


def test_nan_weight_is_refused_naming_the_parameter():
    model = models.build("conv6", 3, 10, 8, seed=0)
    with torch.no_grad():
        model.get_submodule("convs1.3").weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"convs1\.3\.weight.*NaN/inf"):
        encode(model, (3, 8, 8))


def test_inf_weight_is_refused_naming_the_parameter():
    model = models.build("resnet20", 3, 10, 8, seed=0)
    with torch.no_grad():
        model.linear.weight[1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"linear\.weight.*NaN/inf"):
        encode(model, (3, 8, 8))


def test_nan_weight_is_fine_when_it_is_pruned_or_binary():
    model = models.build("resnet20", 3, 10, 8, seed=0)
    with torch.no_grad():
        model.linear.weight[1, 2] = float("nan")
    assert encode(model, (3, 8, 8), weights="binary").n_edges > 0


def test_graph_with_negative_weight_is_refused():
    with pytest.raises(ValueError, match=r"edge 0 → 2 .*-1"):
        _graph([0, 1], [2, 3], [-1.0, 1.0])


def test_graph_with_self_loop_is_refused():
    with pytest.raises(ValueError, match=r"node 1 has a self-loop"):
        _graph([0, 1], [2, 1], [1.0, 1.0])


def test_graph_with_intra_partition_edge_is_refused():
    with pytest.raises(ValueError, match=r"edge 2 → 3 joins two nodes of partition 1 \('fc'"):
        _graph([0, 2], [2, 3], [1.0, 1.0])


def test_compat_graphs_keep_intra_partition_edges():
    g = _graph([0, 2], [2, 3], [1.0, 1.0], meta={"compat": "mge-snn"})
    assert g.n_edges == 2
    model = models.build("resnet20", 3, 10, 8, seed=0)
    compat = encode(model, (3, 8, 8), compat="mge-snn")
    Graph(compat.adjacency, compat.dims, compat.layers, compat.shapes, meta=compat.meta)


def test_memory_guard_refuses_before_building_a_large_dense_mge():
    """Dense CONV-6 at 256²: refused from the mask count, before any weight copy or edge."""
    model = models.build("conv6", 3, 10, 256, seed=0)
    start = time.perf_counter()
    with pytest.raises(GraphTooLarge, match=r"edges and need about .* GiB"):
        encode(model, (3, 256, 256), memory_budget=2**30)
    assert time.perf_counter() - start < 30


@pytest.mark.parametrize(
    ("make", "shape", "pattern"),
    [
        (lambda: _Recurrent(), (2, 8), r"module 'rnn' \(LSTM\).*aten\.lstm.*recurrent"),
        (
            lambda: nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4)),
            (4,),
            r"module '1' \(LayerNorm\)",
        ),
    ],
)
def test_recurrent_and_mixing_layers_are_refused_naming_module_and_op(make, shape, pattern):
    with pytest.raises(UnsupportedOperation, match=pattern) as err:
        encode(make(), shape)
    assert "input_shape must be" not in str(err.value)


class _Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.rnn, self.fc = (
            nn.Conv1d(2, 3, 3),
            nn.LSTM(3, 4, batch_first=True),
            nn.Linear(4, 2),
        )

    def forward(self, x):
        out, _ = self.rnn(self.conv(x).transpose(1, 2))
        return self.fc(out[:, -1])


class _Attention(nn.Module):
    """Self-attention over 3 positions with 1×1 Conv1d projections: softmax(QKᵀ)V."""

    def __init__(self) -> None:
        super().__init__()
        self.q, self.k, self.v = nn.Conv1d(4, 4, 1), nn.Conv1d(4, 4, 1), nn.Conv1d(4, 4, 1)
        self.head = nn.Linear(12, 2)

    def forward(self, x):
        scores = self.q(x).transpose(1, 2) @ self.k(x)
        return self.head((self.v(x) @ torch.softmax(scores, dim=-1)).flatten(1))


def test_attention_is_refused_naming_the_op_and_why():
    with pytest.raises(UnsupportedOperation, match=r"aten\.\w+ .*softmax\(QKᵀ\)V") as err:
        encode(_Attention(), (4, 3))
    assert "data-dependent" in str(err.value) and "input_shape must be" not in str(err.value)


class _Gather(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        idx = x.argmax(dim=1, keepdim=True)
        return self.fc(x).gather(1, idx)


def test_data_dependent_gather_is_refused():
    with pytest.raises(UnsupportedOperation, match=r"aten\.(argmax|gather).*data-dependent"):
        encode(_Gather(), (4,))


def test_pruned_weights_are_read_from_weight_orig_times_mask():
    """torch.nn.utils.prune: after an optimiser step (or load_state_dict) on weight_orig, the
    stale module.weight must not reach the graph."""
    model = models.build("resnet20", 3, 10, 8, seed=0)
    torch.nn.utils.prune.l1_unstructured(model.linear, "weight", amount=0.5)
    with torch.no_grad():
        model.linear.weight_orig.mul_(3.0)  # module.weight is stale until the next forward
    g = encode(model, (3, 8, 8), weight_precision="float32")
    want = (model.linear.weight_orig * model.linear.weight_mask).abs()
    last = g.offsets[-2]
    got = g.adjacency[:, last:].toarray().max(axis=0)
    assert np.allclose(np.sort(got), np.sort(want.detach().numpy().max(axis=1)))
