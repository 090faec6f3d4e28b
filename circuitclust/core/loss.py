"""Clusterability of weight matrices as a differentiable tensor function (SPEC section 3 and 4).

For a matrix ``W [n_in, n_out]`` and one-hot memberships ``R [n_in, k]``, ``C [n_out, k]`` the mass inside
cluster ``i`` is ``diag(R^T (W*W) C)_i`` and

    C(W) = sum_i diag(R^T (W*W) C)_i / ||W||_F^2.

The trace form costs one ``[n_in, n_out] x [n_out, k]`` product and never materialises an
``[n_in, n_out]`` mask, so it batches over stacked matrices and runs on whatever device the weights are on.
Half-precision weights are squared and summed in float32: bf16 sums of ~10^6 squares lose the small
off-cluster mass the loss is trying to drive down.

Pure tensor code: no model knowledge.
"""
from __future__ import annotations

import torch

_HALF = (torch.float16, torch.bfloat16)


def cluster_masses(weight: torch.Tensor, row_onehot: torch.Tensor,
                   col_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In-cluster and total squared mass of a batch of matrices.

    Inputs: ``weight [..., n_in, n_out]`` (any float dtype), ``row_onehot [..., n_in, k]`` and
    ``col_onehot [..., n_out, k]`` (0/1 memberships, broadcastable over the batch dims).
    Returns ``(inside [...], total [...])`` in float32 (float64 stays float64). Kept separate from the ratio
    so that callers holding shards of a matrix can sum both over processes before dividing.
    """
    w = weight.float() if weight.dtype in _HALF else weight
    # Autocast would run the product below in bf16 and undo the fp32 accumulation.
    with torch.autocast(device_type=w.device.type, enabled=False):
        sq = w * w
        rows = row_onehot.to(sq.dtype)
        cols = col_onehot.to(sq.dtype)
        inside = ((sq @ cols) * rows).sum(dim=(-2, -1))
        total = sq.sum(dim=(-2, -1))
    return inside, total


def clusterability_from_masses(inside: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``inside / total`` with an all-zero matrix counted as fully clusterable (1), never NaN."""
    safe = torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total > 0, inside / safe, torch.ones_like(inside))


def clusterability_masks(weight: torch.Tensor, row_onehot: torch.Tensor,
                         col_onehot: torch.Tensor) -> torch.Tensor:
    """Differentiable clusterability ``C(W)`` of a batch of matrices: ``[...]`` in ``[0, 1]``.

    Shapes as in :func:`cluster_masses`. Gradient w.r.t. ``W_uv`` is ``2 W_uv (M_uv - C) / ||W||^2`` with
    ``M`` the in-cluster indicator: in-cluster entries grow, off-cluster entries shrink under descent on
    ``1 - C``, and the update is orthogonal to ``W`` (C is scale invariant).
    """
    return clusterability_from_masses(*cluster_masses(weight, row_onehot, col_onehot))


def onehot(labels: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``labels [..., n]`` int64 in ``[0, k)`` -> one-hot ``[..., n, k]`` of ``dtype``."""
    return torch.nn.functional.one_hot(labels.long(), k).to(dtype)


def chance_from_masks(row_onehot: torch.Tensor, col_onehot: torch.Tensor) -> torch.Tensor:
    """Expected clusterability of unstructured weights under these clusters:
    ``sum_i |R_i||C_i| / (n_in n_out)`` -> ``[...]`` (``1/k`` for equal blocks)."""
    r = row_onehot.float().sum(dim=-2)
    c = col_onehot.float().sum(dim=-2)
    return (r * c).sum(dim=-1) / (row_onehot.shape[-2] * col_onehot.shape[-2])
