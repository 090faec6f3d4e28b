"""Representation similarity between layers: normalised pairwise-distance matrices, Gromov-Wasserstein (GW)
distances between them (POT, torch backend), and linear CKA. Pure tensor code, no model knowledge.

Conventions
-----------
- A layer's representation is ``x[n, d]``: n points (sampled token positions), d features. Widths may differ
  between layers; GW and CKA only see the points' geometry.
- Distance matrices are divided by their mean off-diagonal entry (``normalize="mean"``, the default) so a
  layer whose activations are 100x larger is not 100x "farther" from everything: after normalisation the
  average pair of points is at distance 1, and a rescaled copy of a representation has the same matrix.
  ``"max"`` divides by the largest entry instead (sensitive to one outlier token); ``"none"`` keeps raw units.
- ``gw_distance`` returns Memoli's GW distance ``d = 0.5 * sqrt(GW)`` where ``GW = min_T sum_ijkl
  (D1_ik - D2_jl)^2 T_ij T_kl`` is POT's square-loss objective over couplings T with uniform marginals. d is a
  metric (symmetric, triangle inequality) in units of the normalised distance, so d = 0.1 reads "pairwise
  distances disagree by about 20% of the mean distance under the best matching".

GW is non-convex and every solver is a local method, so each reported value is an upper bound on the true
GW. Measured on a 256-point planted test (see tests/test_similarity.py): conditional gradient started from the
independent coupling ``p q^T`` finds the zero for a permuted copy but stalls at the trivial value for a
*noisy* copy, while started from the identity coupling (the points of two layers are the same tokens) it does
the reverse. ``solver="exact"`` therefore runs both starts and keeps the smaller value.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..errors import CircuitclustError

METRICS = ("euclidean", "cosine")
NORMALIZE = ("mean", "max", "none")
SOLVERS = ("exact", "entropic", "entropic-pgd")
MIN_POINTS = 4


def _check_points(x: torch.Tensor, name: str = "x") -> None:
    if x.ndim < 2:
        raise CircuitclustError(f"{name} must be [n, d] (or [B, n, d]), got shape {tuple(x.shape)}")
    if x.shape[-2] < MIN_POINTS:
        raise CircuitclustError(f"{name} has {x.shape[-2]} points; GW/CKA need at least {MIN_POINTS}: raise n")
    if not torch.isfinite(x).all():
        raise CircuitclustError(f"{name} contains NaN or inf values")


def pairwise_distances(x: torch.Tensor, metric: str = "euclidean", normalize: str = "mean",
                       weights: torch.Tensor | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Pairwise-distance matrix of the points ``x[..., n, d]`` -> ``[..., n, n]`` (zero diagonal, symmetric).

    ``metric``: ``"euclidean"`` or ``"cosine"`` (1 - cosine similarity, in [0, 2]). ``normalize``: divide each
    matrix by its mean off-diagonal entry (``"mean"``; weighted by ``weights[..., n]`` when given, i.e. the mean
    distance between two independent draws of distinct points), its maximum (``"max"``) or not at all.
    Computed in ``dtype`` (float64 by default: the GW objective sums n^4 terms) on ``x``'s device.
    """
    if metric not in METRICS:
        raise CircuitclustError(f"unknown metric '{metric}': use one of {', '.join(METRICS)}")
    if normalize not in NORMALIZE:
        raise CircuitclustError(f"unknown normalize '{normalize}': use one of {', '.join(NORMALIZE)}")
    _check_points(x)
    x = x.to(dtype)
    n = x.shape[-2]
    if metric == "euclidean":
        # The matmul form loses precision for near-duplicate points; the direct form is exact and n*n*d is
        # small at the n used here.
        d = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
    else:
        u = x / x.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        d = (1.0 - u @ u.transpose(-1, -2)).clamp_min(0.0)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    d = d.masked_fill(eye, 0.0)
    d = 0.5 * (d + d.transpose(-1, -2))
    if normalize == "none":
        return d
    if normalize == "max":
        scale = d.amax(dim=(-1, -2))
    else:
        w = torch.full(x.shape[:-1], 1.0 / n, dtype=dtype, device=x.device) if weights is None else weights.to(dtype)
        ww = (w.unsqueeze(-1) * w.unsqueeze(-2)).masked_fill(eye, 0.0)
        scale = (d * ww).sum(dim=(-1, -2)) / ww.sum(dim=(-1, -2))
    if bool((scale <= 0).any()):
        raise CircuitclustError("a representation has all points identical (zero distances): nothing to compare; "
                                "sample more token positions or another hook")
    return d / scale[..., None, None]


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def _gw_loss_to_distance(loss: torch.Tensor) -> torch.Tensor:
    return 0.5 * loss.clamp_min(0.0).sqrt()


