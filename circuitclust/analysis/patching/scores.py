"""One score type for every ranking of units or clusters (attribution estimates, exact ablation effects,
random baselines): a plain tensor tied to the :class:`~.units.UnitLayout` it indexes, as auto-circuit's
``PruneScores`` are for edges. Circuit search takes these and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import PartitionMismatchError, check_choice
from .units import UnitLayout

LEVELS = ("unit", "node")


@dataclass(frozen=True)
class Scores:
    """``values[n]``: one score per unit (``level="unit"``, ``n = layout.n_units``) or per cluster node
    (``level="node"``, ``n = len(layout.nodes)``) of ``layout``; larger ``|value|`` = more important.
    ``source`` says what produced them (``"attribution"``, ``"exact"``, ...)."""

    values: torch.Tensor
    layout: UnitLayout
    level: str = "unit"
    source: str = "attribution"

    def __post_init__(self) -> None:
        check_choice("level", self.level, LEVELS)
        n = self.layout.n_units if self.level == "unit" else len(self.layout.nodes)
        if tuple(self.values.shape) != (n,):
            raise PartitionMismatchError(f"{self.source} scores have shape {tuple(self.values.shape)}, the layout "
                                         f"has {n} {self.level}s")
        object.__setattr__(self, "values", self.values.detach().float().cpu())

    def __len__(self) -> int:
        return self.values.shape[0]

    def order(self) -> torch.Tensor:
        """Indices ``[n]`` from the most to the least important (``|value|`` descending, ties by index)."""
        return self.values.abs().argsort(descending=True, stable=True)

    def to_nodes(self) -> "Scores":
        """Node-level scores: each cluster node's unit scores summed (node scores stay as they are)."""
        if self.level == "node":
            return self
        node_of_unit = self.layout.node_of_unit().cpu()
        values = torch.zeros(len(self.layout.nodes)).index_add_(0, node_of_unit, self.values)
        return Scores(values, self.layout, "node", self.source)


__all__ = ["Scores", "LEVELS"]
