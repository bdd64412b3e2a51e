"""The paths that make the topometrics scale (issue 18), each against an independent count:

- the 2-hop sizes from translation classes (:mod:`mgelib.metrics.twohop`) equal the explicit
  node-by-node count on MGEs of every architecture family — padding, pooling windows, strided
  convs, residual shortcuts, depthwise convs, ``compat="mge-snn"`` — and on random graphs with
  no symmetry at all;
- RAND-ESU with cut probabilities is unbiased: the mean over seeds lies within a few standard
  errors of the exact count; with cut probabilities 1 it is the exact count;
- the values do not depend on ``n_jobs``;
- the multi-threaded symmetric adjacency and mat-vecs equal scipy's, in the plain CSR form and in
  the run form that folds the translation symmetry.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from mgelib import encode, models
from mgelib.graphs import Graph
from mgelib.masks import apply_masks
from mgelib.metrics import TOPOMETRICS, kernels, linalg, spectral, topometrics, twohop
from mgelib.metrics.combinatorial import cut_probabilities, motif_estimate

MODELS = [("conv6", 8), ("resnet20", 8), ("mobilenetv2", 8), ("wrn28_2", 8)]


def _masked(name: str, size: int, keep: float, seed: int = 0) -> torch.nn.Module:
    net = models.build(name, 3, 10, size, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    masks = {
        n: (torch.rand(p.shape, generator=gen) < keep).float()
        for n, p in net.named_parameters()
        if p.dim() > 1
    }
    return apply_masks(net, masks).eval()


@pytest.fixture(scope="module")
def mges() -> dict[str, Graph]:
    out = {}
    for name, size in MODELS:
        net = _masked(name, size, keep=0.05)
        out[name] = encode(net, (3, size, size))
        if name in ("conv6", "resnet20"):
            out[f"{name}-compat"] = encode(net, (3, size, size), compat="mge-snn")
    return out


@pytest.mark.parametrize(
    "key",
    ["conv6", "conv6-compat", "resnet20", "resnet20-compat", "mobilenetv2", "wrn28_2"],
)
def test_two_hop_classes_equal_the_explicit_count(mges, key):
    graph = mges[key]
    _assert_classes_exact(graph.adjacency, graph.dims, graph.shapes)


def _assert_classes_exact(adj, dims, shapes) -> None:  # noqa: ANN001
    """Every node's explicit count equals its class representative's (the class path), and
    the public function (whichever path it takes) equals the explicit count."""
    want = kernels.two_hop_sizes(adj)
    reps, cls = twohop.two_hop_classes(adj, dims, shapes)
    assert np.array_equal(want[reps][cls], want)
    got = twohop.two_hop_sizes(adj, dims, shapes)
    assert got.dtype == want.dtype and np.array_equal(got, want)


def test_two_hop_classes_survive_a_collision_of_the_first_hash(mges, monkeypatch):
    """Classes come from the first 64-bit hash when the second agrees within each class; when
    two classes share a first hash (forced here: all zero) the pair of hashes decides."""
    real = twohop._hash_two

    def colliding(*args):  # noqa: ANN002, ANN202
        ka, kb = real(*args)
        return np.zeros_like(ka), kb

    monkeypatch.setattr(twohop, "_hash_two", colliding)
    graph = mges["conv6"]
    _assert_classes_exact(graph.adjacency, graph.dims, graph.shapes)
    reps, _ = twohop.two_hop_classes(graph.adjacency, graph.dims, graph.shapes)
    assert reps.size > 1


def test_two_hop_classes_on_the_32x32_conv6_shape():
    """The CIFAR shape (interior positions far from every border) at s = 0.98."""
    net = _masked("conv6", 32, keep=0.02)
    graph = encode(net, (3, 32, 32))
    _assert_classes_exact(graph.adjacency, graph.dims, graph.shapes)
    reps, _ = twohop.two_hop_classes(graph.adjacency, graph.dims, graph.shapes)
    assert reps.size < graph.n_nodes / 3


@pytest.mark.parametrize("max_words", [4096, 2])
@pytest.mark.parametrize("seed", range(4))
def test_two_hop_bitsets_count_like_the_explicit_walk(seed, max_words, monkeypatch):
    """Nodes that feed a narrow layer densely keep their out-neighbours as bitsets; counts that
    OR them (and visit the rest, shortcuts and repeated nodes included) equal the explicit walk,
    also when the window is too wide for the buffer (the walk is then taken)."""
    monkeypatch.setattr(twohop, "_MAX_WORDS", max_words)
    rng = np.random.default_rng(seed)
    sizes = [150, 200, 130, 40]
    base = np.concatenate([[0], np.cumsum(sizes)])
    n = int(base[-1])
    blocks = []
    for p, density in ((0, 0.1), (1, 0.5), (2, 0.6)):  # dense into narrow layers
        a = sp.random_array((sizes[p], sizes[p + 1]), density=density, rng=rng, format="coo")
        blocks.append((a.row + base[p], a.col + base[p + 1]))
    short = sp.random_array((sizes[0], sizes[2]), density=0.05, rng=rng, format="coo")
    blocks.append((short.row, short.col + base[2]))  # shortcuts: 1-hop and 2-hop sets overlap
    rows = np.concatenate([b[0] for b in blocks])
    cols = np.concatenate([b[1] for b in blocks])
    adj = sp.csr_array((np.ones(rows.size), (rows, cols)), shape=(n, n))
    adj.sum_duplicates()
    _, words, _, _ = twohop._bitsets(adj.indptr, adj.indices, twohop._BITSET_FACTOR)
    assert words.any()  # the bitset path really runs
    want = kernels.two_hop_sizes(adj)
    got = twohop._count_rows(adj, np.arange(n, dtype=np.int64), 7)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(6))
def test_two_hop_classes_on_random_graphs_without_symmetry(seed):
    """Random (also non-forward, looped) graphs on image-shaped partitions."""
    rng = np.random.default_rng(seed)
    shapes = [(2, 4, 4), (3, 4, 4), (2, 2, 2), (5,)]
    dims = [int(np.prod(s)) for s in shapes]
    n = sum(dims)
    m = int(rng.integers(0, 4 * n))
    src, tgt = rng.integers(0, n, m), rng.integers(0, n, m)
    adj = sp.csr_array((np.ones(m), (src, tgt)), shape=(n, n))
    adj.sum_duplicates()
    _assert_classes_exact(adj, dims, shapes)


def test_two_hop_topometric_uses_the_classes_and_agrees_with_igraph(mges):
    graph = mges["resnet20"]
    fast = topometrics(graph, normalise=False, metrics=("2-hop_nei",))
    ref = topometrics(graph, normalise=False, metrics=("2-hop_nei",), engine="igraph")
    assert fast["2-hop_nei"] == ref["2-hop_nei"]


# ---------------------------------------------------------------- RAND-ESU
def _dense_random(seed: int, n: int, p: float) -> sp.csr_array:
    rng = np.random.default_rng(seed)
    a = np.triu(rng.random((n, n)) < p, 1)
    return sp.csr_array(a.astype(np.float32))


def test_rand_esu_with_probability_one_is_the_exact_count():
    view = kernels.undirected_view(_dense_random(0, 60, 0.15))
    roots = np.arange(60)
    exact = kernels.esu4_counts(view, roots)
    assert kernels.esu4_estimates(view, roots).tolist() == exact.astype(float).tolist()


def test_rand_esu_is_unbiased():
    """Mean over 200 seeds of the all-roots estimate with p2 = 0.5, p3 = 0.3, against the exact
    total: within 4 standard errors (of the mean over seeds)."""
    view = kernels.undirected_view(_dense_random(1, 40, 0.2))
    roots = np.arange(40)
    exact = float(kernels.esu4_counts(view, roots).sum())
    assert exact > 1000
    draws = np.array(
        [kernels.esu4_estimates(view, roots, 0.5, 0.3, seed=s).sum() for s in range(200)]
    )
    se = draws.std(ddof=1) / math.sqrt(draws.size)
    assert draws.std() > 0  # really random
    assert abs(draws.mean() - exact) <= 4 * se, (draws.mean(), exact, se)


def test_rand_esu_estimates_do_not_depend_on_the_threads():
    view = kernels.undirected_view(_dense_random(2, 80, 0.2))
    roots = np.arange(0, 80, 3)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = kernels.esu4_estimates(view, roots, 0.4, 0.2, seed=5)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = kernels.esu4_estimates(view, roots, 0.4, 0.2, seed=5, n_chunks=7)
    finally:
        numba.set_num_threads(before)
    assert one.tolist() == two.tolist()


def test_cut_probabilities_fit_the_budget():
    assert cut_probabilities((10.0, 100.0), 1e3) == (1.0, 1.0)
    p2, p3 = cut_probabilities((10.0, 1e6), 1e3)
    assert p2 == 1.0 and p3 * 1e6 + 10 <= 1e3 * 1.01
    p2, p3 = cut_probabilities((1e6, 1e9), 1e3)
    assert p2 * 1e6 + p2 * p3 * 1e9 <= 1e3 * 1.01
    assert all(p > 0 for p in cut_probabilities((1e6, 1e9), 0))


def test_motif_estimate_past_the_budget_is_finite_with_a_standard_error():
    adj = _dense_random(3, 2500, 0.02)
    view = kernels.undirected_view(adj)
    exact, se0, probs0, k = motif_estimate(view, 2500, 0, math.inf)
    assert probs0 == (1.0, 1.0) and k == 2
    est, se, (p2, p3), _ = motif_estimate(view, 2500, 0, 1e3)
    assert p3 < 1 and math.isfinite(est) and math.isfinite(se) and est >= 0


# ---------------------------------------------------------------- threads and kernels
def test_values_do_not_depend_on_n_jobs(mges):
    """n_jobs = 1 runs the metrics in turn; 2 and 3 run them side by side (serial kernels, one
    core each; the gap keeps the parallel ones); 4 in turn again, each kernel on 4 threads."""
    graph = mges["resnet20"]
    one = topometrics(graph, seed=2, normalise=False, n_jobs=1)
    auto = topometrics(graph, seed=2, normalise=False)  # n_jobs=0: every available core
    want = [one[m].hex() for m in TOPOMETRICS]
    assert [auto[m].hex() for m in TOPOMETRICS] == want
    for jobs in (2, 3, 4):
        other = topometrics(graph, seed=2, normalise=False, n_jobs=jobs)
        assert [other[m].hex() for m in TOPOMETRICS] == want, jobs
        assert {"spectral_gap", "motif", "2-hop_nei"} <= set(other.timings)


def test_side_by_side_only_for_few_cores_and_graphs_below_the_edge_bound(mges, monkeypatch):
    """Side by side, bridges and coreness are two steps; in turn on 2 threads, one step that
    runs both passes on a thread each. Past the edge bound 2 cores run the metrics in turn."""
    from mgelib.metrics import topo

    graph = mges["resnet20"]
    want = ("cut-edges", "k-core", "spectral_gap")
    side = topometrics(graph, normalise=False, n_jobs=2, metrics=want)
    assert {"cut-edges+cut-nodes", "k-core"} <= set(side.timings)
    monkeypatch.setattr(topo, "SIDE_BY_SIDE_MAX_EDGES", graph.n_edges - 1)
    turn = topometrics(graph, normalise=False, n_jobs=2, metrics=want)
    assert "cut-edges+cut-nodes+k-core" in turn.timings
    assert [side[m].hex() for m in want] == [turn[m].hex() for m in want]


def test_serial_kernels_are_per_thread_and_give_the_same_bits(mges):
    """``serial_kernels`` switches this thread's kernels to their serial twins and back; another
    thread meanwhile keeps the parallel ones. Both give the same bits."""
    import threading

    fn = linalg._row_sums
    assert fn.serial is not fn.parallel
    seen = {}
    with kernels.serial_kernels():
        with kernels.serial_kernels():
            pass
        assert kernels._MODE.serial  # nested blocks restore the outer state
        worker = threading.Thread(
            target=lambda: seen.update(other=getattr(kernels._MODE, "serial", False))
        )
        worker.start()
        worker.join()
    assert not kernels._MODE.serial and seen == {"other": False}
    graph = mges["resnet20"]
    adj = graph.adjacency

    def kernels_out() -> tuple:
        view = kernels.undirected_view(adj)
        roots = np.arange(0, adj.shape[0], 97)
        return (
            view.indptr,
            view.indices,
            twohop.two_hop_sizes(adj, graph.dims, graph.shapes),
            kernels.esu4_estimates(view, roots, 0.5, 0.5, seed=3),
        )

    parallel = kernels_out()
    with kernels.serial_kernels():
        serial = kernels_out()
    assert all(np.array_equal(a, b) for a, b in zip(parallel, serial))


def test_one_operator_serves_two_threads_at_once(mges):
    """The radius and the gap share one operator when they run side by side: each thread
    multiplies with its own work arrays, so concurrent products do not mix."""
    from concurrent.futures import ThreadPoolExecutor

    for graph in (mges["resnet20"], mges["conv6"]):
        op = linalg.SymmetricOperator(graph.adjacency)
        xs = np.random.default_rng(1).standard_normal((8, op.n))
        want = [op.matvec(x) for x in xs]

        def products(i: int, op=op, xs=xs) -> list[np.ndarray]:  # noqa: ANN001
            with kernels.serial_kernels():
                return [op.matvec(xs[(i + k) % 8]) for k in range(40)]

        with ThreadPoolExecutor(2) as pool:
            got = list(pool.map(products, range(2)))
        for i, outs in enumerate(got):
            assert all(np.array_equal(o, want[(i + k) % 8]) for k, o in enumerate(outs))


def test_available_cores_honours_the_worker_share(monkeypatch):
    monkeypatch.delenv("MGELIB_CORES", raising=False)
    assert linalg.available_cores() >= 1
    monkeypatch.setenv("MGELIB_CORES", "3")
    assert linalg.available_cores() == 3 and linalg.resolve_jobs(0) == 3
    assert linalg.resolve_jobs(2) == 2
    with pytest.raises(ValueError, match="n_jobs"):
        linalg.resolve_jobs(-1)


@pytest.mark.parametrize("forward", [True, False])
def test_symmetric_csr_and_matvecs_equal_scipy(forward):
    rng = np.random.default_rng(4)
    n = 300
    w = sp.random_array((n, n), density=0.05, rng=rng, dtype=np.float32, format="csr")
    w = sp.csr_array(sp.triu(w, 1) if forward else w)
    a = linalg.symmetric_csr(w, forward=forward)
    w64 = sp.csr_array(w, dtype=np.float64)
    want = sp.csr_array(w64 + w64.T) if forward else sp.csr_array(w64.maximum(w64.T))
    assert np.array_equal(a.toarray(), want.toarray())
    x = rng.standard_normal(n)
    assert np.allclose(linalg.matvec(a, x), want @ x, rtol=1e-12, atol=1e-12)
    deg = linalg.row_sums(a)
    lap = sp.diags(deg) - want
    assert np.allclose(linalg.laplacian_matvec(a, deg, x), lap @ x, rtol=1e-12, atol=1e-12)
    rows = np.array([3, 7, 299])
    assert np.allclose(linalg.rows_matvec(a, rows, x), (want @ x)[rows], rtol=1e-12)


def _assert_thread_independent(op, x) -> None:  # noqa: ANN001
    """``A x`` and ``L x`` have the same bits on 1 and 2 threads and with the serial twins."""
    previous = numba.get_num_threads()
    try:
        outs = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            outs.append((op.matvec(x), op.laplacian(x)))
    finally:
        numba.set_num_threads(previous)
    with kernels.serial_kernels():
        outs.append((op.matvec(x), op.laplacian(x)))
    for other in outs[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(outs[0], other))


@pytest.mark.parametrize("forward", [True, False])
def test_symmetric_operator_equals_scipy_and_ignores_the_thread_count(forward):
    """``SymmetricOperator`` multiplies a forward graph from its own CSR (``W x + Wᵀ x`` with
    per-chunk scatter buffers, several chunks here) and any other graph through ``max(W, Wᵀ)``;
    both agree with scipy in float64 and give the same bits on 1 and 2 threads."""

    rng = np.random.default_rng(5)
    n = 3000
    w = sp.random_array((n, n), density=0.1, rng=rng, dtype=np.float32, format="csr")
    w = sp.csr_array(sp.triu(w, 1) if forward else w)
    op = linalg.SymmetricOperator(w, forward=True)
    assert op.forward is forward
    if forward:
        assert op.bounds.size - 1 > 2  # the chunked scatter really runs
    w64 = sp.csr_array(w, dtype=np.float64)
    want = sp.csr_array(w64 + w64.T) if forward else sp.csr_array(w64.maximum(w64.T))
    x = rng.standard_normal(n)
    assert np.allclose(op.matvec(x), want @ x, rtol=1e-12, atol=1e-12)
    assert np.allclose(op.deg, want.sum(axis=1), rtol=1e-12)
    lap = sp.diags(op.deg) - want
    assert np.allclose(op.laplacian(x), lap @ x, rtol=1e-12, atol=1e-12)
    assert np.array_equal(op.toarray(), want.toarray())
    _assert_thread_independent(op, x)


def test_side_product_is_the_biadjacency_product_of_a_bipartite_graph():
    """On a bipartite forward graph, ``side_product`` (each edge does only the useful half of
    the gather/scatter) equals ``A @ x`` for ``x`` supported on one side: ``B x`` / ``Bᵀ y``."""
    rng = np.random.default_rng(6)
    n = 4000
    side = rng.random(n) < 0.4
    w = sp.random_array((n, n), density=0.05, rng=rng, dtype=np.float32, format="coo")
    keep = (side[w.row] != side[w.col]) & (w.row < w.col)
    w = sp.csr_array((w.data[keep], (w.row[keep], w.col[keep])), shape=(n, n))
    op = linalg.SymmetricOperator(w)
    a = sp.csr_array(w, dtype=np.float64)
    a = a + a.T
    for mask in (side, ~side):
        x = np.where(mask, rng.standard_normal(n), 0.0)
        got = op.side_product(x, mask)
        assert np.allclose(got, a @ x, rtol=1e-12, atol=1e-12)
        assert not np.any(got[mask])


@pytest.mark.parametrize(
    "key", ["conv6", "conv6-compat", "resnet20", "resnet20-compat", "mobilenetv2", "wrn28_2"]
)
def test_the_run_form_multiplies_like_the_csr(mges, key, monkeypatch):
    """The run form (rows grouped into classes of shifted copies, pooling windows folded into
    one distinct row, contiguous runs) gives the products of the plain CSR kernel and of scipy,
    on MGEs of every architecture family, and the same bits on 1 and 2 threads."""
    graph = mges[key]
    w = graph.adjacency
    monkeypatch.setattr(linalg.SymmetricOperator, "COMPRESSION", 1.0)  # small graphs: force it
    monkeypatch.setattr(linalg.SymmetricOperator, "RUN_CHUNK_ENTRIES", 64)  # several chunks
    op = linalg.SymmetricOperator(w)
    plain = linalg.SymmetricOperator(w, compress=False)
    assert plain.runs is None
    if not op.forward:
        pytest.skip("not a forward graph: the symmetric CSR path")
    assert op.runs is not None and op.runs.n_class_entries < w.nnz
    assert op.runs.bounds.size - 1 > 1
    w64 = sp.csr_array(w, dtype=np.float64)
    a = w64 + w64.T
    rng = np.random.default_rng(8)
    x = rng.standard_normal(w.shape[0])
    assert np.allclose(op.matvec(x), a @ x, rtol=1e-12, atol=1e-12)
    assert np.allclose(op.matvec(x), plain.matvec(x), rtol=1e-13, atol=1e-13)
    assert np.allclose(op.deg, plain.deg, rtol=1e-13)
    assert np.allclose(op.laplacian(x), sp.diags(op.deg) @ x - a @ x, rtol=1e-12, atol=1e-12)
    even = spectral.bipartition(graph.dims, w)
    if even is not None:
        for mask in (even, ~even):
            xs = np.where(mask, x, 0.0)
            got = op.side_product(xs, mask)
            assert np.allclose(got, a @ xs, rtol=1e-12, atol=1e-12)
            assert not np.any(got[mask])
    _assert_thread_independent(op, x)


def test_the_run_form_is_built_only_from_exact_classes():
    """Rows are grouped by hash, then checked exactly: a wrong grouping is caught (and the plain
    kernel used); a graph with no repeated rows keeps the plain kernel; a hand-made graph of
    shifted rows and shared (pooled) rows compresses and multiplies exactly."""
    w = sp.csr_array(np.array([[0, 1, 2, 0], [0, 0, 1, 2], [0, 0, 0, 3], [0, 0, 0, 0]], "f4"))
    bits = w.data.view(np.uint32)
    right = np.array([0, 0, 1, 2])  # rows 0 and 1 are the same pattern shifted by one
    assert linalg._same_as_class(w.indptr, w.indices, bits, right, np.array([0, 2, 3]))
    wrong = np.array([0, 0, 0, 1])
    assert not linalg._same_as_class(w.indptr, w.indices, bits, wrong, np.array([0, 3]))
    rng = np.random.default_rng(9)
    noise = sp.csr_array(sp.triu(sp.random_array((500, 500), density=0.05, rng=rng), 1))
    assert linalg.SymmetricOperator(noise.astype(np.float32)).runs is None
    # 40 source rows in pairs sharing their out-edges (a pooling window), shifted pattern
    n_src, n_dst = 40, 30
    rows, cols = [], []
    for i in range(n_src):
        for off in (0, 3, 4):
            rows.append(i)
            cols.append(n_src + i // 2 + off)
    data = np.tile(np.array([0.5, 1.25, 2.0], "f4"), n_src)
    g = sp.csr_array((data, (rows, cols)), shape=(n_src + n_dst, n_src + n_dst))
    op = linalg.SymmetricOperator(g)
    assert op.runs is not None and op.runs.n_class_entries == 3
    assert op.runs.n_distinct == n_src // 2  # one distinct row per pair
    a = sp.csr_array(g, dtype=np.float64)
    a = a + a.T
    x = rng.standard_normal(g.shape[0])
    assert np.allclose(op.matvec(x), a @ x, rtol=1e-13, atol=1e-13)


def test_a_grid_worker_pins_its_share_of_the_cores(monkeypatch):
    """``run_chunk(cores=k)`` (what the local executor's N workers get, k = cores // N) sets
    ``MGELIB_CORES`` and the thread variables before its runs, so ``n_jobs=0`` / ``threads=0``
    in the notebooks it starts resolve to k."""
    from mgelib.runner.run import THREAD_VARIABLES, run_chunk

    for name in ("MGELIB_CORES", *THREAD_VARIABLES):
        monkeypatch.setenv(name, "")  # restored by monkeypatch after the test
    seen = []

    def task(spec, profile, root, force=False):  # noqa: ANN001, ANN202
        import os

        seen.append((linalg.available_cores(), [os.environ[v] for v in THREAD_VARIABLES]))
        return "done"

    assert run_chunk(["a", "b"], {"name": "t"}, "/nonexistent", task=task, cores=1) == [
        "done",
        "done",
    ]
    assert seen == [(1, ["1"] * len(THREAD_VARIABLES))] * 2


@pytest.mark.parametrize("seed", range(10))
def test_weak_components_equal_scipy(seed):
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    m = int(rng.integers(0, 2 * n))
    adj = sp.csr_array((np.ones(m), (rng.integers(0, n, m), rng.integers(0, n, m))), shape=(n, n))
    want = connected_components(adj, directed=True, connection="weak", return_labels=False)
    assert kernels.weak_components(adj) == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gap_sees_both_copies_of_an_exact_plus_minus_pair(seed):
    """A graph that is not bipartite only through a small separate component (an odd cycle)
    keeps the exactly ±-symmetric spectrum of its large bipartite part, so A² (what the gap's
    ARPACK solve uses) has exactly double top eigenvalues. The solve must still count both
    copies: gap = λ₁ − |λ|₃ as the dense solver gives it, not λ₁ minus the next pair."""
    rng = np.random.default_rng(seed)
    sizes = [500, 500, 500, 500]
    base = np.cumsum([0, *sizes])
    rows, cols, vals = [], [], []
    for p in range(3):
        rows += list(rng.integers(base[p], base[p + 1] - 3, 1500))
        cols += list(rng.integers(base[p + 1], base[p + 2] - 3, 1500))
        vals += list(rng.uniform(0.5, 1.5, 1500))
    a, b, c = base[1] - 1, base[2] - 1, base[3] - 1  # a triangle, apart from the rest
    for x, y in ((a, b), (b, c), (a, c)):
        rows.append(x)
        cols.append(y)
        vals.append(0.3)
    n = int(base[-1])
    adj = sp.csr_array((np.array(vals, np.float32), (rows, cols)), shape=(n, n))
    adj.sum_duplicates()
    dims = np.array(sizes)
    assert spectral.bipartition(dims, adj) is None and n > spectral.DENSE_MAX
    dense = adj.toarray().astype(np.float64)
    top = np.sort(np.abs(np.linalg.eigvalsh(dense + dense.T)))[::-1]
    assert top[0] - top[1] < 1e-9 * top[0]  # the exact ± pair
    got = spectral.spectral_gap(adj, dims, forward=True)
    assert abs(got - (top[0] - top[2])) <= 1e-6 * top[0]
