"""Linear CKA (centred kernel alignment) between layer representations ``x[n, d]`` of the same n points: a
baseline beside GW. Pure tensor code, no model knowledge.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import CircuitclustError
from .distances import _check_points


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


__all__ = ["cka_matrix", "centered_gram"]
