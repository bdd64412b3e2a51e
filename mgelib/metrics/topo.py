"""The 16 topometrics of method §6 on one graph (an MGE, or one layer's BGE).

Engines: scipy.sparse for degrees, strength, the local (sink/source) metrics and weakly connected
components; :mod:`mgelib.metrics.combinatorial` for bridges, articulation points, coreness,
2-hop neighbourhoods and the RAND-ESU motif estimate (numba kernels by default, igraph's C code
with ``engine="igraph"``); :mod:`mgelib.metrics.spectral` for the expansion metrics.

Definitions that are easy to get wrong (method §6):

- sink/source nodes exclude the output/input partition; ``r-out`` (``r-in``) sums the in-degrees
  (out-degrees) of those sinks (sources): edges that lead into dead ends (are fed by nothing).
- ``1-hop_nei`` / ``2-hop_nei``: mean number of nodes within 1/2 out-steps, the node included.
- ``motif``: the RAND-ESU estimate of 4-node motifs (igraph's ``motifs_randesu_estimate(size=4)``)
  from ``max(1, ⌊0.001·V⌋)`` start nodes. With ``engine="igraph"`` igraph draws them from a
  ``random.Random(seed)`` generator — the authors' code seeds Python's ``random`` with the run
  seed the same way, so the same seed reproduces their estimate; the default engine draws them
  with numpy (:func:`motif_sample`) and counts exactly from them — or, past ``motif_budget``,
  by RAND-ESU with cut probabilities (unbiased; never NaN).
- ``cut-edges``/``cut-nodes``: bridges/articulation points of the undirected view; ``k-core``:
  mean core number with undirected degree (igraph ``coreness(mode="all")``).

``compat="mge-snn"`` graphs (the flag travels on the graph) get the authors' sink/source and
removable-edge counts (method §6, "Reference compatibility for metrics").
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from mgelib.graphs.graph import Graph
from mgelib.metrics import kernels, linalg, spectral
from mgelib.metrics.combinatorial import (
    Once,
    _combinatorial_fast,
    _combinatorial_igraph,
    motif_sample,
    motif_sample_size,
)
from mgelib.vocabulary import TOPOMETRIC_NORMALISER

__all__ = [
    "TOPOMETRICS",
    "NORMALISER",
    "GROUPS",
    "TopoResult",
    "topometrics",
    "normalised",
    "motif_sample_size",
    "motif_sample",
    "ENGINES",
    "MOTIF_BUDGET",
    "runs_side_by_side",
]

#: Metric names (the authors' column names) and the quantity each is divided by when normalised.
NORMALISER: dict[str, str | None] = TOPOMETRIC_NORMALISER
TOPOMETRICS: tuple[str, ...] = tuple(NORMALISER)
ENGINES = ("fast", "igraph")
#: Default work budget of the motif estimate: ~2e9 adjacency scans, about a minute here.
MOTIF_BUDGET = 2e9
#: With 2 to this many cores, and at most this many edges, the metrics run side by side, one
#: core each (see ``topometrics``). Past the edge bound each kernel is long enough to use all
#: the cores well, and running them together would add up their memory (CONV-6/SynFlow at
#: s = 0.6, 172.6 M edges: 42 s in turn, 96 s side by side, its 2-hop's serial twin 1.6× slower
#: than the parallel kernel on one thread).
SIDE_BY_SIDE_MAX_JOBS = 3
SIDE_BY_SIDE_MAX_EDGES = 50_000_000

GROUPS: dict[str, tuple[str, ...]] = {
    "local": ("sink_nodes", "source_nodes", "disc_nodes", "r-out", "r-in"),
    "neighbourhood": ("1-hop_nei", "2-hop_nei", "motif"),
    "strength": ("avg_node_strength", "k-core"),
    "global": ("cut-edges", "cut-nodes", "no_connected_components", "mean_connected_components"),
    "expansion": ("spectral_gap", "spectral_radius"),
}


class TopoResult(dict):
    """``dict[str, float]`` of metric values, plus ``nodes``/``edges``.

    Attributes
    ----------
    reasons : dict[str, str]
        Why a metric is NaN (e.g. "fewer than 3 nodes").
    timings : dict[str, float]
        Seconds spent per step (``igraph_build``, ``bridges``, ``spectral_gap``, …).
    raw : dict[str, float]
        The raw (un-normalised) values, also when ``normalise=True``.
    stderr : dict[str, float]
        Standard errors of the estimated metrics: ``"motif"`` (raw scale, ``V·sd/√roots`` over
        the start nodes, cut randomness included; NaN with a single start node).
    """

    reasons: dict[str, str]
    timings: dict[str, float]
    raw: dict[str, float]
    stderr: dict[str, float]


def normalised(raw: dict[str, float], n_nodes: int, n_edges: int) -> dict[str, float]:
    """Divide each raw metric by V or E as the authors' table stores it (method §6)."""
    out: dict[str, float] = {}
    for name, value in raw.items():
        div = NORMALISER.get(name)
        if div is None:
            out[name] = value
        else:
            d = n_nodes if div == "V" else n_edges
            out[name] = value / d if d else float("nan")
    return out


