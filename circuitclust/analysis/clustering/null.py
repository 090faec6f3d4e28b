"""The shuffle null of a partitioned model, batched: every shuffle of every same-layout stack of graphs goes
through a few large co-clustering calls on the device.

What is computed (the null of :func:`~.scoring.score_model`): for each graph, the clusterability of ``n``
entry-shuffled copies of its weights, each re-clustered with the partition's own procedure (the tied stack
re-co-clustered with the partition's options, balance included; fixed labels for ``blocks``). Only ``|W|``
and ``W^2`` enter the partitioner and clusterability, so the shuffled values are ``|W|`` (``W^2`` for
``power=2``), gathered straight into the stack layout the partitioner reads: no per-graph copies, no signs,
no second ``|.|``.

How the shuffles are drawn. Shuffle ``s`` of graph ``g`` is ``v_g[c_g[r_s]]``: ``c_g`` is a uniform random
order of ``g``'s entries drawn once, and ``r_s`` a uniform random permutation drawn once per shuffle and shared
by every graph with the same number of entries (all 54 MLP matrices of Gemma 3 270M, say). Composing with the
graph's own ``c_g`` makes each ``c_g r_s`` uniform, and

- for one graph, its ``n`` shuffles are independent uniform permutations (``r_s`` are i.i.d. and ``c_g``
  fixed): the null of every graph, so its p-value, is exactly the permutation null of independent shuffles;
- within one shuffle, all graphs' permutations are mutually independent (``P(c_1 r = x_1, ..., c_G r = x_G)``
  sums ``P(r) prod P(c_i = x_i r^-1)`` over ``r``: ``(1/N!)^G``), so the three matrices of a stack are
  shuffled independently of each other, as before;
- across shuffles and graphs together the draws are not fully independent (``(c_g r_s)^-1 c_h r_s`` is the
  same for every ``s``), though any two null values of different graphs are independent. This is the one
  difference from drawing every permutation afresh; it saves one random permutation per graph and shuffle,
  which cost as much as the co-clustering itself on CPU.

The null is a deterministic function of ``seed`` (and the device), whatever the number of worker threads.

Speed (CPU): the stacks of one layout that share a shuffle are gathered through one index (built once per
shuffle), two stacks per random read (their sources interleaved), into a reused buffer and co-clustered in
batches of about :data:`UNIT_ELEMENTS` entries; with ``workers > 1`` the batches, and the preparation of the
sources before them, run on that many threads (torch releases the GIL inside its kernels).
``benchmarks/shuffle_null.py`` measures it against drawing and co-clustering each shuffle on its own.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import torch

from ...core.cocluster import cocluster_graph
from ...core.normalised_graph import NormalisedGraph, empty_huge
from ...core.partition import ModelPartition
from .stacks import _resid_sizes, _seed_for, _tied_side, tied_groups

#: Entries of shuffled matrices co-clustered in one call (on CPU, one worker's buffer: 4 bytes each; a few
#: Gemma 3 270M MLP stacks of 2048 x 1920 per call). Part of what fixes the random streams: changing it
#: changes which shuffles share a k-means seed, not the null's distribution.
UNIT_ELEMENTS = 24 * 2**20


def _legacy_cocluster_options(prov: dict[str, Any]) -> dict[str, Any]:
    """The co-clustering options of a partition file written before they were recorded as ``cocluster``: its
    ``svd`` holds the methods used per stack, so several mean the request was ``auto``."""
    svd = str(prov.get("svd", "auto"))
    return {"power": int(prov.get("power", 1)), "n_init": int(prov.get("n_init", 10)),
            "svd": "auto" if "," in svd else svd}


class _Layout:
    """Stacks whose members have the same shapes in the same order (e.g. every layer's ``[W_in^T | W_gate^T |
    W_out]``): ``m`` hidden rows, member residual ``widths``, member entry counts ``numels``, and per stack
    (one per tied space) its members and (``blocks``) its fixed labels. The stacks' shuffle sources (each
    ``[sum numels]``) are kept two by two, interleaved: ``sources`` holds ``[sum numels, 2]`` float32 tensors
    (``[sum numels, 1]`` for an odd last stack), and stack ``i``'s source is column ``slots[i][1]`` of
    ``sources[slots[i][0]]``."""

    def __init__(self, key: tuple, spaces: list[str], members: list[list]):
        self.m, self.widths = key[0], tuple(key[1])
        self.numels = tuple(self.m * w for w in self.widths)
        self.spaces, self.members = spaces, members
        self.sources: list[torch.Tensor] = []
        self.slots: list[tuple[int, int]] = []
        self.labels: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def shape(self) -> tuple[int, int]:
        return self.m, sum(self.widths)

    def add_sources(self, values: list[torch.Tensor]) -> None:
        """Store the stacks' sources ``values`` (each ``[sum numels]`` float32), in order, two by two."""
        for i in range(0, len(values), 2):
            part = values[i:i + 2]
            # the gathers read these at random: huge pages spare most of their TLB misses
            src = empty_huge((part[0].numel(), len(part)), torch.float32, part[0].device)
            for j, v in enumerate(part):
                src[:, j] = v
                self.slots.append((len(self.sources), j))
            self.sources.append(src)

    def gather(self, stacks: list[int], index: torch.Tensor, out: torch.Tensor, pair: torch.Tensor | None) -> None:
        """Shuffled stacks ``out[b] = source(stacks[b])[index]`` (``out`` ``[len(stacks), m, n_cols]``).
        Two stacks that share a source are gathered together, 8 bytes a read through an int64 view, into
        ``pair`` ``[sum numels, 2]`` and split by two strided copies: the random reads cost the same per read
        whatever their width, so this costs about 13 ms per Gemma 3 270M MLP stack instead of 20 (2-core
        Xeon, one thread). Only bits are moved: the values are exactly those of one gather per stack."""
        b = 0
        while b < len(stacks):
            si, col = self.slots[stacks[b]]
            src = self.sources[si]
            if col == 0 and src.shape[1] == 2 and b + 1 < len(stacks) and stacks[b + 1] == stacks[b] + 1:
                torch.index_select(src.view(torch.int64).view(-1), 0, index, out=pair.view(torch.int64).view(-1))
                out[b].view(-1).copy_(pair[:, 0])
                out[b + 1].view(-1).copy_(pair[:, 1])
                b += 2
            else:
                torch.index_select(src[:, col], 0, index, out=out[b].view(-1))
                b += 1


