"""Per-layer BGE topometrics (method §6 last paragraph) and their network aggregates."""

from __future__ import annotations

import math

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mgelib import paperdata
from mgelib.graphs import Graph, encode
from mgelib.masks import apply_masks
from mgelib.metrics.layers import LAYER_COLUMNS, LAYER_METRICS, layer_metrics, network_aggregates
from mgelib.metrics.ramanujan import ramanujan
from mgelib.metrics.topo import NORMALISER, topometrics
from mgelib.pruning import erk

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def small_net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 4 * 4, 10),
    )
    return apply_masks(net, erk(net, 0.8, seed=0))


def random_layer(n_left: int, n_right: int, p: float, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    kept = rng.random((n_left, n_right)) < p
    bi = np.where(kept, rng.uniform(0.05, 1.0, kept.shape), 0.0).astype(np.float32)
    adj = np.zeros((n_left + n_right,) * 2, np.float32)
    adj[:n_left, n_left:] = bi
    return Graph(
        sp.csr_array(adj),
        dims=[n_left, n_right],
        layers=["fc:in", "fc"],
        shapes=[(n_left,), (n_right,)],
        encoding="rolled",
    )


def test_the_ten_metrics_are_the_paper_tables_bge_metrics() -> None:
    assert set(LAYER_METRICS) == set(paperdata.BGE_METRICS)


@pytest.mark.parametrize("encoding", ["rolled", "rolled_channel"])
@pytest.mark.parametrize("normalise", [True, False])
def test_equals_topometrics_layer_by_layer(encoding: str, normalise: bool) -> None:
    graphs = encode(small_net(), encoding=encoding)
    df = layer_metrics(graphs, seed=3, normalise=normalise)
    assert list(df.columns) == list(LAYER_COLUMNS)
    assert df["layer"].tolist() == list(graphs) and df["layer_id"].tolist() == [0, 1, 2]
    assert (df["encoding"] == encoding).all()
    assert df.attrs["normalised"] is normalise and df.attrs["weight"] == "weights"
    for g, (_, row) in zip(graphs.values(), df.iterrows()):
        r = topometrics(g, seed=3, normalise=normalise, metrics=LAYER_METRICS)
        assert row[list(LAYER_METRICS)].astype(float).tolist() == [r[m] for m in LAYER_METRICS]
        assert (row["nodes"], row["edges"]) == (g.n_nodes, g.n_edges)
        assert (row["weights"], row["kept"]) == (g.meta["weights"], g.meta["kept"])
        assert row["density"] == pytest.approx(g.meta["density"])


def test_normalised_is_raw_divided_by_v_or_e() -> None:
    graphs = encode(small_net(), encoding="rolled")
    raw = layer_metrics(graphs, normalise=False)
    norm = layer_metrics(graphs, normalise=True)
    for m in LAYER_METRICS:
        div = {"V": raw["nodes"], "E": raw["edges"], None: 1}[NORMALISER[m]]
        np.testing.assert_allclose(norm[m], raw[m] / div, rtol=1e-12, err_msg=m)
    assert norm.attrs["normaliser"]["cut-edges"] == "E"
    assert raw.attrs["normaliser"]["cut-edges"] is None


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_networkx_and_dense_eigensolvers(seed: int) -> None:
    # Sparse enough to have bridges, articulation points and several components.
    g = random_layer(30, 12, 0.07, seed)
    row = layer_metrics({"fc": g}, normalise=False).iloc[0]
    u = g.to_networkx().to_undirected()
    n, e = g.n_nodes, g.n_edges
    ncomp = nx.number_connected_components(u)
    assert row["cut-edges"] == len(list(nx.bridges(u)))
    assert row["cut-nodes"] == len(list(nx.articulation_points(u)))
    assert row["no_connected_components"] == ncomp
    assert row["mean_connected_components"] == pytest.approx(n / ncomp)
    assert row["k-core"] == pytest.approx(np.mean(list(nx.core_number(u).values())))
    assert row["1-hop_nei"] == pytest.approx(1 + e / n)
    w = g.adjacency.data.astype(float)
    assert row["avg_node_strength"] == pytest.approx(2 * w.sum() / n)
    a = g.adjacency.toarray().astype(float)
    a = a + a.T
    lam = np.sort(np.abs(np.linalg.eigvalsh(a)))[::-1]
    assert row["spectral_gap"] == pytest.approx(lam[0] - lam[2], rel=1e-9, abs=1e-12)
    lap = np.diag(a.sum(1)) - a
    assert row["spectral_radius"] == pytest.approx(np.linalg.eigvalsh(lap)[-1], rel=1e-9)
    assert ncomp > 1 and row["cut-edges"] > 0  # the oracle is not vacuous


def test_layer_without_kept_weight_is_nan_with_a_reason() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4))
    masks = {
        "0.weight": torch.ones(5, 6, dtype=torch.bool),
        "2.weight": torch.zeros(4, 5, dtype=torch.bool),
    }
    df = layer_metrics(encode(net, encoding="rolled", masks=masks))
    assert df.loc[0, list(LAYER_METRICS)].notna().all() and pd.isna(df.loc[0, "reason"])
    assert df.loc[1, list(LAYER_METRICS)].isna().all()
    assert "no kept weight" in df.loc[1, "reason"]
    assert (df.loc[1, "edges"], df.loc[1, "kept"], df.loc[1, "weights"]) == (0, 0, 20)
    agg = network_aggregates(df)
    # The empty layer is skipped: the aggregates are the first layer's values.
    assert agg.loc[0, "rolled__k-core__mean"] == df.loc[0, "k-core"]
    assert agg.loc[0, "rolled__k-core__wmean"] == df.loc[0, "k-core"]


