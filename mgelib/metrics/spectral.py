"""Spectral expansion metrics with a fixed start vector and a stated tolerance (method §6).

- ``spectral_gap``: ``A`` is the weighted symmetric adjacency (``A = W + Wᵀ`` of the directed
  graph); take the three largest ``|λ|`` sorted descending; gap = first − third. For a graph whose
  edges only join partitions of different parity (a layered chain such as CONV-6) the graph is
  bipartite, the spectrum is ±-symmetric (``±σ(B)`` of the biadjacency ``B``), the top three are
  ``σ₁, σ₁, σ₂`` and the gap is ``σ₁ − σ₂``; we then run Lanczos on the half-size operator
  ``BᵀB``, which converges faster. A residual shortcut from partition i to i + 2 (ResNets), or the
  intra-partition edges of ``compat="mge-snn"``, break bipartiteness: the spectrum is then only
  *nearly* ±-symmetric, ``λ₁`` and ``−λ₁′`` differ slightly, and "first − third |λ|" compares
  the top eigenvalue with the second distinct magnitude *after* that near-pair — still the
  authors' definition, computed on the full ``A``.
- ``spectral_radius``: the largest eigenvalue of the weighted Laplacian ``L = D − A``, by a plain
  (unrestarted) Lanczos iteration: only the extreme Ritz value is needed, which loss of
  orthogonality does not spoil, and an unrestarted Krylov space converges in far fewer matrix
  products than ARPACK's restarted one on the clustered top of a Laplacian spectrum (the top
  eigenvectors of these graphs are localised around high-degree nodes, with relative gaps ~1e-4).

Mat-vecs: :mod:`mgelib.metrics.linalg` (one float32 symmetric adjacency shared by both solves,
row-parallel numba kernels, ``L`` and ``B`` never formed; the values are the graph's own
weights, the products are accumulated in float64, so nothing is lost against scipy's float64).

Accuracy: every solve stops on a rigorous bound, not on stagnation: ARPACK with relative residual
tolerance ``TOL`` (|λ − θ| ≤ ‖r‖ ≤ TOL·|θ|), the Lanczos radius when ``min(‖r‖, ‖r‖²/(θ₁ − θ₂))``
(the residual and Kato–Temple bounds) falls below ``TOL·θ₁``. ``TOL = 1e-7`` keeps a 10× margin on
method §6's requirement (agreement with a dense solver to 1e-6 of the largest |λ|), which the tests
check against ``numpy.linalg.eigvalsh``; graphs up to ``DENSE_MAX`` nodes use the dense solver.
All start vectors are fixed (seeded), so results are deterministic.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit
from scipy.linalg import eigh_tridiagonal
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

from mgelib.metrics import linalg

__all__ = [
    "symmetric_adjacency",
    "top_abs_eigenvalues",
    "spectral_gap",
    "laplacian_spectral_radius",
    "bipartition",
    "TOL",
    "DENSE_MAX",
    "eigsh_fixed",
]

TOL = 1e-7
DENSE_MAX = 300  # above this, ARPACK beats a dense eigensolve (a 1,400-node layer: 0.2 s vs 5 ms)


def _v0(n: int, seed: int) -> np.ndarray:
    """The fixed ARPACK start vector: positive (overlaps the Perron vector), seeded."""
    return np.random.default_rng(seed).uniform(0.5, 1.5, size=n)


def symmetric_adjacency(adj: sp.sparray, *, forward: bool = False) -> sp.csr_array:
    """The undirected weighted adjacency ``A = max(W, Wᵀ)`` in float64.

    Edge weights are non-negative (``|w|``), so this is ``W + Wᵀ`` except for reciprocal pairs
    (``i → j`` and ``j → i``), which keep the larger weight — each undirected edge carries one real
    weight, as the authors' ``as_undirected`` does (they keep the first). ``forward=True`` promises
    that every edge has ``i < j`` (true of every MGE and BGE) and takes the cheaper ``W + Wᵀ``.
    The solvers use :func:`mgelib.metrics.linalg.symmetric_csr` (the same values, float32).
    """
    w = sp.csr_array(adj, dtype=np.float64)
    wt = sp.csr_array(w.T)
    return sp.csr_array(w + wt) if forward else sp.csr_array(w.maximum(wt))


@njit(cache=True)
def _same_parity_edge(indptr, indices, parity):  # pragma: no cover - compiled
    for v in range(indptr.size - 1):
        for k in range(indptr[v], indptr[v + 1]):
            if parity[indices[k]] == parity[v]:
                return True
    return False


def bipartition(dims: np.ndarray, adj: sp.sparray) -> np.ndarray | None:
    """Node mask of the even partitions when every edge joins an even and an odd partition."""
    parity = np.repeat(np.arange(len(dims)) % 2, dims).astype(np.int8)
    w = sp.csr_array(adj)
    if _same_parity_edge(w.indptr, w.indices, parity):
        return None
    return parity == 0


def _operator(a: sp.csr_array) -> LinearOperator:
    """``x ↦ A x`` through the multi-threaded kernel."""
    buf = np.empty(a.shape[0])

    def mv(x: np.ndarray) -> np.ndarray:
        return linalg.matvec(a, np.ravel(x), buf).copy()

    return LinearOperator(a.shape, matvec=mv, dtype=np.float64)


def top_abs_eigenvalues(
    a: sp.sparray, k: int = 3, *, seed: int = 0, tol: float = TOL
) -> np.ndarray:
    """The ``k`` largest ``|λ|`` of a symmetric matrix, descending (dense below ``DENSE_MAX``)."""
    n = a.shape[0]
    if n == 0:
        return np.zeros(0)
    if sp.issparse(a) and a.count_nonzero() == 0:
        return np.zeros(min(k, n))
    if n <= max(DENSE_MAX, k + 1):
        dense = a.toarray() if sp.issparse(a) else np.asarray(a)
        vals = np.linalg.eigvalsh(dense.astype(np.float64))
        return np.sort(np.abs(vals))[::-1][:k]
    op = _operator(sp.csr_array(a)) if sp.issparse(a) else a
    vals = _eigsh(op, k=k, which="LM", seed=seed, tol=tol)
    return np.sort(np.abs(vals))[::-1]


def eigsh_fixed(
    op, k: int, which: str, *, seed: int = 0, tol: float = TOL, ncv: int | None = None
) -> np.ndarray:
    """ARPACK eigenvalues with the fixed start vector, retried once with a larger Krylov space
    and more iterations if it does not converge."""
    return _eigsh(op, k, which, seed, tol, ncv)


def _eigsh(op, k: int, which: str, seed: int, tol: float, ncv: int | None = None) -> np.ndarray:
    n = op.shape[0]
    # A larger Krylov space converges in fewer restarts on these clustered spectra (ResNet-20
    # at s = 0.9: 8.6 s with 20 vectors, 5.8 s with 40).
    ncv = min(n, ncv or max(2 * k + 1, 40 if k >= 3 else 24))
    try:
        return eigsh(
            op, k=k, which=which, v0=_v0(n, seed), tol=tol, ncv=ncv, return_eigenvectors=False
        )
    except ArpackNoConvergence:
        return eigsh(
            op,
            k=k,
            which=which,
            v0=_v0(n, seed),
            tol=tol,
            ncv=min(n, 4 * ncv),
            maxiter=50 * n,
            return_eigenvectors=False,
        )


def _top_singular_values(
    a: sp.csr_array, rows: np.ndarray, cols: np.ndarray, k: int, seed: int, tol: float
) -> np.ndarray:
    """Top ``k`` singular values of ``B = A[rows][:, cols]`` (a bipartite ``A``) by Lanczos on
    the smaller of ``BᵀB`` / ``BBᵀ``, with ``B x`` and ``Bᵀ y`` as row subsets of ``A``."""
    if min(rows.size, cols.size) == 0 or not np.any(a.data):
        return np.zeros(k)  # no weight: every singular value is 0 (ARPACK would refuse)
    small, large = (cols, rows) if cols.size <= rows.size else (rows, cols)
    if small.size <= k or small.size <= DENSE_MAX:
        b = sp.csr_array(a[large][:, small], dtype=np.float64)
        if small.size <= k:
            s = np.linalg.svd(b.toarray(), compute_uv=False)
            return np.pad(s, (0, max(0, k - s.size)))[:k]
        vals = np.linalg.eigvalsh((b.T @ b).toarray())
    else:
        # Bipartite: the rows of `large` read only `small` entries of x and vice versa, so one
        # full-length buffer carries both half-vectors.
        buf = np.zeros(a.shape[0])
        half = np.empty(large.size)
        out = np.empty(small.size)

        def mv(x: np.ndarray) -> np.ndarray:
            buf[small] = np.ravel(x)
            linalg.rows_matvec(a, large, buf, half)
            buf[large] = half
            return linalg.rows_matvec(a, small, buf, out).copy()

        op = LinearOperator((small.size, small.size), matvec=mv, dtype=np.float64)
        vals = _eigsh(op, k=k, which="LA", seed=seed, tol=tol)
    return np.sqrt(np.clip(np.sort(vals)[::-1][:k], 0, None))


def spectral_gap(
    adj: sp.sparray,
    dims: np.ndarray | None = None,
    *,
    seed: int = 0,
    tol: float = TOL,
    forward: bool = False,
    sym: sp.csr_array | None = None,
) -> float:
    """First minus third largest ``|λ|`` of the weighted symmetric adjacency (NaN below 3 nodes).

    ``dims`` (partition sizes) enables the bipartite shortcut when every edge joins partitions
    of different parity; ``sym``, the symmetric adjacency when the caller already has it
    (:func:`mgelib.metrics.linalg.symmetric_csr`).
    """
    n = adj.shape[0]
    if n < 3:
        return float("nan")
    a = linalg.symmetric_csr(adj, forward=forward) if sym is None else sym
    if dims is not None and n > DENSE_MAX:
        even = bipartition(np.asarray(dims), adj)
        if even is not None:  # A = [[0, B], [Bᵀ, 0]]: eigenvalues ±σ(B)
            s = _top_singular_values(a, np.flatnonzero(even), np.flatnonzero(~even), 2, seed, tol)
            return float(s[0] - s[1])
    vals = top_abs_eigenvalues(a, 3, seed=seed, tol=tol)
    return float(vals[0] - vals[2])


def laplacian_spectral_radius(
    adj: sp.sparray,
    *,
    seed: int = 0,
    tol: float = TOL,
    forward: bool = False,
    sym: sp.csr_array | None = None,
    dims: np.ndarray | None = None,
) -> float:
    """Largest eigenvalue of ``L = D − A`` (weighted, ``A = W + Wᵀ``; ``L`` is never formed).

    The Lanczos start vector is ``±deg·u`` (``u`` seeded uniform in [0.5, 1.5], the sign
    alternating with the partition's parity when ``dims`` is given): the top eigenvector of a
    Laplacian sits on high-degree nodes with alternating signs across each edge (exactly so on
    a bipartite graph, where it is the sign-flipped Perron vector of ``D + A``), and this start
    halves the number of mat-vecs on CONV-6 (190 → 90 at s = 0.98).
    """
    n = adj.shape[0]
    if n == 0:
        return float("nan")
    a = linalg.symmetric_csr(adj, forward=forward) if sym is None else sym
    deg = linalg.row_sums(a)
    if n <= DENSE_MAX:
        dense = a.toarray().astype(np.float64)
        return float(np.linalg.eigvalsh(np.diag(deg) - dense)[-1])
    buf = np.empty(n)

    def mv(x: np.ndarray) -> np.ndarray:
        return linalg.laplacian_matvec(a, deg, x, buf)

    if not np.any(deg):
        return 0.0  # no weight: L = 0
    start = _v0(n, seed) * (deg + deg.mean())
    if dims is not None and len(dims) and int(np.sum(dims)) == n:
        start *= np.where(np.repeat(np.arange(len(dims)) % 2, dims) == 0, 1.0, -1.0)
    op = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    return lanczos_max(op, seed=seed, tol=tol, start=start)


def lanczos_max(
    m: sp.sparray,
    *,
    seed: int = 0,
    tol: float = TOL,
    maxiter: int = 3000,
    start: np.ndarray | None = None,
) -> float:
    """Largest eigenvalue of a symmetric matrix by unrestarted Lanczos (three-term recurrence).

    Stops when ``min(‖r‖, ‖r‖²/(θ₁ − θ₂)) ≤ tol·|θ₁|`` (checked every 10 steps); falls back to
    ARPACK if that does not happen within ``maxiter`` steps or the recurrence breaks down early.
    """
    n = m.shape[0]
    q = _v0(n, seed) if start is None else np.array(start, dtype=np.float64)
    q /= np.linalg.norm(q)
    q_prev = np.zeros(n)
    beta = 0.0
    alphas: list[float] = []
    betas: list[float] = []
    for k in range(min(maxiter, n)):
        w = m @ q
        if beta:
            w -= beta * q_prev
        alpha = float(q @ w)
        w -= alpha * q
        alphas.append(alpha)
        beta = float(np.linalg.norm(w))
        if (k + 1) % 10 == 0 or beta < 1e-12 * max(abs(alpha), 1.0):
            top = min(k, 1)
            theta, vecs = eigh_tridiagonal(
                np.array(alphas), np.array(betas), select="i", select_range=(k - top, k)
            )
            res = beta * abs(vecs[-1, -1])
            bound = res
            if top:
                gap = theta[-1] - theta[-2]
                if gap > 0:
                    bound = min(res, res * res / gap)
            if bound <= tol * abs(theta[-1]) or beta < 1e-12 * max(abs(alpha), 1.0):
                return float(theta[-1])
        betas.append(beta)
        q_prev = q
        q = w / beta
    return float(_eigsh(m, k=1, which="LA", seed=seed, tol=tol)[0])
