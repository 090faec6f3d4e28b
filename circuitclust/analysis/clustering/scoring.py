"""How clusterable a partitioned model is: clusterability of every graph beside its chance level and the
null of entry-shuffled, re-clustered weights.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ...core.measures import benjamini_hochberg, chance_level, clusterability, normalised_clusterability, null_stats
from ...core.partition import ModelPartition
from ...errors import PartitionMismatchError, check_int
from ...models import weight_graphs
from .partition import check_architecture
from .stacks import (_bar, _chunks, _cluster_stacks, _oriented, _resid_sizes, _seed_for, _split_cols, _tied_side,
                     _weights, tied_groups)


def _legacy_cocluster_options(prov: dict[str, Any]) -> dict[str, Any]:
    """The co-clustering options of a partition file written before they were recorded as ``cocluster``: its
    ``svd`` holds the methods used per stack, so several mean the request was ``auto``."""
    svd = str(prov.get("svd", "auto"))
    return {"power": int(prov.get("power", 1)), "n_init": int(prov.get("n_init", 10)),
            "svd": "auto" if "," in svd else svd}


def _shuffle_null(members: Sequence, w: dict[str, torch.Tensor], partition: ModelPartition, n: int, seed: int,
                  space: str) -> dict[str, torch.Tensor]:
    """Clusterability of each member graph over ``n`` shuffles ``[n]``: every member's entries permuted
    within its matrix, the stack re-clustered with the partition's own procedure (fixed labels for
    ``blocks``)."""
    prov = partition.provenance
    g0 = members[0]
    dev = w[g0.name].device
    gen = torch.Generator(device=dev).manual_seed(_seed_for(seed, "shuffle" + space))
    per_item = sum(g.shape[0] * g.shape[1] for g in members)
    nulls: dict[str, list[torch.Tensor]] = {g.name: [] for g in members}
    for sl in _chunks(n, per_item):
        s = sl.stop - sl.start
        shuffled = {}
        for g in members:
            flat = w[g.name].reshape(-1)
            perm = torch.stack([torch.randperm(flat.numel(), generator=gen, device=dev) for _ in range(s)])
            shuffled[g.name] = flat[perm].view(s, *g.shape)
        if prov.get("method") == "blocks":
            labs = {g.name: (partition[g.name].row_labels.to(dev), partition[g.name].col_labels.to(dev))
                    for g in members}
        else:
            stack = torch.cat([_oriented(g, shuffled[g.name]) for g in members], 2)
            opts = prov.get("cocluster") or _legacy_cocluster_options(prov)
            ((rows, cols),) = _cluster_stacks([stack], partition.k, seed + 7919 * (sl.start + 1), opts,
                                              key="shuffle" + space, col_groups=[_resid_sizes(members)])
            res = _split_cols(members, cols)
            labs = {g.name: (res[g.name], rows) if _tied_side(g) == "out" else (rows, res[g.name])
                    for g in members}
        for g in members:
            r, c = labs[g.name]
            nulls[g.name].append(clusterability(shuffled[g.name], r, c))
    return {name: torch.cat(v) for name, v in nulls.items()}


def score_model(
    model: nn.Module,
    partition: ModelPartition,
    shuffles: int = 0,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> list[dict]:
    """Score every graph of ``partition`` on ``model``'s current weights.

    Returns one dict per graph: ``name, layer, kind, shape [n_in, n_out], k, row_sizes, col_sizes,
    clusterability, chance, clusterability_norm`` (``(C - chance) / (1 - chance)``, None when chance is 1)
    and, with ``shuffles > 0``, the shuffle null of the same partitioning procedure (``shuffle_mean,
    shuffle_std, z, p``, ``p_floor = 1 / (shuffles + 1)`` and ``q``, the Benjamini-Hochberg adjusted p over
    the graphs scored together; otherwise ``None``). Raises
    :class:`~circuitclust.errors.PartitionMismatchError` if the partition does not fit the model.
    """
    check_int("shuffles", shuffles, 0)
    check_architecture(model, partition)
    names = set(partition.graphs)
    graphs = [g for g in weight_graphs(model, parts=("mlp", "attn")) if g.name in names]
    if len(graphs) != len(names):
        missing = sorted(names - {g.name for g in graphs})
        raise PartitionMismatchError(f"the model has no graphs {missing[:3]}: this partition was made for "
                                     f"another model ({partition.provenance.get('model', 'unknown')})")
    partition.check_graphs(graphs)
    dev = torch.device(device) if device is not None else graphs[0].weight.device
    w = _weights(graphs, dev)
    nulls: dict[str, torch.Tensor] = {}
    if shuffles > 0:
        groups = tied_groups(graphs)
        bar = _bar(len(groups), f"shuffles x{shuffles}", progress)
        for space, members in groups.items():
            nulls.update(_shuffle_null(members, w, partition, shuffles, seed, space))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    rows = []
    for g in graphs:
        p = partition[g.name]
        r, c = p.row_labels.to(dev), p.col_labels.to(dev)
        value = float(clusterability(w[g.name], r, c))
        row_sizes, col_sizes = p.sizes()
        chance = float(chance_level(r, c, p.k))
        norm = float(normalised_clusterability(value, chance))
        row = {"name": g.name, "layer": g.layer, "kind": g.kind, "shape": list(g.shape), "k": p.k,
               "row_sizes": row_sizes, "col_sizes": col_sizes, "clusterability": value, "chance": chance,
               "clusterability_norm": None if math.isnan(norm) else norm,
               "shuffle_mean": None, "shuffle_std": None, "z": None, "p": None, "p_floor": None, "q": None}
        if g.name in nulls:
            st = null_stats(value, nulls[g.name])
            row.update(shuffle_mean=st.mean, shuffle_std=st.std, z=st.z, p=st.p, p_floor=1.0 / (shuffles + 1))
        rows.append(row)
    if nulls:
        for row, q in zip(rows, benjamini_hochberg([r["p"] for r in rows]).tolist()):
            row["q"] = q
    return rows
