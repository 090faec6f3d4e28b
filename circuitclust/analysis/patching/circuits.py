"""Circuit discovery and faithfulness as MIB (Mueller et al. 2025) defines them, on units (MLP neurons and
attention heads, or head dims) or on cluster nodes.

A circuit keeps a set of units and ablates every other unit of every layer at once (``zero``, ``mean`` over a
disjoint reference set, or ``counterfactual``: the paired corrupted prompt's activations, MIB's default and
ours). Its faithfulness is

    f(C) = (m(C) - m(empty)) / (m(full) - m(empty))

with m the mean task metric over prompts, ``full`` the intact model and ``empty`` every unit ablated the same
way. Units are ranked by a :class:`~.scores.Scores` (attribution, or a random order for the baseline), and
the top ``int(q * N)`` units are kept for each fraction q of the fixed grid :data:`GRID` (MIB's
0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100%; the floor, as MIB counts). f is 0 with no unit kept and 1 with
every unit kept by definition, so those two points need no forward pass. Areas under the curve over the
fraction axis (trapezoids, as MIB's evaluation computes them): CPR = area under f (higher is better),
CMD = area under |1 - f| (lower is better).

The smallest faithful circuit: the smallest n with f(n) >= ``threshold``, searched by bisection between the
last grid size below the threshold and the first at or above it (assuming the curve is monotone there).
Every point is a real ablation, so the returned size is confirmed: ``circuit_faithfulness`` >= threshold.
The task's effect must be measurable for f to mean anything: when m(full) - m(empty) is within two standard
errors (over prompts) of 0, the curve is reported as undefined instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ...errors import CircuitclustError, PartitionMismatchError
from .interventions import Ablation, ablation_sweep
from .metrics import check_metric
from .prompts import TaskPrompts
from .scores import Scores
from .units import UnitLayout

# MIB's grid of circuit sizes, as fractions of all units
GRID = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def grid_sizes(n: int, grid: tuple[float, ...] = GRID) -> list[int]:
    """Units kept at each grid fraction: ``int(q * n)``."""
    return [int(q * n) for q in grid]


def geometric_sizes(n: int) -> list[int]:
    """1, 2, 4, ... below ``n``, then ``n`` (the grid of cluster-node circuits, which have few nodes)."""
    out, s = [], 1
    while s < n:
        out.append(s)
        s *= 2
    return out + [n]


def curve_areas(fractions: list[float], faith: list[float]) -> tuple[float, float]:
    """``(CPR, CMD)``: trapezoid areas of f and of |1 - f| over the fraction axis."""
    cpr = cmd = 0.0
    for i in range(len(fractions) - 1):
        dx = fractions[i + 1] - fractions[i]
        cpr += dx * (faith[i] + faith[i + 1]) / 2
        cmd += dx * (abs(1 - faith[i]) + abs(1 - faith[i + 1])) / 2
    return cpr, cmd


def search_smallest(curve: dict[int, float], evaluate, threshold: float) -> int | None:
    """Smallest size with faithfulness >= ``threshold``, given the evaluated ``curve`` {size: f} (updated in
    place) and ``evaluate(sizes) -> [f]``: the first evaluated size reaching the threshold, then bisection
    down to the largest evaluated size below it. ``None`` if no evaluated size reaches it."""
    sizes = sorted(curve)
    hits = [s for s in sizes if curve[s] >= threshold]
    if not hits:
        return None
    hi = hits[0]
    below = [s for s in sizes if s < hi]
    lo = below[-1] if below else 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        curve[mid] = evaluate([mid])[0]
        if curve[mid] >= threshold:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass
class Faithfulness:
    """Evaluates circuits of one task: ``__call__(keep [n_sets, n_dims] bool) -> [n_sets]`` faithfulness.

    ``method``: how the units outside the circuit are ablated; ``reference``: ``{hook: [T + 1, n]}`` means of a
    disjoint reference set (``mean`` only). On creation measures m(full) and m(empty) (every dim ablated);
    ``full``/``empty`` are their means, ``gap_se`` the standard error over prompts of their difference."""

    model: object
    prompts: TaskPrompts
    layout: UnitLayout
    metric: str
    method: Ablation | str = Ablation.COUNTERFACTUAL
    reference: dict | None = None
    batch_size: int = 16
    max_rows: int = 64
    n_evals: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.metric = check_metric(self.metric, self.prompts)
        self.method = Ablation.parse(self.method)
        if self.method == Ablation.MEAN and self.reference is None:
            raise CircuitclustError("mean ablation of circuits needs the reference set's means")
        empty = torch.ones(1, self.layout.n_dims, dtype=torch.bool)
        r = self._sweep(empty, clean=True)
        self.full_values, self.empty_values = r["clean"], r["ablated"][0]
        self.full, self.empty = float(self.full_values.mean()), float(self.empty_values.mean())
        d = self.full_values - self.empty_values
        self.gap_se = float(d.std() / math.sqrt(d.numel())) if d.numel() > 1 else float("inf")
        self.n_evals = 1

    def _sweep(self, ablate: torch.Tensor, clean: bool = False) -> dict:
        return ablation_sweep(self.model, self.prompts, self.layout, ablate, self.method, self.metric,
                              self.reference, self.batch_size, clean=clean, max_rows=self.max_rows)

    @property
    def defined(self) -> bool:
        """False when m(full) - m(empty) is within two standard errors of 0 (or ~0): f would divide noise."""
        gap = abs(self.full - self.empty)
        return gap > 1e-6 * max(1.0, abs(self.full)) and gap > 2 * self.gap_se

    def __call__(self, keep: torch.Tensor) -> list[float]:
        r = self._sweep(~keep)
        self.n_evals += keep.shape[0]
        return ((r["ablated"].mean(1) - self.empty) / (self.full - self.empty)).tolist()

    def of_sizes(self, order: torch.Tensor, sizes: list[int], level: str = "unit") -> dict[int, float]:
        """``{size: f}`` of the circuits made of the first ``size`` entries of ``order`` (units or nodes);
        sizes 0 and all are 0 and 1 by definition and cost nothing."""
        n = self.layout.n_units if level == "unit" else len(self.layout.nodes)
        out = {s: (0.0 if s == 0 else 1.0) for s in sizes if s in (0, n)}
        todo = sorted({s for s in sizes if s not in out})
        if todo:
            mask = top_mask(order, todo, n)
            dims = self.layout.units_to_dims(mask.T).T if level == "unit" else self.layout.nodes_to_dims(mask.T).T
            out.update(zip(todo, self(dims)))
        return out


def top_mask(order: torch.Tensor, sizes: list[int], n: int) -> torch.Tensor:
    """``[len(sizes), n]`` bool: the first ``size`` entries of ``order`` for each size."""
    rank = torch.empty(n, dtype=torch.long)
    rank[order] = torch.arange(n)
    return rank[None, :] < torch.tensor(sizes)[:, None]


def _undefined(faith: Faithfulness) -> dict:
    return {"defined": False, "curve": [], "cpr": None, "cmd": None, "circuit_size": None, "fraction": None,
            "circuit_faithfulness": None,
            "note": (f"ablating every unit moves the metric by {faith.full - faith.empty:.3g}, within two standard "
                     f"errors ({faith.gap_se:.3g}) of 0: faithfulness is undefined")}


def faithfulness_curve(faith: Faithfulness, order: torch.Tensor, grid: tuple[float, ...] = GRID
                       ) -> tuple[list[list[float]], dict[int, float], float, float]:
    """The curve of the ranking ``order`` (unit ids, most important first) on ``grid``: ``(curve
    [[fraction, n_units, f]], {n_units: f}, CPR, CMD)``."""
    n = faith.layout.n_units
    sizes = grid_sizes(n, grid)
    points = faith.of_sizes(order, sizes)
    curve = [[q, s, points[s]] for q, s in zip(grid, sizes)]
    cpr, cmd = curve_areas(list(grid), [p[2] for p in curve])
    return curve, points, cpr, cmd


def find_circuit(faith: Faithfulness, scores: Scores, threshold: float = 0.8, grid: tuple[float, ...] = GRID,
                 search: bool = True) -> dict:
    """The faithfulness curve of the units ranked by unit-level ``scores`` (by absolute value) and the smallest
    circuit reaching ``threshold`` (``search=False``: the curve only). Returns a JSON-ready dict: ``defined``,
    ``ranking`` (the scores' source), ``curve`` [[fraction, n_units, f]], ``cpr``, ``cmd``, ``circuit_size``
    (None if not searched or never reached), ``fraction``, ``circuit_faithfulness`` (the confirming
    ablation), ``search`` [[n_units, f]] (every size evaluated), ``n_units_total``; for a found circuit also
    ``units`` (global ids by rank), ``parts`` {part: units}, ``cluster_share`` [k] (share of the circuit's
    units in cluster c, MLP and attention units of every layer together), ``share_largest_cluster``,
    ``clusters_touched`` (nodes with a unit in the circuit), ``cluster_counts`` {node: units}."""
    layout = faith.layout
    n = layout.n_units
    if scores.layout is not layout or scores.level != "unit":
        raise PartitionMismatchError("find_circuit needs unit-level scores of the same layout")
    out = {"ranking": scores.source, "n_units_total": n}
    if not faith.defined:
        return {**out, **_undefined(faith)}
    order = scores.order()
    curve, points, cpr, cmd = faithfulness_curve(faith, order, grid)
    out.update(defined=True, curve=curve, cpr=cpr, cmd=cmd, circuit_size=None, fraction=None,
               circuit_faithfulness=None)
    if not search:
        return out
    def evaluate(sizes: list[int]) -> list[float]:
        got = faith.of_sizes(order, sizes)
        return [got[s] for s in sizes]

    size = search_smallest(points, evaluate, threshold)
    out["search"] = [[s, f] for s, f in sorted(points.items())]
    if size is None:
        return out
    units = order[:size]
    node = layout.node_of_unit().cpu()[units]
    counts = torch.bincount(node, minlength=len(layout.nodes))
    cluster_of_node = torch.tensor([nd.cluster for nd in layout.nodes])
    per_cluster = torch.bincount(cluster_of_node[node], minlength=layout.k)
    part_of_node = [nd.part for nd in layout.nodes]
    parts: dict[str, int] = {}
    for i in node.tolist():
        parts[part_of_node[i]] = parts.get(part_of_node[i], 0) + 1
    out.update(circuit_size=size, fraction=size / n, circuit_faithfulness=points[size], units=units.tolist(),
               parts=parts, cluster_share=(per_cluster.float() / size).tolist(),
               share_largest_cluster=float(per_cluster.max()) / size, clusters_touched=int((counts > 0).sum()),
               cluster_counts={i: int(c) for i, c in enumerate(counts.tolist()) if c})
    return out


def random_curve(faith: Faithfulness, seed: int = 0, grid: tuple[float, ...] = GRID) -> dict:
    """The random-ranking baseline: the curve of a uniformly random order of the units (drawn with
    ``seed``). Returns ``{"defined", "curve", "cpr", "cmd", "seed"}``."""
    if not faith.defined:
        return {**_undefined(faith), "seed": seed}
    g = torch.Generator().manual_seed(seed)
    curve, _, cpr, cmd = faithfulness_curve(faith, torch.randperm(faith.layout.n_units, generator=g), grid)
    return {"defined": True, "curve": curve, "cpr": cpr, "cmd": cmd, "seed": seed}


def find_cluster_circuit(faith: Faithfulness, scores: Scores, threshold: float = 0.8) -> dict:
    """Cluster-level circuit: the smallest set of (layer, part, cluster) nodes, ranked by ``scores`` (node
    level, or unit level summed per node), keeping ``threshold`` of the metric. Returns
    ``cluster_faithfulness_curve`` [[n_nodes, f]], ``cluster_circuit_size``, ``cluster_circuit_fraction``,
    ``cluster_circuit`` (node dicts by rank)."""
    layout = faith.layout
    s = len(layout.nodes)
    if not faith.defined:
        return {"cluster_faithfulness_curve": [], "cluster_circuit_size": None, "cluster_circuit_fraction": None,
                "cluster_circuit": []}
    order = scores.to_nodes().order()
    points = faith.of_sizes(order, geometric_sizes(s), level="node")
    def evaluate(sizes: list[int]) -> list[float]:
        got = faith.of_sizes(order, sizes, "node")
        return [got[x] for x in sizes]

    size = search_smallest(points, evaluate, threshold)
    return {"cluster_faithfulness_curve": [[a, f] for a, f in sorted(points.items())], "cluster_circuit_size": size,
            "cluster_circuit_fraction": None if size is None else size / s,
            "cluster_circuit": [] if size is None else [layout.nodes[i].as_dict() for i in order[:size].tolist()]}


def task_circuits(model, prompts: TaskPrompts, layout: UnitLayout, scores: Scores, reference: dict | None,
                  metric: str = "logit_diff", threshold: float = 0.8, batch_size: int = 16, max_rows: int = 64,
                  method: Ablation | str = Ablation.COUNTERFACTUAL, cluster_level: bool = True,
                  random_seed: int | None = 0) -> dict:
    """Unit-level circuit (:func:`find_circuit`), with the random-ranking baseline (``random_seed`` None:
    none) under ``"random"`` and, with ``cluster_level``, the cluster-node circuit (:func:`find_cluster_circuit`)
    of one task; plus ``ablation``, ``full_metric``, ``empty_metric``, ``gap_se`` and ``n_ablation_evals``."""
    if not 0 < threshold <= 1:
        raise CircuitclustError(f"threshold must be in (0, 1], got {threshold}")
    if scores.layout is not layout or scores.level != "unit":
        raise PartitionMismatchError("task_circuits needs unit-level scores of the same layout")
    faith = Faithfulness(model, prompts, layout, metric, method, reference, batch_size, max_rows)
    out = find_circuit(faith, scores, threshold)
    if random_seed is not None:
        out["random"] = random_curve(faith, random_seed)
    if cluster_level:
        out.update(find_cluster_circuit(faith, scores, threshold))
    out.update(ablation=faith.method.value, full_metric=faith.full, empty_metric=faith.empty, gap_se=faith.gap_se,
               n_ablation_evals=faith.n_evals)
    return out
