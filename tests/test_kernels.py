"""The numba kernels of :mod:`mgelib.metrics.kernels` against igraph (the reference engine) and
brute force, on ~100 random small graphs and on graphs whose answers are known by hand.

Four kinds of random graph, 25 each: a forward DAG (what an MGE is), one with reciprocal pairs
(i → j and j → i: a double edge in the undirected view), one with self-loops, and a non-canonical
CSR holding duplicate entries (parallel i → j edges, which igraph also holds as a multigraph).
"""

from __future__ import annotations

import itertools
import math

import igraph as ig
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp

from mgelib.metrics import kernels

KINDS = ("dag", "reciprocal", "self_loops", "duplicates")
GRAPHS_PER_KIND = 25


def random_csr(seed: int, kind: str, n_max: int = 40) -> sp.csr_array:
    """A random directed graph as a CSR (weights 1), of one of :data:`KINDS`."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, n_max))
    m = int(rng.integers(0, 3 * n + 1))
    src = rng.integers(0, n, m)
    tgt = rng.integers(0, n, m)
    if kind == "dag":
        keep = src < tgt
        src, tgt = src[keep], tgt[keep]
    elif kind == "reciprocal":
        keep = src != tgt
        src, tgt = src[keep], tgt[keep]
        flip = rng.random(src.size) < 0.3  # add j → i for ~30 % of the edges
        src, tgt = np.concatenate([src, tgt[flip]]), np.concatenate([tgt, src[flip]])
    elif kind == "self_loops":
        loops = rng.integers(0, n, max(1, n // 4))
        src, tgt = np.concatenate([src, loops]), np.concatenate([tgt, loops])
    if kind == "duplicates":
        # Build the CSR arrays by hand so that duplicate (i, j) entries stay separate edges.
        keep = src != tgt
        src, tgt = src[keep], tgt[keep]
        dup = rng.random(src.size) < 0.3
        src, tgt = np.concatenate([src, src[dup]]), np.concatenate([tgt, tgt[dup]])
        order = np.argsort(src, kind="stable")
        src, tgt = src[order], tgt[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
        adj = sp.csr_array((np.ones(src.size), tgt, indptr), shape=(n, n))
        assert adj.nnz == src.size  # duplicates kept
        return adj
    adj = sp.csr_array((np.ones(src.size), (src, tgt)), shape=(n, n))
    adj.sum_duplicates()
    return adj


def to_igraph(adj: sp.csr_array) -> ig.Graph:
    """Every stored CSR entry as one directed igraph edge (duplicates become parallel edges)."""
    n = adj.shape[0]
    src = np.repeat(np.arange(n), np.diff(adj.indptr))
    return ig.Graph(n=n, edges=list(zip(src.tolist(), adj.indices.tolist())), directed=True)


def cases(kind: str):
    for i in range(GRAPHS_PER_KIND):
        seed = 1000 * KINDS.index(kind) + i
        adj = random_csr(seed, kind)
        yield seed, adj, to_igraph(adj), kernels.undirected_view(adj)


def test_random_graphs_cover_the_special_cases():
    """The generator really produces self-loops, reciprocal pairs and duplicate entries."""
    loops = sum(int(adj.diagonal().sum() > 0) for _, adj, _, _ in cases("self_loops"))
    recip = sum(int((adj.multiply(adj.T)).nnz > 0) for _, adj, _, _ in cases("reciprocal"))
    dups = sum(int(not adj.has_canonical_format) for _, adj, _, _ in cases("duplicates"))
    assert loops >= 15 and recip >= 15 and dups >= 15, (loops, recip, dups)


@pytest.mark.parametrize("kind", KINDS)
def test_undirected_view_lists_every_edge_at_both_ends(kind):
    for seed, adj, _, view in cases(kind):
        n = adj.shape[0]
        src = np.repeat(np.arange(n), np.diff(adj.indptr))
        assert view.n_nodes == n and view.n_edges == adj.nnz
        # A forward graph's view is simple and drops the ids; asked for, they are the same.
        assert view.edge.size == (0 if kernels.is_forward(adj.indptr, adj.indices) else 2 * adj.nnz)
        with_ids = kernels.undirected_view(adj, edge_ids=True)
        assert np.array_equal(with_ids.indices, view.indices)
        view = with_ids
        owner = np.repeat(np.arange(n), np.diff(view.indptr))
        # Each edge id k appears exactly twice: at src[k] pointing to tgt[k] and vice versa.
        got = sorted(zip(view.edge.tolist(), owner.tolist(), view.indices.tolist()))
        want = sorted(
            [(k, int(s), int(t)) for k, (s, t) in enumerate(zip(src, adj.indices))]
            + [(k, int(t), int(s)) for k, (s, t) in enumerate(zip(src, adj.indices))]
        )
        assert got == want, seed


@pytest.mark.parametrize("kind", KINDS)
def test_bridges_and_articulation_points_match_igraph(kind):
    for seed, _, g, view in cases(kind):
        nb, na = kernels.bridges_and_articulation_points(view)
        assert (nb, na) == (len(g.bridges()), len(g.articulation_points())), seed


@pytest.mark.parametrize("kind", KINDS)
def test_core_numbers_match_igraph_mode_all(kind):
    for seed, _, g, view in cases(kind):
        got = kernels.core_numbers(view)
        assert got.tolist() == g.coreness(mode="all"), seed


@pytest.mark.parametrize("kind", KINDS)
def test_two_hop_sizes_match_igraph(kind):
    for seed, adj, g, _ in cases(kind):
        got = kernels.two_hop_sizes(adj)
        assert got.tolist() == g.neighborhood_size(order=2, mode="out"), seed


@pytest.mark.parametrize("kind", KINDS)
def test_esu4_counts_match_igraph_per_root(kind):
    """Per root v: our count × V == igraph ``motifs_randesu_estimate(size=4, sample=[v])``."""
    for seed, adj, g, view in cases(kind):
        n = adj.shape[0]
        got = kernels.esu4_counts(view, np.arange(n))
        want = [g.motifs_randesu_estimate(size=4, sample=[v]) for v in range(n)] if n >= 4 else []
        assert (got * n).tolist() == [int(w) for w in want] or n < 4, seed
        if n < 4:
            assert not got.any(), seed


def _brute_force_esu4(adj: sp.csr_array) -> np.ndarray:
    """Weakly connected 4-vertex subsets, counted at their smallest vertex."""
    n = adj.shape[0]
    und = nx.Graph()
    und.add_nodes_from(range(n))
    coo = sp.coo_array(adj)
    und.add_edges_from((int(i), int(j)) for i, j in zip(coo.row, coo.col) if i != j)
    out = np.zeros(n, np.int64)
    for subset in itertools.combinations(range(n), 4):
        if nx.is_connected(und.subgraph(subset)):
            out[min(subset)] += 1
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_esu4_counts_match_brute_force_on_tiny_graphs(kind):
    for i in range(GRAPHS_PER_KIND):
        seed = 5000 + 1000 * KINDS.index(kind) + i
        adj = random_csr(seed, kind, n_max=12)
        got = kernels.esu4_counts(kernels.undirected_view(adj), np.arange(adj.shape[0]))
        assert got.tolist() == _brute_force_esu4(adj).tolist(), seed


@pytest.mark.parametrize("kind", KINDS)
def test_the_simple_view_shortcut_of_esu4_changes_no_count(kind):
    """A forward graph's view lists each neighbour once, so the last ESU level counts without
    marking; only such views take that path, and it gives the marking path's counts."""
    for i in range(GRAPHS_PER_KIND):
        adj = random_csr(7000 + 1000 * KINDS.index(kind) + i, kind)
        view = kernels.undirected_view(adj)
        assert view.simple == bool(kernels.is_forward(adj.indptr, adj.indices))
        roots = np.arange(adj.shape[0])
        got = kernels.esu4_estimates(view, roots)
        view.simple = not view.simple
        if not view.simple:  # the marking path on a simple view: the same counts
            assert kernels.esu4_estimates(view, roots).tolist() == got.tolist()