def gw_distance(d1: torch.Tensor, d2: torch.Tensor, *, solver: str = "exact", p: torch.Tensor | None = None,
                q: torch.Tensor | None = None, epsilon: float = 1e-2, max_iter: int = 1000,
                same_points: bool | None = None) -> torch.Tensor:
    """GW distance ``0.5 * sqrt(GW)`` between two metric-measure spaces given by distance matrices
    ``d1[n, n]``, ``d2[m, m]`` with point weights ``p[n]``, ``q[m]`` (uniform by default). Returns a 0-d
    tensor on ``d1``'s device.

    ``solver``: ``"exact"`` = POT conditional gradient (``ot.gromov.gromov_wasserstein2``, computed in numpy on
    the CPU by POT itself), the smaller of the starts ``p q^T`` and, when ``same_points`` (default: n == m and
    p == q), the identity coupling; ``"entropic"`` = POT's batched proximal solver (``ot.batch.
    solve_gromov_batch``, KL-proximal steps of size ``epsilon`` in the log domain; converges to an
    unregularised local optimum), on the tensors' device; ``"entropic-pgd"`` = ``ot.gromov.
    entropic_gromov_wasserstein2`` (entropy-regularised objective, biased upwards by the blur of the plan,
    and its non-log Sinkhorn underflows for ``epsilon`` below ~2e-3 at unit-mean distances).
    """
    if solver not in SOLVERS:
        raise CircuitclustError(f"unknown GW solver '{solver}': use one of {', '.join(SOLVERS)}")
    for name, d in (("d1", d1), ("d2", d2)):
        if d.ndim != 2 or d.shape[0] != d.shape[1]:
            raise CircuitclustError(f"{name} must be a square distance matrix, got shape {tuple(d.shape)}")
    if solver == "entropic":
        return gw_matrix_pairs(d1[None], d2[None], p=None if p is None else p[None],
                               q=None if q is None else q[None], epsilon=epsilon)[0]
    import ot

    p = _uniform(d1.shape[0], d1) if p is None else p.to(d1)
    q = _uniform(d2.shape[0], d2) if q is None else q.to(d1)
    if solver == "entropic-pgd":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Sinkhorn non-convergence warnings every outer step
            loss = ot.gromov.entropic_gromov_wasserstein2(d1, d2, p, q, epsilon=epsilon, symmetric=True,
                                                           max_iter=min(max_iter, 100), tol=1e-9,
                                                           numItermax=200)
        return _gw_loss_to_distance(torch.as_tensor(loss, dtype=d1.dtype, device=d1.device))
    if same_points is None:
        same_points = d1.shape == d2.shape and bool(torch.equal(p, q))
    losses = [ot.gromov.gromov_wasserstein2(d1, d2, p, q, symmetric=True, max_iter=max_iter)]
    if same_points:
        losses.append(ot.gromov.gromov_wasserstein2(d1, d2, p, q, symmetric=True, max_iter=max_iter,
                                                    G0=torch.diag(p)))
    loss = torch.stack([torch.as_tensor(v, dtype=d1.dtype, device=d1.device) for v in losses]).min()
    return _gw_loss_to_distance(loss)


