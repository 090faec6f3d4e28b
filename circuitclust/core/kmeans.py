"""Batched k-means in torch: k-means++ (greedy) initialisation, Lloyd iterations, several restarts.

Everything stays on the device of the input and is batched over a leading dimension, so many graphs (and
all their restarts) run as one computation. Randomness comes only from the ``torch.Generator`` given, so a
fixed seed gives the same labels on a given device.

Points can carry weights (``sample_weight``): a point of weight 0 does not pull any centre and is never
picked as a seed, but still gets the label of its nearest centre. The co-clusterer uses this to keep
isolated (zero-degree) units out of the fit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class KMeansResult:
    """``labels`` ``[B, n]`` int64, ``centers`` ``[B, k, d]``, ``inertia`` ``[B]`` (weighted sum of squared
    distances to the assigned centre; best restart per batch member), ``n_iter`` (Lloyd steps run)."""

    labels: torch.Tensor
    centers: torch.Tensor
    inertia: torch.Tensor
    n_iter: int


def _sq_dists(x: torch.Tensor, x2: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances ``[B, n, k]`` between points ``x`` ``[B, n, d]`` (with ``x2 = |x|^2`` ``[B, n]``)
    and centres ``c`` ``[B, k, d]``."""
    d = x2[:, :, None] - 2 * torch.bmm(x, c.transpose(1, 2)) + (c * c).sum(-1)[:, None, :]
    return d.clamp_min_(0)


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, sample_weight: torch.Tensor | None = None,
                    n_trials: int | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (as scikit-learn): each new centre is the best of ``n_trials`` candidates
    drawn with probability proportional to weight x squared distance to the nearest chosen centre.

    ``x`` ``[B, n, d]``; ``sample_weight`` ``[B, n]`` (non-negative, each row with at least ``k`` positive
    entries). Returns the centres ``[B, k, d]``.
    """
    B, n, d = x.shape
    w = torch.ones(B, n, dtype=x.dtype, device=x.device) if sample_weight is None else sample_weight.to(x.dtype)
    n_trials = n_trials or 2 + int(math.log(k))
    bidx = torch.arange(B, device=x.device)
    x2 = (x * x).sum(-1)
    first = torch.multinomial(w, 1, generator=generator).squeeze(1)
    centers = [x[bidx, first]]
    closest = (x2 - 2 * torch.einsum("bnd,bd->bn", x, centers[0]) + x2[bidx, first][:, None]).clamp_min(0)
    for _ in range(1, k):
        pot = w * closest
        # All-zero potential (every weighted point already a centre): fall back to the weights themselves.
        probs = torch.where(pot.sum(1, keepdim=True) > 0, pot, w)
        cand = torch.multinomial(probs, n_trials, replacement=True, generator=generator)  # [B, t]
        cx = x[bidx[:, None], cand]  # [B, t, d]
        dc = _sq_dists(x, x2, cx)  # [B, n, t]
        new_closest = torch.minimum(closest[:, :, None], dc)
        best = (w[:, :, None] * new_closest).sum(1).argmin(1)  # [B]
        centers.append(cx[bidx, best])
        closest = new_closest[bidx, :, best]
    return torch.stack(centers, 1)


def _lloyd(x: torch.Tensor, w: torch.Tensor, centers: torch.Tensor, thresh: torch.Tensor, max_iter: int
           ) -> tuple[torch.Tensor, int]:
    """Lloyd iterations for ``R`` independent problems: ``x`` ``[R, n, d]``, weights ``w`` ``[R, n]``, start
    ``centers`` ``[R, k, d]``; stops when every problem's summed squared centre shift is <= ``thresh``
    ``[R]``. Returns the centres and the number of steps run."""
    R, n, d = x.shape
    k = centers.shape[1]
    eye = torch.eye(k, dtype=x.dtype, device=x.device)
    # [x * w, w]: one matmul with the one-hot labels gives each cluster's weighted sum and mass (a matmul,
    # not scatter_add, so it is deterministic on GPU too).
    xw1 = torch.cat([x * w[:, :, None], w[:, :, None]], 2)
    ridx = torch.arange(R, device=x.device)
    tiny = torch.finfo(x.dtype).tiny
    it = 0
    for it in range(1, max_iter + 1):
        # argmin_c |x - c|^2 = argmin_c (|c|^2 - 2 x.c): |x|^2 is not needed to assign.
        score = torch.baddbmm((centers * centers).sum(-1)[:, None, :], x, centers.transpose(1, 2), alpha=-2)
        labels = score.argmin(-1)
        sums = torch.bmm(eye[labels].transpose(1, 2), xw1)  # [R, k, d + 1]
        mass = sums[:, :, d]
        new = sums[:, :, :d] / mass.clamp_min(tiny)[:, :, None]
        empty = mass <= 0
        shift = ((new - centers) ** 2).sum((1, 2))
        any_empty, done = torch.stack([empty.any(), (shift <= thresh).all()]).tolist()
        if any_empty:
            # Re-seed each empty cluster at a distinct far point (the j-th farthest for cluster j).
            dmin = (score.gather(2, labels[:, :, None]).squeeze(2) + (x * x).sum(-1)) * (w > 0)
            far = dmin.topk(k, dim=1).indices  # [R, k]
            new = torch.where(empty[:, :, None], x[ridx[:, None], far], new)
            done = False
        centers = new
        if done:
            break
    return centers, it


def _assign(x: torch.Tensor, w: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``[R, n]`` and weighted inertia ``[R]`` of points ``x`` for ``centers``."""
    dmin, labels = _sq_dists(x, (x * x).sum(-1), centers).min(-1)
    return labels, (dmin * w).sum(1)