def test_esu4_counts_of_a_root_subset_are_the_per_root_counts():
    adj = random_csr(7, "reciprocal")
    view = kernels.undirected_view(adj)
    full = kernels.esu4_counts(view, np.arange(adj.shape[0]))
    roots = np.array([5, 0, 3, 3])  # any order, repeats allowed
    assert kernels.esu4_counts(view, roots).tolist() == full[roots].tolist()


# ---------------------------------------------------------------- known by hand
def _chain(n: int) -> sp.csr_array:
    return sp.csr_array((np.ones(n - 1), (np.arange(n - 1), np.arange(1, n))), shape=(n, n))


def _complete_bipartite(a: int, b: int) -> sp.csr_array:
    return sp.csr_array(sp.bmat([[None, np.ones((a, b))], [sp.csr_array((b, a)), None]]))


def test_chain():
    n = 7
    adj = _chain(n)
    view = kernels.undirected_view(adj)
    assert kernels.bridges_and_articulation_points(view) == (n - 1, n - 2)
    assert kernels.core_numbers(view).tolist() == [1] * n
    assert kernels.two_hop_sizes(adj).tolist() == [3, 3, 3, 3, 3, 2, 1]
    # Connected 4-subsets of a path are its 4 windows, each counted at its first vertex.
    assert kernels.esu4_counts(view, np.arange(n)).tolist() == [1, 1, 1, 1, 0, 0, 0]


