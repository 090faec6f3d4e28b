"""Leading singular vectors of (batches of) matrices: exact, or randomized (Halko, Martinsson & Tropp 2011).

Randomized SVD samples the range with ``q = max(2 k + 10, k + oversample)`` Gaussian vectors and sharpens it
with ``n_iter`` QR-stabilised power iterations. Weight matrices of trained networks have slowly decaying
spectra, so the subspace is only accurate with enough power iterations (2 iterations give a subspace cosine
of about 0.7 on a Gemma MLP matrix); :func:`subspace_cosines` measures what is traded.

:func:`block_lanczos_svd` (randomized block Krylov on ``A^T A``) is what the co-clusterer uses: for the same
accuracy it needs a block of ``k`` instead of ``2k + 10`` vectors and fewer passes over the matrix;
:func:`randomized_svd` (subspace iteration) stays for comparison (benchmarks/svd_accuracy.py).
"""
from __future__ import annotations

import torch

from ..errors import OptionError

#: Matrices whose smaller side is at most this use the exact SVD under ``method="auto"``.
EXACT_MAX_SIDE = 512


def _project_out(x: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    """``x - basis (basis^T x)`` for ``x`` ``[B, m, q]`` and orthonormal ``basis`` ``[B, m, r]`` (or None)."""
    return x if basis is None else torch.baddbmm(x, basis, torch.bmm(basis.transpose(1, 2), x), alpha=-1)


def randomized_svd(
    a: torch.Tensor, k: int, *, oversample: int = 10, n_iter: int = 6, generator: torch.Generator | None = None,
    tol: float = 0.0, deflate: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Approximate top-``k`` SVD of ``a`` ``[B, m, n]``.

    Returns ``U`` ``[B, m, k]``, ``S`` ``[B, k]``, ``V`` ``[B, n, k]`` (descending singular values).
    ``generator`` must live on ``a``'s device.

    - ``deflate``: ``(U0 [B, m, r], V0 [B, n, r])``, orthonormal singular pairs of ``a`` known in advance
      (``a V0 = U0 S0``, ``U0^T a = S0 V0^T``); the sketch is kept orthogonal to them, so the result is the
      top-``k`` of the rest and the sketch is not spent on directions already known.
    - ``tol``: with ``tol > 0``, the power iterations stop as soon as the top-``k`` left and right Ritz
      subspaces of every batch member move by less than ``tol`` (1 - smallest principal cosine) from one
      iteration to the next; ``n_iter`` is then the maximum. One host synchronisation per iteration.

    Each iteration is one ``a Z`` and one ``Y^T a`` product (both read ``a`` row-major; ``a^T Y`` with a
    transposed view is ~1.7x slower on CPU). The ``q x n`` projection ``Y^T a`` is factored at every step
    as ``(Q R)^T`` (QR of ``[n, q]``, then the SVD of the ``q x q`` ``R``: several times cheaper than
    LAPACK's SVD of the wide matrix), ``Q`` serves as the next orthonormal ``Z``, and the last step gives
    the result, so stopping early costs nothing extra.
    """
    B, m, n = a.shape
    u0, v0 = deflate if deflate is not None else (None, None)
    r = 0 if u0 is None else u0.shape[-1]
    q = min(max(2 * k + 10, k + oversample), m - r, n - r)
    omega = torch.randn(B, n, q, dtype=a.dtype, device=a.device, generator=generator)
    y = torch.linalg.qr(_project_out(torch.bmm(a, _project_out(omega, v0)), u0)).Q  # [B, m, q]
    prev = None
    for it in range(n_iter + 1):
        # Y^T a = R^T Q^T = (Ur S Vr^T)^T Q^T  ->  left vectors Y Vr, right vectors Q Ur.
        z, rr = torch.linalg.qr(torch.bmm(y.transpose(1, 2), a).transpose(1, 2))  # [B, n, q], [B, q, q]
        ur, s, vrh = torch.linalg.svd(rr)
        u, v = torch.bmm(y, vrh[:, :k, :].transpose(1, 2)), torch.bmm(z, ur[:, :, :k])
        if it == n_iter:
            break
        if tol > 0:
            if prev is not None:
                moved = torch.stack([1 - subspace_cosines(prev[0], u)[:, -1],
                                     1 - subspace_cosines(prev[1], v)[:, -1]]).amax()
                if float(moved) < tol:
                    break
            prev = (u, v)
        y = torch.linalg.qr(_project_out(torch.bmm(a, _project_out(z, v0)), u0)).Q
    return u, s[:, :k], v


def _orthogonalise_rows(xt: torch.Tensor, bases: list[torch.Tensor]) -> torch.Tensor:
    """``xt`` ``[B, b, N]`` with its components along the orthonormal rows of every ``bases[i]`` ``[B, r_i, N]``
    removed. Classical Gram-Schmidt run twice: once leaves float32 round-off of the size of the removed part,
    which the Gram operator (squared spectrum) amplifies from one block to the next."""
    for _ in range(2):
        for p in bases:
            xt = torch.baddbmm(xt, torch.bmm(xt, p.transpose(1, 2)), p, alpha=-1)
    return xt


def _orthonormal_rows(xt: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis ``[B, b, N]`` (as rows) of the row space of ``xt`` ``[B, b, N]`` (Householder QR of
    the transpose; LAPACK returns ``Q`` column-major, so its transpose is already contiguous)."""
    return torch.linalg.qr(xt.transpose(1, 2)).Q.transpose(1, 2)


def block_lanczos_svd(
    gram, batch: int, n: int, k: int, *, block: int, n_iter: int = 6, tol: float = 0.0,
    generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu", deflate: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Top-``k`` singular triplets of a batch of ``[m, n]`` matrices ``A`` known only through ``gram``, by
    randomized block Lanczos (block Krylov) on ``A^T A`` with full re-orthogonalisation.

    ``gram(vt)`` takes ``V^T`` ``[B, block, n]`` (orthonormal rows) and returns ``(A V [B, m, block],
    (A^T A V)^T [B, block, n])``: both products in one call, so an implementation can read ``A`` once per
    step (see :class:`~circuitclust.core.normalised_graph.NormalisedGraph`). Step ``j`` extends the basis
    ``[V_1 .. V_j]`` of the Krylov space ``{V_1, A^T A V_1, ..., (A^T A)^(j-1) V_1}`` (``V_1`` Gaussian);
    the Ritz vectors come from the exact projection ``H = V^T (A^T A V)`` (``eigh`` of ``jb x jb``),
    the left vectors from the stored ``A V`` (``u = A v / sigma``), so no extra product is needed. The basis
    is kept as rows (``[B, jb, n]``, preallocated), so extending it and every projection against it read
    contiguous memory.

    A Krylov space of degree ``j`` converges like a Chebyshev polynomial of degree ``j`` in ``A^T A``:
    markedly faster per product than subspace (power) iteration, which only uses the last iterate, and with
    a block of ``k`` instead of the ``2k + 10`` that power iteration needs.

    - ``n_iter``: the maximum number of steps (calls of ``gram``).
    - ``tol``: with ``tol > 0``, stop once the Davis-Kahan bound ``|A^T A v - s^2 v| / (s_k^2 - s_(k+1)^2)``
      on the sine of the angle between every wanted Ritz vector and the true one is below ``tol`` for every
      batch member (one host synchronisation per step). Where ``s_k`` and ``s_(k+1)`` nearly coincide the
      bound stays large: that vector is not determined, and all ``n_iter`` steps run.
    - ``deflate``: ``V0`` ``[B, n, r]``, orthonormal right singular vectors known in advance (with
      ``A^T A V0 = V0 S0^2``); the basis is kept orthogonal to them, so the result is the top-``k`` of the rest.

    Returns ``U`` ``[B, m, k]``, ``S`` ``[B, k]`` (descending), ``V`` ``[B, n, k]`` and the number of
    steps run. Columns of ``U`` for a zero singular value are 0 (never NaN).
    """
    r = 0 if deflate is None else deflate.shape[-1]
    block = max(1, min(block, n - r))
    n_iter = max(1, min(n_iter, (n - r) // block))  # the basis cannot outgrow the space
    known = [] if deflate is None else [deflate.transpose(1, 2).contiguous()]
    start = torch.randn(batch, block, n, dtype=dtype, device=device, generator=generator)
    basis = torch.empty(batch, n_iter * block, n, dtype=dtype, device=device)  # V^T, grown block by block
    gbasis = torch.empty_like(basis)  # (A^T A V)^T
    basis[:, :block] = _orthonormal_rows(_orthogonalise_rows(start, known))
    ys = []
    for j in range(n_iter):
        lo, hi = j * block, (j + 1) * block
        y, gvt = gram(basis[:, lo:hi].contiguous())
        ys.append(y)
        gbasis[:, lo:hi] = gvt
        last = j == n_iter - 1
        if last or tol > 0:
            h = torch.bmm(basis[:, :hi], gbasis[:, :hi].transpose(1, 2))
            lam, q = torch.linalg.eigh((h + h.transpose(1, 2)) / 2)
            lam, q = lam.flip(-1), q.flip(-1)  # descending
            if last:
                break
            if lam.shape[1] > k:
                qkt = q[:, :, :k].transpose(1, 2)
                res = torch.linalg.vector_norm(torch.bmm(qkt, gbasis[:, :hi]) - lam[:, :k, None]
                                               * torch.bmm(qkt, basis[:, :hi]), dim=2)
                gap = (lam[:, k - 1] - lam[:, k]).clamp_min(torch.finfo(dtype).tiny)
                if float((res.amax(1) / gap).amax()) < tol:
                    break
        basis[:, hi:hi + block] = _orthonormal_rows(_orthogonalise_rows(gvt, known + [basis[:, :hi]]))
    steps = len(ys)
    qk = q[:, :, :k]
    u = torch.bmm(torch.cat(ys, 2), qk)
    norm = torch.linalg.vector_norm(u, dim=1, keepdim=True)
    u = torch.where(norm > 0, u / norm.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(u))
    v = torch.bmm(qk.transpose(1, 2), basis[:, :steps * block]).transpose(1, 2)
    return u, lam[:, :k].clamp_min(0).sqrt(), v, steps


def exact_svd(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-``k`` of the full thin SVD of ``a`` ``[B, m, n]``: ``U [B, m, k]``, ``S [B, k]``, ``V [B, n, k]``."""
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    return u[:, :, :k], s[:, :k], vh[:, :k, :].transpose(1, 2)


def resolve_method(method: str, m: int, n: int, k: int) -> str:
    """``"auto"`` -> ``"exact"`` for small matrices (smaller side <= :data:`EXACT_MAX_SIDE`, or too few
    columns for the oversampled sketch), else ``"randomized"``."""
    if method not in ("auto", "exact", "randomized"):
        raise OptionError(f"svd must be 'auto', 'exact' or 'randomized', got {method!r}")
    if method != "auto":
        return method
    return "exact" if min(m, n) <= max(EXACT_MAX_SIDE, 2 * k + 10) else "randomized"


def subspace_cosines(u1: torch.Tensor, u2: torch.Tensor) -> torch.Tensor:
    """Cosines of the principal angles between the column spaces of ``u1`` and ``u2`` (``[..., m, k]``,
    orthonormal columns), descending: 1 = same direction; the last one is the worst-matched direction."""
    return torch.linalg.svdvals(u1.transpose(-1, -2) @ u2).clamp(max=1.0)
