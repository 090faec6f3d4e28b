"""The clusterability regulariser of a model (SPEC section 4): mean over chosen weight graphs of ``1 - C(W)``.

``ClusterabilityLoss(model, partition)`` reads ``WeightGraph.weight`` (a live view of the HF parameter), so
``task_loss + lam * loss`` back-propagates into the model. Cluster memberships are cached as one-hot buffers
on the model's device (stacked per matrix shape).

Partitions are fixed during training: equal contiguous blocks (the authors' choice), or spectral
co-clustering of the current weights (once at the start, or after warm-up steps; the trainer decides when).
Tied MLP neurons share one label across ``mlp_in``, ``mlp_gate`` and ``mlp_out`` (``ModelPartition``).
"""
from __future__ import annotations

import warnings
from typing import Iterable, Sequence

import torch
from torch import nn

from ..core.loss import chance_from_masks, clusterability_masks, onehot
from ..core.partition import ModelPartition
from ..models.graphs import WeightGraph, hf_model_of, weight_graphs

DEFAULT_GRAPHS = ("mlp_in", "mlp_out")
PARTITION_MODES = ("blocks", "spectral")


def make_partition(model: nn.Module, mode: str, k: int, graphs: Sequence[str] = DEFAULT_GRAPHS,
                   seed: int = 0) -> ModelPartition:
    """A fixed partition of ``model``'s graphs of kinds ``graphs``.

    ``mode`` "blocks": equal contiguous blocks; "spectral": co-clustering of the current weights via
    ``circuitclust.analysis.clustering.partition_model`` (falls back to blocks with a warning when that
    module is not installed, and says so in the partition's provenance).
    """
    if mode not in PARTITION_MODES:
        raise ValueError(f"partition mode '{mode}' unknown: use one of {', '.join(PARTITION_MODES)}")
    gs = weight_graphs(model, parts=graphs)
    if mode == "spectral":
        try:
            from .clustering import partition_model
        except ImportError:
            warnings.warn("spectral partitioning is not available (circuitclust.analysis.clustering missing): "
                          "using equal contiguous blocks instead", stacklevel=2)
            return ModelPartition.blocks(gs, k, fallback_from="spectral", seed=seed)
        part = partition_model(model, k=k, parts=tuple(graphs), method="spectral", seed=seed)
        part.check_graphs(gs)
        return part
    return ModelPartition.blocks(gs, k, seed=seed)


class ClusterabilityLoss(nn.Module):
    """``forward() -> 1 - C(W)`` reduced over the regularised graphs of ``model``.

    Inputs: ``model`` (TransformerBridge or HF causal LM), ``partition`` (a :class:`ModelPartition`
    covering the graphs, or a mode name for :func:`make_partition` with ``k``/``seed``), ``graphs`` (matrix
    kinds, e.g. ``("mlp_in", "mlp_gate", "mlp_out", "attn_o")``; kinds the family lacks are skipped),
    ``reduction`` "mean" (scalar), "sum" (scalar) or "none" (``[n_graphs]`` in :attr:`names` order).
    """

    def __init__(self, model: nn.Module, partition: ModelPartition | str = "blocks",
                 graphs: Sequence[str] = DEFAULT_GRAPHS, reduction: str = "mean", k: int = 4, seed: int = 0):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction '{reduction}' unknown: use mean, sum or none")
        self.reduction = reduction
        self.kinds = tuple(graphs)
        # A plain list: the graphs hold the model's parameters, which must not become this module's.
        self._graphs: list[WeightGraph] = weight_graphs(hf_model_of(model), parts=self.kinds)
        if not self._graphs:
            raise ValueError(f"the model has no graphs of kinds {self.kinds}")
        self.names = [g.name for g in self._graphs]
        if isinstance(partition, str):
            partition = make_partition(model, partition, k, self.kinds, seed)
        self.set_partition(partition)

    @property
    def graphs(self) -> list[WeightGraph]:
        return list(self._graphs)

    def set_partition(self, partition: ModelPartition) -> None:
        """Replace the (fixed) clusters; rebuilds the cached one-hot buffers on the weights' device."""
        partition.check_graphs(self._graphs)
        self.partition = partition
        self.k = partition.k
        device = self._graphs[0].weight.device
        groups: dict[tuple[int, int], list[int]] = {}
        for i, g in enumerate(self._graphs):
            groups.setdefault(tuple(g.shape), []).append(i)
        self._groups = list(groups.values())
        for gi, idx in enumerate(self._groups):
            rows = torch.stack([onehot(partition[self.names[i]].row_labels, self.k) for i in idx])
            cols = torch.stack([onehot(partition[self.names[i]].col_labels, self.k) for i in idx])
            self.register_buffer(f"rows_{gi}", rows.to(device), persistent=False)
            self.register_buffer(f"cols_{gi}", cols.to(device), persistent=False)
        order = torch.tensor([i for idx in self._groups for i in idx])
        self._unsort = torch.argsort(order)

    def per_graph(self) -> torch.Tensor:
        """Differentiable ``C(W)`` of every graph, ``[n_graphs]`` float32 in :attr:`names` order."""
        out = []
        for gi, idx in enumerate(self._groups):
            rows, cols = getattr(self, f"rows_{gi}"), getattr(self, f"cols_{gi}")
            # One product per matrix: stacking the views first copies every weight (measured 1.8x slower).
            out += [clusterability_masks(self._graphs[i].weight, rows[j], cols[j]) for j, i in enumerate(idx)]
        return torch.stack(out)[self._unsort.to(out[0].device)]

    def forward(self) -> torch.Tensor:
        enmeshment = 1.0 - self.per_graph()
        if self.reduction == "mean":
            return enmeshment.mean()
        if self.reduction == "sum":
            return enmeshment.sum()
        return enmeshment

    @torch.no_grad()
    def clusterability(self) -> dict[str, float]:
        """``{graph name: C(W)}`` of the current weights (no graph is built)."""
        return dict(zip(self.names, self.per_graph().tolist()))

    @torch.no_grad()
    def chance(self) -> dict[str, float]:
        """``{graph name: chance level}`` of the fixed clusters (``1/k`` for equal blocks)."""
        vals = torch.cat([chance_from_masks(getattr(self, f"rows_{gi}"), getattr(self, f"cols_{gi}"))
                          for gi in range(len(self._groups))])[self._unsort.to(self.rows_0.device)]
        return dict(zip(self.names, vals.tolist()))


def regularised_parameters(loss: ClusterabilityLoss) -> list[nn.Parameter]:
    """The distinct HF parameters the loss reads (a fused QKV parameter appears once)."""
    seen: dict[int, nn.Parameter] = {}
    for g in loss.graphs:
        seen.setdefault(id(g.parameter), g.parameter)
    return list(seen.values())


def mean_of(values: dict[str, float] | Iterable[float]) -> float:
    vals = list(values.values()) if isinstance(values, dict) else list(values)
    return float(sum(vals) / len(vals)) if vals else float("nan")
