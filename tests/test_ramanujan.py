"""Ramanujan metrics (method §7): hand-built graphs, a dense eigensolver oracle, the authors' values
on the committed fixtures (tests/fixtures)."""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mgelib import paperdata
from mgelib.graphs import Graph, encode

# the module itself (the package exports the function of the same name)
ram_mod = importlib.import_module("mgelib.metrics.ramanujan")

from mgelib.metrics.ramanujan import (  # noqa: E402
    PAPER_ALIASES,
    RAMANUJAN_COLUMNS,
    biadjacency,
    ramanujan,
    ramanujan_layer,
    top_singular_values,
)

pytestmark = pytest.mark.usefixtures("torch_single_thread")


# --------------------------------------------------------------------------- helpers
def bge(bi: np.ndarray, name: str = "fc") -> Graph:
    """A rolled-style layer graph from a dense ``L × R`` biadjacency (non-zero = edge)."""
    n_left, n_right = bi.shape
    adj = np.zeros((n_left + n_right, n_left + n_right), dtype=np.float32)
    adj[:n_left, n_left:] = bi
    return Graph(
        sp.csr_array(adj),
        dims=[n_left, n_right],
        layers=[f"{name}:in", name],
        shapes=[(n_left,), (n_right,)],
        encoding="rolled",
    )


def sym(b: np.ndarray) -> np.ndarray:
    n_left, n_right = b.shape
    a = np.zeros((n_left + n_right, n_left + n_right))
    a[:n_left, n_left:] = b
    a[n_left:, :n_left] = b.T
    return a


def abs_eigs(b: np.ndarray) -> np.ndarray:
    """All |λ| of the symmetric adjacency, descending (dense oracle, no bipartite shortcut)."""
    return np.sort(np.abs(np.linalg.eigvalsh(sym(b))))[::-1]


def reference(bi: np.ndarray) -> dict[str, float]:
    """method §7 written out literally with dense eigensolves of the full symmetric adjacency."""
    pat = bi != 0
    deg_l, deg_r = pat.sum(1), pat.sum(0)
    p = pat[deg_l > 0][:, deg_r > 0].astype(float)
    n_edges = int(pat.sum())
    out = {"delta_r": math.nan, "imsg": math.nan, "imdb": math.nan}
    if sum(p.shape) > 3:
        ub = math.sqrt(n_edges / p.shape[0] - 1) + math.sqrt(n_edges / p.shape[1] - 1)
        out["delta_r"] = (ub - abs_eigs(p)[2]) / ub if ub else math.nan
    gaps, deltas = [], []
    for d in sorted(set(deg_l.tolist())):
        if d < 3:
            continue
        rows = deg_l == d
        cols = pat[rows].sum(0) > 0
        sub_p = pat[rows][:, cols].astype(float)
        sub_w = bi[rows][:, cols].astype(float)
        d_l, d_r = sub_p.sum(1).mean(), sub_p.sum(0).mean()
        if d_l >= 3 and d_r >= 3:
            w = abs_eigs(sub_w)
            gaps.append(w[0] - w[2])
            ub = math.sqrt(d_l - 1) + math.sqrt(d_r - 1)
            deltas.append((ub - abs_eigs(sub_p)[2]) / ub)
    if gaps:
        out["imsg"], out["imdb"] = float(np.mean(gaps)), float(np.mean(deltas))
    return out


