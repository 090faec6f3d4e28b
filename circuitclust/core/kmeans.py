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

from ..errors import OptionError


@dataclass
class KMeansResult:
    """``labels`` ``[B, n]`` int64, ``centers`` ``[B, k, d]``, ``inertia`` ``[B]`` (weighted sum of squared
    distances to the assigned centre; best restart per batch member), ``n_iter`` (Lloyd steps run)."""

    labels: torch.Tensor
    centers: torch.Tensor
    inertia: torch.Tensor
    n_iter: int


def _augmented(x: torch.Tensor) -> torch.Tensor:
    """``[x^T; 1]`` ``[B, d + 1, n]`` for points ``x`` ``[B, n, d]``: the layout every score product reads."""
    return torch.cat([x.transpose(1, 2), x.new_ones(x.shape[0], 1, x.shape[1])], 1)


def _scores(xa: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``|c|^2 - 2 c.x`` ``[B, k, n]`` for points ``xa`` = ``[x^T; 1]`` ``[B, d + 1, n]`` (see
    :func:`_augmented`) and centres ``c`` ``[B, k, d]``: the squared distance up to ``|x|^2``, which no
    assignment needs. One product with ``[-2 c, |c|^2]``: adding ``|c|^2`` as a bias (``baddbmm``) first
    copies the broadcast bias into the output, a whole extra pass (~17% of a Lloyd step on CPU).

    Points run along the last (contiguous) axis: with k of 2-8 centres, a ``[B, n, k]`` layout makes every
    per-point reduction a strided one over a tiny axis, several times slower on CPU (see :func:`_nearest`).
    """
    return torch.bmm(torch.cat([c * -2, (c * c).sum(-1, keepdim=True)], 2), xa)


def _index_dtype(k: int) -> torch.dtype:
    return torch.uint8 if k < 256 else torch.int32


def _nearest(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per point, the lowest score ``[B, n]`` over axis 1 of ``score`` ``[B, k, n]`` and the index of the
    first centre that reaches it ``[B, n]`` (a small unsigned type while k < 256, else int32).

    On CPU, ``amin`` over a short axis is ~20x faster than ``min``/``argmin`` with indices (PyTorch 2.x),
    so the index is recovered from ``score == min``: weighting hit j by k - j and taking the maximum picks
    the lowest tied index, as ``argmin`` does.
    """
    k = score.shape[1]
    itype = _index_dtype(k)
    smin = score.amin(1, keepdim=True)
    rank = torch.arange(k, 0, -1, dtype=itype, device=score.device)[None, :, None]  # k, k-1, ..., 1
    return smin[:, 0], k - ((score == smin) * rank).amax(1)


def _sample(probs: torch.Tensor, t: int, generator: torch.Generator) -> torch.Tensor:
    """``t`` indices per row ``[B, t]`` drawn with replacement with probability proportional to ``probs``
    ``[B, n]`` (non-negative, each row with a positive sum), by inverse-CDF sampling: one cumsum and one
    binary search (on CPU ~15x cheaper than ``torch.multinomial``). Zero-probability entries are never
    drawn: the first cumulative sum above ``u < total`` always belongs to a positive entry."""
    cs = probs.cumsum(1)
    total = cs[:, -1:]
    u = torch.rand(probs.shape[0], t, dtype=cs.dtype, device=cs.device, generator=generator) * total
    u = torch.minimum(u, total * (1 - torch.finfo(cs.dtype).eps))  # rounding must not reach the total
    return torch.searchsorted(cs, u, right=True).clamp_max_(probs.shape[1] - 1)


def kmeans_plusplus(x: torch.Tensor, k: int, generator: torch.Generator, sample_weight: torch.Tensor | None = None,
                    n_trials: int | None = None, xa: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy k-means++ seeding (as scikit-learn): each new centre is the best of ``n_trials`` candidates
    drawn with probability proportional to weight x squared distance to the nearest chosen centre.

    ``x`` ``[B, n, d]`` (``xa``: ``[x^T; 1]`` ``[B, d + 1, n]``, if the caller has it);
    ``sample_weight`` ``[B, n]`` (non-negative, each row with at least ``k`` positive entries). Returns the
    centres ``[B, k, d]``.
    """
    B, n, d = x.shape
    w = torch.ones(B, n, dtype=x.dtype, device=x.device) if sample_weight is None else sample_weight.to(x.dtype)
    n_trials = n_trials or 2 + int(math.log(k))
    bidx = torch.arange(B, device=x.device)
    xa = _augmented(x) if xa is None else xa
    x2 = (x * x).sum(-1)
    first = _sample(w, 1, generator)  # [B, 1]
    centers = [x[bidx, first[:, 0]]]
    closest = (_scores(xa, centers[0][:, None, :])[:, 0] + x2).clamp_min_(0)  # [B, n]
    for _ in range(1, k):
        pot = w * closest
        # All-zero potential (every weighted point already a centre): fall back to the weights themselves.
        probs = torch.where(pot.sum(1, keepdim=True) > 0, pot, w)
        cand = _sample(probs, n_trials, generator)  # [B, t]
        cx = x[bidx[:, None], cand]  # [B, t, d]
        # In place on the one [B, t, n] buffer: these are the largest tensors of the seeding.
        new_closest = _scores(xa, cx).add_(x2[:, None, :]).clamp_min_(0)
        torch.minimum(new_closest, closest[:, None, :], out=new_closest)
        best = torch.bmm(new_closest, w[:, :, None])[:, :, 0].argmin(1)  # [B]
        centers.append(cx[bidx, best])
        closest = new_closest[bidx, best]
    return torch.stack(centers, 1)


def _lloyd(x: torch.Tensor, xa: torch.Tensor, w: torch.Tensor, centers: torch.Tensor, thresh: torch.Tensor,
           max_iter: int) -> tuple[torch.Tensor, int]:
    """Lloyd iterations for ``R`` independent problems: ``x`` ``[R, n, d]`` (and ``xa`` = ``[x^T; 1]``
    ``[R, d + 1, n]``), weights ``w`` ``[R, n]``, start ``centers`` ``[R, k, d]``. Each problem stops on
    its own once its summed squared centre shift is <= its ``thresh`` ``[R]`` (as scikit-learn's restarts
    do), so a problem's result does not depend on what else is in the batch; the problems still running
    are gathered into a smaller batch once half of the batch has finished. Returns the centres
    ``[R, k, d]`` and the largest number of steps any problem ran."""
    R, n, d = x.shape
    k = centers.shape[1]
    ids = torch.arange(k, dtype=_index_dtype(k), device=x.device)[None, :, None]
    # [x * w; w; 1] (as [R, d + 2, n]): one matmul with the one-hot assignment [R, k, n] gives each cluster's
    # weighted sum, mass and point count (a matmul, not scatter_add, so it is deterministic on GPU too). The
    # counts add up to n unless a point was assigned twice (a tie); they are exact integers below 2^24.
    # Points along the contracted last axis of both operands: ~2.5x faster on CPU than [R, k, n] @ [R, n, d+2].
    xw1 = torch.cat([xa[:, :d] * w[:, None, :], w[:, None, :], xa[:, d:]], 1)
    tiny = torch.finfo(x.dtype).tiny
    out = centers.clone()
    run = torch.arange(R, device=x.device)  # the problems still iterating
    xr, xar, wa, xwa, tha = x, xa, w, xw1, thresh
    fin = torch.zeros(R, dtype=torch.bool, device=x.device)  # finished, not yet gathered out

    def update(onehot: torch.Tensor, centers: torch.Tensor):
        sums = torch.bmm(xwa, onehot.transpose(1, 2))  # [Ra, d + 2, k]
        mass = sums[:, d]
        new = (sums[:, :d] / mass.clamp_min(tiny)[:, None, :]).transpose(1, 2)  # [Ra, k, d]
        return new, mass <= 0, ((new - centers) ** 2).sum((1, 2)), sums[:, d + 1].sum(1)

    it = 0
    for it in range(1, max_iter + 1):
        score = _scores(xar, centers)  # [Ra, k, n]
        smin = score.amin(1, keepdim=True)
        # The assignment with float ops only, in place: score >= smin, so sign(smin - score) + 1 is 1 at the
        # nearest centre and 0 elsewhere (on CPU, comparisons that produce bool tensors cost several times
        # more). A point equidistant from two centres would count twice: checked below, then resolved exactly
        # (the first of its tied centres, as argmin).
        onehot = score.sub_(smin).neg_().sign_().add_(1)
        new, empty, shift, count = update(onehot, centers)
        if bool((count > n + 0.5).any()):
            onehot = (_nearest(onehot.neg())[1][:, None, :] == ids).to(x.dtype)
            new, empty, shift, _ = update(onehot, centers)
        has_empty = empty.any(1)
        if bool(has_empty.any()):
            # Re-seed each empty cluster at a distinct far point (the j-th farthest for cluster j).
            dmin = (smin[:, 0] + (xr * xr).sum(-1)) * (wa > 0)
            far = dmin.topk(k, dim=1).indices  # [Ra, k]
            new = torch.where(empty[:, :, None], xr[torch.arange(len(run), device=x.device)[:, None], far], new)
        # A finished problem stays in the batch, frozen (same centres, so same assignment and zero shift),
        # until half the batch has finished: gathering the rest copies all their points, which costs about
        # one step, so it only pays once the batch shrinks by a large factor.
        new = torch.where(fin[:, None, None], centers, new)
        done = fin | ((shift <= tha) & ~has_empty)
        n_done = int(done.sum())
        if n_done == len(run) or it == max_iter:
            out[run] = new
            break
        if 2 * n_done >= len(run):
            out[run] = new
            keep = ~done
            run, new = run[keep], new[keep]
            xr, xar, wa, xwa, tha = x[run], xa[run], w[run], xw1[run], thresh[run]
            done = done[keep]
        fin = done
        centers = new
    return out, it


def _assign(x: torch.Tensor, xa: torch.Tensor, w: torch.Tensor, centers: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels ``[R, n]`` and weighted inertia ``[R]`` of points ``x`` (``xa`` = ``[x^T; 1]``) for
    ``centers``."""
    smin, labels = _nearest(_scores(xa, centers))
    return labels.long(), ((smin + (x * x).sum(-1)).clamp_min_(0) * w).sum(1)


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
    scikit-learn does). ``generator`` (on ``x``'s device) or ``seed`` fixes the randomness. Each restart
    stops on its own once its summed squared centre shift is at most ``tol`` times the mean per-feature
    variance of the data (scikit-learn's rule), or after ``max_iter``. An empty cluster is re-seeded at a point far from its
    centre. Returns a :class:`KMeansResult` (without the batch dimension if ``x`` had none).
    """
    squeeze = x.dim() == 2
    if squeeze:
        x = x[None]
        sample_weight = None if sample_weight is None else sample_weight[None]
    if x.dim() != 3:
        raise OptionError(f"kmeans expects [n, d] or [B, n, d] points, got shape {tuple(x.shape)}")
    B, n, d = x.shape
    if not 1 <= k <= n:
        raise OptionError(f"k={k} must be between 1 and the number of points ({n})")
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(seed)
    x = x.float() if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16) else x
    w = torch.ones(B, n, dtype=x.dtype, device=x.device) if sample_weight is None else sample_weight.to(x.dtype)
    if bool((w > 0).sum(1).min() < k):
        raise OptionError(f"every batch member needs at least k={k} points of positive weight")

    wn = w / w.sum(1, keepdim=True)
    mean = torch.einsum("bn,bnd->bd", wn, x)
    var = torch.einsum("bn,bnd->b", wn, (x - mean[:, None]) ** 2) / d  # [B] mean per-feature variance
    thresh = tol * var.clamp_min(torch.finfo(x.dtype).tiny)

    xa = _augmented(x)
    xr, xar, wr = (t.repeat_interleave(n_init, 0) for t in (x, xa, w))
    centers = kmeans_plusplus(xr, k, generator, wr, xa=xar)
    centers, it1 = _lloyd(xr, xar, wr, centers, thresh.repeat_interleave(n_init), min(prune_after, max_iter))
    _, inertia = _assign(xr, xar, wr, centers)
    best = inertia.view(B, n_init).argmin(1) + torch.arange(B, device=x.device) * n_init
    centers, it2 = centers[best], 0
    if it1 >= prune_after and prune_after < max_iter:
        centers, it2 = _lloyd(x, xa, w, centers, thresh, max_iter - it1)
    labels, inertia = _assign(x, xa, w, centers)
    if squeeze:
        return KMeansResult(labels[0], centers[0], inertia[0], it1 + it2)
    return KMeansResult(labels, centers, inertia, it1 + it2)


def rebalance(x: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor, min_size: int) -> torch.Tensor:
    """Labels ``[B, n]`` in which every one of the ``k`` clusters holds at least ``min_size`` points, moving as
    little squared distance as the greedy repair can: for the most under-filled cluster of each batch member,
    the points of clusters with members to spare whose move there costs least (distance to its centre minus
    distance to their own) are moved, one cluster per round, at most ``k`` rounds.

    ``x`` ``[B, n, d]`` points, ``labels`` ``[B, n]`` their clusters in ``[0, k)``, ``centers`` ``[B, k, d]``.
    ``min_size * k`` must not exceed ``n`` (then every deficit can be met from the surplus of the others).
    Returns new labels; points are never moved out of a cluster that would then fall below ``min_size``."""
    B, n, _ = x.shape
    k = centers.shape[1]
    if min_size * k > n:
        raise OptionError(f"cannot give each of {k} clusters {min_size} of {n} points")
    labels = labels.clone()
    dist = torch.cdist(x.float(), centers.float()).square()  # [B, n, k]
    rows = torch.arange(B, device=x.device)
    for _ in range(k):
        counts = torch.nn.functional.one_hot(labels, k).sum(1)  # [B, k]
        deficit = (min_size - counts).clamp_min(0)
        if int(deficit.max()) == 0:
            break
        target = deficit.argmax(1)  # [B]: the cluster to fill in this round
        need = deficit[rows, target]  # [B]
        spare = (counts - min_size).clamp_min(0)  # [B, k]
        cost = dist[rows, :, target] - dist.gather(2, labels[..., None])[..., 0]  # [B, n]
        eligible = (labels != target[:, None]) & (spare.gather(1, labels) > 0)
        order = torch.where(eligible, cost, torch.full_like(cost, float("inf"))).argsort(dim=1, stable=True)
        donor = labels.gather(1, order)  # [B, n] in move order
        onehot = torch.nn.functional.one_hot(donor, k)
        rank_in_donor = (onehot.cumsum(1) * onehot).sum(-1) - 1  # how many earlier candidates share the donor
        ok = eligible.gather(1, order) & (rank_in_donor < spare.gather(1, donor))
        take = ok & (ok.cumsum(1) <= need[:, None])
        moved = torch.where(take, target[:, None].expand(-1, n), donor)
        labels.scatter_(1, order, moved)
    return labels
