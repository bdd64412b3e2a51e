"""The combinatorial topometrics — bridges, articulation points, coreness, 2-hop neighbourhoods
and the RAND-ESU motif estimate — by engine: ``"fast"`` (numba kernels over the CSR arrays,
:mod:`mgelib.metrics.kernels`; the default, as handing the edges to python-igraph alone costs
~0.4 µs per edge) and ``"igraph"`` (the C library, the reference: with the same seed its motif
estimate equals the authors')."""

from __future__ import annotations

import random
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

__all__ = ["motif_sample_size", "motif_sample"]


def motif_sample_size(n_nodes: int) -> int:
    """``max(1, ⌊0.001·V⌋)`` start nodes (the authors' ``int(0.001·V)`` is 0 below 1,000 nodes and
    igraph then raises)."""
    return max(1, int(0.001 * n_nodes))


@contextmanager
def _igraph_rng(seed: int):
    """Use a private ``random.Random(seed)`` as igraph's generator, then restore the previous one."""
    import igraph as ig

    rng = random.Random(seed)
    ig.set_random_number_generator(rng)
    try:
        yield
    finally:
        ig.set_random_number_generator(random)


def _to_igraph(adj: sp.csr_array):  # noqa: ANN202
    import igraph as ig

    n = adj.shape[0]
    edges = np.empty((adj.nnz, 2), dtype=np.int64)
    edges[:, 0] = np.repeat(np.arange(n, dtype=np.int64), np.diff(adj.indptr))
    edges[:, 1] = adj.indices
    g = ig.Graph(n=n, directed=True)
    g.add_edges(edges)  # the fastest route into python-igraph (~0.4 µs per edge)
    return g


def _combinatorial_igraph(adj, wanted, seed, timed) -> dict[str, float]:  # noqa: ANN001
    g = timed("igraph_build", lambda: _to_igraph(adj))
    n = adj.shape[0]
    out: dict[str, float] = {}
    if "cut-edges" in wanted:
        out["cut-edges"] = timed("cut-edges", lambda: float(len(g.bridges())))
    if "cut-nodes" in wanted:
        out["cut-nodes"] = timed("cut-nodes", lambda: float(len(g.articulation_points())))
    if "k-core" in wanted:
        out["k-core"] = timed("k-core", lambda: float(np.mean(g.coreness(mode="all"))))
    if "2-hop_nei" in wanted:
        out["2-hop_nei"] = timed(
            "2-hop_nei", lambda: float(np.mean(g.neighborhood_size(order=2, mode="out")))
        )
    if "motif" in wanted:

        def motif() -> float:
            with _igraph_rng(seed):
                return float(g.motifs_randesu_estimate(size=4, sample=motif_sample_size(n)))

        out["motif"] = timed("motif", motif)
    return out


def motif_sample(n_nodes: int, seed: int) -> np.ndarray:
    """The start nodes of the ``"fast"`` motif estimate: ``max(1, ⌊0.001·V⌋)`` distinct nodes drawn
    with ``numpy.random.default_rng(seed)``, sorted."""
    k = min(motif_sample_size(n_nodes), n_nodes)
    return np.sort(np.random.default_rng(seed).choice(n_nodes, size=k, replace=False))


def _combinatorial_fast(adj, wanted, seed, timed, budget, reasons) -> dict[str, float]:  # noqa: ANN001
    from mgelib.metrics import kernels

    n = adj.shape[0]
    out: dict[str, float] = {}
    view = None
    if {"cut-edges", "cut-nodes", "k-core", "motif"} & set(wanted):
        view = timed("undirected_view", lambda: kernels.undirected_view(adj))
    if "cut-edges" in wanted or "cut-nodes" in wanted:
        nb, na = timed("cut-edges+cut-nodes", lambda: kernels.bridges_and_articulation_points(view))
        out["cut-edges"], out["cut-nodes"] = float(nb), float(na)
    if "k-core" in wanted:
        out["k-core"] = timed("k-core", lambda: float(kernels.core_numbers(view).mean()))
    if "2-hop_nei" in wanted:
        out["2-hop_nei"] = timed("2-hop_nei", lambda: float(kernels.two_hop_sizes(adj).mean()))
    if "motif" in wanted:
        roots = motif_sample(n, seed)
        work = kernels.esu4_work(view, roots)
        if work > budget:
            out["motif"] = float("nan")
            reasons["motif"] = (
                f"the exact RAND-ESU enumeration from {roots.size} start nodes needs ~{work:.2g} "
                f"steps, over motif_budget={budget:.2g} (a nearly dense graph); raise the budget"
            )
        else:
            out["motif"] = timed(
                "motif", lambda: float(kernels.esu4_counts(view, roots).sum() * n / roots.size)
            )
    return out
