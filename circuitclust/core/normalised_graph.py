"""Dhillon's degree-normalised bipartite graph ``An = D_r^-1/2 A D_c^-1/2`` of weight matrices, applied
without materialising it.

``A = |W|`` (``power=1``) or ``W**2`` (``power=2``). On CPU, ``A`` is never built: every product streams
``W`` in row blocks of about :data:`BLOCK_BYTES`, takes ``|.|`` (or the square) of the block into a small
buffer that stays in cache, and applies both ``A`` and ``A^T`` to it before moving on. So one step of block
Lanczos (``An V`` and ``An^T An V``) reads ``W`` from memory once, and no copy of the size of ``W`` is
allocated (a fresh 85 MB tensor costs more in page faults than a product with it). The degree scalings are
applied to the thin factors, not to the matrix. On other devices (GPU) one block holds everything and ``A``
is computed once and kept.
"""
from __future__ import annotations

import torch

#: Bytes of ``A`` per row block on CPU: a few MB stays in the L2/L3 cache between the two products (measured
#: on a 2-core AMD EPYC: 1-2.5 MB blocks were fastest for 2304 x 9216; 10 MB blocks were ~2x slower).
BLOCK_BYTES = 2 << 20


class NormalisedGraph:
    """``An`` for a batch ``w`` ``[B, m, n]`` (on the compute device, any float dtype, not modified).

    ``dtype``: the compute dtype (float32 or float64). Attributes (computed in one pass over ``w``):
    ``row_degrees`` ``[B, m]``, ``col_degrees`` ``[B, n]`` (row / column sums of ``A``; non-finite if
    ``w`` holds NaN or inf), ``row_scale`` ``[B, m]`` and ``col_scale`` ``[B, n]`` (``degree^-1/2``, 0 for
    isolated units, so those never produce NaN).
    """

    def __init__(self, w: torch.Tensor, power: int = 1, *, dtype: torch.dtype = torch.float32,
                 block_rows: int | None = None):
        self.w = w if w.is_contiguous() else w.contiguous()
        self.power, self.dtype = power, dtype
        B, m, n = w.shape
        if block_rows is None:
            itemsize = torch.empty((), dtype=dtype).element_size()
            block_rows = max(1, BLOCK_BYTES // (B * n * itemsize)) if w.device.type == "cpu" else m
        self.block_rows = min(block_rows, m)
        self._full = None
        if self.block_rows == m:
            self._full = self._transform(self.w, None)
        else:
            self._buf = torch.empty(B, self.block_rows, n, dtype=dtype, device=w.device)
        self.row_degrees = torch.empty(B, m, dtype=dtype, device=w.device)
        self.col_degrees = torch.zeros(B, n, dtype=dtype, device=w.device)
        for s, blk in self._blocks():
            torch.sum(blk, 2, out=self.row_degrees[:, s:s + blk.shape[1]])
            self.col_degrees += blk.sum(1)
        self.row_scale = self._inv_sqrt(self.row_degrees)
        self.col_scale = self._inv_sqrt(self.col_degrees)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.w.shape)

    def _inv_sqrt(self, d: torch.Tensor) -> torch.Tensor:
        return torch.where(d > 0, d.clamp_min(torch.finfo(self.dtype).tiny).rsqrt(), torch.zeros_like(d))

    def _transform(self, x: torch.Tensor, out: torch.Tensor | None) -> torch.Tensor:
        if out is None:
            x = x.to(self.dtype)
            return x.abs() if self.power == 1 else x.square()
        if x.dtype == out.dtype:
            return torch.abs(x, out=out) if self.power == 1 else torch.mul(x, x, out=out)
        out.copy_(x)
        return out.abs_() if self.power == 1 else out.square_()

    def _blocks(self):
        """``(start row, A[:, start:start + r]``) for consecutive row blocks (the block is a reused buffer)."""
        if self._full is not None:
            yield 0, self._full
            return
        m = self.w.shape[1]
        for s in range(0, m, self.block_rows):
            r = min(self.block_rows, m - s)
            yield s, self._transform(self.w[:, s:s + r], self._buf[:, :r])

    def dense(self) -> torch.Tensor:
        """``An`` materialised ``[B, m, n]`` (for the exact SVD of small matrices)."""
        a = self._full if self._full is not None else self._transform(self.w, None)
        return a * self.row_scale[:, :, None] * self.col_scale[:, None, :]

    def gram(self, vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(An V [B, m, b], (An^T An V)^T [B, b, n])`` for ``vt`` = ``V^T`` ``[B, b, n]``, in one pass
        over ``w`` (the ``gram`` of :func:`~circuitclust.core.svd.block_lanczos_svd`)."""
        B, m, n = self.w.shape
        # The [b, n] layout of V^T makes A_blk @ V a "times transposed" product, which BLAS runs at close to
        # memory speed for thin V; A_blk @ V with V stored [n, b] was ~3x slower with MKL on CPU.
        vs = (vt * self.col_scale[:, None, :]).transpose(1, 2)
        y = torch.empty(B, m, vt.shape[1], dtype=self.dtype, device=self.w.device)
        acc = torch.zeros(B, vt.shape[1], n, dtype=self.dtype, device=self.w.device)
        r2 = self.row_scale * self.row_scale
        for s, blk in self._blocks():
            t = torch.bmm(blk, vs)  # A_blk D_c V
            acc.baddbmm_((t * r2[:, s:s + t.shape[1], None]).transpose(1, 2), blk)
            y[:, s:s + t.shape[1]] = t
        return y * self.row_scale[:, :, None], acc * self.col_scale[:, None, :]