def _local(adj: sp.csr_array, dims: np.ndarray, compat: str | None) -> dict[str, float]:
    n = adj.shape[0]
    outdeg = np.diff(adj.indptr).astype(np.int64)
    indeg = np.bincount(adj.indices, minlength=n).astype(np.int64)
    n_in = int(dims[0]) if len(dims) else 0
    n_out = int(dims[-1]) if len(dims) else 0
    idx = np.arange(n)
    sink = (outdeg == 0) & (indeg > 0)
    source = (indeg == 0) & (outdeg > 0)
    disc = (indeg == 0) & (outdeg == 0)
    if compat == "mge-snn":
        # The authors' counts (method §6): subtract whole partitions, and each removable-edge sum
        # skips one node at a layer boundary.
        return {
            "sink_nodes": float(sink.sum() - n_out),
            "source_nodes": float(source.sum() - n_in),
            "disc_nodes": float(disc.sum()),
            "r-out": float(indeg[sink & (idx < n - 1 - n_out)].sum()),
            "r-in": float(outdeg[source & (idx > n_in)].sum()),
        }
    inner_sink = sink & (idx < n - n_out)
    inner_source = source & (idx >= n_in)
    return {
        "sink_nodes": float(inner_sink.sum()),
        "source_nodes": float(inner_source.sum()),
        "disc_nodes": float(disc.sum()),
        "r-out": float(indeg[inner_sink].sum()),
        "r-in": float(outdeg[inner_source].sum()),
    }


def _cheap_metrics(adj, dims, compat, wanted, raw, timed) -> None:  # noqa: ANN001
    """Degree-based metrics and components (scipy, linear time)."""
    n = adj.shape[0]
    if any(m in wanted for m in GROUPS["local"]):
        raw.update(timed("local", lambda: _local(adj, dims, compat)))
    if "1-hop_nei" in wanted:
        # CSR holds no parallel edges: the out-neighbourhood is the out-degree plus the node
        # itself; a self-loop (a stored diagonal entry, whatever its weight) adds no neighbour.
        def one_hop() -> float:
            from mgelib.metrics.kernels import self_loops

            return float(np.diff(adj.indptr).mean() + 1.0 - self_loops(adj) / n)

        raw["1-hop_nei"] = timed("1-hop_nei", one_hop)
    if "avg_node_strength" in wanted:
        raw["avg_node_strength"] = timed(
            "avg_node_strength", lambda: float(2.0 * np.sum(adj.data, dtype=np.float64) / n)
        )
    if "no_connected_components" in wanted or "mean_connected_components" in wanted:
        from mgelib.metrics.kernels import weak_components

        ncomp = timed("components", lambda: weak_components(adj))
        raw["no_connected_components"] = float(ncomp)
        raw["mean_connected_components"] = float(n / ncomp)


Task = Callable[[], dict[str, float]]


def runs_side_by_side(engine: str, jobs: int, n_edges: float) -> bool:
    """Whether ``topometrics`` runs the metrics side by side (``jobs``: the resolved core count):
    the fast engine, 2 to ``SIDE_BY_SIDE_MAX_JOBS`` cores, at most ``SIDE_BY_SIDE_MAX_EDGES``."""
    return (
        engine == "fast"
        and 2 <= jobs <= SIDE_BY_SIDE_MAX_JOBS
        and n_edges <= SIDE_BY_SIDE_MAX_EDGES
    )


