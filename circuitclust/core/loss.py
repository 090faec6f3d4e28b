"""Clusterability of weight matrices as a differentiable tensor function, for the fine-tuning loss.

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


def clusterability_from_masses(inside: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """``inside / total``, never NaN. An all-zero matrix scores 0, as in :func:`.measures.clusterability`: it has
    no mass inside clusters, and scoring it 1 would make collapsing a matrix to zero look perfectly modular.
    Its gradient is 0 (see the backward of :class:`_FusedClusterability`)."""
    return inside / torch.where(total > 0, total, torch.ones_like(total))


# Matrices of one shape are stacked into a single batched product while the copy stays this small (entries
# per group); bigger ones are computed one by one, where a copy would cost more than the saved dispatches.
_STACK_MAX_ENTRIES = 1 << 20


def _stored(w: torch.Tensor, r: torch.Tensor, c: torch.Tensor):
    """``(w, r, c, flipped)`` with a transposed view turned back to its stored layout (C(W) = C(W^T))."""
    if w.stride(0) == 1 and w.stride(1) != 1:
        return w.t(), c, r, True
    return w, r, c, False


def _groups(weights) -> list[list[int]]:
    """Indices of ``weights`` batched together: same shape, dtype and layout, at most ``_STACK_MAX_ENTRIES``."""
    groups: dict[tuple, list[int]] = {}
    out: list[list[int]] = []
    for i, w in enumerate(weights):
        key = (tuple(w.shape), w.dtype, w.stride(0) == 1 and w.stride(1) != 1)
        g = groups.get(key)
        if g is None or (len(g) + 1) * w.numel() > _STACK_MAX_ENTRIES:
            g = groups[key] = []
            out.append(g)
        g.append(i)
    return out


def _batch(ts: list[torch.Tensor]) -> torch.Tensor:
    return ts[0].unsqueeze(0) if len(ts) == 1 else torch.stack(ts)  # a lone (large) matrix is not copied


class _FusedClusterability(torch.autograd.Function):
    """``C(W_i)`` of a list of matrices in one autograd node, with a hand-written backward.

    Autograd through the plain formula keeps ``W*W`` and makes ~6 full passes over every matrix
    (plus a transpose copy for ``nn.Linear`` weights). Here the forward makes 3 (square, one skinny
    product ``R^T (W*W)``; every column has one label, so the total mass is the sum of that product) and
    the backward 2 (``R (a C^T + b)`` as one product, then times ``W``), in the tensor's stored layout.
    Small same-shape matrices are stacked so that per-step dispatch work scales with shape groups, not graphs.
    """

    @staticmethod
    def forward(ctx, rows: tuple[torch.Tensor, ...], cols: tuple[torch.Tensor, ...], *weights: torch.Tensor):
        groups = _groups(weights)
        saved, masses = [], []
        with torch.autocast(device_type=weights[0].device.type, enabled=False):
            for idx in groups:
                parts = [_stored(weights[i], rows[i], cols[i]) for i in idx]
                w = _batch([p[0] for p in parts])
                wf = w.float() if w.dtype in _HALF else w
                r = _batch([p[1] for p in parts]).to(wf.dtype)          # [G, n_rows, k]
                ct = _batch([p[2] for p in parts]).to(wf.dtype).mT      # [G, k, n_cols]
                per = r.mT @ (wf * wf)                                  # [G, k, n_cols]
                masses.append(torch.stack(((per * ct).sum((1, 2)), per.sum((1, 2))), dim=1))
                saved.append((w if len(idx) > 1 else None, r, ct, parts[0][3]))
            order = torch.tensor([i for idx in groups for i in idx]).argsort()
            inside, total = torch.cat(masses)[order.to(masses[0].device)].unbind(1)
            cval = clusterability_from_masses(inside, total)
        ctx.groups, ctx.saved = groups, saved
        ctx.c_and_total = (cval.detach(), total)  # detached: no reference cycle through the output
        ctx.save_for_backward(*weights)
        return cval

    @staticmethod
    def backward(ctx, grad_c: torch.Tensor):
        weights = ctx.saved_tensors
        cval, total = ctx.c_and_total
        grads: list[torch.Tensor | None] = [None] * len(weights)
        with torch.autocast(device_type=weights[0].device.type, enabled=False):
            # dC/dW = W (a M + b) with a = 2 g / total, b = -a C; an all-zero matrix gets no gradient.
            a = torch.where(total > 0, 2 * grad_c / torch.where(total > 0, total, torch.ones_like(total)), 0.0)
            b = -a * cval
            for idx, (w, r, ct, flip) in zip(ctx.groups, ctx.saved):
                if w is None:  # a lone matrix: read it again instead of keeping a copy
                    w0 = weights[idx[0]]
                    w = (w0.t() if flip else w0).unsqueeze(0)
                wf = w.float() if w.dtype in _HALF else w
                ix = torch.tensor(idx, device=a.device) if len(idx) > 1 else idx[0]
                ai, bi = a[ix].reshape(-1, 1, 1).to(wf.dtype), b[ix].reshape(-1, 1, 1).to(wf.dtype)
                # a M + b = R (a C^T + b) because every row of R holds exactly one 1
                g = (r @ torch.addcmul(bi, ct, ai)).mul_(wf)
                for j, gi in zip(idx, g.unbind(0)):
                    gi = gi.to(weights[j].dtype)
                    grads[j] = gi.t() if flip else gi
        return (None, None, *grads)


def clusterability_fused(weights: list[torch.Tensor] | tuple[torch.Tensor, ...],
                         row_onehots: list[torch.Tensor] | tuple[torch.Tensor, ...],
                         col_onehots: list[torch.Tensor] | tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Differentiable ``C(W_i)`` of several matrices of any shapes: ``[n]`` float32 (float64 stays float64).

    Inputs: ``weights[i] [n_in_i, n_out_i]`` (views of parameters are fine, any float dtype),
    ``row_onehots[i] [n_in_i, k]``, ``col_onehots[i] [n_out_i, k]``: one-hot memberships where every row
    and column has exactly one cluster (as :func:`onehot` makes them). Same values and gradient as autograd
    through the plain formula, computed in fewer passes (see :class:`_FusedClusterability`).
    """
    weights = tuple(weights)
    if not (len(weights) == len(row_onehots) == len(col_onehots)) or not weights:
        raise ValueError("clusterability_fused needs one row and one column one-hot per matrix, and >= 1 matrix")
    return _FusedClusterability.apply(tuple(row_onehots), tuple(col_onehots), *weights)


