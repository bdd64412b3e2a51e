"""Oracle tests of :func:`mgelib.metrics.topometrics` (method §6) on synthetic graphs.

- networkx for every combinatorial metric on small random layered graphs (edges p → p + 1, some
  p → p + 2 "shortcuts"); the local metrics by hand from the degrees (method §6 definitions);
- both engines ("fast", "igraph") identical on every metric except the motif estimate;
- the motif estimator: its formula, its sample size, per-root counts against igraph, and the
  "igraph" engine seeded like the authors' ``random.seed`` run;
- ``numpy.linalg.eigvalsh`` for the spectral metrics, on small graphs (dense path) and on graphs
  above ``spectral.DENSE_MAX`` (sparse path: Lanczos on BᵀB for a bipartite layered graph, ARPACK
  on A for a non-bipartite one), to 1e-6 of the largest |eigenvalue| (method §6);
- hand-built graphs (chain, complete bipartite layer, empty and edgeless graphs);
- determinism across processes and across ``n_jobs``.

The fidelity tests against the authors' numbers are in ``test_topometrics_fixtures.py``.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import igraph as ig
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info, threadpool_limits

from mgelib import paperdata
from mgelib.graphs import Graph, write_edgelist
from mgelib.metrics import (
    GROUPS,
    NORMALISER,
    TOPOMETRICS,
    kernels,
    motif_sample_size,
    normalised,
    spectral,
    topometrics,
)
from mgelib.metrics.topo import motif_sample

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(autouse=True, scope="module")
def _blas_single_thread():
    """One BLAS thread: on 2 shared cores, threaded dense solves slow down by up to 4×."""
    with threadpool_limits(1):
        yield


#: The counting metrics: exact integers (the component count too).
INTEGER_METRICS = (*paperdata.INTEGER_METRICS, "no_connected_components")
COMBINATORIAL = tuple(m for m in TOPOMETRICS if m not in ("motif", *GROUPS["expansion"]))


# ---------------------------------------------------------------- graph builders
def make_graph(adj, dims, compat: str | None = None) -> Graph:
    """A :class:`Graph` with one flat partition per entry of ``dims``. Hand-made test graphs
    may have self-loops and intra-partition edges (the metrics must cope with them, as with the
    authors' compat-mode edges), so the encoder's edge checks are off (``check=False``)."""
    dims = [int(d) for d in dims]
    return Graph(
        sp.csr_array(adj, dtype=np.float32),
        dims=dims,
        layers=[f"layer{i}" if i else "input" for i in range(len(dims))],
        shapes=[(d,) for d in dims],
        meta={"compat": compat},
        check=False,
    )


def layered_graph(seed: int, dims, density: float, shortcut: float = 0.0) -> Graph:
    """Random layered graph: each possible edge p → p + 1 kept with probability ``density``,
    p → p + 2 with probability ``shortcut``; weights uniform in [0.05, 1)."""
    rng = np.random.default_rng(seed)
    off = np.concatenate([[0], np.cumsum(dims)])
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for p in range(len(dims)):
        for q, prob in ((p + 1, density), (p + 2, shortcut)):
            if q < len(dims) and prob > 0:
                r, c = np.nonzero(rng.random((dims[p], dims[q])) < prob)
                rows.append(r + off[p])
                cols.append(c + off[q])
    r, c = np.concatenate(rows), np.concatenate(cols)
    w = rng.uniform(0.05, 1.0, r.size)
    return make_graph(sp.csr_array((w, (r, c)), shape=(off[-1], off[-1])), dims)


def chain(n: int, w: float = 1.0) -> Graph:
    adj = sp.csr_array((np.full(n - 1, w), (np.arange(n - 1), np.arange(1, n))), shape=(n, n))
    return make_graph(adj, [1] * n)


def complete_bipartite(a: int, b: int, w: float) -> Graph:
    """K_{a,b} as one layer: input partition of a nodes, every edge to all b output nodes."""
    adj = sp.bmat([[None, np.full((a, b), w)], [sp.csr_array((b, a)), None]])
    return make_graph(adj, [a, b])


# Small random layered graphs: sparse enough for sinks, sources and disconnected nodes.
SMALL = [
    dict(seed=s, dims=dims, density=d, shortcut=sc)
    for s, (dims, d, sc) in enumerate(
        [
            ([6, 10, 12, 8, 4], 0.15, 0.0),
            ([6, 10, 12, 8, 4], 0.15, 0.05),
            ([9, 20, 20, 15, 10, 5], 0.08, 0.03),
            ([9, 20, 20, 15, 10, 5], 0.3, 0.0),
            ([12, 30, 25, 10], 0.05, 0.02),
            ([4, 8, 8, 8, 8, 8, 3], 0.25, 0.1),
            ([27, 40, 40, 20, 10], 0.1, 0.0),
            ([27, 40, 40, 20, 10], 0.1, 0.02),
        ]
    )
]


def _ids(cases):
    return [f"seed{c['seed']}-{'shortcut' if c['shortcut'] else 'bipartite'}" for c in cases]


# ---------------------------------------------------------------- networkx oracle
def networkx_oracle(graph: Graph) -> dict[str, float]:
    """Every combinatorial metric (raw) from networkx and the degrees, by method §6's definitions."""
    n = graph.n_nodes
    coo = sp.coo_array(graph.adjacency)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    g.add_weighted_edges_from(
        zip(coo.row.tolist(), coo.col.tolist(), coo.data.astype(float).tolist())
    )
    und = g.to_undirected()  # no reciprocal edges in these graphs: a simple graph
    n_in, n_out = int(graph.dims[0]), int(graph.dims[-1])
    sinks = [v for v in range(n - n_out) if g.out_degree(v) == 0 and g.in_degree(v) > 0]
    sources = [v for v in range(n_in, n) if g.in_degree(v) == 0 and g.out_degree(v) > 0]
    ncomp = nx.number_weakly_connected_components(g)
    return {
        "sink_nodes": len(sinks),
        "source_nodes": len(sources),
        "disc_nodes": sum(1 for v in g if g.degree(v) == 0),
        "r-out": sum(g.in_degree(v) for v in sinks),
        "r-in": sum(g.out_degree(v) for v in sources),
        "1-hop_nei": np.mean(
            [len(nx.single_source_shortest_path_length(g, v, cutoff=1)) for v in g]
        ),
        "2-hop_nei": np.mean(
            [len(nx.single_source_shortest_path_length(g, v, cutoff=2)) for v in g]
        ),
        "avg_node_strength": np.mean([s for _, s in g.degree(weight="weight")]),
        "k-core": np.mean(list(nx.core_number(und).values())),
        "cut-edges": len(list(nx.bridges(und))),
        "cut-nodes": len(list(nx.articulation_points(und))),
        "no_connected_components": ncomp,
        "mean_connected_components": n / ncomp,
    }


@pytest.mark.parametrize("engine", ["fast", "igraph"])
@pytest.mark.parametrize("case", SMALL, ids=_ids(SMALL))
def test_combinatorial_metrics_match_networkx(case, engine):
    graph = layered_graph(**case)
    got = topometrics(graph, normalise=False, engine=engine, metrics=COMBINATORIAL)
    want = networkx_oracle(graph)
    for m in COMBINATORIAL:
        if m in INTEGER_METRICS:
            assert got[m] == want[m], m
        else:
            assert got[m] == pytest.approx(want[m], rel=1e-12), m


def test_small_cases_cover_every_local_metric():
    """The random cases really have sinks, sources and disconnected nodes to count."""
    totals = {m: 0.0 for m in GROUPS["local"]}
    for case in SMALL:
        r = topometrics(layered_graph(**case), normalise=False, metrics=GROUPS["local"])
        for m in totals:
            totals[m] += r[m]
    assert all(v > 0 for v in totals.values()), totals
    cut = [
        topometrics(layered_graph(**c), normalise=False, metrics=("cut-edges",))["cut-edges"]
        for c in SMALL
    ]
    assert any(cut), cut


@pytest.mark.parametrize("case", SMALL, ids=_ids(SMALL))
def test_engines_agree_on_everything_but_the_motif_estimate(case):
    graph = layered_graph(**case)
    fast = topometrics(graph, normalise=False, engine="fast")
    ref = topometrics(graph, normalise=False, engine="igraph")
    for m in TOPOMETRICS:
        if m != "motif":
            assert fast[m] == ref[m] or (math.isnan(fast[m]) and math.isnan(ref[m])), m


def test_local_metrics_by_hand_and_reference_compatibility():
    """method §6: exact definitions by default; the authors' counts on a ``compat`` graph.

    Nodes 0–2 input, 3–5 hidden, 6–7 output. Edges 0→4, 1→4, 1→5, 4→6, 3→7, 3→6: node 2 is
    disconnected, node 3 is a source (at index |input|), node 5 a sink (at index V − 1 − |output|).
    """
    src, tgt = [0, 1, 1, 4, 3, 3], [4, 4, 5, 6, 7, 6]
    adj = sp.csr_array((np.ones(6), (src, tgt)), shape=(8, 8))
    exact = topometrics(make_graph(adj, [3, 3, 2]), normalise=False, metrics=GROUPS["local"])
    assert {m: exact[m] for m in GROUPS["local"]} == {
        "sink_nodes": 1,
        "source_nodes": 1,
        "disc_nodes": 1,
        "r-out": 1,
        "r-in": 2,
    }
    compat = topometrics(
        make_graph(adj, [3, 3, 2], compat="mge-snn"), normalise=False, metrics=GROUPS["local"]
    )
    # sinks {5, 6, 7} − 2 outputs; sources {0, 1, 3} − 3 inputs (input node 2 has no out-edge);
    # r-out skips node 5 (index not < V − 1 − |output| = 5), r-in skips node 3 (not > |input|).
    assert {m: compat[m] for m in GROUPS["local"]} == {
        "sink_nodes": 1,
        "source_nodes": 0,
        "disc_nodes": 1,
        "r-out": 0,
        "r-in": 0,
    }


def test_one_hop_ignores_self_loops_whatever_their_weight():
    """A self-loop adds no new neighbour (method §6: nodes within one out-step, the node included),
    also when its stored weight is 0 (|w| rounded to float16 can be 0; the edge still exists).

    Graph: 0 → 0 with weight 0, 1 → 1 with weight 1, 2 → 0. Every node reaches only itself,
    except node 2 (itself and 0): 1-hop = 2-hop = 4/3, and 1-hop ≤ 2-hop always.
    """
    adj = sp.csr_array(
        (np.array([0.0, 1.0, 1.0], np.float32), np.array([0, 1, 0]), np.array([0, 1, 2, 3])),
        shape=(3, 3),
    )
    assert adj.nnz == 3  # the zero-weight loop is a stored edge
    for engine in ("fast", "igraph"):
        r = topometrics(
            make_graph(adj, [1, 1, 1]),
            normalise=False,
            engine=engine,
            metrics=("1-hop_nei", "2-hop_nei"),
        )
        assert r["2-hop_nei"] == pytest.approx(4 / 3)
        assert r["1-hop_nei"] == pytest.approx(4 / 3), (engine, dict(r))


# ---------------------------------------------------------------- the motif estimate
@pytest.mark.parametrize(
    ("n_nodes", "size"),
    [
        (1, 1),
        (4, 1),
        (999, 1),
        (1000, 1),
        (1999, 1),
        (2000, 2),
        (2999, 2),
        (191894, 191),
        (233366, 233),
    ],
)
def test_motif_sample_size(n_nodes, size):
    """max(1, ⌊0.001·V⌋): the authors' int(0.001·V) is 0 below 1,000 nodes (igraph then raises)."""
    assert motif_sample_size(n_nodes) == size


def test_motif_sample_is_seeded_distinct_and_sorted():
    a = motif_sample(5000, seed=3)
    assert a.size == 5 and np.all(np.diff(a) > 0) and 0 <= a[0] and a[-1] < 5000
    assert np.array_equal(a, motif_sample(5000, seed=3))
    assert not np.array_equal(a, motif_sample(5000, seed=4))


def _random_digraph(seed: int, n: int, m: int) -> Graph:
    """Random directed graph with reciprocal pairs and self-loops (not an MGE: no layers)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, n, m), rng.integers(0, n, m)
    recip = rng.random(m) < 0.2  # add b → a for these
    loops = rng.integers(0, n, n // 10)
    src = np.concatenate([a, b[recip], loops])
    tgt = np.concatenate([b, a[recip], loops])
    adj = sp.csr_array((rng.uniform(0.1, 1, src.size), (src, tgt)), shape=(n, n))
    adj.sum_duplicates()
    return make_graph(adj, [n])


def _igraph_of(graph: Graph) -> ig.Graph:
    coo = sp.coo_array(graph.adjacency)
    return ig.Graph(n=graph.n_nodes, edges=np.column_stack([coo.row, coo.col]), directed=True)


def test_fast_motif_is_the_per_root_estimator():
    """The "fast" estimate is the sum of the per-root ESU counts × V / |sample| over
    ``motif_sample(V, seed)``; igraph given the same explicit sample computes the same."""
    estimates = []
    for seed in range(4):
        graph = layered_graph(seed, [150, 800, 800, 600, 150], 0.004, 0.001)  # V = 2,500
        n = graph.n_nodes
        roots = motif_sample(n, seed)
        assert roots.size == motif_sample_size(n) == 2
        got = topometrics(graph, seed=seed, normalise=False, metrics=("motif",))["motif"]
        counts = kernels.esu4_counts(kernels.undirected_view(graph.adjacency), roots)
        assert got == counts.sum() * n / roots.size
        assert got == pytest.approx(
            _igraph_of(graph).motifs_randesu_estimate(size=4, sample=roots.tolist()), rel=1e-12
        )
        estimates.append(got)
    assert sum(e > 0 for e in estimates) >= 2, estimates  # the check is not vacuous


@pytest.mark.parametrize("seed", range(4))
def test_motif_below_1000_nodes_uses_one_root(seed):
    """V < 1,000 (where the authors' code crashes): one root r, estimate = V × count(r), equal to
    igraph's ``motifs_randesu_estimate(sample=[r])``; on graphs with reciprocal edges and loops."""
    graph = _random_digraph(seed, 300, 700)
    (root,) = motif_sample(graph.n_nodes, seed)
    got = topometrics(graph, seed=seed, normalise=False, metrics=("motif",))["motif"]
    assert got == _igraph_of(graph).motifs_randesu_estimate(size=4, sample=[int(root)])
    ref = topometrics(graph, seed=seed, normalise=False, metrics=("motif",), engine="igraph")
    per_root = kernels.esu4_counts(
        kernels.undirected_view(graph.adjacency), np.arange(graph.n_nodes)
    )
    assert ref["motif"] in set((per_root * graph.n_nodes).tolist())  # some one-root estimate


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_igraph_engine_motif_is_seeded_like_the_authors(seed):
    """The authors call ``random.seed(seed)`` and then igraph (whose default generator is Python's
    ``random``) with ``sample=int(0.001·V)``; ``engine="igraph"`` reproduces that draw."""
    graph = layered_graph(seed, [150, 800, 800, 600, 150], 0.004, 0.001)
    g = _igraph_of(graph)
    ig.set_random_number_generator(random)
    state = random.getstate()
    try:
        random.seed(seed)
        want = g.motifs_randesu_estimate(size=4, sample=int(0.001 * graph.n_nodes))
    finally:
        random.setstate(state)
    got = topometrics(graph, seed=seed, normalise=False, metrics=("motif",), engine="igraph")
    assert got["motif"] == want


def test_topometrics_leaves_the_global_random_state_alone():
    graph = layered_graph(0, [150, 800, 800, 600, 150], 0.004, 0.001)
    state = random.getstate()
    for engine in ("fast", "igraph"):
        topometrics(graph, normalise=False, metrics=("motif",), engine=engine)
    assert random.getstate() == state


def test_motif_budget_switches_to_rand_esu_instead_of_giving_up():
    """``motif_budget``: when the exact ESU enumeration would exceed it, the "fast" estimate is
    RAND-ESU with cut probabilities (never NaN), its standard error in ``.stderr["motif"]`` and
    the cut probabilities in ``.reasons``; the default budget leaves small graphs exact.
    (Issue 18 changed this test: the budget used to make the estimate NaN.)"""
    graph = layered_graph(**SMALL[3])
    seed = next(
        s
        for s in range(50)
        if kernels.esu4_work(
            kernels.undirected_view(graph.adjacency), motif_sample(graph.n_nodes, s)
        )
        > 0
    )
    full = topometrics(graph, seed=seed, normalise=False, metrics=("motif",))
    assert full["motif"] > 0 and not full.reasons
    assert (
        topometrics(graph, seed=seed, normalise=False, metrics=("motif",), motif_budget=math.inf)[
            "motif"
        ]
        == full["motif"]
    )
    for normalise in (False, True):
        r = topometrics(graph, seed=seed, normalise=normalise, metrics=("motif",), motif_budget=0)
        assert math.isfinite(r["motif"]) and r["motif"] >= 0
        assert "RAND-ESU" in r.reasons["motif"] and "motif_budget" in r.reasons["motif"]
        assert "motif" in r.stderr and "standard error" in r.reasons["motif"]
    ref = topometrics(
        graph, seed=seed, normalise=False, metrics=("motif",), engine="igraph", motif_budget=0
    )
    assert not math.isnan(ref["motif"])  # the budget guards the "fast" engine only


# ---------------------------------------------------------------- spectral metrics
def dense_oracle(graph: Graph) -> dict[str, float]:
    """Spectral gap (first − third |λ| of A = W + Wᵀ) and λmax of L = D − A, by eigvalsh."""
    w = graph.adjacency.toarray().astype(np.float64)
    a = w + w.T
    lam = np.sort(np.abs(np.linalg.eigvalsh(a)))[::-1]
    rad = np.linalg.eigvalsh(np.diag(a.sum(axis=1)) - a)[-1]
    return {"spectral_gap": lam[0] - lam[2], "spectral_radius": rad, "scale_a": lam[0]}


def _assert_spectral_close(graph: Graph, seed: int = 0, want: dict | None = None) -> None:
    got = topometrics(graph, seed=seed, normalise=False, metrics=GROUPS["expansion"])
    want = dense_oracle(graph) if want is None else want
    # method §6: within 1e-6 of the largest |eigenvalue| of the matrix concerned.
    assert abs(got["spectral_gap"] - want["spectral_gap"]) <= 1e-6 * want["scale_a"], (
        got["spectral_gap"],
        want["spectral_gap"],
    )
    assert abs(got["spectral_radius"] - want["spectral_radius"]) <= 1e-6 * want["spectral_radius"]


@pytest.mark.parametrize("case", SMALL, ids=_ids(SMALL))
def test_spectral_metrics_match_dense_eigvalsh_on_small_graphs(case):
    _assert_spectral_close(layered_graph(**case))


@pytest.mark.parametrize("bipartite", [True, False], ids=["bipartite-BtB", "shortcut-arpack"])
def test_spectral_metrics_match_dense_eigvalsh_on_the_sparse_path(bipartite):
    """Above ``DENSE_MAX`` nodes: the bipartite layered graph takes the Lanczos-on-BᵀB shortcut
    (both halves have more than ``DENSE_MAX`` nodes, so BᵀB is not solved densely either); the
    graph with p → p + 2 shortcuts is not bipartite and takes ARPACK on the full A. Sized from
    ``DENSE_MAX`` (3,040 and 1,540 nodes for 1,500), at least 1,000 nodes."""
    if bipartite:
        part = max(spectral.DENSE_MAX // 2 + 10, 250)
    else:
        part = max(spectral.DENSE_MAX // 4 + 10, 250)
    graph = layered_graph(11, [part] * 4, 8 / part, 0.0 if bipartite else 0.3 / part)
    assert graph.n_nodes > spectral.DENSE_MAX
    even = spectral.bipartition(np.asarray(graph.dims), graph.adjacency)
    assert (even is not None) == bipartite
    if bipartite:
        assert min(even.sum(), (~even).sum()) > spectral.DENSE_MAX
    want = dense_oracle(graph)
    for seed in (0, 1):  # the start vector must not matter beyond the tolerance
        _assert_spectral_close(graph, seed, want)


# ---------------------------------------------------------------- hand-built graphs
def test_chain():
    """A path of n nodes, weight w: every edge a bridge, every inner node a cut-node, core 1.
    Adjacency eigenvalues 2w·cos(πk/(n+1)), k = 1..n, so gap = 2w(cos(π/(n+1)) − cos(2π/(n+1)));
    Laplacian eigenvalues 2w(1 − cos(πk/n)), k = 0..n−1, so radius = 2w(1 + cos(π/n))."""
    n, w = 6, 0.5
    r = topometrics(chain(n, w), normalise=False)
    assert {m: r[m] for m in INTEGER_METRICS} == {
        "sink_nodes": 0,
        "source_nodes": 0,
        "disc_nodes": 0,
        "r-out": 0,
        "r-in": 0,
        "cut-edges": n - 1,
        "cut-nodes": n - 2,
        "no_connected_components": 1,
    }
    assert r["mean_connected_components"] == n
    assert r["1-hop_nei"] == pytest.approx((2 * (n - 1) + 1) / n)
    assert r["2-hop_nei"] == pytest.approx((3 * (n - 2) + 2 + 1) / n)
    assert r["k-core"] == 1
    assert r["avg_node_strength"] == pytest.approx(2 * (n - 1) * w / n)
    (root,) = motif_sample(n, 0)
    assert r["motif"] == n * (1 if root <= n - 4 else 0)  # one 4-window starts at each of 0..n-4
    c = math.cos
    assert r["spectral_gap"] == pytest.approx(
        2 * w * (c(math.pi / (n + 1)) - c(2 * math.pi / (n + 1)))
    )
    assert r["spectral_radius"] == pytest.approx(2 * w * (1 + c(math.pi / n)))


def _kab_motif_count(a: int, b: int, v: int) -> int:
    """Connected 4-subsets of K_{a,b} whose smallest vertex is v: v on the left (index v) picks 3
    of the a − 1 − v later left nodes and the b right nodes, at least one on the right."""
    if v >= a:
        return 0
    rest = a - 1 - v
    return math.comb(rest + b, 3) - math.comb(rest, 3)


@pytest.mark.parametrize(("a", "b"), [(1, 4), (2, 2), (3, 5), (5, 3), (40, 60)])
@pytest.mark.parametrize("engine", ["fast", "igraph"])
def test_complete_bipartite_layer(a, b, engine):
    """K_{a,b} with uniform weight w: core number min(a, b) for every node. A = [[0, wJ], [wJᵀ, 0]]
    has rank 2: eigenvalues ±w√(ab) and 0 (a + b − 2 times), so the three largest |λ| are
    w√(ab), w√(ab), 0 and gap = w√(ab) − 0 = w√(ab) (any a + b ≥ 3; for a = 1 that is the star
    K_{1,b}). L = D − A has eigenvalues 0, wa (b − 1 times), wb (a − 1 times), w(a + b): radius
    w(a + b). A star K_{1,b} has b bridges and one cut-node; otherwise there are none."""
    w = 0.25
    r = topometrics(complete_bipartite(a, b, w), normalise=False, engine=engine)
    n = a + b
    assert r["k-core"] == min(a, b)
    assert (r["cut-edges"], r["cut-nodes"]) == ((b, 1) if a == 1 else (0, 0))
    assert r["no_connected_components"] == 1 and r["mean_connected_components"] == n
    assert (r["sink_nodes"], r["source_nodes"], r["disc_nodes"], r["r-out"], r["r-in"]) == (0,) * 5
    assert r["1-hop_nei"] == pytest.approx((a * (b + 1) + b) / n)
    assert r["2-hop_nei"] == pytest.approx((a * (b + 1) + b) / n)
    assert r["avg_node_strength"] == pytest.approx(2 * a * b * w / n)
    assert r["spectral_gap"] == pytest.approx(w * math.sqrt(a * b), rel=1e-12)
    assert r["spectral_radius"] == pytest.approx(w * n, rel=1e-12)
    if engine == "fast":
        (root,) = motif_sample(n, 0)
        assert r["motif"] == n * _kab_motif_count(a, b, int(root))


def test_complete_bipartite_layer_on_the_sparse_path():
    """K_{1501,1502}: both sides above DENSE_MAX, so the gap comes from Lanczos on the rank-1
    BᵀB (one nonzero eigenvalue, the rest 0) and the radius from Lanczos on L."""
    a, b, w = 1501, 1502, 0.25
    r = topometrics(complete_bipartite(a, b, w), normalise=False, metrics=GROUPS["expansion"])
    assert abs(r["spectral_gap"] - w * math.sqrt(a * b)) <= 1e-6 * w * math.sqrt(a * b)
    assert r["spectral_radius"] == pytest.approx(w * (a + b), rel=1e-6)


def _assert_nan_explained(result) -> None:
    for m in TOPOMETRICS:
        if math.isnan(result[m]):
            assert result.reasons.get(m), f"{m} is NaN without a reason"


@pytest.mark.parametrize("engine", ["fast", "igraph"])
@pytest.mark.parametrize("normalise", [False, True])
def test_empty_graph_is_all_nan_with_reasons(engine, normalise):
    r = topometrics(make_graph(sp.csr_array((0, 0)), []), normalise=normalise, engine=engine)
    assert all(math.isnan(r[m]) for m in TOPOMETRICS)
    _assert_nan_explained(r)
    assert (r["nodes"], r["edges"]) == (0, 0)


@pytest.mark.parametrize(
    ("adj", "dims"),
    [
        (sp.csr_array((1, 1)), [1]),
        (sp.csr_array((2, 2)), [1, 1]),
        (sp.csr_array((np.ones(1), ([0], [1])), shape=(2, 2)), [1, 1]),
    ],
    ids=["1-node", "2-nodes", "2-nodes-1-edge"],
)
@pytest.mark.parametrize("engine", ["fast", "igraph"])
@pytest.mark.parametrize("normalise", [False, True])
def test_one_or_two_nodes_give_nan_with_a_reason(adj, dims, engine, normalise):
    r = topometrics(make_graph(adj, dims), normalise=normalise, engine=engine)
    assert math.isnan(r["spectral_gap"])  # no third eigenvalue
    _assert_nan_explained(r)
    assert set(r) == {*TOPOMETRICS, "nodes", "edges"}


@pytest.mark.parametrize("n", [6, 3200], ids=["small", "halves-above-DENSE_MAX"])
def test_graph_without_edges(n):
    """No edges: every node disconnected, every spectrum 0. With two partitions of 1,600 nodes
    (more than ``spectral.DENSE_MAX``) the gap takes the bipartite BᵀB path with B = 0."""
    graph = make_graph(sp.csr_array((n, n)), [n // 2, n - n // 2])
    raw = topometrics(graph, normalise=False)
    assert raw == {
        "sink_nodes": 0,
        "source_nodes": 0,
        "disc_nodes": n,
        "r-out": 0,
        "r-in": 0,
        "1-hop_nei": 1,
        "2-hop_nei": 1,
        "motif": 0,
        "avg_node_strength": 0,
        "k-core": 0,
        "cut-edges": 0,
        "cut-nodes": 0,
        "no_connected_components": n,
        "mean_connected_components": 1,
        "spectral_gap": 0,
        "spectral_radius": 0,
        "nodes": n,
        "edges": 0,
    }
    norm = topometrics(graph, normalise=True)
    for m in TOPOMETRICS:
        if NORMALISER[m] == "E":
            assert math.isnan(norm[m]) and "no edges" in norm.reasons[m], m
        else:
            assert not math.isnan(norm[m]), m
    assert norm["disc_nodes"] == 1 and norm["mean_connected_components"] == 1 / n


def test_spectral_metrics_of_edges_whose_weights_are_all_zero():
    """Kept weights that round to 0 in float16 are edges of weight 0 (method §5): a bipartite
    graph whose weights are all 0 has A = L = 0, so gap = radius = 0 — also when both halves
    exceed ``spectral.DENSE_MAX`` and the gap takes the Lanczos-on-BᵀB path (B = 0)."""
    half = 1600
    src = np.arange(10)
    adj = sp.csr_array((np.zeros(10), (src, half + src)), shape=(2 * half, 2 * half))
    graph = make_graph(adj, [half, half])
    assert graph.n_edges == 10 and half > spectral.DENSE_MAX
    r = topometrics(graph, normalise=False, metrics=GROUPS["expansion"])
    assert (r["spectral_gap"], r["spectral_radius"]) == (0, 0)


# ---------------------------------------------------------------- normalisation, determinism
def test_normalised_values_and_raw_values():
    graph = layered_graph(**SMALL[2])
    norm = topometrics(graph, normalise=True)
    raw = topometrics(graph, normalise=False)
    assert norm.raw == dict(raw.raw) == {m: raw[m] for m in TOPOMETRICS}
    want = normalised(raw.raw, graph.n_nodes, graph.n_edges)
    assert {m: norm[m] for m in TOPOMETRICS} == want
    assert want["sink_nodes"] == raw["sink_nodes"] / graph.n_nodes
    assert want["cut-edges"] == raw["cut-edges"] / graph.n_edges
    assert want["spectral_gap"] == raw["spectral_gap"]
    assert set(norm.timings) and all(t >= 0 for t in norm.timings.values())


@pytest.fixture(scope="module")
def big_graph(tmp_path_factory):
    """6,000 nodes and > 200,000 edges (every kernel splits its work among the threads), with
    shortcuts (not bipartite); saved with ``write_edgelist`` for the subprocess."""
    graph = layered_graph(5, [1000] * 6, 0.045, 0.001)
    assert graph.n_edges > 200_000
    path = write_edgelist(graph, tmp_path_factory.mktemp("topo") / "graph.parquet")
    return graph, path


_CHILD = """
import json, sys
from threadpoolctl import threadpool_limits
from mgelib.graphs import read_edgelist
from mgelib.metrics import topometrics
with threadpool_limits(1):  # as in this module
    r = topometrics(read_edgelist(sys.argv[1]), seed=3, normalise=False)
print(json.dumps({k: float(v).hex() for k, v in r.items()}))
"""


def test_same_seed_same_values_in_another_process(big_graph):
    from mgelib.graphs import read_edgelist

    graph, path = big_graph
    here = topometrics(read_edgelist(path), seed=3, normalise=False)
    assert here == topometrics(graph, seed=3, normalise=False)  # the file round trip is exact
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
    )
    there = {k: float.fromhex(v) for k, v in json.loads(out.stdout.splitlines()[-1]).items()}
    assert set(there) == {*TOPOMETRICS, "nodes", "edges"}
    diff = {m: (here[m], there[m]) for m in TOPOMETRICS if here[m].hex() != there[m].hex()}
    assert not diff, diff


def test_n_jobs_does_not_change_the_values(big_graph):
    graph, _ = big_graph
    one = topometrics(graph, seed=1, normalise=False, n_jobs=1)
    two = topometrics(graph, seed=1, normalise=False, n_jobs=2)
    assert {m: one[m] for m in TOPOMETRICS} == {m: two[m] for m in TOPOMETRICS}


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_eigensolve_restores_the_thread_limits(big_graph, monkeypatch, jobs):
    """``topometrics`` sets numba's thread count to ``n_jobs`` and BLAS to one thread; when a
    solve fails it raises — in turn (1) or side by side (2) — and must still give the caller's
    thread settings back. (Issue 18 changed this test: the eigensolve no longer runs in a
    forked process.)"""
    import numba

    graph, _ = big_graph

    def fail(*args, **kwargs):
        raise MemoryError("simulated: the eigensolve ran out of memory")

    monkeypatch.setattr(spectral, "laplacian_spectral_radius", fail)
    threads = numba.get_num_threads()
    with threadpool_limits(2):
        before = [p["num_threads"] for p in threadpool_info()]
        with pytest.raises(MemoryError, match="simulated"):
            topometrics(graph, normalise=False, n_jobs=jobs, metrics=("spectral_radius", "k-core"))
        after = [p["num_threads"] for p in threadpool_info()]
    assert after == before
    assert numba.get_num_threads() == threads