def gw_matrix_pairs(d1: torch.Tensor, d2: torch.Tensor, *, p: torch.Tensor | None = None,
                    q: torch.Tensor | None = None, epsilon: float = 1e-2, max_iter: int = 200,
                    max_iter_inner: int = 20, rel_tol: float = 1e-4) -> torch.Tensor:
    """Batched proximal GW (POT ``ot.batch.solve_gromov_batch``) for B independent pairs ``d1[B, n, n]``,
    ``d2[B, m, m]`` with weights ``p[B, n]``, ``q[B, m]`` (uniform by default). Returns ``[B]`` GW distances
    ``0.5 * sqrt(GW)`` on the inputs' device.

    ``rel_tol`` is relative to the mean plan entry: POT stops when the mean absolute change of the plan is
    below ``tol``, and plan entries are ~1/(n m), so an absolute 1e-5 stops after one step at n = 256.
    """
    import ot

    b, n, m = d1.shape[0], d1.shape[1], d2.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ot.batch.solve_gromov_batch(d1, d2, reg=epsilon, a=p, b=q, symmetric=True, max_iter=max_iter,
                                          tol=rel_tol / (n * m), max_iter_inner=max_iter_inner,
                                          tol_inner=1e-6, grad="detach")
    return _gw_loss_to_distance(torch.as_tensor(res.value, dtype=d1.dtype, device=d1.device).reshape(b))


