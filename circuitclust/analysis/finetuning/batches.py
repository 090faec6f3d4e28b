"""A stateless, resumable batch order for causal-LM fine-tuning.

The batch order is a pure function of ``(seed, global sample index)``: epoch ``e`` visits the blocks in
``randperm(n, seed + e)`` order, and step ``s`` of process ``r`` takes a fixed slice of it. A resumed run
therefore sees exactly the data an uninterrupted run would, with no loader state to save, and DDP
processes never see the same block in one step.
"""
from __future__ import annotations

import torch


def batch_indices(n_blocks: int, seed: int, start: int, size: int) -> torch.Tensor:
    """Block indices of global samples ``start .. start + size - 1`` (``[size]`` int64), epoch by epoch
    through a fresh permutation seeded by ``seed + epoch``."""
    out = []
    i = start
    while i < start + size:
        epoch, pos = divmod(i, n_blocks)
        take = min(n_blocks - pos, start + size - i)
        perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + epoch))
        out.append(perm[pos: pos + take])
        i += take
    return torch.cat(out)