def random_bi(n_left: int, n_right: int, p: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kept = rng.random((n_left, n_right)) < p
    return np.where(kept, rng.uniform(0.05, 1.0, (n_left, n_right)), 0.0).astype(np.float32)


# --------------------------------------------------------------------------- hand-built graphs
def test_complete_bipartite() -> None:
    # K_{4,5}: left degree 5, right degree 4, eigenvalues ±√20 and 0 ⇒ μ̂ = 0 ⇒ Δr = 1.
    r = ramanujan_layer(bge(np.full((4, 5), 0.5, np.float32)))
    assert r["delta_r"] == pytest.approx(1.0, abs=1e-7)
    assert r["imdb"] == pytest.approx(1.0, abs=1e-7)  # one class (d = 5), the whole graph
    assert r["imsg"] == pytest.approx(0.5 * math.sqrt(20), rel=1e-7)  # gap = σ₁ − 0
    assert (r["nodes"], r["active_nodes"], r["edges"], r["n_subgraphs"]) == (9, 9, 20, 1)
    assert r["reason"] is None


def test_two_disjoint_k33_third_eigenvalue_is_the_repeated_one() -> None:
    # Spectrum ±3, ±3, 0…: the three largest |λ| are 3, 3, 3 ⇒ μ̂ = 3, gap = 0.
    bi = np.zeros((6, 6), np.float32)
    bi[:3, :3] = bi[3:, 3:] = 1.0
    r = ramanujan_layer(bge(bi))
    ub = 2 * math.sqrt(2)
    assert r["delta_r"] == pytest.approx((ub - 3) / ub, rel=1e-9)
    assert r["imdb"] == pytest.approx((ub - 3) / ub, rel=1e-9)
    assert r["imsg"] == pytest.approx(0.0, abs=1e-9)


def test_zero_degree_nodes_are_dropped_but_counted_in_nodes() -> None:
    bi = np.zeros((7, 9), np.float32)
    bi[:4, :5] = 1.0  # K_{4,5} plus 3 isolated left and 4 isolated right nodes
    r = ramanujan_layer(bge(bi))
    assert r["delta_r"] == pytest.approx(1.0, abs=1e-7)
    assert (r["nodes"], r["active_nodes"], r["edges"]) == (16, 9, 20)


def test_star_has_third_eigenvalue_zero_and_no_qualifying_subgraph() -> None:
    # K_{1,5}: d_l = 5, d_r = 1, ub = 2; min side 1 ⇒ third |λ| = 0 ⇒ Δr = 1.
    r = ramanujan_layer(bge(np.ones((1, 5), np.float32)))
    assert r["delta_r"] == pytest.approx(1.0, abs=1e-12)
    assert math.isnan(r["imsg"]) and math.isnan(r["imdb"])  # mean right degree 1 < 3
    assert "imsg/imdb" in r["reason"]


def test_matching_has_zero_bound_and_gives_nan() -> None:
    r = ramanujan_layer(bge(np.eye(4, dtype=np.float32)))  # all degrees 1 ⇒ ub = 0
    assert math.isnan(r["delta_r"]) and "ub = 0" in r["reason"]


def test_three_nodes_or_fewer_give_nan() -> None:
    r = ramanujan_layer(bge(np.ones((1, 2), np.float32)))
    assert math.isnan(r["delta_r"]) and "3 or fewer" in r["reason"]


def test_layer_without_kept_weight_gives_nan_not_an_error() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4))
    masks = {
        "0.weight": torch.ones(5, 6, dtype=torch.bool),
        "2.weight": torch.zeros(4, 5, dtype=torch.bool),
    }
    df = ramanujan(encode(net, encoding="rolled", masks=masks)).set_index("layer")
    assert df.loc["0", "delta_r"] == pytest.approx(1.0, abs=1e-7)
    row = df.loc["2"]
    assert np.isnan(row[["delta_r", "imsg", "imdb"]].astype(float)).all()
    assert (row["edges"], row["no_weights"], row["no_params"], row["density"]) == (0, 0, 20, 0.0)
    assert "no kept weight" in row["reason"]


# --------------------------------------------------------------------------- dense oracle
@pytest.mark.parametrize(
    ("n_left", "n_right", "p", "seed"),
    [(60, 20, 0.3, 0), (60, 20, 0.15, 1), (20, 60, 0.3, 2), (40, 40, 0.12, 3), (90, 16, 0.25, 4)],
)
def test_matches_dense_eigensolver(n_left: int, n_right: int, p: float, seed: int) -> None:
    bi = random_bi(n_left, n_right, p, seed)
    ours = ramanujan_layer(bge(bi))
    ref = reference(bi)
    for key, value in ref.items():
        if math.isnan(value):
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key
    assert ours["edges"] == int((bi != 0).sum())


def test_oracle_cases_cover_both_outcomes() -> None:
    # Guard the parametrisation above: some cases have qualifying subgraphs, some have none.
    subs = [ramanujan_layer(bge(random_bi(60, 20, 0.3, 0)))["n_subgraphs"]]
    subs.append(ramanujan_layer(bge(random_bi(20, 60, 0.3, 2)))["n_subgraphs"])
    assert subs[0] >= 2 and subs[1] == 0


@pytest.mark.parametrize(
    ("dense_max", "gram_max", "cost_steps"),
    [(256, 4096, 30), (4, 4096, 30), (4, 8, 30), (256, 4096, 0)],
)
def test_top_singular_values_all_paths(
    monkeypatch: pytest.MonkeyPatch, dense_max: int, gram_max: int, cost_steps: int
) -> None:
    # Dense Gram; ARPACK on the sparse Gram matrix; ARPACK on the operator x -> Bᵀ(Bx), chosen
    # by size or because forming the Gram matrix would cost too much.
    monkeypatch.setattr(ram_mod, "DENSE_GRAM_MAX", dense_max)
    monkeypatch.setattr(ram_mod, "GRAM_MATRIX_MAX", gram_max)
    monkeypatch.setattr(ram_mod, "GRAM_COST_STEPS", cost_steps)
    b = sp.csr_array(random_bi(80, 50, 0.1, 5))
    exact = np.linalg.svd(b.toarray().astype(float), compute_uv=False)[:3]
    np.testing.assert_allclose(top_singular_values(b, 3, seed=3), exact, rtol=1e-9)
    np.testing.assert_allclose(top_singular_values(sp.csr_array(b.T), 3), exact, rtol=1e-9)
    for bi in (random_bi(60, 20, 0.3, 0), random_bi(90, 16, 0.25, 4)):
        ref = reference(bi)
        ours = ramanujan_layer(bge(bi), seed=1)
        for key in ("delta_r", "imsg", "imdb"):
            assert ours[key] == pytest.approx(ref[key], rel=1e-9, abs=1e-9), key
    # K_{4,5} (μ̂ = 0 exactly) through the same path.
    r = ramanujan_layer(bge(np.full((4, 5), 0.5, np.float32)))
    assert r["delta_r"] == pytest.approx(1.0, abs=1e-7)