def _layouts(graphs: Sequence) -> list[_Layout]:
    groups = tied_groups(graphs)
    by_key: dict[tuple, tuple[list, list]] = {}
    for space, members in groups.items():
        g = members[0]
        key = (g.shape[0] if _tied_side(g) == "in" else g.shape[1], _resid_sizes(members))
        spaces, mems = by_key.setdefault(key, ([], []))
        spaces.append(space)
        mems.append(members)
    return [_Layout(key, spaces, mems) for key, (spaces, mems) in by_key.items()]


def _permutation(numel: int, s: int, seed: int, device: torch.device) -> torch.Tensor:
    """``r_s`` for matrices of ``numel`` entries: a uniform random permutation ``[numel]`` (int32 when it fits,
    which halves the index traffic of the gathers)."""
    gen = torch.Generator(device=device).manual_seed(_seed_for(seed, f"shuffle-perm:{numel}:{s}"))
    dtype = torch.int32 if numel < 2**31 else torch.int64
    return torch.randperm(numel, generator=gen, device=device, dtype=dtype)


def _stack_index(layout: _Layout, s: int, seed: int, device: torch.device) -> torch.Tensor:
    """Flat index ``[m * n_cols]`` into a stack's values that lays out shuffle ``s``: member ``j``'s block of
    columns takes its own values (offset ``sum numels[:j]``) in the order ``r_s``. A shuffled matrix is
    exchangeable, so filling the block row-major, whatever the member's orientation, is the same law."""
    blocks, offset, perms = [], 0, {}
    for width, numel in zip(layout.widths, layout.numels):
        # members of the same size share r_s (seeded by size and shuffle): draw it once
        if numel not in perms:
            perms[numel] = _permutation(numel, s, seed, device)
        r = perms[numel]
        blocks.append((r + offset if offset else r).view(layout.m, width))
        offset += numel
    return torch.cat(blocks, 1).reshape(-1)