def test_deterministic() -> None:
    graphs = encode(small_net(), encoding="rolled")
    pd.testing.assert_frame_equal(layer_metrics(graphs, seed=7), layer_metrics(graphs, seed=7))


# --------------------------------------------------------------------------- aggregates
@pytest.mark.parametrize("encoding", ["rolled", "rolled_channel"])
def test_aggregate_names_follow_paperdata(encoding: str) -> None:
    df = layer_metrics(encode(small_net(), encoding=encoding))
    agg = network_aggregates(df)
    assert len(agg) == 1
    wanted = paperdata.feature_sets(aggregations=("mean", "wmean"))[encoding]
    assert set(wanted) <= set(agg.columns)
    assert agg.loc[0, f"{encoding}__n_layers"] == 3
    assert agg.attrs["weight"] == "weights" and agg.attrs["normalised"] is True


def test_aggregate_values_by_hand() -> None:
    df = layer_metrics(encode(small_net(), encoding="rolled"))
    w, k = df["weights"].astype(float), df["kept"].astype(float)
    for m in LAYER_METRICS:
        x = df[m]
        agg = network_aggregates(df)
        assert agg.loc[0, f"rolled__{m}__mean"] == pytest.approx(x.mean(), rel=1e-12)
        assert agg.loc[0, f"rolled__{m}__wmean"] == pytest.approx((x * w).sum() / w.sum())
        kept = network_aggregates(df, weight="kept")
        assert kept.loc[0, f"rolled__{m}__wmean"] == pytest.approx((x * k).sum() / k.sum())
    assert network_aggregates(df, weight="no_weights").attrs["weight"] == "kept"
    by_attrs = layer_metrics(encode(small_net(), encoding="rolled"), weight="kept")
    pd.testing.assert_frame_equal(network_aggregates(by_attrs), kept)


def test_ramanujan_aggregates_use_the_paper_names() -> None:
    graphs = encode(small_net(), encoding="rolled")
    ram = ramanujan(graphs)
    agg = network_aggregates(ram)
    wanted = paperdata.feature_sets(aggregations=("mean", "wmean"))["ramanujan+density"]
    assert set(wanted) <= set(agg.columns)
    assert agg.loc[0, "degree_bound__mean"] == pytest.approx(ram["delta_r"].mean())
    w = ram["no_params"].astype(float)
    imsg = ram["imsg"]
    expected = (imsg.fillna(0) * w).sum() / w[imsg.notna()].sum()
    assert math.isclose(agg.loc[0, "iterative_spectral_gap__wmean"], expected, rel_tol=1e-12)
    assert agg.loc[0, "density_realised"] == pytest.approx(
        ram["no_weights"].sum() / ram["no_params"].sum()
    )
    rc = network_aggregates(ramanujan(encode(small_net(), encoding="rolled_channel")))
    assert "rolled_channel__degree_bound__mean" in rc.columns


def test_aggregate_errors() -> None:
    df = layer_metrics(encode(small_net(), encoding="rolled"))
    mixed = pd.concat([df, df.assign(encoding="rolled_channel")])
    with pytest.raises(ValueError, match="one encoding"):
        network_aggregates(mixed)
    with pytest.raises(ValueError, match="weight must be"):
        network_aggregates(df, weight="edges")
    with pytest.raises(ValueError, match="weight must be"):
        layer_metrics(encode(small_net(), encoding="rolled"), weight="nodes")
    with pytest.raises(ValueError, match="non-empty"):
        network_aggregates(df.iloc[:0])