def kmeans(
    x: torch.Tensor,
    k: int,
    *,
    n_init: int = 10,
    max_iter: int = 100,
    tol: float = 1e-4,
    prune_after: int = 10,
    generator: torch.Generator | None = None,
    seed: int = 0,
    sample_weight: torch.Tensor | None = None,
) -> KMeansResult:
    """Cluster the rows of ``x`` (``[n, d]`` or batched ``[B, n, d]``) into ``k`` groups.

    ``n_init`` restarts per batch member (k-means++ seeding) run together as ``B * n_init`` problems for
    ``prune_after`` Lloyd steps; then only the restart with the lowest inertia of each batch member goes on
    to convergence (restarts that are behind after ``prune_after`` steps rarely win, and the tail of Lloyd's
    iterations is where the time goes; ``prune_after >= max_iter`` runs every restart to the end, as
    scikit-learn does). ``generator`` (on ``x``'s device) or ``seed`` fixes the randomness. Iterations stop
    when the summed squared centre shift is at most ``tol`` times the mean per-feature variance of the data
    (scikit-learn's rule), or after ``max_iter``. An empty cluster is re-seeded at a point far from its
    centre. Returns a :class:`KMeansResult` (without the batch dimension if ``x`` had none).
    """
    squeeze = x.dim() == 2
    if squeeze:
        x = x[None]
        sample_weight = None if sample_weight is None else sample_weight[None]
    if x.dim() != 3:
        raise ValueError(f"kmeans expects [n, d] or [B, n, d] points, got shape {tuple(x.shape)}")
    B, n, d = x.shape
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the number of points ({n})")
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    x = x.float() if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16) else x
    w = torch.ones(B, n, dtype=x.dtype, device=x.device) if sample_weight is None else sample_weight.to(x.dtype)
    if bool((w > 0).sum(1).min() < k):
        raise ValueError(f"every batch member needs at least k={k} points of positive weight")

    wn = w / w.sum(1, keepdim=True)
    mean = torch.einsum("bn,bnd->bd", wn, x)
    var = torch.einsum("bn,bnd->b", wn, (x - mean[:, None]) ** 2) / d  # [B] mean per-feature variance
    thresh = tol * var.clamp_min(torch.finfo(x.dtype).tiny)

    xr, wr = x.repeat_interleave(n_init, 0), w.repeat_interleave(n_init, 0)
    centers = kmeans_plusplus(xr, k, generator, wr)
    centers, it1 = _lloyd(xr, wr, centers, thresh.repeat_interleave(n_init), min(prune_after, max_iter))
    _, inertia = _assign(xr, wr, centers)
    best = inertia.view(B, n_init).argmin(1) + torch.arange(B, device=x.device) * n_init
    centers, it2 = centers[best], 0
    if it1 >= prune_after and prune_after < max_iter:
        centers, it2 = _lloyd(x, w, centers, thresh, max_iter - it1)
    labels, inertia = _assign(x, w, centers)
    if squeeze:
        return KMeansResult(labels[0], centers[0], inertia[0], it1 + it2)
    return KMeansResult(labels, centers, inertia, it1 + it2)
