"""A whole network as one undirected weighted graph (Filan et al. 2021), and its spectral clustering.

The graph is a union of bipartite blocks over ``n_nodes`` units numbered so that each block's input units
and output units are contiguous ranges: block ``(A [n_in, n_out] >= 0, in_start, out_start)`` links node
``in_start + u`` to node ``out_start + v`` with weight ``A[u, v]``. The adjacency is never materialised
(a 270M-parameter model gives ~10^5 nodes and ~10^8 edges): products with it run block by block on the
blocks' device, with slices rather than scatter-adds so that they are deterministic on GPU too.

:func:`spectral_clustering` takes the ``k`` smallest eigenvectors of the normalised Laplacian
``I - D^-1/2 A D^-1/2`` (the largest of ``D^-1/2 A D^-1/2``, by Lanczos through SciPy's ``eigsh`` on a
matrix-free operator), scales them by ``D^-1/2`` (Shi & Malik, the n-cut relaxation) and runs k-means.
Zero-degree nodes are dropped: label ``-1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import CircuitclustError
from .kmeans import kmeans


@dataclass
class NetworkGraph:
    """Undirected graph as bipartite blocks; see the module docstring."""

    n_nodes: int
    blocks: list[tuple[torch.Tensor, int, int]] = field(default_factory=list)

    def add(self, weight: torch.Tensor, in_start: int, out_start: int) -> None:
        """Add edges ``|weight|`` ``[n_in, n_out]`` between ``in_start + u`` and ``out_start + v``."""
        n_in, n_out = weight.shape
        if in_start < 0 or out_start < 0 or in_start + n_in > self.n_nodes or out_start + n_out > self.n_nodes:
            raise ValueError(f"block of shape {tuple(weight.shape)} at ({in_start}, {out_start}) exceeds "
                             f"{self.n_nodes} nodes")
        self.blocks.append((weight.detach().abs(), in_start, out_start))

    @property
    def device(self) -> torch.device:
        return self.blocks[0][0].device

    @property
    def dtype(self) -> torch.dtype:
        return self.blocks[0][0].dtype

    def matmul(self, x: torch.Tensor) -> torch.Tensor:
        """``A @ x`` for ``x`` ``[n_nodes, c]`` (or ``[n_nodes]``)."""
        vec = x.dim() == 1
        x = x[:, None] if vec else x
        y = torch.zeros(self.n_nodes, x.shape[1], dtype=x.dtype, device=x.device)
        for a, i0, o0 in self.blocks:
            a = a.to(x.dtype)
            ni, no = a.shape
            y[o0:o0 + no] += a.T @ x[i0:i0 + ni]
            y[i0:i0 + ni] += a @ x[o0:o0 + no]
        return y[:, 0] if vec else y

    def degrees(self) -> torch.Tensor:
        """Weighted degree of every node ``[n_nodes]``."""
        d = torch.zeros(self.n_nodes, dtype=self.dtype, device=self.device)
        for a, i0, o0 in self.blocks:
            d[i0:i0 + a.shape[0]] += a.sum(1)
            d[o0:o0 + a.shape[1]] += a.sum(0)
        return d

    def shuffled(self, generator: torch.Generator) -> "NetworkGraph":
        """A copy whose every block has its entries randomly permuted within the block."""
        out = NetworkGraph(self.n_nodes)
        for a, i0, o0 in self.blocks:
            perm = torch.randperm(a.numel(), generator=generator, device=a.device)
            out.blocks.append((a.reshape(-1)[perm].view(a.shape), i0, o0))
        return out


def spectral_clustering(graph: NetworkGraph, k: int, *, seed: int = 0, n_init: int = 10, tol: float = 1e-5,
                        ) -> torch.Tensor:
    """Normalised-Laplacian spectral clustering of ``graph`` into ``k`` clusters.

    Returns node labels ``[n_nodes]`` int64 in ``[0, k)``, ``-1`` for zero-degree nodes. Deterministic for
    a fixed ``seed`` on a given device. Raises :class:`CircuitclustError` if fewer than ``k`` nodes have
    edges.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    deg = graph.degrees().double()
    active = deg > 0
    n_active = int(active.sum())
    if n_active < max(k, 2):
        raise CircuitclustError(f"the network graph has {n_active} connected units: too few for k={k}")
    isq = torch.where(active, deg.clamp_min(1e-300).rsqrt(), torch.zeros_like(deg))
    dev, n = graph.device, graph.n_nodes

    def mv(v: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)).to(dev).reshape(n, -1)
        y = isq[:, None] * graph.matmul((isq[:, None] * x).to(graph.dtype)).double()
        return y.cpu().numpy().reshape(v.shape)

    op = LinearOperator((n, n), matvec=mv, matmat=mv, dtype=np.float64)
    rng = np.random.default_rng(seed)
    v0 = rng.standard_normal(n) * active.cpu().numpy()
    _, vecs = eigsh(op, k=k, which="LA", v0=v0, tol=tol, ncv=max(2 * k + 1, 20))
    z = (isq[:, None].cpu() * torch.from_numpy(vecs)).float().to(dev)
    z = z / z[active].square().sum(1).mean().sqrt().clamp_min(1e-30)
    res = kmeans(z, k, n_init=n_init, seed=seed, sample_weight=active.float().to(dev))
    return torch.where(active.to(dev), res.labels, torch.full_like(res.labels, -1))
