"""Dhillon's degree-normalised bipartite graph ``An = D_r^-1/2 A D_c^-1/2`` of weight matrices, applied
without materialising ``An`` itself.

``A = |W|`` (``power=1``) or ``W**2`` (``power=2``) is computed once, in the compute dtype (or handed over
ready-made with :meth:`NormalisedGraph.from_a`, as the shuffle null does); the degree scalings are applied to
the thin factors, never to the matrix. On CPU, every product walks each batch member's ``A`` in row blocks of
about :data:`BLOCK_BYTES` and applies both ``A`` and ``A^T`` to a block while it is still in cache, so one step
of block Lanczos (``An V`` and ``An^T An V``) reads ``A`` from memory once. Taking ``|W|`` once rather than per
block and step halves a step's cost on GPT-2-sized graphs, at the price of one copy of ``W``. On other devices
(GPU) one block holds the whole batch.
"""
from __future__ import annotations

import numpy as np
import torch

#: Bytes of one batch member's ``A`` per row block on CPU: the block stays in the L2 cache between the two
#: products (on a 2 MB-L2 Xeon, 1 MB blocks of a 2048 x 1920 Gemma MLP stack ran a Lanczos step in 2.1 ms
#: against 4.1 ms when one block spanned the whole batch; smaller blocks pay per-call overhead).
BLOCK_BYTES = 1 << 20


def empty_huge(shape: torch.Size | tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An uninitialised tensor; on CPU backed by NumPy's allocator, which asks Linux for transparent huge pages
    on large arrays (PyTorch's only does with THP_MEM_ALLOC_ENABLE=1 set before it starts), which makes filling
    a fresh large tensor several times faster (first touching 4 KB pages is what costs, not the copy), and random
    reads from it (a gather) cheaper, with ~500x fewer TLB entries to miss."""
    if device.type != "cpu" or dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):  # not NumPy's
        return torch.empty(shape, dtype=dtype, device=device)
    return torch.from_numpy(np.empty(tuple(shape), dtype=torch.empty((), dtype=dtype).numpy().dtype))


class NormalisedGraph:
    """``An`` for a batch ``w`` ``[B, m, n]`` (on the compute device, any float dtype, not modified).

    ``dtype``: the compute dtype (float32 or float64). ``block_rows``: rows of one member's ``A`` per block of
    the CPU products (default: about :data:`BLOCK_BYTES`). Attributes: ``a`` ``[B, m, n]`` (``A``, a copy),
    ``row_degrees`` ``[B, m]``, ``col_degrees`` ``[B, n]`` (row / column sums of ``A``; non-finite if ``w``
    holds NaN or inf), ``row_scale`` ``[B, m]`` and ``col_scale`` ``[B, n]`` (``degree^-1/2``, 0 for
    isolated units, so those never produce NaN).
    """

    def __init__(self, w: torch.Tensor, power: int = 1, *, dtype: torch.dtype = torch.float32,
                 block_rows: int | None = None):
        self.power, self.dtype = power, dtype
        self.a = empty_huge(w.shape, dtype, w.device)
        if power == 1:
            torch.abs(w, out=self.a) if w.dtype == dtype else self.a.copy_(w).abs_()
        else:
            torch.mul(w, w, out=self.a) if w.dtype == dtype else self.a.copy_(w).square_()
        self._setup(block_rows)

    @classmethod
    def from_a(cls, a: torch.Tensor, power: int = 1, *, block_rows: int | None = None) -> "NormalisedGraph":
        """The graph of a ready-made ``A`` ``[B, m, n]`` (non-negative, contiguous, float32 or float64), used
        as it is, without a copy: the caller must not change ``a`` while the graph is in use. ``power`` is
        only recorded (what ``A`` was made from)."""
        self = cls.__new__(cls)
        self.power, self.dtype, self.a = power, a.dtype, a
        self._setup(block_rows)
        return self

    def _setup(self, block_rows: int | None) -> None:
        _, m, n = self.a.shape
        if block_rows is None:
            block_rows = max(1, BLOCK_BYTES // (n * self.a.element_size()))
        self.block_rows = min(block_rows, m)
        self.row_degrees = self.a.sum(2)
        # A ones-row product, not .sum(1): the strided reduction over rows was ~2x slower on CPU.
        self.col_degrees = torch.bmm(self.a.new_ones(self.a.shape[0], 1, m), self.a)[:, 0]
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
        b = vt.shape[1]
        vs = vt * self.col_scale[:, None, :]  # [B, b, n]
        r2 = self.row_scale * self.row_scale
        if self.a.device.type != "cpu":
            return self._gram_whole(self.a, vs, r2, slice(0, B))
        if self.block_rows >= m and B > 1:
            # Small members: several whole matrices per block, so small graphs do not pay a call per member.
            per = max(1, BLOCK_BYTES // max(1, m * n * self.a.element_size()))
            parts = [self._gram_whole(self.a[i:i + per], vs[i:i + per], r2[i:i + per], slice(i, i + per))
                     for i in range(0, B, per)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        # CPU: one member at a time, one row block at a time. ``V^T A_blk^T`` ([b, rows]) reads the block
        # row-major at close to memory speed for thin V (``A_blk V`` with V as [n, b] ran ~1.5x slower), and
        # ``A_blk^T`` is applied to it while the block is still in cache.
        yt = torch.empty(B, b, m, dtype=self.dtype, device=self.a.device)
        acc = torch.zeros(B, b, n, dtype=self.dtype, device=self.a.device)
        for i in range(B):
            a_i, v_i, y_i, acc_i, r2_i = self.a[i], vs[i], yt[i], acc[i], r2[i]
            for s in range(0, m, self.block_rows):
                blk = a_i[s:s + self.block_rows]
                t = torch.mm(v_i, blk.T)  # A_blk D_c V, transposed
                y_i[:, s:s + t.shape[1]] = t
                acc_i.addmm_(t * r2_i[s:s + t.shape[1]], blk)
        return (yt * self.row_scale[:, None, :]).transpose(1, 2), acc * self.col_scale[:, None, :]

    def _gram_whole(self, a: torch.Tensor, vs: torch.Tensor, r2: torch.Tensor, members: slice
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`gram` of the members ``a`` ``[b', m, n]`` in one block (``vs`` = scaled ``V^T``, ``r2`` the
        squared row scales of those members)."""
        t = torch.bmm(a, vs.transpose(1, 2))  # [b', m, b]
        acc = torch.bmm((t * r2[:, :, None]).transpose(1, 2), a)
        return t * self.row_scale[members, :, None], acc * self.col_scale[members, None, :]