def test_top_singular_values_degenerate_shapes() -> None:
    assert top_singular_values(sp.csr_array((0, 4)), 2).tolist() == [0.0, 0.0]
    assert top_singular_values(sp.csr_array(np.zeros((3, 4))), 2).tolist() == [0.0, 0.0]
    np.testing.assert_allclose(top_singular_values(sp.csr_array(np.ones((1, 4))), 2), [2.0, 0.0])


# --------------------------------------------------------------------------- API
def test_columns_aliases_and_determinism() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 10)
    )
    graphs = encode(net, encoding="rolled")
    df = ramanujan(graphs, seed=4)
    assert list(df.columns) == [*RAMANUJAN_COLUMNS, *PAPER_ALIASES.values()]
    assert df["layer"].tolist() == list(graphs) and df["layer_id"].tolist() == [0, 1]
    for ours, theirs in PAPER_ALIASES.items():
        pd.testing.assert_series_equal(df[ours], df[theirs], check_names=False)
    # The authors' published names (mgelib.paperdata) are all present.
    assert set(paperdata.RAMANUJAN_METRICS) | {"layer_density", "no_weights", "no_params"} <= set(
        df.columns
    )
    assert df.attrs["kind"] == "ramanujan"
    pd.testing.assert_frame_equal(df, ramanujan(graphs, seed=4))
    assert list(ramanujan(graphs, aliases=False).columns) == list(RAMANUJAN_COLUMNS)


def test_bad_input_raises_clear_errors() -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    mge = encode(net, (3,))
    with pytest.raises(ValueError, match="single Graph"):
        ramanujan(mge)
    with pytest.raises(ValueError, match="3 partitions"):
        ramanujan({"net": mge})
    with pytest.raises(ValueError, match="empty"):
        ramanujan({})
    with pytest.raises(ValueError, match="not an mgelib Graph"):
        ramanujan({"fc": np.ones((2, 2))})
    backward = sp.csr_array(([1.0], ([3], [0])), shape=(4, 4))
    with pytest.raises(ValueError, match="left"):
        biadjacency(Graph(backward, [2, 2], ["a", "b"], [(2,), (2,)]))


# --------------------------------------------------------------------------- authors' values
FIXTURE_CASES = [
    (name, enc)
    for name in ("conv6_erk_s0.98", "resnet20_erk_s0.98")
    for enc in ("rolled", "rolled_channel")
]


@pytest.fixture(scope="module")
def fixture_models(fixtures_dir: Path) -> dict[str, torch.nn.Module]:
    from conftest import load_fixture_model

    return {name: load_fixture_model(fixtures_dir, name)[0] for name in dict(FIXTURE_CASES)}


@pytest.mark.fixtures
@pytest.mark.parametrize(("name", "encoding"), FIXTURE_CASES)
def test_matches_the_authors_values(
    fixtures_dir: Path, fixture_models: dict[str, torch.nn.Module], name: str, encoding: str
) -> None:
    theirs = pd.read_csv(fixtures_dir / name / f"ramanujan_{encoding}.csv")
    ours = ramanujan(encode(fixture_models[name], encoding=encoding))
    assert ours["layer"].tolist() == theirs["layer_name"].tolist()
    for col in ("edges", "nodes", "no_weights", "no_params"):
        np.testing.assert_array_equal(ours[col].to_numpy(), theirs[col].to_numpy(), err_msg=col)
    pairs = {
        "delta_r": "delta_r",
        "imsg": "iterative_spectral_gap",
        "imdb": "imdb",
        "density": "layer_sparsity",  # the authors' "sparsity" column is a density
    }
    for col, their_col in pairs.items():
        a, b = ours[col].to_numpy(float), theirs[their_col].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=f"NaN pattern of {col}")
        np.testing.assert_allclose(a, b, rtol=1e-4, equal_nan=True, err_msg=col)
