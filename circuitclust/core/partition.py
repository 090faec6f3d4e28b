"""Cluster assignments for weight matrices: one matrix (:class:`Partition`) or a whole model
(:class:`ModelPartition`). Pure tensor code: no model knowledge beyond graph names, shapes and unit spaces.

Cluster ``i`` of a matrix is the sub-graph ``rows with label i`` x ``columns with label i``. In a model
partition, graphs that share a unit space on their tied side (for example an MLP's in, gate and out
matrices share the hidden neurons) carry the same labels on that side, so cluster ``i`` of a layer is a
real sub-network. Which side of a graph is tied is the graph's own ``tied_side``; the other side (the
residual stream) is labelled per graph, otherwise every layer would collapse into one graph. Space names
are opaque strings here.

Persistence: :meth:`ModelPartition.to_state` / :meth:`~ModelPartition.from_state` give the JSON part and the label
tensors that ``circuitclust.runfiles`` writes as ``partition.json`` + ``partition.safetensors`` (k, graphs with
shapes and spaces, provenance). :meth:`ModelPartition.check_graphs` rejects a partition whose graphs do not match a model's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

import torch

from ..errors import OptionError, PartitionMismatchError

FORMAT = "circuitclust.partition/1"


class GraphLike(Protocol):
    """What the partition needs to know about a graph (``circuitclust.models.WeightGraph`` fits):
    ``tied_side`` is ``"in"`` or ``"out"``, the side whose unit space other graphs share."""

    name: str
    shape: tuple[int, int]
    in_space: str
    out_space: str
    tied_side: str


def tied_space(g: GraphLike) -> str:
    """The unit space on ``g``'s tied side."""
    return g.in_space if g.tied_side == "in" else g.out_space


