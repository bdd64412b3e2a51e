"""The encoder's parallel edge list → CSR step (``mgelib.graphs.csr``) against scipy: the same
arrays (rows sorted, weights carried along), parallel edges reported, and the same bits on any
number of threads."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp

from mgelib.graphs.csr import edges_to_csr


def _edges(seed: int, n: int, m: int):
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n, m).astype(np.int32)
    tgt = rng.integers(0, n, m).astype(np.int32)
    w = rng.random(m).astype(np.float32)
    return src, tgt, w


@pytest.mark.parametrize("n, m", [(1, 0), (7, 40), (50, 3000), (20_000, 400_000)])
def test_edges_to_csr_sorts_every_row_and_counts_parallel_edges(n, m):
    src, tgt, w = _edges(n + m, n, m)
    got, parallel = edges_to_csr(src, tgt, w, n)
    order = np.lexsort((w, tgt, src))  # by row, then target, then weight (the key order)
    assert np.array_equal(
        got.indptr, np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))])
    )
    assert np.array_equal(got.indices, tgt[order])
    assert np.array_equal(got.data, w[order])
    assert parallel == m - np.unique(src.astype(np.int64) * n + tgt).size
    assert got.has_sorted_indices and got.shape == (n, n)


def test_without_parallel_edges_it_equals_scipys_csr():
    src, tgt, w = _edges(3, 5000, 60_000)
    key = np.unique(src.astype(np.int64) * 5000 + tgt, return_index=True)[1]
    src, tgt, w = src[key], tgt[key], w[key]
    perm = np.random.default_rng(4).permutation(src.size)  # emission order does not matter
    got, parallel = edges_to_csr(src[perm], tgt[perm], w[perm], 5000)
    want = sp.csr_array((w, (src, tgt)), shape=(5000, 5000))
    want.sort_indices()
    assert parallel == 0
    for a, b in zip((got.indptr, got.indices, got.data), (want.indptr, want.indices, want.data)):
        assert np.array_equal(a, b)


def test_the_csr_does_not_depend_on_the_thread_count():
    src, tgt, w = _edges(5, 30_000, 500_000)
    previous = numba.get_num_threads()
    try:
        outs = []
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            outs.append(edges_to_csr(src, tgt, w, 30_000))
    finally:
        numba.set_num_threads(previous)
    (a, pa), (b, pb) = outs
    assert pa == pb
    assert all(
        np.array_equal(x, y)
        for x, y in zip((a.indptr, a.indices, a.data), (b.indptr, b.indices, b.data))
    )


def test_steps_to_csr_sorts_rows_a_later_step_put_out_of_order_and_counts_repeats():
    """``steps_to_csr`` (the builder's straight-into-CSR path) counts, then fills at each row's
    cursor; a row that receives a smaller target from a later pass is sorted, weights carried
    along, and a repeated (source, target) is reported so that the caller can merge it."""
    from mgelib.graphs.csr import steps_to_csr

    def edges(src, tgt, w):  # one pass writing these edges in this order
        src, tgt, w = (np.asarray(v) for v in (src, tgt, w))

        def run(cursor, indices, data, fill):  # noqa: ANN001
            for s, t, x in zip(src, tgt, w):
                if fill:
                    indices[cursor[s]], data[cursor[s]] = t, x
                cursor[s] += 1

        return run

    passes = [edges([0, 0, 1], [3, 4, 4], [1.0, 2.0, 3.0]), edges([0, 2], [2, 3], [5.0, 6.0])]
    got, parallel = steps_to_csr(passes, 5, 5)
    assert parallel == 0 and got.has_sorted_indices
    assert got.indptr.tolist() == [0, 3, 4, 5, 5, 5]
    assert got.indices.tolist() == [2, 3, 4, 4, 3]
    assert got.data.tolist() == [5.0, 1.0, 2.0, 3.0, 6.0]
    _, parallel = steps_to_csr([edges([1, 1], [3, 3], [1.0, 2.0])], 4, 2)
    assert parallel == 1


def test_one_owner_refuses_a_source_read_under_two_channels():
    """Rows are written in parallel over a step's input channels, so a source that two channels
    read (two threads, one row) sends the step to the edge-list path."""
    from mgelib.graphs.mge import _one_owner

    table = np.array([[[0, 1], [2, -1]], [[3, 4], [5, -1]]])
    assert _one_owner(table)
    table[1, 0, 0] = 2  # source 2 now under channels 0 and 1
    assert not _one_owner(table)
    assert _one_owner(np.full((3, 2), -1))