def default_pair_batch(n: int, budget_bytes: float = 2e9, bytes_per: int = 8) -> int:
    """How many n x n GW problems the batched solver holds at once: it keeps about a dozen [B, n, n] tensors."""
    return max(1, int(budget_bytes // (12 * n * n * bytes_per)))


def gw_paired(d1: Sequence[torch.Tensor], d2: Sequence[torch.Tensor], *, solver: str = "exact",
              weights: torch.Tensor | None = None, epsilon: float = 1e-2, pair_batch: int | None = None,
              progress: bool = False) -> torch.Tensor:
    """GW distances of B pairs ``(d1[b], d2[b])`` of distance matrices -> ``[B]``. ``weights[n]``: point weights
    shared by every matrix of size n (uniform by default). ``"entropic"`` solves ``pair_batch`` same-size
    pairs at once (default: what fits in ~2 GB); ``"exact"`` and ``"entropic-pgd"`` solve them one by one."""
    if solver not in SOLVERS:
        raise CircuitclustError(f"unknown GW solver '{solver}': use one of {', '.join(SOLVERS)}")
    if len(d1) != len(d2):
        raise CircuitclustError(f"gw_paired needs as many left as right matrices ({len(d1)} vs {len(d2)})")
    if not len(d1):
        return torch.zeros(0, dtype=torch.float64)
    from tqdm.auto import tqdm

    ref = d1[0]
    out = torch.zeros(len(d1), dtype=ref.dtype, device=ref.device)
    bar = tqdm(total=len(d1), desc=f"GW ({solver})", disable=not progress, leave=False)
    same_size = all(m.shape == ref.shape for m in list(d1) + list(d2))
    if solver == "entropic" and same_size:
        n = ref.shape[0]
        w = None if weights is None else weights.to(ref)
        chunk = pair_batch or default_pair_batch(n)
        for s in range(0, len(d1), chunk):
            a, b = torch.stack(list(d1[s:s + chunk])), torch.stack(list(d2[s:s + chunk]))
            pw = None if w is None else w.expand(len(a), n).contiguous()
            out[s:s + len(a)] = gw_matrix_pairs(a, b, p=pw, q=pw, epsilon=epsilon)
            bar.update(len(a))
    else:
        for i, (a, b) in enumerate(zip(d1, d2)):
            w = None if weights is None or a.shape != b.shape else weights.to(ref)
            out[i] = gw_distance(a, b, solver=solver, p=w, q=w, epsilon=epsilon)
            bar.update(1)
    bar.close()
    return out


def gw_matrix(dists: torch.Tensor | Sequence[torch.Tensor], *, solver: str = "exact",
              weights: torch.Tensor | None = None, epsilon: float = 1e-2, pair_batch: int | None = None,
              progress: bool = False) -> torch.Tensor:
    """All-pairs GW distances between L distance matrices (``dists[L, n, n]`` or a list of ``[n_l, n_l]``)
    -> ``[L, L]``: symmetric, zero diagonal. ``weights[n]``: point weights shared by all layers (uniform
    by default; the bootstrap passes resampling counts / n).

    Only pairs i < j are solved and mirrored, so the matrix is symmetric by construction (a local solver run
    on (j, i) can land elsewhere); see :func:`gw_paired` for the solvers and batching.
    """
    mats = list(dists)
    if not mats:
        raise CircuitclustError("gw_matrix needs at least one distance matrix")
    n_layers = len(mats)
    ij = torch.triu_indices(n_layers, n_layers, offset=1)
    vals = gw_paired([mats[i] for i in ij[0].tolist()], [mats[j] for j in ij[1].tolist()], solver=solver,
                     weights=weights, epsilon=epsilon, pair_batch=pair_batch, progress=progress)
    out = torch.zeros(n_layers, n_layers, dtype=mats[0].dtype, device=mats[0].device)
    out[ij[0].to(out.device), ij[1].to(out.device)] = vals.to(out)
    return out + out.T


def centered_gram(x: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Doubly centred linear Gram matrix ``H X X^T H`` of points ``x[..., n, d]`` -> ``[..., n, n]``."""
    x = x.to(dtype)
    x = x - x.mean(dim=-2, keepdim=True)  # centring the features centres the Gram matrix on both sides
    return x @ x.transpose(-1, -2)


def cka_matrix(reps: torch.Tensor | Sequence[torch.Tensor], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Linear CKA between every pair of representations ``reps[L, n, d]`` (or a list of ``[n, d_l]`` with the
    same n) -> ``[L, L]`` symmetric with unit diagonal, in [0, 1].

    CKA(X, Y) = <K_X, K_Y>_F / (||K_X||_F ||K_Y||_F) with K = centred Gram matrices (Kornblith et al. 2019);
    all pairs at once as one product of the flattened, unit-normed Gram matrices. Invariant to orthogonal
    transforms and isotropic scaling of the features, not to permutations of the points.
    """
    mats = list(reps)
    if not mats:
        raise CircuitclustError("cka_matrix needs at least one representation")
    n = mats[0].shape[-2]
    for i, x in enumerate(mats):
        _check_points(x, f"representation {i}")
        if x.shape[-2] != n:
            raise CircuitclustError(f"CKA needs the same points in every layer: representation {i} has "
                                    f"{x.shape[-2]} points, representation 0 has {n}")
    grams = torch.stack([centered_gram(x, dtype).reshape(-1) for x in mats])
    norms = grams.norm(dim=1, keepdim=True)
    if bool((norms == 0).any()):
        raise CircuitclustError("a representation is constant over the sampled points: CKA is undefined")
    g = grams / norms
    cka = (g @ g.T).clamp(0.0, 1.0)
    cka.fill_diagonal_(1.0)
    return 0.5 * (cka + cka.T)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA of two representations ``x[n, d1]``, ``y[n, d2]`` of the same n points (0-d tensor)."""
    return cka_matrix([x, y])[0, 1]


def gw_loss_identity(d1: torch.Tensor, d2: torch.Tensor) -> torch.Tensor:
    """Upper bound on GW for two matrices over the same points: the distance of the identity coupling,
    ``0.5 * sqrt(mean((d1 - d2)^2))`` (uniform weights). Useful as a sanity bound; ``[..., n, n]`` -> ``[...]``."""
    return _gw_loss_to_distance(((d1 - d2) ** 2).mean(dim=(-1, -2)))


__all__ = ["pairwise_distances", "gw_distance", "gw_paired", "gw_matrix", "gw_matrix_pairs", "cka_matrix", "linear_cka",
           "centered_gram", "gw_loss_identity", "default_pair_batch", "METRICS", "NORMALIZE", "SOLVERS",
           "MIN_POINTS"]

