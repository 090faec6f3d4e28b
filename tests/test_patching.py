"""Effect matrix, bootstrap CIs, specialisation, flips, and attribution patching vs finite differences."""
from __future__ import annotations

import math

import pytest
import torch
from _patching_data import capital_rows
from _planted import PLANTED_1, PLANTED_2, planted_model, planted_prompts

from circuitclust.analysis.patching.attribution import attribution_patching
from circuitclust.analysis.patching.interventions import cache_activations, flat, node_masks
from circuitclust.analysis.patching.metrics import task_metric
from circuitclust.analysis.patching.effects import (attribution_agreement, bootstrap_mean, effect_matrix,
                                                    flips_histogram, specialisation, specialisation_summary)
from circuitclust.analysis.patching.prompts import encode_task
from circuitclust.analysis.patching.units import unit_layout
from circuitclust.core.partition import ModelPartition
from circuitclust.errors import CircuitclustError
from circuitclust.models import load_model, weight_graphs


def test_specialisation_formula():
    e = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [-2.0, 2.0, 0.0]])
    sp = specialisation(e)
    torch.testing.assert_close(sp["score"], torch.tensor([1.0, 0.0, 0.0, 1 - math.log(2) / math.log(3)]))
    torch.testing.assert_close(sp["top_task_share"], torch.tensor([1.0, 1 / 3, 1 / 3, 0.5]))
    weights = torch.tensor([1.0, 3.0, 0.0, 4.0])
    assert float(sp["model"]) == pytest.approx(float((sp["score"] * weights).sum() / weights.sum()))
    with pytest.raises(CircuitclustError):
        specialisation(torch.ones(3, 1))


def test_flips_and_bootstrap():
    clean = torch.tensor([True, True, False, True])
    abl = torch.tensor([[False, True, False, False], [False, True, True, True], [True, True, False, False]])
    # prompt 0: flipped by 2 nodes, prompt 1: 0, prompt 3: 2 (prompt 2 was wrong to begin with)
    assert flips_histogram(clean, abl) == [1, 0, 2, 0]
    x = torch.randn(5, 40) + torch.arange(5.0)[:, None]
    mean, lo, hi = bootstrap_mean(x, 500, seed=1)
    assert torch.all(lo <= mean) and torch.all(mean <= hi) and torch.all(hi - lo < 1.5)
    with pytest.raises(CircuitclustError):
        bootstrap_mean(torch.zeros(3, 0))


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "tiny-gemma"])
def test_attribution_matches_finite_differences(name):
    m = load_model(name, device="cpu", dtype=torch.float64)
    layout = unit_layout(m, ModelPartition.blocks(weight_graphs(m), 4))
    p = encode_task(m, capital_rows()[:4])
    est = layout.dims_to_nodes(attribution_patching(m, p, layout, batch_size=2)["corrupted"]).sum(0)[::3]
    eps, fd = 1e-2, []  # central differences; the models compute softmax in float32, so not smaller
    with torch.no_grad():
        _, corr = cache_activations(m, p.corrupted, layout.hooks)
        # a spread of MLP and attention nodes over all layers keeps the test fast
        for dims in node_masks(layout)[::3]:
            vals = []
            for e in (eps, -eps):
                hooks = [(h, lambda a, hook, h=h, mk=mk, e=e: torch.where(mk, flat(a) + e * (corr[h] - flat(a)),
                                                                          flat(a)).reshape(a.shape))
                         for h, mk in layout.split_dims(dims).items() if mk.any()]
                vals.append(task_metric("logit_diff", m.run_with_hooks(p.clean, fwd_hooks=hooks), p).sum())
            fd.append(float(vals[0] - vals[1]) / (2 * eps))
    fd = torch.tensor(fd, dtype=est.dtype)
    assert fd.abs().max() > 1e-3  # patching changes something
    torch.testing.assert_close(est, fd, atol=1e-2 * float(fd.abs().max()), rtol=0)


@pytest.fixture(scope="module")
def planted():
    m = planted_model()
    return m, unit_layout(m, ModelPartition.blocks(weight_graphs(m), 4))


def test_effect_matrix_specialises_on_planted_tasks(planted):
    m, layout = planted
    tasks = [planted_prompts(1), planted_prompts(2)]
    em = effect_matrix(m, tasks, layout, method="mean", n_boot=200)
    assert em.effect.shape == (len(layout.nodes), 2)
    assert torch.all(em.ci_low <= em.effect + 1e-6) and torch.all(em.effect <= em.ci_high + 1e-6)
    idx = {(n["layer"], n["part"], n["cluster"]): i for i, n in enumerate(em.nodes)}
    live1 = {idx[(l, "mlp", n // 64)] for l, n, _ in PLANTED_1}
    live2 = {idx[(l, "mlp", n // 64)] for l, n, _ in PLANTED_2}
    dead = [i for i in range(len(em.nodes)) if i not in live1 | live2]
    assert em.effect[dead].abs().max() < 1e-3  # units that write nothing have no effect
    summary = specialisation_summary(em, n_boot=200)
    per = summary["per_cluster"]
    for i in live1 | live2:
        if per[i]["total_abs_effect"] > 1.0:
            assert per[i]["specialisation"] > 0.9
    assert summary["model_score"] > 0.9
    lo, hi = summary["model_score_ci"]
    assert lo <= summary["model_score"] + 1e-6 and hi <= 1 + 1e-6
    for t, hist in summary["flips_histogram"].items():
        assert sum(hist) == summary["n_correct"][t] == 8  # every planted prompt is answered correctly


def test_attribution_agreement_and_errors(planted):
    # on a random model patching effects are small and close to linear, so the ranks must agree
    m = load_model("tiny-gpt2", device="cpu")
    layout = unit_layout(m, ModelPartition.blocks(weight_graphs(m), 4))
    agree = attribution_agreement(m, encode_task(m, capital_rows()), layout)
    assert agree["attribution"].values.shape == (len(layout.nodes),) and agree["attribution"].level == "node"
    assert agree["spearman"] > 0.8
    m, layout = planted
    with pytest.raises(CircuitclustError, match="no tasks"):
        effect_matrix(m, [], layout)
