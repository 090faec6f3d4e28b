"""Circuit search: exact on a synthetic monotone curve, and finds a planted circuit in an edited tiny GPT-2."""
from __future__ import annotations

import pytest
import torch
from _planted import PLANTED_1, PLANTED_2, planted_model, planted_prompts, planted_units

from circuitclust.analysis.attribution import attribution_patching
from circuitclust.analysis.circuits import geometric_sizes, search_smallest, task_circuits
from circuitclust.analysis.interventions import mean_activations
from circuitclust.analysis.scores import Scores
from circuitclust.analysis.units import unit_layout
from circuitclust.core.partition import ModelPartition
from circuitclust.errors import CircuitclustError
from circuitclust.models import weight_graphs


@pytest.mark.parametrize("true_size", [1, 7, 33, 100])
def test_search_smallest_is_exact_on_monotone_curves(true_size):
    calls = []

    def evaluate(sizes):
        calls.extend(sizes)
        return [min(1.0, s / true_size) * 0.9 + (0.1 if s >= true_size else 0.0) for s in sizes]

    size, curve = search_smallest(100, evaluate, 0.95)
    assert size == true_size
    assert len(calls) <= len(geometric_sizes(100)) + 7  # grid + binary search, not a linear scan
    assert all(f >= 0.95 for s, f in curve if s >= true_size)
    assert search_smallest(10, lambda s: [0.1] * len(s), 0.8)[0] is None


@pytest.fixture(scope="module")
def planted():
    m = planted_model()
    return m, unit_layout(m, ModelPartition.blocks(weight_graphs(m), 4))


@pytest.mark.parametrize("task,planted_set", [(1, PLANTED_1), (2, PLANTED_2)])
def test_finds_planted_circuit(planted, task, planted_set):
    m, layout = planted
    p = planted_prompts(task)
    ref = mean_activations(m, p, layout.hooks)
    att = attribution_patching(m, p, layout, reference=ref)
    scores = layout.dims_to_units(att["mean"]).mean(0)
    truth = planted_units(layout, planted_set)
    # attribution puts this task's planted neurons first
    assert set(scores.abs().argsort(descending=True)[:len(truth)].tolist()) == truth
    c = task_circuits(m, p, layout, Scores(scores, layout), ref, threshold=0.8)
    assert c["circuit_size"] is not None and set(c["units"]) <= truth
    curve = dict(c["faithfulness_curve"])
    assert curve[c["circuit_size"]] >= 0.8 and curve[layout.n_units] == pytest.approx(1.0, abs=1e-4)
    assert c["fraction"] == c["circuit_size"] / layout.n_units
    assert c["clusters_touched"] >= 1 and 0 < c["share_largest_cluster"] <= 1
    planted_nodes = {(l, "mlp", n // 64) for l, n, _ in planted_set}
    assert {(d["layer"], d["part"], d["cluster"]) for d in c["cluster_circuit"]} <= planted_nodes


def test_bad_threshold(planted):
    m, layout = planted
    p = planted_prompts(1, n=2)
    with pytest.raises(CircuitclustError, match="threshold"):
        task_circuits(m, p, layout, Scores(torch.zeros(layout.n_units), layout), {}, threshold=1.5)
