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

from ..errors import CircuitclustError
from .interventions import ablation_sweep
from .metrics import check_metric
from .prompts import TaskPrompts
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
        r = ablation_sweep(self.model, self.prompts, self.layout, empty, "mean", self.metric, self.reference,
                           self.batch_size, max_rows=self.max_rows)
        self.full = float(r["clean"].mean())
        self.empty = float(r["ablated"].mean())
        self.n_evals = 1

    @property
    def defined(self) -> bool:
        """False when ablating everything barely moves the metric (faithfulness would divide by ~0)."""
        return abs(self.full - self.empty) > 1e-6 * max(1.0, abs(self.full))

    def __call__(self, keep: torch.Tensor) -> list[float]:
        r = ablation_sweep(self.model, self.prompts, self.layout, ~keep, "mean", self.metric, self.reference,
                           self.batch_size, clean=False, max_rows=self.max_rows)
        self.n_evals += keep.shape[0]
        return ((r["ablated"].mean(1) - self.empty) / (self.full - self.empty)).tolist()


def _top_mask(order: torch.Tensor, sizes: list[int], n: int) -> torch.Tensor:
    """``[len(sizes), n]`` bool: the first ``size`` entries of ``order`` for each size."""
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank[None, :] < torch.tensor(sizes)[:, None]


def find_circuit(faith: Faithfulness, unit_scores: torch.Tensor, threshold: float = 0.8) -> dict:
    """Unit-level circuit of one task. ``unit_scores`` ``[n_units]`` attribution (any sign; ranked by
    absolute value). Returns a JSON-ready dict: ``faithfulness_curve`` [[n_units, frac]], ``circuit_size``
    (None if never reached), ``fraction``, ``n_units_total``, ``share_largest_cluster``,
    ``clusters_touched``, ``units`` (global unit ids of the circuit, by rank)."""
    layout = faith.layout
    n = layout.n_units
    order = unit_scores.abs().argsort(descending=True, stable=True).cpu()
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


def find_cluster_circuit(faith: Faithfulness, node_scores: torch.Tensor, threshold: float = 0.8) -> dict:
    """Cluster-level circuit: the smallest set of (layer, part, cluster) nodes, ranked by ``|node_scores|``
    ``[n_nodes]``, keeping ``threshold`` of the metric. Returns ``cluster_faithfulness_curve``,
    ``cluster_circuit_size``, ``cluster_circuit_fraction``, ``cluster_circuit`` (node dicts by rank)."""
    layout = faith.layout
    s = len(layout.nodes)
    order = node_scores.abs().argsort(descending=True, stable=True).cpu()
    if not faith.defined:
        return {"cluster_faithfulness_curve": [], "cluster_circuit_size": None, "cluster_circuit_fraction": None,
                "cluster_circuit": []}
    evaluate = lambda sizes: faith(layout.nodes_to_dims(_top_mask(order, sizes, s).T).T)  # noqa: E731
    size, curve = search_smallest(s, evaluate, threshold)
    return {"cluster_faithfulness_curve": [[a, f] for a, f in curve], "cluster_circuit_size": size,
            "cluster_circuit_fraction": None if size is None else size / s,
            "cluster_circuit": [] if size is None else [layout.nodes[i].as_dict() for i in order[:size].tolist()]}


def task_circuits(model, prompts: TaskPrompts, layout: UnitLayout, unit_scores: torch.Tensor,
                  reference: dict, metric: str = "logit_diff", threshold: float = 0.8,
                  batch_size: int = 16, max_rows: int = 64) -> dict:
    """Unit-level and cluster-level circuits of one task (node scores = sums of unit scores per node).
    Returns the merged dicts of :func:`find_circuit` and :func:`find_cluster_circuit` plus ``full_metric``,
    ``empty_metric`` and ``n_ablation_evals``."""
    if not 0 < threshold <= 1:
        raise CircuitclustError(f"threshold must be in (0, 1], got {threshold}")
    faith = Faithfulness(model, prompts, layout, metric, reference, batch_size, max_rows)
    node_scores = torch.zeros(len(layout.nodes)).index_add_(0, layout.node_of_unit().cpu(), unit_scores.cpu())
    out = find_circuit(faith, unit_scores, threshold)
    out.update(find_cluster_circuit(faith, node_scores, threshold))
    out.update(full_metric=faith.full, empty_metric=faith.empty, n_ablation_evals=faith.n_evals)
    return out
