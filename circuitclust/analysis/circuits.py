"""Circuit discovery: the smallest set of units (or of cluster nodes) that keeps a fraction of a task metric.

Units are ranked by attribution (``|mean over prompts of gradient x (reference mean - clean activation)|``,
the first-order estimate of mean-ablating each unit alone). A circuit of size n keeps the top n units and
mean-ablates every other unit of every layer at once. Its faithfulness is

    f(n) = (m(circuit) - m(empty)) / (m(full) - m(empty))

with m the mean task metric over prompts, ``full`` = the intact model and ``empty`` = every unit
mean-ablated. The search evaluates a geometric grid of sizes (1, 2, 4, ..., N: the faithfulness curve), then
binary-searches between the largest grid size below the threshold and the first above it, assuming the
curve is monotone there. Every point is a real ablation, so the returned size is confirmed: f(size) >=
threshold. The same search runs at cluster granularity with (layer, part, cluster) nodes as units.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import CircuitclustError, PartitionMismatchError
from .interventions import Ablation, ablation_sweep
from .metrics import check_metric
from .prompts import TaskPrompts
from .scores import Scores
from .units import UnitLayout


def geometric_sizes(n: int) -> list[int]:
    """1, 2, 4, ... below ``n``, then ``n``."""
    out, s = [], 1
    while s < n:
        out.append(s)
        s *= 2
    return out + [n]


def search_smallest(n_total: int, evaluate: Callable[[list[int]], list[float]], threshold: float
                    ) -> tuple[int | None, list[tuple[int, float]]]:
    """Smallest size whose faithfulness reaches ``threshold``.

    ``evaluate(sizes)`` returns the faithfulness of each size (a batch, so a caller can share passes).
    Returns ``(size or None, curve)`` with ``curve`` the sorted ``(size, faithfulness)`` points evaluated.
    """
    grid = geometric_sizes(n_total)
    curve = dict(zip(grid, evaluate(grid)))
    hits = [s for s in grid if curve[s] >= threshold]
    if not hits:
        return None, sorted(curve.items())
    hi = hits[0]
    below = [s for s in grid if s < hi]
    lo = below[-1] if below else 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        curve[mid] = evaluate([mid])[0]
        if curve[mid] >= threshold:
            hi = mid
        else:
            lo = mid
    return hi, sorted(curve.items())


@dataclass
class Faithfulness:
    """Evaluates circuits of one task: ``__call__(keep [n_sets, n_dims] bool) -> [n_sets]`` faithfulness."""

    model: object
    prompts: TaskPrompts
    layout: UnitLayout
    metric: str
    reference: dict
    batch_size: int = 16
    max_rows: int = 64

    def __post_init__(self) -> None:
        self.metric = check_metric(self.metric, self.prompts)
        empty = torch.ones(1, self.layout.n_dims, dtype=torch.bool)
        r = ablation_sweep(self.model, self.prompts, self.layout, empty, Ablation.MEAN, self.metric, self.reference,
                           self.batch_size, max_rows=self.max_rows)
        self.full = float(r["clean"].mean())
        self.empty = float(r["ablated"].mean())
        self.n_evals = 1

    @property
    def defined(self) -> bool:
        """False when ablating everything barely moves the metric (faithfulness would divide by ~0)."""
        return abs(self.full - self.empty) > 1e-6 * max(1.0, abs(self.full))

    def __call__(self, keep: torch.Tensor) -> list[float]:
        r = ablation_sweep(self.model, self.prompts, self.layout, ~keep, Ablation.MEAN, self.metric, self.reference,
                           self.batch_size, clean=False, max_rows=self.max_rows)
        self.n_evals += keep.shape[0]
        return ((r["ablated"].mean(1) - self.empty) / (self.full - self.empty)).tolist()


def _top_mask(order: torch.Tensor, sizes: list[int], n: int) -> torch.Tensor:
    """``[len(sizes), n]`` bool: the first ``size`` entries of ``order`` for each size."""
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank[None, :] < torch.tensor(sizes)[:, None]


def find_circuit(faith: Faithfulness, scores: Scores, threshold: float = 0.8) -> dict:
    """Unit-level circuit of one task, units ranked by unit-level ``scores`` (any sign; by absolute value).
    Returns a JSON-ready dict: ``faithfulness_curve`` [[n_units, frac]], ``circuit_size``
    (None if never reached), ``fraction``, ``n_units_total``, ``share_largest_cluster``,
    ``clusters_touched``, ``units`` (global unit ids of the circuit, by rank)."""
    layout = faith.layout
    n = layout.n_units
    order = scores.order()
    if not faith.defined:
        return {"faithfulness_curve": [], "circuit_size": None, "fraction": None, "n_units_total": n,
                "share_largest_cluster": None, "clusters_touched": None, "units": [],
                "note": "ablating every unit does not change the metric; faithfulness is undefined"}
    evaluate = lambda sizes: faith(layout.units_to_dims(_top_mask(order, sizes, n).T).T)  # noqa: E731
    size, curve = search_smallest(n, evaluate, threshold)
    out = {"faithfulness_curve": [[s, f] for s, f in curve], "circuit_size": size,
           "fraction": None if size is None else size / n, "n_units_total": n,
           "share_largest_cluster": None, "clusters_touched": None, "units": []}
    if size is not None:
        units = order[:size]
        node = layout.node_of_unit().cpu()[units]
        counts = torch.bincount(node, minlength=len(layout.nodes))
        out.update(share_largest_cluster=float(counts.max()) / size, clusters_touched=int((counts > 0).sum()),
                   units=units.tolist(), cluster_counts={i: int(c) for i, c in enumerate(counts.tolist()) if c})
    return out


def find_cluster_circuit(faith: Faithfulness, scores: Scores, threshold: float = 0.8) -> dict:
    """Cluster-level circuit: the smallest set of (layer, part, cluster) nodes, ranked by ``scores`` (node
    level, or unit level summed per node), keeping ``threshold`` of the metric. Returns ``cluster_faithfulness_curve``,
    ``cluster_circuit_size``, ``cluster_circuit_fraction``, ``cluster_circuit`` (node dicts by rank)."""
    layout = faith.layout
    s = len(layout.nodes)
    order = scores.to_nodes().order()
    if not faith.defined:
        return {"cluster_faithfulness_curve": [], "cluster_circuit_size": None, "cluster_circuit_fraction": None,
                "cluster_circuit": []}
    evaluate = lambda sizes: faith(layout.nodes_to_dims(_top_mask(order, sizes, s).T).T)  # noqa: E731
    size, curve = search_smallest(s, evaluate, threshold)
    return {"cluster_faithfulness_curve": [[a, f] for a, f in curve], "cluster_circuit_size": size,
            "cluster_circuit_fraction": None if size is None else size / s,
            "cluster_circuit": [] if size is None else [layout.nodes[i].as_dict() for i in order[:size].tolist()]}


def task_circuits(model, prompts: TaskPrompts, layout: UnitLayout, scores: Scores,
                  reference: dict, metric: str = "logit_diff", threshold: float = 0.8,
                  batch_size: int = 16, max_rows: int = 64) -> dict:
    """Unit-level and cluster-level circuits of one task, ranked by unit-level ``scores`` (node scores =
    sums of unit scores per node).
    Returns the merged dicts of :func:`find_circuit` and :func:`find_cluster_circuit` plus ``full_metric``,
    ``empty_metric`` and ``n_ablation_evals``."""
    if not 0 < threshold <= 1:
        raise CircuitclustError(f"threshold must be in (0, 1], got {threshold}")
    if scores.layout is not layout or scores.level != "unit":
        raise PartitionMismatchError("task_circuits needs unit-level scores of the same layout")
    faith = Faithfulness(model, prompts, layout, metric, reference, batch_size, max_rows)
    out = find_circuit(faith, scores, threshold)
    out.update(find_cluster_circuit(faith, scores, threshold))
    out.update(full_metric=faith.full, empty_metric=faith.empty, n_ablation_evals=faith.n_evals)
    return out
