"""Dhillon's degree-normalised bipartite graph ``An = D_r^-1/2 A D_c^-1/2`` of weight matrices, applied
without materialising ``An`` itself.

``A = |W|`` (``power=1``) or ``W**2`` (``power=2``) is computed once, in the compute dtype; the degree
scalings are applied to the thin factors, never to the matrix. On CPU, every product walks ``A`` in row blocks
of about :data:`BLOCK_BYTES` and applies both ``A`` and ``A^T`` to a block while it is still in cache, so one
step of block Lanczos (``An V`` and ``An^T An V``) reads ``A`` from memory once. Taking ``|W|`` once rather
than per block and step halves a step's cost on GPT-2-sized graphs, at the price of one copy of ``W``. On other devices (GPU) one block holds everything.
"""
from __future__ import annotations

import numpy as np
import torch

#: Bytes of ``A`` per row block on CPU: the block stays in the L2/L3 cache between the two products (1-2 MB
#: blocks are fastest for GPT-2 and Gemma-2-2b shapes with a 32 MB L3; smaller blocks pay per-call overhead,
#: whole batches fall out of cache).
BLOCK_BYTES = 2 << 20


def _empty_like_pages(shape: torch.Size, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor; on CPU backed by NumPy's allocator, which asks Linux for transparent huge pages
    on large arrays (PyTorch's only does with THP_MEM_ALLOC_ENABLE=1 set before it starts), which makes filling
    a fresh large tensor several times faster: first touching 4 KB pages is what costs, not the copy."""
    if device.type != "cpu":
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.from_numpy(np.empty(tuple(shape), dtype=torch.empty((), dtype=dtype).numpy().dtype))


class NormalisedGraph:
    """``An`` for a batch ``w`` ``[B, m, n]`` (on the compute device, any float dtype, not modified).

    ``dtype``: the compute dtype (float32 or float64). Attributes: ``a`` ``[B, m, n]`` (``A``, a copy),
    ``row_degrees`` ``[B, m]``, ``col_degrees`` ``[B, n]`` (row / column sums of ``A``; non-finite if
    ``w`` holds NaN or inf), ``row_scale`` ``[B, m]`` and ``col_scale`` ``[B, n]`` (``degree^-1/2``, 0 for
    isolated units, so those never produce NaN).
    """

    def __init__(self, w: torch.Tensor, power: int = 1, *, dtype: torch.dtype = torch.float32,
                 block_rows: int | None = None):
        self.power, self.dtype = power, dtype
        B, m, n = w.shape
        self.a = _empty_like_pages(w.shape, dtype, w.device)
        if power == 1:
            torch.abs(w, out=self.a) if w.dtype == dtype else self.a.copy_(w).abs_()
        else:
            torch.mul(w, w, out=self.a) if w.dtype == dtype else self.a.copy_(w).square_()
        if block_rows is None:
            itemsize = self.a.element_size()
            block_rows = max(1, BLOCK_BYTES // (B * n * itemsize)) if w.device.type == "cpu" else m
        self.block_rows = min(block_rows, m)
        self.row_degrees = self.a.sum(2)
        # A ones-row product, not .sum(1): the strided reduction over rows was ~2x slower on CPU.
        self.col_degrees = torch.bmm(self.a.new_ones(B, 1, m), self.a)[:, 0]
        self.row_scale = self._inv_sqrt(self.row_degrees)
        self.col_scale = self._inv_sqrt(self.col_degrees)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.a.shape)

    def _inv_sqrt(self, d: torch.Tensor) -> torch.Tensor:
        return torch.where(d > 0, d.clamp_min(torch.finfo(self.dtype).tiny).rsqrt(), torch.zeros_like(d))

    def dense(self) -> torch.Tensor:
        """``An`` materialised ``[B, m, n]`` (for the exact SVD of small matrices)."""
        return self.a * self.row_scale[:, :, None] * self.col_scale[:, None, :]

    def gram(self, vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(An V [B, m, b], (An^T An V)^T [B, b, n])`` for ``vt`` = ``V^T`` ``[B, b, n]``, in one pass
        over ``A`` (the ``gram`` of :func:`~circuitclust.core.svd.block_lanczos_svd`)."""
        B, m, n = self.a.shape
        # The [b, n] layout of V^T makes A_blk @ V a "times transposed" product, which BLAS runs at close to
        # memory speed for thin V; A_blk @ V with V stored [n, b] was ~3x slower with MKL on CPU.
        vs = (vt * self.col_scale[:, None, :]).transpose(1, 2)
        y = torch.empty(B, m, vt.shape[1], dtype=self.dtype, device=self.a.device)
        acc = torch.zeros(B, vt.shape[1], n, dtype=self.dtype, device=self.a.device)
        r2 = self.row_scale * self.row_scale
        for s in range(0, m, self.block_rows):
            blk = self.a[:, s:s + self.block_rows]
            t = torch.bmm(blk, vs)  # A_blk D_c V
            acc.baddbmm_((t * r2[:, s:s + t.shape[1], None]).transpose(1, 2), blk)
            y[:, s:s + t.shape[1]] = t
        return y * self.row_scale[:, :, None], acc * self.col_scale[:, None, :]
