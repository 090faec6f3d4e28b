"""The clusterability regulariser of a model: mean over chosen weight graphs of ``1 - C(W)``.

``ClusterabilityLoss(model, partition)`` reads ``WeightGraph.weight`` (a live view of the HF parameter), so
``task_loss + lam * loss`` back-propagates into the model. Cluster memberships are cached as one-hot buffers
on the model's device, and all graphs go through one fused autograd node (``core.loss.clusterability_fused``).

Partitions are fixed during training: equal contiguous blocks (the authors' choice), or spectral
co-clustering of the current weights (once at the start, or after warm-up steps; the trainer decides when).
Tied MLP neurons share one label across ``mlp_in``, ``mlp_gate`` and ``mlp_out`` (``ModelPartition``).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ...core.loss import chance_from_masks, clusterability_fused, onehot, shrink_off_cluster_
from ...core.partition import ModelPartition
from ...errors import OptionError
from ...models.graphs import WeightGraph, hf_model_of, weight_graphs
from ..clustering import partition_model

DEFAULT_GRAPHS = ("mlp_in", "mlp_out")
PARTITION_MODES = ("blocks", "spectral")
REDUCTIONS = ("mean", "sum", "none", "entries")


def make_partition(model: nn.Module, mode: str, k: int, graphs: Sequence[str] = DEFAULT_GRAPHS,
                   seed: int = 0, balance: float = 0.0) -> ModelPartition:
    """A fixed partition of ``model``'s graphs of kinds ``graphs``.

    ``mode`` "blocks": equal contiguous blocks; "spectral": co-clustering of the current weights (both via
    :func:`circuitclust.analysis.clustering.partition_model`), ``balance`` as there.
    """
    if mode not in PARTITION_MODES:
        raise OptionError(f"partition mode '{mode}' unknown: use one of {', '.join(PARTITION_MODES)}")
    if mode == "spectral":
        return partition_model(model, k=k, parts=tuple(graphs), method="spectral", seed=seed, balance=balance)
    return partition_model(model, k=k, parts=tuple(graphs), method="blocks", seed=seed)


class ClusterabilityLoss(nn.Module):
    """``forward() -> 1 - C(W)`` reduced over the regularised graphs of ``model``.

    Inputs: ``model`` (TransformerBridge or HF causal LM), ``partition`` (a :class:`ModelPartition`
    covering the graphs, or a mode name for :func:`make_partition` with ``k``/``seed``), ``graphs`` (matrix
    kinds, e.g. ``("mlp_in", "mlp_gate", "mlp_out", "attn_o")``; kinds the family lacks are skipped),
    ``reduction`` "mean" (scalar), "sum" (scalar), "none" (``[n_graphs]`` in :attr:`names` order) or
    "entries": ``sum_g n_in n_out (1 - C_g)`` (scalar), the off-cluster squared mass of every matrix in units
    of its mean squared entry, i.e. the effective number of off-cluster weights.

    Why "entries": the gradient of ``1 - C`` w.r.t. one weight is ``-2 w (M - C) / ||W||^2``, and
    ``||W||^2 = N sigma^2`` for a matrix of ``N`` entries of typical size ``sigma``. Under "mean" each
    weight is pushed by ``~ 1.5 lam / (G N sigma)`` (``G`` matrices), so the same ``lam`` is ~150x weaker
    on GPT-2's 768x3072 matrices than on a 64x256 one and is drowned by the task gradient. "entries" makes
    it ``~ 1.5 lam / sigma`` per off-cluster weight whatever the model: an L2 penalty on off-cluster weights
    measured relative to each matrix's own scale (same objective family; ``lam`` becomes a per-weight
    coefficient, like weight decay, so it takes small values, e.g. 1e-5 to 1e-4).
    """

    def __init__(self, model: nn.Module, partition: ModelPartition, graphs: Sequence[str] = DEFAULT_GRAPHS,
                 reduction: str = "mean"):
        super().__init__()
        if reduction not in REDUCTIONS:
            raise OptionError(f"reduction '{reduction}' unknown: use one of {', '.join(REDUCTIONS)}")
        self.reduction = reduction
        self.kinds = tuple(graphs)
        # A plain list: the graphs hold the model's parameters, which must not become this module's.
        self._graphs: list[WeightGraph] = weight_graphs(hf_model_of(model), parts=self.kinds)
        if not self._graphs:
            raise OptionError(f"the model has no graphs of kinds {self.kinds}")
        self.names = [g.name for g in self._graphs]
        self.register_buffer("entries", torch.tensor([float(g.shape[0] * g.shape[1]) for g in self._graphs],
                                                     device=self._graphs[0].weight.device), persistent=False)
        self.set_partition(partition)

    @property
    def graphs(self) -> list[WeightGraph]:
        return list(self._graphs)

    def set_partition(self, partition: ModelPartition) -> None:
        """Replace the (fixed) clusters; builds the cached one-hot buffers on the weights' device once, so a
        training step does no per-graph set-up work."""
        partition.check_graphs(self._graphs)
        self.partition = partition
        self.k = partition.k
        device = self._graphs[0].weight.device
        for i, g in enumerate(self._graphs):
            p = partition[g.name]
            self.register_buffer(f"rows_{i}", onehot(p.row_labels, self.k).to(device), persistent=False)
            self.register_buffer(f"cols_{i}", onehot(p.col_labels, self.k).to(device), persistent=False)

    def _onehots(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.names)
        return [self._buffers[f"rows_{i}"] for i in range(n)], [self._buffers[f"cols_{i}"] for i in range(n)]

    def per_graph(self) -> torch.Tensor:
        """Differentiable ``C(W)`` of every graph, ``[n_graphs]`` float32 in :attr:`names` order."""
        rows, cols = self._onehots()
        # One autograd node for all graphs; it reads a transposed view (nn.Linear) in the parameter's stored
        # layout, so no transpose is copied.
        return clusterability_fused([g.weight for g in self._graphs], rows, cols)

    def forward(self) -> torch.Tensor:
        return self.reduce(self.per_graph())

    def reduce(self, per_graph: torch.Tensor) -> torch.Tensor:
        """The loss from :meth:`per_graph`'s ``C`` values (``[n_graphs]``), by :attr:`reduction`; lets a caller
        that also wants ``C`` itself (progress display) compute the graphs once."""
        enmeshment = 1.0 - per_graph
        if self.reduction == "mean":
            return enmeshment.mean()
        if self.reduction == "sum":
            return enmeshment.sum()
        if self.reduction == "entries":
            return (enmeshment * self.entries).sum()
        return enmeshment

    @torch.no_grad()
    def shrink_off_cluster_(self, rate: float) -> None:
        """Multiply every off-cluster weight of the regularised graphs by ``1 - rate``, in the parameters
        themselves (see :func:`circuitclust.core.loss.shrink_off_cluster_`)."""
        weights = [g.weight for g in self._graphs]
        for g, w in zip(self._graphs, weights):
            if w.untyped_storage().data_ptr() != g.parameter.untyped_storage().data_ptr():
                raise OptionError(f"{g.name} is stored fused in a layout whose slices are copies: the decay "
                                  "regulariser cannot shrink it in place; use --regulariser loss")
        rows, cols = self._onehots()
        shrink_off_cluster_(weights, rows, cols, rate)

    @torch.no_grad()
    def clusterability(self) -> dict[str, float]:
        """``{graph name: C(W)}`` of the current weights (no graph is built)."""
        return dict(zip(self.names, self.per_graph().tolist()))

    @torch.no_grad()
    def chance(self) -> dict[str, float]:
        """``{graph name: chance level}`` of the fixed clusters (``1/k`` for equal blocks)."""
        rows, cols = self._onehots()
        return {n: float(chance_from_masks(r, c)) for n, r, c in zip(self.names, rows, cols)}


def mean_of(values: dict[str, float] | Iterable[float]) -> float:
    vals = list(values.values()) if isinstance(values, dict) else list(values)
    return float(sum(vals) / len(vals)) if vals else float("nan")
