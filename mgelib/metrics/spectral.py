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

Mat-vecs: :class:`mgelib.metrics.linalg.SymmetricOperator`, shared by both solves: on a forward
graph (every MGE and BGE) ``A x = W x + Wᵀ x`` straight from the graph's CSR, so ``A``, ``L`` and
``B`` are never formed; row-parallel numba kernels; the values are the graph's own float32
weights, the products accumulate in float64, so nothing is lost against scipy's float64.

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


@njit(cache=True, nogil=True)
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


def _operator(a: sp.csr_array | linalg.SymmetricOperator) -> LinearOperator:
    """``x ↦ A x`` through the multi-threaded kernels."""
    op = a if isinstance(a, linalg.SymmetricOperator) else None
    buf = np.empty(a.shape[0] if op is None else op.n)

    def mv(x: np.ndarray) -> np.ndarray:
        if op is not None:
            return op.matvec(np.ravel(x), buf).copy()
        return linalg.matvec(a, np.ravel(x), buf).copy()

    return LinearOperator((buf.size, buf.size), matvec=mv, dtype=np.float64)


def top_abs_eigenvalues(
    a: sp.sparray, k: int = 3, *, seed: int = 0, tol: float = TOL
) -> np.ndarray:
    """The ``k`` largest ``|λ|`` of a symmetric matrix, descending (dense below ``DENSE_MAX``)."""
    is_op = isinstance(a, linalg.SymmetricOperator)
    n = a.n if is_op else a.shape[0]
    if n == 0:
        return np.zeros(0)
    if (is_op and not np.any(a.deg)) or (sp.issparse(a) and a.count_nonzero() == 0):
        return np.zeros(min(k, n))
    if n <= max(DENSE_MAX, k + 1):
        dense = a.toarray() if is_op or sp.issparse(a) else np.asarray(a)
        vals = np.linalg.eigvalsh(dense.astype(np.float64))
        return np.sort(np.abs(vals))[::-1][:k]
    op = _operator(a) if is_op else _operator(sp.csr_array(a)) if sp.issparse(a) else a
    # The k largest |λ| of A are the square roots of the k largest eigenvalues of A², which is
    # positive semi-definite: ARPACK then works at one end of the spectrum ("LA") instead of
    # both ("LM"), and the near-±pairs of a nearly bipartite graph (a ResNet) become wanted
    # near-equal values rather than competitors. Each product is two passes, but fewer
    # restarts of a smaller Krylov space make it faster (ResNet-20, s = 0.9: 2.0 s → 1.4 s).
    # 14 vectors: with the run-form products ARPACK's own orthogonalisation against the Krylov
    # basis is a large share, and 14 does about as few applications of A² as 16 or 20
    # (ResNet-20, s = 0.98: 24 with 14 vectors, 28 with 16, 36 with 20; s = 0.9: 52, 51, 51).
    # |λ| comes out to half the relative tolerance of λ²: the same guarantee.
    squared = LinearOperator(op.shape, matvec=lambda x: op.matvec(op.matvec(x)), dtype=np.float64)
    vals = _eigsh(squared, k=k, which="LA", seed=seed, tol=tol, ncv=max(2 * k + 1, 14))
    return np.sqrt(np.clip(np.sort(vals)[::-1], 0, None))


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
    op: linalg.SymmetricOperator, rows: np.ndarray, cols: np.ndarray, k: int, seed: int, tol: float
) -> np.ndarray:
    """Top ``k`` singular values of ``B = A[rows][:, cols]`` (a bipartite ``A``) by Lanczos on
    the smaller of ``BᵀB`` / ``BBᵀ``: on a bipartite graph ``A`` maps a vector supported on one
    side to one supported on the other, so ``BᵀB x`` is two products with ``A``."""
    if min(rows.size, cols.size) == 0 or not np.any(op.deg):
        return np.zeros(k)  # no weight: every singular value is 0 (ARPACK would refuse)
    small, large = (cols, rows) if cols.size <= rows.size else (rows, cols)
    if small.size <= k or small.size <= DENSE_MAX:
        b = sp.csr_array(op.csr()[large][:, small], dtype=np.float64)
        if small.size <= k:
            s = np.linalg.svd(b.toarray(), compute_uv=False)
            return np.pad(s, (0, max(0, k - s.size)))[:k]
        vals = np.linalg.eigvalsh((b.T @ b).toarray())
    else:
        x_full = np.zeros(op.n)
        y_full = np.empty(op.n)
        z_full = np.empty(op.n)
        on_small = np.zeros(op.n, bool)
        on_small[small] = True
        on_large = ~on_small

        def mv(x: np.ndarray) -> np.ndarray:
            x_full[small] = np.ravel(x)  # zero on `large`, always
            op.side_product(x_full, on_small, y_full)  # B x, on `large` (zero on `small`)
            op.side_product(y_full, on_large, z_full)  # Bᵀ B x, on `small`
            return z_full[small]

        lin = LinearOperator((small.size, small.size), matvec=mv, dtype=np.float64)
        vals = _eigsh(lin, k=k, which="LA", seed=seed, tol=tol)
    return np.sqrt(np.clip(np.sort(vals)[::-1][:k], 0, None))