def _clusterability_blocks(a: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, widths: Sequence[int],
                           power: int, k: int) -> torch.Tensor:
    """In-cluster squared-weight mass ``[B, J]`` of each member block of stacks ``a`` ``[B, m, n_cols]``
    (``|W|``, or ``W^2`` when ``power=2``; overwritten), under ``rows`` ``[B, m]`` / ``cols`` ``[B, n_cols]``."""
    sq = a.square_() if power == 1 else a
    J = len(widths)
    # Column v of block j is cluster k * j + cols[v]: one product gives every block's mass per row and cluster.
    block_of = torch.repeat_interleave(torch.arange(J, device=a.device), torch.tensor(widths, device=a.device))
    onehot = torch.nn.functional.one_hot(cols + k * block_of, k * J).to(sq.dtype)  # [B, n_cols, k J]
    per_row = torch.bmm(sq, onehot).view(a.shape[0], a.shape[1], J, k)  # [B, m, J, k]
    return per_row.gather(3, rows[:, :, None, None].expand(-1, -1, J, 1))[..., 0].sum(1)  # [B, J]


def _prepare(layouts: list[_Layout], weights: dict[str, torch.Tensor], partition: ModelPartition, power: int,
             seed: int, fixed: bool, map_=map) -> dict[str, float]:
    """Fill each layout's shuffle sources (each member's ``|W|`` or ``W^2`` values in its own random order
    ``c_g``, concatenated per stack) and, for ``blocks``, its fixed labels; ``map_`` runs the stacks (a thread
    pool's ``map`` spreads them over its threads). Returns each graph's total squared weight, the denominator
    of clusterability, which no shuffle changes."""
    totals: dict[str, float] = {}
    for lay in layouts:
        values = []
        for members, (v, sums) in zip(lay.members, map_(lambda ms: _stack_values(ms, weights, power, seed),
                                                         lay.members)):
            values.append(v)
            totals.update(sums)
            if fixed:
                lay.labels.append(_stack_labels(partition, members, v.device))
        lay.add_sources(values)
    return totals


