"""Stacking a model's weight graphs by tied unit space, and co-clustering the stacks in batches.

Tied spaces. Every weight graph has one hidden side (``mlp.{l}``, ``attn.{l}``, ``attn_qk.{l}``, ...) and
one residual side. All graphs that share a hidden space are co-clustered TOGETHER: their matrices are
oriented with the hidden units as rows and stacked side by side, e.g. for a gated MLP
``[W_in^T | W_gate^T | W_out]`` ``[d_mlp, 3 d_model]``, and that one matrix is co-clustered. Each hidden
unit thus gets ONE label shared by every graph that touches it, so cluster ``i`` of a layer is a real
sub-network.

Residual-side labels (a choice, documented here): each graph's residual units are the columns of its own
slice of the stacked matrix, so they get their labels from the same co-clustering (the same k-means over
rows and columns). A residual unit can therefore carry different labels in ``W_in`` and in ``W_out``: the
residual stream is shared by every layer, so no single label could serve them all.

Same-shape stacks (the same space in different layers) go through one batched computation on the device.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable, Sequence

import torch

from ...core.cocluster import cocluster_labels

#: Upper bound on matrix entries clustered in one batch (keeps peak memory near 1-2 GB in float32).
BATCH_ELEMENTS = 48 * 2**20


def _tied_side(g) -> str:
    return g.tied_side


def tied_groups(graphs: Iterable) -> dict[str, list]:
    """Graphs grouped by their hidden space, in first-seen order: ``{space: [graph, ...]}``."""
    groups: dict[str, list] = {}
    for g in graphs:
        space = g.in_space if _tied_side(g) == "in" else g.out_space
        groups.setdefault(space, []).append(g)
    return groups


def _oriented(g, w: torch.Tensor) -> torch.Tensor:
    """``w`` (``[..., n_in, n_out]``) with the hidden units as rows: ``[..., n_hidden, n_resid]``."""
    return w if _tied_side(g) == "in" else w.transpose(-1, -2)


def _split_cols(members: Sequence, cols: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split stacked column labels ``[..., sum n_resid]`` back into each member's residual labels."""
    return {g.name: c for g, c in zip(members, cols.split(list(_resid_sizes(members)), dim=-1))}


def _chunks(n: int, per_item: int) -> list[slice]:
    step = max(1, BATCH_ELEMENTS // max(per_item, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _seed_for(seed: int, key: str) -> int:
    # A stable per-batch seed, so that one batch's randomness does not depend on what ran before it.
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % 2**62


def _resid_sizes(members: Sequence) -> tuple[int, ...]:
    """The residual-side width of each member graph, in stacking order (the stack's column blocks)."""
    return tuple(g.shape[1] if _tied_side(g) == "in" else g.shape[0] for g in members)


def _cluster_stacks(stacks: list[torch.Tensor], k: int, seed: int, options: dict[str, Any], key: str = "",
                    progress=None, col_groups: Sequence[tuple[int, ...]] | None = None
                    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Co-cluster each ``[n_hidden, n_cols]`` stack (or ``[S, n_hidden, n_cols]`` batch of them), batching
    same shapes. ``col_groups``: each stack's column blocks (its member graphs' residual widths), which a
    ``balance`` option balances one by one. Returns ``(row_labels, col_labels)`` per stack, shaped like the
    stack's leading dims."""
    out: list = [None] * len(stacks)
    by_shape: dict[tuple, list[int]] = {}
    for i, s in enumerate(stacks):
        groups = tuple(col_groups[i]) if col_groups is not None else (s.shape[-1],)
        by_shape.setdefault((tuple(s.shape[-2:]), groups), []).append(i)
    for (shape, groups), idx in by_shape.items():
        flat = [s.reshape(-1, *shape) for s in (stacks[i] for i in idx)]
        counts = [f.shape[0] for f in flat]
        big = torch.cat(flat) if len(flat) > 1 else flat[0]
        rows, cols = [], []
        for j, sl in enumerate(_chunks(big.shape[0], shape[0] * shape[1])):
            r, c = cocluster_labels(big[sl], k, seed=_seed_for(seed, f"{key}{shape}{j}"), col_groups=groups, **options)
            rows.append(r)
            cols.append(c)
            if progress is not None:
                progress.update(sl.stop - sl.start)
        rows, cols = torch.cat(rows), torch.cat(cols)
        for i, r, c in zip(idx, rows.split(counts), cols.split(counts)):
            lead = stacks[i].shape[:-2]
            out[i] = (r.reshape(*lead, shape[0]), c.reshape(*lead, shape[1]))
    return out


def _weights(graphs: Sequence, device) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {g.name: g.weight.detach().to(device, torch.float32) for g in graphs}


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="graph", leave=False)