def spectral_gap(
    adj: sp.sparray,
    dims: np.ndarray | None = None,
    *,
    seed: int = 0,
    tol: float = TOL,
    forward: bool = False,
    op: linalg.SymmetricOperator | None = None,
) -> float:
    """First minus third largest ``|λ|`` of the weighted symmetric adjacency (NaN below 3 nodes).

    ``dims`` (partition sizes) enables the bipartite shortcut when every edge joins partitions
    of different parity; ``op``, the graph's :class:`~mgelib.metrics.linalg.SymmetricOperator`
    when the caller already has it.
    """
    n = adj.shape[0]
    if n < 3:
        return float("nan")
    op = linalg.SymmetricOperator(adj, forward=forward) if op is None else op
    if dims is not None and n > DENSE_MAX:
        even = bipartition(np.asarray(dims), adj)
        if even is not None:  # A = [[0, B], [Bᵀ, 0]]: eigenvalues ±σ(B)
            s = _top_singular_values(op, np.flatnonzero(even), np.flatnonzero(~even), 2, seed, tol)
            return float(s[0] - s[1])
    vals = top_abs_eigenvalues(op, 3, seed=seed, tol=tol)
    return float(vals[0] - vals[2])


def laplacian_spectral_radius(
    adj: sp.sparray,
    *,
    seed: int = 0,
    tol: float = TOL,
    forward: bool = False,
    op: linalg.SymmetricOperator | None = None,
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
    op = linalg.SymmetricOperator(adj, forward=forward) if op is None else op
    deg = op.deg
    if n <= DENSE_MAX:
        return float(np.linalg.eigvalsh(np.diag(deg) - op.toarray())[-1])
    buf = np.empty(n)

    def mv(x: np.ndarray) -> np.ndarray:
        return op.laplacian(x, buf)

    if not np.any(deg):
        return 0.0  # no weight: L = 0
    start = _v0(n, seed) * (deg + deg.mean())
    if dims is not None and len(dims) and int(np.sum(dims)) == n:
        start *= np.where(np.repeat(np.arange(len(dims)) % 2, dims) == 0, 1.0, -1.0)
    lin = LinearOperator((n, n), matvec=mv, dtype=np.float64)
    return lanczos_max(lin, seed=seed, tol=tol, start=start)


def lanczos_max(
    m: sp.sparray,
    *,
    seed: int = 0,
    tol: float = TOL,
    maxiter: int = 3000,
    start: np.ndarray | None = None,
) -> float:
    """Largest eigenvalue of a symmetric matrix by unrestarted Lanczos (three-term recurrence).

    Stops when ``min(‖r‖, ‖r‖²/(θ₁ − θ₂)) ≤ tol·|θ₁|`` (checked after every step: the
    tridiagonal's top two Ritz values cost microseconds, a product milliseconds; ResNet-20 at
    s = 0.98 stops after 11 products instead of 20); falls back to ARPACK if that does not
    happen within ``maxiter`` steps or the recurrence breaks down early.
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