def _stack_values(members: Sequence, weights: dict[str, torch.Tensor], power: int, seed: int
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """One stack's shuffle source ``[sum numels]`` (its members' values, each in its own order ``c_g``) and its
    members' total squared weights."""
    vals, totals = [], {}
    for g in members:
        w = weights[g.name]
        v = (w.abs() if power == 1 else w.square()).reshape(-1)
        totals[g.name] = float(v.double().square().sum() if power == 1 else v.double().sum())
        gen = torch.Generator(device=w.device).manual_seed(_seed_for(seed, "shuffle-order:" + g.name))
        vals.append(v[torch.randperm(v.numel(), generator=gen, device=w.device)])
    return torch.cat(vals), totals


def _items(layouts: list[_Layout], n: int) -> list[tuple[int, range]]:
    """Work items ``(layout index, shuffles)``: a run of shuffles of one layout with all its stacks, as many as
    fill one call of :data:`UNIT_ELEMENTS` entries (one shuffle per item when its stacks need several calls)."""
    items = []
    for li, lay in enumerate(layouts):
        run = max(1, _per_call(lay) // len(lay.spaces))
        items += [(li, range(s, min(s + run, n))) for s in range(0, n, run)]
    return items


def _per_call(lay: _Layout) -> int:
    return max(1, UNIT_ELEMENTS // (lay.shape[0] * lay.shape[1]))


class _NullRun:
    """One shuffle null in progress: the layouts, the partitioner's options and the results ``null`` (filled
    under a lock, so that items can run on several threads); each thread keeps its reusable buffers."""

    def __init__(self, layouts, partition: ModelPartition, opts: dict, power: int, seed: int, fixed: bool,
                 totals: dict[str, float], n: int, progress=None):
        self.layouts, self.k, self.opts, self.power = layouts, partition.k, opts, power
        self.seed, self.fixed, self.totals, self.progress = seed, fixed, totals, progress
        self.null = {g.name: torch.empty(n, dtype=torch.float64) for lay in layouts for ms in lay.members for g in ms}
        self.local, self.lock = threading.local(), threading.Lock()

    def _buffer(self, name: str, numel: int, device: torch.device) -> torch.Tensor:
        buf = getattr(self.local, name, None)
        if buf is None or buf.numel() < numel or buf.device != device:
            buf = empty_huge((numel,), torch.float32, device)
            setattr(self.local, name, buf)
        return buf

    def run(self, item: tuple[int, range]) -> None:
        """Gather, co-cluster and score every stack of ``item``'s shuffles, in calls of <= ``UNIT_ELEMENTS``."""
        li, shuffles = item
        lay = self.layouts[li]
        m, n_cols = lay.shape
        dev = lay.sources[0].device
        per_call = _per_call(lay)
        pairs = [(s, i) for s in shuffles for i in range(len(lay.spaces))]
        buf = self._buffer("buf", min(per_call, len(pairs)) * m * n_cols, dev)
        pair = None  # only stacks that share a source need it
        if any(src.shape[1] == 2 for src in lay.sources):
            pair = self._buffer("pair", 2 * m * n_cols, dev)[:2 * m * n_cols].view(m * n_cols, 2)
        index: dict[int, torch.Tensor] = {}
        for c0 in range(0, len(pairs), per_call):
            call = pairs[c0:c0 + per_call]
            a = buf[:len(call) * m * n_cols].view(len(call), m, n_cols)
            b = 0
            for s in dict.fromkeys(s for s, _ in call):  # the call's shuffles, in order
                stacks = [i for t, i in call if t == s]
                if s not in index:
                    index = {s: _stack_index(lay, s, self.seed, dev)}  # shuffles come in order: keep the last
                lay.gather(stacks, index[s], a[b:b + len(stacks)], pair)
                b += len(stacks)
            if self.fixed:
                rows = torch.stack([lay.labels[i][0] for _, i in call])
                cols = torch.stack([lay.labels[i][1] for _, i in call])
            else:
                gen = torch.Generator(device=dev).manual_seed(
                    _seed_for(self.seed, f"shuffle-cluster:{lay.shape}{lay.widths}:{shuffles.start}:{c0}"))
                rows, cols = cocluster_graph(NormalisedGraph.from_a(a, self.power), self.k, generator=gen,
                                             col_groups=lay.widths, **self.opts)
            inside = _clusterability_blocks(a, rows, cols, lay.widths, self.power, self.k).double().cpu()
            with self.lock:
                for b, (s, i) in enumerate(call):
                    for j, g in enumerate(lay.members[i]):
                        total = self.totals[g.name]
                        self.null[g.name][s] = inside[b, j] / total if total > 0 else 0.0
                if self.progress is not None:
                    self.progress.update(len(call))


def shuffle_null(graphs: Sequence, weights: dict[str, torch.Tensor], partition: ModelPartition, n: int,
                 seed: int, *, workers: int = 1, progress=None) -> dict[str, torch.Tensor]:
    """Clusterability of each graph's ``n`` entry-shuffled, re-clustered copies (see the module docstring).

    ``graphs``: the model's graphs in ``partition`` (all of a tied space together); ``weights``: their
    ``[n_in, n_out]`` float32 weights on the compute device. ``workers`` threads share the work (CPU);
    ``progress``: a tqdm bar advanced by one per stack and shuffle. Returns ``{name: [n] float64}``.
    """
    prov = partition.provenance
    fixed = prov.get("method") == "blocks"
    opts = dict(prov.get("cocluster") or _legacy_cocluster_options(prov))
    power = int(opts.pop("power", 1))
    layouts = _layouts(graphs)
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        totals = _prepare(layouts, weights, partition, power, seed, fixed, map_=pool.map if pool else map)
        job = _NullRun(layouts, partition, opts, power, seed, fixed, totals, n, progress)
        if pool is None:
            for item in _items(layouts, n):
                job.run(item)
        else:
            for future in [pool.submit(job.run, item) for item in _items(layouts, n)]:
                future.result()
    finally:
        if pool is not None:
            # on an error or an interrupt, drop the queued items instead of finishing them
            pool.shutdown(wait=True, cancel_futures=True)
    return job.null


def _stack_labels(partition: ModelPartition, members: Sequence, device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The partition's own labels of a stack: hidden ``[m]`` (shared by the members) and residual
    ``[n_cols]`` (the members' residual labels side by side)."""
    hidden, resid = None, []
    for g in members:
        p = partition[g.name]
        h, r = (p.row_labels, p.col_labels) if _tied_side(g) == "in" else (p.col_labels, p.row_labels)
        hidden = h if hidden is None else hidden
        resid.append(r)
    return hidden.to(device), torch.cat(resid).to(device)


__all__ = ["shuffle_null", "UNIT_ELEMENTS"]
