"""The combinatorial topometrics — bridges, articulation points, coreness, 2-hop neighbourhoods
and the RAND-ESU motif estimate — by engine: ``"fast"`` (numba kernels over the CSR arrays,
:mod:`mgelib.metrics.kernels`; the default, as handing the edges to python-igraph alone costs
~0.4 µs per edge) and ``"igraph"`` (the C library, the reference: with the same seed its motif
estimate equals the authors')."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["motif_sample_size", "motif_sample", "motif_estimate", "cut_probabilities"]


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


_P_MIN = 1e-6


def cut_probabilities(levels: tuple[float, float], budget: float) -> tuple[float, float]:
    """RAND-ESU cut probabilities ``(p2, p3)`` whose expected work fits ``budget`` adjacency
    scans, given the exact enumeration's scans per level (:func:`kernels.esu4_levels`): level 3
    (the bulk) is cut first, level 2 only when building its extension sets alone would exceed
    half the budget. ``(1, 1)`` — the exact count — when everything fits."""
    w2, w3 = levels
    if w2 + w3 <= budget:
        return 1.0, 1.0
    # The floor keeps every probability positive (unbiased) even for a budget of 0.
    p2 = min(1.0, max(_P_MIN, 0.5 * budget / w2)) if w2 > 0 else 1.0
    p3 = min(1.0, max(_P_MIN, max(budget - p2 * w2, 0.5 * budget) / (p2 * w3))) if w3 > 0 else 1.0
    return p2, p3


def motif_estimate(
    view, n_nodes: int, seed: int, budget: float
) -> tuple[float, float, tuple[float, float], int]:  # noqa: ANN001
    """The "fast" motif estimate: ``(estimate, standard error, (p2, p3), roots)``.

    Exact ESU counts from :func:`motif_sample` roots, scaled by ``V / |roots|``; when that would
    scan more than ``budget`` adjacency entries, RAND-ESU with the cut probabilities of
    :func:`cut_probabilities` (unbiased). The standard error is that of the mean over roots
    (``V·sd/√|roots|``; it includes the cuts' randomness), NaN with a single root.
    """
    from mgelib.metrics import kernels

    roots = motif_sample(n_nodes, seed)
    p2, p3 = cut_probabilities(kernels.esu4_levels(view, roots), budget)
    # p2 = p3 = 1: the exact counts (in parallel over roots, like the cut estimate).
    per_root = kernels.esu4_estimates(view, roots, p2, p3, seed=seed)
    estimate = float(per_root.sum() * n_nodes / roots.size)
    se = (
        float(n_nodes * per_root.std(ddof=1) / np.sqrt(roots.size))
        if roots.size > 1
        else float("nan")
    )
    return estimate, se, (p2, p3), int(roots.size)


class Once:
    """A value computed by its first caller; callers in other threads wait for it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._done = False
        self._value: Any = None

    def __call__(self) -> Any:
        with self._lock:
            if not self._done:
                self._value = self._fn()
                self._done = True
        return self._value


def _combinatorial_fast(  # noqa: ANN001
    adj, wanted, seed, timed, budget, reasons, dims=None, shapes=None, jobs=1, side_by_side=False
) -> list[Callable[[], dict[str, float]]]:
    """The fast engine's combinatorial metrics as independent tasks, longest first (the motif
    estimate, 2-hop, then bridges/articulation points and coreness), each returning its raw
    values. They share one undirected view, built by whichever needs it first.

    ``side_by_side``: the tasks will run concurrently, so bridges and coreness are two tasks;
    otherwise, with ``jobs > 1``, they are one task running both passes on a thread each."""
    from mgelib.metrics import kernels, twohop

    n = adj.shape[0]
    view = Once(lambda: timed("undirected_view", lambda: kernels.undirected_view(adj)))
    tasks: list[Callable[[], dict[str, float]]] = []
    if "motif" in wanted:

        def motif() -> dict[str, float]:
            est, se, (p2, p3), k = timed("motif", lambda: motif_estimate(view(), n, seed, budget))
            if p2 < 1.0 or p3 < 1.0:
                reasons["motif"] = (
                    f"RAND-ESU from {k} start nodes with cut probabilities p2={p2:.3g}, "
                    f"p3={p3:.3g} (the exact enumeration exceeds motif_budget={budget:.2g} "
                    f"steps): an unbiased estimate, standard error {se:.3g}"
                )
            return {"motif": est, "motif_se": se}

        tasks.append(motif)
    if "2-hop_nei" in wanted:

        def two_hop() -> dict[str, float]:
            if dims is not None and shapes is not None:
                sizes = timed("2-hop_nei", lambda: twohop.two_hop_sizes(adj, dims, shapes))
            else:
                sizes = timed("2-hop_nei", lambda: kernels.two_hop_sizes(adj))
            return {"2-hop_nei": float(sizes.mean())}

        tasks.append(two_hop)
    cuts = "cut-edges" in wanted or "cut-nodes" in wanted

    def cut() -> dict[str, float]:
        nb, na = timed(
            "cut-edges+cut-nodes", lambda: kernels.bridges_and_articulation_points(view())
        )
        return {"cut-edges": float(nb), "cut-nodes": float(na)}

    def core() -> dict[str, float]:
        return {"k-core": timed("k-core", lambda: float(kernels.core_numbers(view()).mean()))}

    if cuts and "k-core" in wanted and jobs > 1 and not side_by_side:
        # Two sequential depth-first/peeling passes over the same view, independent and
        # GIL-free: one thread each.

        def both() -> dict[str, float]:
            v = view()

            def run() -> tuple:
                with ThreadPoolExecutor(2) as pool:
                    c = pool.submit(kernels.bridges_and_articulation_points, v)
                    k = pool.submit(kernels.core_numbers, v)
                    return c.result(), k.result()

            (nb, na), cores = timed("cut-edges+cut-nodes+k-core", run)
            return {"cut-edges": float(nb), "cut-nodes": float(na), "k-core": float(cores.mean())}

        tasks.append(both)
    else:
        tasks += [cut] if cuts else []
        tasks += [core] if "k-core" in wanted else []
    return tasks
