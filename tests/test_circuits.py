"""Circuit search and MIB faithfulness: exact search on a synthetic curve, the areas, a planted circuit that spans
MLP neurons and an attention head, the random baseline and the nonsense control on that model."""
from __future__ import annotations

import pytest
import torch
from _planted import PLANTED_1, PLANTED_2, planted_model, planted_prompts, planted_units

from circuitclust.analysis.patching.attribution import attribution_patching
from circuitclust.analysis.patching.circuits import (GRID, Faithfulness, curve_areas, find_circuit, grid_sizes,
                                                     search_smallest, task_circuits)
from circuitclust.analysis.patching.interventions import mean_activations
from circuitclust.analysis.patching.prompts import nonsense_task
from circuitclust.analysis.patching.scores import Scores
from circuitclust.analysis.patching.units import unit_layout
from circuitclust.core.partition import ModelPartition
from circuitclust.errors import CircuitclustError
from circuitclust.models import weight_graphs


@pytest.mark.parametrize("true_size", [1, 7, 33, 100])
def test_search_smallest_is_exact_on_monotone_curves(true_size):
    calls = []

    def evaluate(sizes):
        calls.extend(sizes)
        return [min(1.0, s / true_size) * 0.9 + (0.1 if s >= true_size else 0.0) for s in sizes]

    curve = dict(zip(grid_sizes(100), evaluate(grid_sizes(100))))
    assert search_smallest(curve, evaluate, 0.95) == true_size
    assert len(calls) <= len(GRID) + 7  # grid + bisection, not a linear scan
    assert all(f >= 0.95 for s, f in curve.items() if s >= true_size)
    assert search_smallest({1: 0.1, 10: 0.2}, evaluate, 0.8) is None


def test_grid_and_areas():
    assert grid_sizes(1000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
    assert grid_sizes(100)[:3] == [0, 0, 0]  # the floor, as MIB counts
    cpr, cmd = curve_areas(list(GRID), [1.0] * len(GRID))
    assert cpr == pytest.approx(1 - GRID[0]) and cmd == pytest.approx(0.0)
    cpr, cmd = curve_areas([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    assert cpr == pytest.approx(0.5) and cmd == pytest.approx(0.5)


@pytest.fixture(scope="module")
def planted():
    m = planted_model()
    return m, unit_layout(m, ModelPartition.blocks(weight_graphs(m), 4))


@pytest.mark.parametrize("task,planted_set", [(1, PLANTED_1), (2, PLANTED_2)])
def test_finds_planted_mlp_circuit_with_mean_ablation(planted, task, planted_set):
    m, layout = planted
    p = planted_prompts(task)
    ref = mean_activations(m, planted_prompts(task, seed=1), layout.hooks)  # a disjoint reference set
    att = attribution_patching(m, p, layout, reference=ref)
    scores = layout.dims_to_units(att["mean"]).mean(0)
    truth = planted_units(layout, planted_set)
    # attribution puts this task's planted neurons first
    assert set(scores.abs().argsort(descending=True)[:len(truth)].tolist()) == truth
    c = task_circuits(m, p, layout, Scores(scores, layout), ref, threshold=0.8, method="mean")
    assert c["circuit_size"] is not None and set(c["units"]) <= truth
    assert c["circuit_faithfulness"] >= 0.8 and c["fraction"] == c["circuit_size"] / layout.n_units
    assert c["curve"][-1] == [1.0, layout.n_units, 1.0] and [q for q, _, _ in c["curve"]] == list(GRID)
    assert c["cpr"] > c["random"]["cpr"] and c["cmd"] < c["random"]["cmd"]
    assert c["clusters_touched"] >= 1 and 0 < c["share_largest_cluster"] <= 1
    assert sum(c["cluster_share"]) == pytest.approx(1.0)
    planted_nodes = {(l, "mlp", n // 64) for l, n, _ in planted_set}
    assert {(d["layer"], d["part"], d["cluster"]) for d in c["cluster_circuit"]} <= planted_nodes


@pytest.fixture(scope="module")
def mixed():
    m = planted_model(head=True)
    return m, unit_layout(m, ModelPartition.blocks(weight_graphs(m), 4))


def test_planted_circuit_spanning_neurons_and_a_head(mixed):
    m, layout = mixed
    assert {s.unit_kind for s in layout.slots} == {"neuron", "head"}  # heads are units beside neurons
    p = planted_prompts(1, n=8)
    truth = planted_units(layout, PLANTED_1, head=True)
    head_unit = max(truth)
    att = attribution_patching(m, p, layout)
    scores = Scores(layout.dims_to_units(att["corrupted"]).mean(0), layout)
    faith = Faithfulness(m, p, layout, "logit_diff", "counterfactual")
    # normalised: the empty circuit (every unit counterfactual) flips the answer, the full model keeps it
    assert faith.defined and faith.empty == pytest.approx(-faith.full, rel=1e-3)
    # neither unit kind alone is faithful: the circuit needs the head and the neurons
    only = lambda units: torch.isin(torch.arange(layout.n_units), torch.tensor(sorted(units)))  # noqa: E731
    f_neurons, f_head = faith(layout.units_to_dims(torch.stack([only(truth - {head_unit}), only({head_unit})]).T).T)
    assert f_neurons < 0.8 and f_head < 0.8
    c = find_circuit(faith, scores, 0.8)
    assert c["circuit_size"] is not None and set(c["units"]) <= truth and head_unit in c["units"]
    assert c["parts"]["attn"] == 1 and c["parts"]["mlp"] >= 1 and c["circuit_faithfulness"] >= 0.8


def test_nonsense_control_finds_no_small_faithful_circuit(mixed):
    m, layout = mixed
    p = nonsense_task(planted_prompts(1, n=8), seed=0)
    assert p.name == "planted1~nonsense" and all(i != j for i, j in enumerate(p.info["nonsense_permutation"]))
    att = attribution_patching(m, p, layout)
    faith = Faithfulness(m, p, layout, "logit_diff", "counterfactual")
    c = find_circuit(faith, Scores(layout.dims_to_units(att["corrupted"]).mean(0), layout), 0.8)
    assert not c["defined"] and c["circuit_size"] is None and "undefined" in c["note"]


def test_bad_threshold(planted):
    m, layout = planted
    p = planted_prompts(1, n=2)
    with pytest.raises(CircuitclustError, match="threshold"):
        task_circuits(m, p, layout, Scores(torch.zeros(layout.n_units), layout), {}, threshold=1.5)
    with pytest.raises(CircuitclustError, match="reference"):
        Faithfulness(m, p, layout, "logit_diff", "mean")
