"""Pairwise-distance matrices of layer representations, normalised so that layers of different scale can be
compared (the input of GW, :mod:`.gw`). Pure tensor code, no model knowledge.

Conventions
-----------
- A layer's representation is ``x[n, d]``: n points (sampled token positions), d features. Widths may differ
  between layers; GW and CKA only see the points' geometry.
- Distance matrices are divided by their mean off-diagonal entry (``normalize="mean"``, the default) so a
  layer whose activations are 100x larger is not 100x "farther" from everything: after normalisation the
  average pair of points is at distance 1, and a rescaled copy of a representation has the same matrix.
  ``"max"`` divides by the largest entry instead (sensitive to one outlier token); ``"none"`` keeps raw units.
"""
from __future__ import annotations

import torch

from ..errors import CircuitclustError

METRICS = ("euclidean", "cosine")
NORMALIZE = ("mean", "max", "none")
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


__all__ = ["pairwise_distances", "METRICS", "NORMALIZE", "MIN_POINTS"]