def block_labels(n: int, k: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Equal contiguous blocks: ``[n]`` int64 labels ``0..k-1`` (the first ``n % k`` blocks one larger)."""
    if not 1 <= k <= n:
        raise OptionError(f"k={k} must be between 1 and the number of units ({n})")
    return torch.div(torch.arange(n, device=device) * k, n, rounding_mode="floor")


@dataclass
class Partition:
    """Co-cluster labels of one ``[n_in, n_out]`` matrix.

    ``row_labels`` ``[n_in]`` and ``col_labels`` ``[n_out]`` are int64 in ``[0, k)``; ``provenance`` records
    how it was made (method, seed, graph name, model id...).
    """

    row_labels: torch.Tensor
    col_labels: torch.Tensor
    k: int
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for side, lab in (("row", self.row_labels), ("col", self.col_labels)):
            if lab.dtype != torch.int64 or lab.dim() != 1:
                raise OptionError(f"{side}_labels must be a 1-D int64 tensor, got {lab.dtype} {tuple(lab.shape)}")
            if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= self.k):
                raise OptionError(f"{side}_labels must lie in [0, {self.k})")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row_labels.numel(), self.col_labels.numel())

    @classmethod
    def blocks(cls, n_in: int, n_out: int, k: int, **provenance: Any) -> "Partition":
        """Equal contiguous blocks on both sides (the authors' fixed fine-tuning partition)."""
        return cls(block_labels(n_in, k), block_labels(n_out, k), k, {"method": "blocks", **provenance})

    def masks(self, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """One-hot memberships ``(R [n_in, k], C [n_out, k])``; cluster mass of ``A`` is ``diag(R^T A C)``."""
        eye = torch.eye(self.k, dtype=dtype, device=self.row_labels.device)
        return eye[self.row_labels], eye[self.col_labels]

    def sizes(self) -> tuple[list[int], list[int]]:
        """Rows and columns per cluster, as two lists of length ``k``."""
        return (torch.bincount(self.row_labels, minlength=self.k).tolist(),
                torch.bincount(self.col_labels, minlength=self.k).tolist())

    def to(self, device: torch.device | str) -> "Partition":
        return Partition(self.row_labels.to(device), self.col_labels.to(device), self.k, dict(self.provenance))


@dataclass
class ModelPartition:
    """Partitions of many graphs of one model, consistent over shared (tied) unit spaces.

    ``graphs`` maps graph name -> :class:`Partition`; ``spaces`` maps graph name -> ``(in_space,
    out_space)``; ``space_labels`` holds the labels of every tied space (``mlp.{l}``, ``attn.{l}``...).
    """

    graphs: dict[str, Partition]
    spaces: dict[str, tuple[str, str]]
    k: int
    space_labels: dict[str, torch.Tensor] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Partition:
        try:
            return self.graphs[name]
        except KeyError:
            raise PartitionMismatchError(
                f"the partition has no graph '{name}' (it has {len(self.graphs)} graphs, e.g. "
                f"{', '.join(list(self.graphs)[:3])}): re-run `circuitclust cluster` with the parts you need"
            ) from None

    def __contains__(self, name: str) -> bool:
        return name in self.graphs

    def __iter__(self):
        return iter(self.graphs)

    def __len__(self) -> int:
        return len(self.graphs)

    @classmethod
    def from_space_labels(cls, graphs: Iterable[GraphLike], k: int, space_labels: dict[str, torch.Tensor],
                          resid_labels: dict[str, torch.Tensor] | None = None,
                          **provenance: Any) -> "ModelPartition":
        """Assemble graph partitions from tied-space labels plus per-graph labels of untied (``resid``)
        sides (``resid_labels[name]``; equal blocks where missing)."""
        resid_labels = resid_labels or {}
        parts, spaces = {}, {}
        for g in graphs:
            sides = []
            for side, space, n in (("in", g.in_space, g.shape[0]), ("out", g.out_space, g.shape[1])):
                if side == g.tied_side:
                    lab = space_labels[space]
                else:
                    lab = resid_labels.get(g.name)
                    lab = block_labels(n, k) if lab is None else lab
                if lab.numel() != n:
                    raise PartitionMismatchError(f"{g.name}: {space} labels have {lab.numel()} units, the graph has {n}")
                sides.append(lab.long())
            parts[g.name] = Partition(sides[0], sides[1], k, {"graph": g.name, **provenance})
            spaces[g.name] = (g.in_space, g.out_space)
        return cls(parts, spaces, k, {s: v.long() for s, v in space_labels.items()}, dict(provenance))

    @classmethod
    def blocks(cls, graphs: Iterable[GraphLike], k: int, **provenance: Any) -> "ModelPartition":
        """Equal contiguous blocks on every side, tied spaces consistent (the authors' default)."""
        graphs = list(graphs)
        sizes = {tied_space(g): g.shape[0] if g.tied_side == "in" else g.shape[1] for g in graphs}
        labels = {s: block_labels(n, k) for s, n in sizes.items()}
        return cls.from_space_labels(graphs, k, labels, method="blocks", **provenance)

    def check_graphs(self, graphs: Iterable[GraphLike]) -> None:
        """Raise :class:`PartitionMismatchError` unless every given graph is in the partition with the same
        shape and unit spaces."""
        for g in graphs:
            p = self[g.name]
            if p.shape != tuple(g.shape) or self.spaces.get(g.name) != (g.in_space, g.out_space):
                raise PartitionMismatchError(
                    f"partition for {g.name} is {p.shape} over {self.spaces.get(g.name)}, the model's graph is "
                    f"{tuple(g.shape)} over {(g.in_space, g.out_space)}: this partition was made for another "
                    f"model ({self.provenance.get('model', 'unknown')}); re-run `circuitclust cluster`"
                )

    def to(self, device: torch.device | str) -> "ModelPartition":
        return ModelPartition({n: p.to(device) for n, p in self.graphs.items()}, dict(self.spaces), self.k,
                              {s: v.to(device) for s, v in self.space_labels.items()}, dict(self.provenance))

    def to_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """The partition as ``(meta, tensors)``: a JSON-ready dict (format, k, provenance, each graph's shape,
        spaces and provenance) and CPU label tensors with no shared memory (tied graphs share one label
        tensor in memory; safetensors refuses shared storage). ``circuitclust.runfiles`` writes them."""
        tensors = {}
        for name, p in self.graphs.items():
            tensors[f"graph/{name}/row"] = p.row_labels.detach().cpu().clone()
            tensors[f"graph/{name}/col"] = p.col_labels.detach().cpu().clone()
        for space, lab in self.space_labels.items():
            tensors[f"space/{space}"] = lab.detach().cpu().clone()
        meta = {
            "format": FORMAT, "k": self.k, "provenance": self.provenance,
            "graphs": {n: {"shape": list(p.shape), "spaces": list(self.spaces[n]), "provenance": p.provenance}
                       for n, p in self.graphs.items()},
        }
        return meta, tensors

    @classmethod
    def from_state(cls, meta: Any, tensors: dict[str, torch.Tensor], source: str = "partition") -> "ModelPartition":
        """Rebuild a partition from :meth:`to_state`'s ``(meta, tensors)``; raises
        :class:`PartitionMismatchError` naming ``source`` when they are not a whole circuitclust partition."""
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise PartitionMismatchError(f"{source} is not a circuitclust partition file: pass the partition.json "
                                         "that `circuitclust cluster` or `finetune` wrote")
        try:
            k = int(meta["k"])
            graphs, spaces = {}, {}
            for name, info in meta["graphs"].items():
                graphs[name] = Partition(tensors[f"graph/{name}/row"], tensors[f"graph/{name}/col"], k,
                                         info.get("provenance", {}))
                spaces[name] = tuple(info["spaces"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise PartitionMismatchError(f"{source} is damaged ({type(e).__name__}: {e}): "
                                         "re-run the command that wrote it") from None
        space_labels = {key[len("space/"):]: t for key, t in tensors.items() if key.startswith("space/")}
        return cls(graphs, spaces, k, space_labels, meta.get("provenance", {}))