def _run(
    tasks: list[Task], workers: int, lead: Task | None = None, threads: int = 1
) -> list[dict[str, float]]:
    """Run the metric tasks: in order here (each kernel on all of numba's threads), or with
    ``workers > 1`` on a pool of that many threads. There every task runs the serial twins of
    the kernels (GIL-free, one core each) except ``lead``, which keeps the parallel ones: the
    longest task, so that it also takes the cores the others leave idle. (numba's workqueue
    threads serve one launching thread at a time, hence a single ``lead``.)"""
    if workers <= 1:
        return [task() for task in tasks]

    def alone(task: Task) -> dict[str, float]:
        if task is lead:
            numba.set_num_threads(threads)  # per thread in numba: this worker's own setting
            return task()
        with kernels.serial_kernels():
            return task()

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(alone, task) for task in tasks]
        return [f.result() for f in futures]


def topometrics(
    graph: Graph,
    *,
    seed: int = 0,
    normalise: bool = True,
    metrics: tuple[str, ...] | None = None,
    engine: str = "fast",
    n_jobs: int = 0,
    motif_budget: float = MOTIF_BUDGET,
    tol: float = spectral.TOL,
) -> TopoResult:
    """The 16 topometrics of method §6 (plus ``nodes`` and ``edges``).

    Parameters
    ----------
    graph : Graph
        An MGE (or any :class:`~mgelib.graphs.Graph`; on a BGE the input/output partitions are its
        left/right sides).
    seed : int
        Seeds the motif sampling and the eigensolver start vectors.
    normalise : bool
        Divide by V or E as the authors' table stores the values (method §6, last column).
    metrics : tuple of str, optional
        Compute only these (default: all 16).
    engine : {"fast", "igraph"}
        Bridges, articulation points, coreness, 2-hop neighbourhoods and the motif estimate from
        compiled kernels on the CSR arrays (``"fast"``, :mod:`mgelib.metrics.kernels`), or from
        igraph (``"igraph"``, the reference: slower, because the edge list must be copied into
        igraph). Both give identical values except the motif estimate, whose start nodes are
        drawn differently: ``"fast"`` draws them with ``numpy.random.default_rng(seed)``,
        ``"igraph"`` lets igraph draw them from ``random.Random(seed)`` — as the authors' code
        does, so ``engine="igraph"`` reproduces their published estimate for the same seed.
    n_jobs : int
        Cores to use; ``0`` (the default) uses every core this process may run on
        (:func:`mgelib.metrics.linalg.available_cores`: ``os.sched_getaffinity``, or a grid
        worker's share). With 2 to ``SIDE_BY_SIDE_MAX_JOBS`` (3) cores and at most
        ``SIDE_BY_SIDE_MAX_EDGES`` (50 M) edges the metrics run side by side on that many
        threads, each on one core, the spectral gap (the longest) on numba's threads. On 2
        cores a kernel's second thread gains 1.0–1.5×, running the metrics together ~1.4×
        (ResNet-20 at s = 0.9: 2.30 → 1.46 s; CONV-6: 6.8 → 5.0 s). Otherwise they run in
        turn, each kernel on ``n_jobs`` threads (2-hop classes, motif roots, the eigensolvers'
        mat-vecs). Every kernel splits its work the same way whatever the number, and the
        serial twins give the same bits, so the values are identical for any ``n_jobs``.
        ``.timings`` are each step's wall seconds: side by side they overlap.
    motif_budget : float
        The exact ESU enumeration from each start node costs about ``deg³`` steps, which on a
        nearly dense graph means hours; when the (cheaply computed) number of steps exceeds this
        budget, the ``"fast"`` engine switches to RAND-ESU with cut probabilities chosen to fit
        it (Wernicke 2006): still unbiased, with its standard error in ``.stderr["motif"]`` and
        the cut probabilities in ``.reasons["motif"]``. ``inf`` always counts exactly.

    Returns
    -------
    TopoResult
        A ``dict`` of floats keyed by the authors' column names; NaN where a metric is undefined,
        with the reason in ``.reasons``; seconds per step in ``.timings``.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> from mgelib.graphs import Graph
    >>> chain = sp.csr_array((np.ones(3, np.float32), ([0, 1, 2], [1, 2, 3])), shape=(4, 4))
    >>> g = Graph(chain, dims=[1, 1, 1, 1], layers=["input", "a", "b", "c"],
    ...           shapes=[(1,)] * 4)
    >>> r = topometrics(g, normalise=False)
    >>> r["cut-edges"], r["cut-nodes"]
    (3.0, 2.0)
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    wanted = TOPOMETRICS if metrics is None else tuple(metrics)
    unknown = [m for m in wanted if m not in NORMALISER]
    if unknown:
        raise ValueError(f"unknown topometrics {unknown}; choose from {TOPOMETRICS}")
    adj = sp.csr_array(graph.adjacency)
    n, e = adj.shape[0], adj.nnz
    dims = np.asarray(graph.dims)
    compat = graph.compat
    forward = bool(graph.meta.get("forward", graph.encoding in ("mge", "rolled", "rolled_channel")))
    raw: dict[str, float] = {}
    reasons: dict[str, str] = {}
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - t0
        return out

    if n == 0:
        result = TopoResult({m: float("nan") for m in wanted})
        result.reasons = {m: "empty graph (no nodes)" for m in wanted}
        result.timings, result.raw, result.stderr = {}, dict(result), {}
        result.update(nodes=0.0, edges=0.0)
        return result

    # One symmetric operator (A x from the graph's own CSR) for both eigensolves.
    op = Once(
        lambda: timed("symmetric_operator", lambda: linalg.SymmetricOperator(adj, forward=forward))
    )

    def radius() -> dict[str, float]:
        o = op()  # timed on its own, outside the solve's seconds
        value = timed(
            "spectral_radius",
            lambda: spectral.laplacian_spectral_radius(
                adj, seed=seed, tol=tol, forward=forward, op=o, dims=dims
            ),
        )
        return {"spectral_radius": value}

    def gap() -> dict[str, float]:
        o = op()
        value = timed(
            "spectral_gap",
            lambda: spectral.spectral_gap(adj, dims, seed=seed, tol=tol, forward=forward, op=o),
        )
        return {"spectral_gap": value}

    if n < 3 and "spectral_gap" in wanted:
        raw["spectral_gap"] = float("nan")
        reasons["spectral_gap"] = "fewer than 3 nodes: no third eigenvalue"
    solve_gap = "spectral_gap" in wanted and n >= 3
    jobs = linalg.resolve_jobs(n_jobs)
    side_by_side = runs_side_by_side(engine, jobs, e)

    def cheap() -> dict[str, float]:
        out: dict[str, float] = {}
        _cheap_metrics(adj, dims, compat, wanted, out, timed)
        return out

    # The tasks, longest first (the order a pool takes them in): the gap, the combinatorial
    # metrics (motif, 2-hop, bridges and coreness), the radius, the degree-based ones.
    combinatorial = [
        m for m in ("cut-edges", "cut-nodes", "k-core", "2-hop_nei", "motif") if m in wanted
    ]
    tasks: list[Task] = [gap] if solve_gap else []
    if combinatorial and engine == "igraph":
        tasks.append(lambda: _combinatorial_igraph(adj, combinatorial, seed, timed))
    elif combinatorial:
        tasks += _combinatorial_fast(
            adj, combinatorial, seed, timed, motif_budget, reasons, dims=dims,
            shapes=graph.shapes, jobs=jobs, side_by_side=side_by_side,
        )  # fmt: skip
    tasks += [radius] if "spectral_radius" in wanted else []
    tasks.append(cheap)
    previous = numba.get_num_threads()
    # numba's threads carry the parallel kernels; BLAS (the small dense steps inside ARPACK)
    # keeps to one thread so that the two never oversubscribe the cores.
    threads = max(1, min(jobs, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    try:
        with threadpool_limits(1):
            for values in _run(tasks, jobs if side_by_side else 1, lead=gap, threads=threads):
                raw.update(values)
    finally:
        numba.set_num_threads(previous)
    if e == 0:
        for m in wanted:
            if normalise and NORMALISER[m] == "E":
                reasons.setdefault(m, "no edges: normalising by E is undefined")
    stderr = {"motif": raw.pop("motif_se")} if "motif_se" in raw else {}
    raw = {m: raw[m] for m in wanted}
    values = normalised(raw, n, e) if normalise else dict(raw)
    result = TopoResult(values)
    result.update(nodes=float(n), edges=float(e))
    result.reasons = reasons
    result.timings = timings
    result.raw = raw
    result.stderr = stderr
    return result