@pytest.mark.parametrize(("a", "b"), [(1, 5), (2, 2), (3, 5), (6, 4)])
def test_complete_bipartite(a, b):
    adj = _complete_bipartite(a, b)
    view = kernels.undirected_view(adj)
    nb, na = kernels.bridges_and_articulation_points(view)
    # K_{1,b}: a star, every edge a bridge and the centre a cut-node (b ≥ 2); else 2-connected.
    assert (nb, na) == ((b, 1) if a == 1 else (0, 0))
    assert kernels.core_numbers(view).tolist() == [min(a, b)] * (a + b)
    assert kernels.two_hop_sizes(adj).tolist() == [b + 1] * a + [1] * b
    # A 4-subset of K_{a,b} is connected iff it meets both sides.
    total = math.comb(a + b, 4) - math.comb(a, 4) - math.comb(b, 4)
    counts = kernels.esu4_counts(view, np.arange(a + b))
    assert int(counts.sum()) == total
    assert not counts[a:].any()  # a 4-subset whose smallest vertex is on the right side lies in it


def test_parallel_and_reciprocal_edges_are_never_bridges():
    # 0 ⇄ 1 (reciprocal), 1 → 2 twice (duplicate CSR entries), 2 → 3 once.
    indptr = np.array([0, 1, 4, 5, 5])
    indices = np.array([1, 0, 2, 2, 3])
    adj = sp.csr_array((np.ones(5), indices, indptr), shape=(4, 4))
    view = kernels.undirected_view(adj)
    assert kernels.bridges_and_articulation_points(view) == (1, 2)  # bridge 2-3; cut 1 and 2
    assert kernels.bridges_and_articulation_points(view) == (
        len(to_igraph(adj).bridges()),
        len(to_igraph(adj).articulation_points()),
    )
    assert kernels.core_numbers(view).tolist() == to_igraph(adj).coreness(mode="all")
    assert kernels.esu4_counts(view, np.arange(4)).tolist() == [1, 0, 0, 0]


def test_self_loops_are_ignored_by_bridges_and_neighbourhoods():
    adj = sp.csr_array(_chain(4) + sp.eye_array(4))  # a path with a loop at every node
    view = kernels.undirected_view(adj)
    assert kernels.bridges_and_articulation_points(view) == (3, 2)
    assert kernels.two_hop_sizes(adj).tolist() == [3, 3, 2, 1]
    assert kernels.esu4_counts(view, np.arange(4)).tolist() == [1, 0, 0, 0]


@pytest.mark.parametrize("n", [0, 1, 3])
def test_graphs_without_edges(n):
    adj = sp.csr_array((n, n))
    view = kernels.undirected_view(adj)
    assert kernels.bridges_and_articulation_points(view) == (0, 0)
    assert kernels.core_numbers(view).tolist() == [0] * n
    assert kernels.two_hop_sizes(adj).tolist() == [1] * n
    assert kernels.esu4_counts(view, np.arange(n)).tolist() == [0] * n
