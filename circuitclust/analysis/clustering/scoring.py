"""How clusterable a partitioned model is: clusterability of every graph beside its chance level and the
null of entry-shuffled, re-clustered weights.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ...core.measures import benjamini_hochberg, chance_level, clusterability, normalised_clusterability, null_stats
from ...core.partition import ModelPartition
from ...errors import PartitionMismatchError, check_int
from ...models import weight_graphs
from .null import shuffle_null
from .partition import check_architecture
from .stacks import _bar, _weights, tied_groups


def score_model(
    model: nn.Module,
    partition: ModelPartition,
    shuffles: int = 0,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> list[dict]:
    """Score every graph of ``partition`` on ``model``'s current weights.

    Returns one dict per graph: ``name, layer, kind, shape [n_in, n_out], k, row_sizes, col_sizes,
    clusterability, chance, clusterability_norm`` (``(C - chance) / (1 - chance)``, None when chance is 1)
    and, with ``shuffles > 0``, the shuffle null of the same partitioning procedure (``shuffle_mean,
    shuffle_std, z, p``, ``p_floor = 1 / (shuffles + 1)`` and ``q``, the Benjamini-Hochberg adjusted p over
    the graphs scored together; otherwise ``None``). The null is batched (:mod:`.null`); ``workers``: threads
    that share it (default: ``torch.get_num_threads()`` on CPU, 1 elsewhere; the result does not depend on
    it). Raises
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
        if workers is None:
            workers = torch.get_num_threads() if dev.type == "cpu" else 1
        check_int("workers", workers, 1)
        bar = _bar(len(tied_groups(graphs)) * shuffles, f"shuffles x{shuffles}", progress)
        nulls = shuffle_null(graphs, w, partition, shuffles, seed, workers=workers, progress=bar)
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
