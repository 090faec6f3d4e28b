"""Which activations are "units" and which cluster each belongs to, for patching a model by cluster.

Units live at two hook points per block ``l`` that the model adapter names (:func:`hook_name`; the
adapter tests check them on every supported family):

- the MLP units ``[batch, pos, d_mlp]``: hidden neurons after the activation (for gated MLPs, after the gate
  product): exactly the input of ``W_out``, so unit ``i`` is row ``i`` of the ``mlp_out`` graph and of the
  MLP unit space.
- the attention units ``[batch, pos, n_heads, d_head]``: per-head attention outputs before ``W_O``.
  Flattened head-major to ``n_heads * d_head`` "dims", dim ``j`` is row ``j`` of the ``attn_o`` graph and
  of the attention unit space.

A :class:`UnitLayout` lists one :class:`Slot` per (layer, part) with the partition's cluster label of every
dim, and one :class:`Node` per (layer, part, cluster). Units for circuit search are MLP neurons and attention
heads, or attention head dims when the partition's labels split a head (``attn_units="auto"``).

Global indexing: dims of all slots are concatenated in slot order (``Slot.offset``), units likewise
(``Slot.unit_offset``); node ids follow slot order then cluster id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch

from ...core.partition import ModelPartition
from ...errors import OptionError, PartitionMismatchError
from ...models import hf_model_of, model_shapes, unit_hook, unit_space, weight_graphs
from ..clustering import check_architecture, partition_model

PARTS = ("mlp", "attn")


def hook_name(layer: int, part: str) -> str:
    """The hook point that carries the units of ``part`` (``"mlp"`` or ``"attn"``) in block ``layer`` (the
    model adapter's name, :func:`circuitclust.models.unit_hook`)."""
    return unit_hook(layer, part)


@dataclass
class Slot:
    """The units of one part of one block.

    ``labels`` ``[n_dims]`` int64 cluster per dim; ``unit_of_dim`` ``[n_dims]`` int64 local unit id per dim
    (identity for neurons and head dims, ``dim // d_head`` for whole heads).
    """

    layer: int
    part: str
    hook: str
    labels: torch.Tensor
    unit_of_dim: torch.Tensor
    n_units: int
    offset: int = 0
    unit_offset: int = 0
    node_offset: int = 0
    unit_kind: str = "neuron"

    @property
    def n_dims(self) -> int:
        return self.labels.numel()


@dataclass(frozen=True)
class Node:
    """One cluster of one part of one block: ``size`` dims, ``n_units`` units."""

    layer: int
    part: str
    cluster: int
    size: int
    n_units: int

    def as_dict(self) -> dict:
        return {"layer": self.layer, "part": self.part, "cluster": self.cluster, "size": self.size,
                "n_units": self.n_units}


@dataclass
class UnitLayout:
    """All unit slots of a model under one partition (see the module docstring for indexing)."""

    slots: list[Slot]
    k: int
    nodes: list[Node] = field(default_factory=list)

    @property
    def n_dims(self) -> int:
        return sum(s.n_dims for s in self.slots)

    @property
    def n_units(self) -> int:
        return sum(s.n_units for s in self.slots)

    @property
    def hooks(self) -> list[str]:
        return [s.hook for s in self.slots]

    def node_of_unit(self) -> torch.Tensor:
        """``[n_units]`` int64 node id of every unit (a whole head takes its dims' cluster)."""
        out = []
        for s in self.slots:
            lab = torch.zeros(s.n_units, dtype=torch.int64, device=s.labels.device)
            lab[s.unit_of_dim] = s.labels
            out.append(lab + s.node_offset)
        return torch.cat(out)

    def node_of_dim(self) -> torch.Tensor:
        """``[n_dims]`` int64 node id of every dim."""
        return torch.cat([s.labels + s.node_offset for s in self.slots])

    def unit_of_dim(self) -> torch.Tensor:
        """``[n_dims]`` int64 global unit id of every dim."""
        return torch.cat([s.unit_of_dim + s.unit_offset for s in self.slots])

    def split_dims(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a ``[..., n_dims]`` tensor into ``{hook: [..., slot.n_dims]}``."""
        parts = torch.split(x, [s.n_dims for s in self.slots], dim=-1)
        return {s.hook: p for s, p in zip(self.slots, parts)}

    def units_to_dims(self, unit_mask: torch.Tensor) -> torch.Tensor:
        """``[n_units]`` -> ``[n_dims]`` (each dim takes its unit's value)."""
        return unit_mask[self.unit_of_dim().to(unit_mask.device)]

    def nodes_to_dims(self, node_mask: torch.Tensor) -> torch.Tensor:
        """``[n_nodes]`` -> ``[n_dims]`` (each dim takes its node's value)."""
        return node_mask[self.node_of_dim().to(node_mask.device)]

    def dims_to_units(self, x: torch.Tensor) -> torch.Tensor:
        """Sum a ``[..., n_dims]`` tensor into ``[..., n_units]``."""
        out = x.new_zeros(*x.shape[:-1], self.n_units)
        return out.index_add_(-1, self.unit_of_dim().to(x.device), x)

    def dims_to_nodes(self, x: torch.Tensor) -> torch.Tensor:
        """Sum a ``[..., n_dims]`` tensor into ``[..., n_nodes]``."""
        out = x.new_zeros(*x.shape[:-1], len(self.nodes))
        return out.index_add_(-1, self.node_of_dim().to(x.device), x)


def _parts_in(partition: ModelPartition, n_layers: int) -> tuple[str, ...]:
    return tuple(p for p in PARTS if any(unit_space(p, l) in partition.space_labels for l in range(n_layers)))


def unit_layout(model, partition: ModelPartition, parts: Iterable[str] | None = None,
                layers: Iterable[int] | None = None, attn_units: str = "auto") -> UnitLayout:
    """Map ``partition``'s ``mlp.{l}`` / ``attn.{l}`` labels onto the model's hook points.

    ``model``: a TransformerBridge; ``parts``: ``("mlp", "attn")`` or a subset (default: the parts the
    partition labels); ``layers``: default all. ``attn_units``: ``"head"`` (a unit is a head; its dims must
    share one cluster), ``"dim"`` (a unit is a head dim) or ``"auto"`` (heads unless the labels split a
    head). Raises :class:`PartitionMismatchError` if the partition was made for another model or lacks a
    requested part.
    """
    check_architecture(model, partition)
    s = model_shapes(model)
    parts = tuple(parts) if parts is not None else _parts_in(partition, s.n_layers)
    if not parts:
        raise PartitionMismatchError("the partition labels neither mlp.{l} nor attn.{l} spaces: "
                                     "re-run `circuitclust cluster` with --parts mlp,attn")
    for p in parts:
        if p not in PARTS:
            raise OptionError(f"unknown part '{p}': use 'mlp' and/or 'attn'")
    layer_ids = list(range(s.n_layers)) if layers is None else list(layers)
    graphs = [g for g in weight_graphs(model, parts=parts, layers=layer_ids) if g.name in partition]
    partition.check_graphs(graphs)
    widths = {"mlp": s.d_mlp, "attn": s.n_heads * s.d_head}
    slots: list[Slot] = []
    for layer in layer_ids:
        for part in parts:
            space = unit_space(part, layer)
            if space not in partition.space_labels:
                raise PartitionMismatchError(
                    f"the partition has no labels for {space} (made with other parts or another model): "
                    f"re-run `circuitclust cluster` with --parts {','.join(parts)}")
            labels = partition.space_labels[space].long()
            if labels.numel() != widths[part]:
                raise PartitionMismatchError(
                    f"{space} has {labels.numel()} labels but the model has {widths[part]} units there: this "
                    f"partition was made for another model ({partition.provenance.get('model', 'unknown')})")
            dims = torch.arange(labels.numel(), device=labels.device)
            unit_of_dim, n_units, kind = dims, labels.numel(), "neuron" if part == "mlp" else "head_dim"
            if part == "attn" and attn_units != "dim":
                per_head = labels.view(s.n_heads, s.d_head)
                whole = bool((per_head == per_head[:, :1]).all())
                if attn_units == "head" and not whole:
                    raise PartitionMismatchError(f"{space}: the partition splits heads; use attn_units='dim'")
                if whole:
                    unit_of_dim, n_units, kind = dims // s.d_head, s.n_heads, "head"
            slots.append(Slot(layer, part, hook_name(layer, part), labels, unit_of_dim, n_units, unit_kind=kind))
    nodes: list[Node] = []
    off = uoff = 0
    for sl in slots:
        sl.offset, sl.unit_offset, sl.node_offset = off, uoff, len(nodes)
        off += sl.n_dims
        uoff += sl.n_units
        dim_sizes = torch.bincount(sl.labels, minlength=partition.k).tolist()
        unit_lab = torch.zeros(sl.n_units, dtype=torch.int64, device=sl.labels.device)
        unit_lab[sl.unit_of_dim] = sl.labels
        unit_sizes = torch.bincount(unit_lab, minlength=partition.k).tolist()
        nodes += [Node(sl.layer, sl.part, c, dim_sizes[c], unit_sizes[c]) for c in range(partition.k)]
    return UnitLayout(slots, partition.k, nodes)


def default_partition(model, k: int = 4, parts: tuple[str, ...] = ("mlp", "attn"), seed: int = 0) -> ModelPartition:
    """Co-cluster the model with :func:`circuitclust.analysis.clustering.partition_model`."""
    return partition_model(model, k=k, parts=parts, seed=seed)


def complete_partition(model, partition: ModelPartition, parts: Iterable[str] = PARTS, seed: int = 0
                       ) -> tuple[ModelPartition, list[str]]:
    """``partition`` with labels for every part in ``parts``: a part it does not label at all (e.g. attention
    in a partition of the MLPs only, what MLP-only fine-tuning writes) is co-clustered here with the
    partition's k and ``seed`` and merged in. Returns ``(partition, parts added)``; the same object when
    nothing was missing."""
    parts = tuple(parts)
    for p in parts:
        if p not in PARTS:
            raise OptionError(f"unknown part '{p}': use 'mlp' and/or 'attn'")
    n_layers = model_shapes(hf_model_of(model)).n_layers
    missing = [p for p in parts if p not in _parts_in(partition, n_layers)]
    if not missing:
        return partition, []
    check_architecture(model, partition)
    extra = partition_model(model, k=partition.k, parts=tuple(missing), seed=seed)
    prov = {**partition.provenance,
            "completed_parts": {p: f"co-clustered for patching (spectral, k={partition.k}, seed={seed})" for p in missing}}
    merged = ModelPartition({**partition.graphs, **extra.graphs}, {**partition.spaces, **extra.spaces}, partition.k,
                            {**partition.space_labels, **extra.space_labels}, prov)
    return merged, missing