@torch.no_grad()
def shrink_off_cluster_(weights: list[torch.Tensor] | tuple[torch.Tensor, ...],
                        row_onehots: list[torch.Tensor] | tuple[torch.Tensor, ...],
                        col_onehots: list[torch.Tensor] | tuple[torch.Tensor, ...], rate: float) -> None:
    """In place: multiply every entry of ``weights[i] [n_in_i, n_out_i]`` that lies outside its cluster block by
    ``1 - rate``; entries inside stay. ``row_onehots[i] [n_in_i, k]``, ``col_onehots[i] [n_out_i, k]`` as in
    :func:`clusterability_fused`. The weights must be views of the tensors to change (a copy would be shrunk
    and dropped).

    This is the proximal step of an L2 penalty on the off-cluster entries, applied outside the optimizer like
    AdamW's decoupled weight decay: its strength is ``rate`` whatever the gradients' scale, where a loss term's
    push is rescaled by Adam's normalisation (and saturates once it dominates the task gradient).
    """
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    for w, r, c in zip(weights, row_onehots, col_onehots):
        inside = (r.to(w.dtype) @ c.to(w.dtype).T)  # [n_in, n_out], 1 inside a cluster block
        w.mul_(inside.mul_(rate).add_(1.0 - rate))


def onehot(labels: torch.Tensor, k: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``labels [..., n]`` int64 in ``[0, k)`` -> one-hot ``[..., n, k]`` of ``dtype``."""
    return torch.nn.functional.one_hot(labels.long(), k).to(dtype)


def chance_from_masks(row_onehot: torch.Tensor, col_onehot: torch.Tensor) -> torch.Tensor:
    """Expected clusterability of unstructured weights under these clusters:
    ``sum_i |R_i||C_i| / (n_in n_out)`` -> ``[...]`` (``1/k`` for equal blocks)."""
    r = row_onehot.float().sum(dim=-2)
    c = col_onehot.float().sum(dim=-2)
    return (r * c).sum(dim=-1) / (row_onehot.shape[-2] * col_onehot.shape[-2])
