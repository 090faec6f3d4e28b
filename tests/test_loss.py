"""Clusterability loss: core tensor form, the model-level regulariser, and the function-preserving
neuron permutation, on the tiny models of all three families."""
import warnings

import numpy as np
import pytest
import torch
from _helpers import cluster_masses, clusterability_masks, regularised_parameters

from circuitclust.analysis.finetuning import ClusterabilityLoss, make_partition
from circuitclust.analysis.clustering.permute import permute_contiguous
from circuitclust.core import loss as core_loss
from circuitclust.core.loss import chance_from_masks, clusterability_fused, onehot, shrink_off_cluster_
from circuitclust.core.measures import clusterability
from circuitclust.core.partition import ModelPartition
from circuitclust.models import build_tiny, weight_graphs

FAMILIES = ["tiny-gpt2", "tiny-pythia", "tiny-gemma"]


def direct(w: np.ndarray, r: np.ndarray, c: np.ndarray) -> float:
    """C(W) straight from the definition: in-cluster squared mass over total squared mass."""
    same = r[:, None] == c[None, :]
    return float((w ** 2 * same).sum() / (w ** 2).sum())


def oriented(g, t: torch.Tensor) -> torch.Tensor:
    """A tensor stored like g's parameter, turned to g's [n_in, n_out] orientation (MLP graphs only)."""
    return t if g._source.layout == "in_out" else t.t()


def test_core_matches_direct_numpy_on_a_batch():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 7, 11, generator=g, dtype=torch.float64)
    r = torch.randint(0, 3, (3, 7), generator=g)
    c = torch.randint(0, 3, (3, 11), generator=g)
    got = clusterability_masks(w, onehot(r, 3, torch.float64), onehot(c, 3, torch.float64))
    want = [direct(w[b].numpy(), r[b].numpy(), c[b].numpy()) for b in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)


def test_core_half_precision_accumulates_in_fp32_and_zero_matrix_is_not_nan():
    w = torch.randn(64, 256)
    r, c = onehot(torch.arange(64) % 4, 4), onehot(torch.arange(256) % 4, 4)
    ref = clusterability_masks(w.bfloat16().float(), r, c)
    got = clusterability_masks(w.bfloat16(), r.bfloat16(), c.bfloat16())
    assert got.dtype == torch.float32
    assert abs(float(got - ref)) < 1e-6
    inside, total = cluster_masses(torch.zeros(2, 5, 6), onehot(torch.zeros(5, dtype=torch.long), 2),
                                   onehot(torch.zeros(6, dtype=torch.long), 2))
    assert torch.equal(total, torch.zeros(2))
    assert torch.equal(clusterability_masks(torch.zeros(2, 5, 6), onehot(torch.zeros(5, dtype=torch.long), 2),
                                            onehot(torch.zeros(6, dtype=torch.long), 2)), torch.zeros(2))


@pytest.mark.parametrize("stack_max", [0, 1 << 20])  # every matrix alone / same-shape matrices stacked
def test_fused_matches_autograd_reference_in_value_and_gradient(monkeypatch, stack_max):
    monkeypatch.setattr(core_loss, "_STACK_MAX_ENTRIES", stack_max)
    g = torch.Generator().manual_seed(3)
    k = 3
    stored = [torch.randn(7, 11, generator=g, dtype=torch.float64),   # plain
              torch.randn(7, 11, generator=g, dtype=torch.float64),   # same shape: batched with the first
              torch.randn(5, 9, generator=g, dtype=torch.float64),    # read transposed, like nn.Linear
              torch.randn(6, 20, generator=g, dtype=torch.float64),   # a column slice, like a fused QKV part
              torch.zeros(4, 4, dtype=torch.float64)]                 # all zero: C = 0, no gradient, no NaN
    params = [t.clone().requires_grad_(True) for t in stored]
    views = lambda ps: [ps[0], ps[1], ps[2].t(), ps[3][:, 5:13], ps[4]]  # noqa: E731
    rows = [onehot(torch.randint(0, k, (v.shape[0],), generator=g), k, torch.float64) for v in views(stored)]
    cols = [onehot(torch.randint(0, k, (v.shape[1],), generator=g), k, torch.float64) for v in views(stored)]
    got = clusterability_fused(views(params), rows, cols)
    ref_params = [t.clone().requires_grad_(True) for t in stored]
    want = torch.stack([clusterability_masks(v, r, c) for v, r, c in zip(views(ref_params), rows, cols)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert float(got[4].detach()) == 0.0
    weights = torch.randn(5, generator=g, dtype=torch.float64)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    for p, q in zip(params, ref_params):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12)
    assert params[3].grad[:, :5].abs().sum() == 0 and params[3].grad[:, 5:13].abs().sum() > 0
    assert not params[4].grad.any()
    torch.autograd.gradcheck(lambda *w: clusterability_fused(w, rows[:3], cols[:3]),
                             tuple(v.detach().requires_grad_(True) for v in views(stored)[:3]))


def test_zero_matrix_scores_the_same_in_measures_and_loss_with_a_finite_gradient():
    r, c = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 0, 1])
    w_loss, w_measure = torch.zeros(4, 5, requires_grad=True), torch.zeros(4, 5, requires_grad=True)
    fused = clusterability_fused([w_loss], [onehot(r, 2)], [onehot(c, 2)])
    measured = clusterability(w_measure, r, c)
    assert float(fused[0].detach()) == float(measured.detach()) == 0.0
    fused.sum().backward()
    measured.backward()
    for w in (w_loss, w_measure):
        assert torch.isfinite(w.grad).all()


def test_fused_half_precision_accumulates_in_fp32():
    w = torch.randn(64, 256).bfloat16().requires_grad_(True)
    r, c = onehot(torch.arange(64) % 4, 4), onehot(torch.arange(256) % 4, 4)
    got = clusterability_fused([w], [r], [c])
    assert got.dtype == torch.float32
    assert abs(float(got.detach() - clusterability_masks(w.detach().float(), r, c))) < 1e-6
    got.sum().backward()
    assert w.grad.dtype == torch.bfloat16 and w.grad.abs().sum() > 0


def test_chance_of_equal_blocks_is_one_over_k():
    r = onehot(torch.div(torch.arange(64) * 4, 64, rounding_mode="floor"), 4)
    c = onehot(torch.div(torch.arange(256) * 4, 256, rounding_mode="floor"), 4)
    assert float(chance_from_masks(r, c)) == pytest.approx(0.25)


def test_shrink_off_cluster_scales_only_entries_outside_the_blocks_through_a_transposed_view():
    gen = torch.Generator().manual_seed(0)
    stored = torch.randn(5, 7, generator=gen)  # nn.Linear layout [n_out, n_in]; the graph reads stored.t()
    rows, cols = torch.tensor([0, 1, 2, 0, 1, 2, 0]), torch.tensor([2, 2, 1, 0, 0])
    before = stored.t().clone()
    shrink_off_cluster_([stored.t()], [onehot(rows, 3)], [onehot(cols, 3)], 0.25)
    inside = rows[:, None] == cols[None, :]
    after = stored.t()
    assert torch.equal(after[inside], before[inside])
    torch.testing.assert_close(after[~inside], 0.75 * before[~inside])
    with pytest.raises(ValueError, match="rate"):
        shrink_off_cluster_([stored.t()], [onehot(rows, 3)], [onehot(cols, 3)], 1.0)


@pytest.mark.parametrize("family", FAMILIES)
def test_decay_shrinks_the_model_parameters_and_raises_clusterability(family):
    hf, _ = build_tiny(family)
    loss = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4), graphs=("mlp_in", "mlp_out"))
    before = loss.clusterability()
    loss.shrink_off_cluster_(0.5)
    after = loss.clusterability()
    assert all(after[n] > before[n] + 0.1 for n in before)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_loss_matches_direct_computation(family):
    hf, _ = build_tiny(family)
    kinds = ("mlp_in", "mlp_gate", "mlp_out", "attn_q", "attn_o")
    gen = torch.Generator().manual_seed(1)
    gs = weight_graphs(hf, parts=kinds)
    spaces = {}
    for g in gs:
        for s, n in ((g.in_space, g.shape[0]), (g.out_space, g.shape[1])):
            if s != "resid":
                spaces[s] = torch.randint(0, 4, (n,), generator=gen)
    part = ModelPartition.from_space_labels(gs, 4, spaces)
    loss = ClusterabilityLoss(hf, part, graphs=kinds)
    want = []
    for g in gs:
        p = part[g.name]
        want.append(direct(g.weight.detach().double().numpy(), p.row_labels.numpy(), p.col_labels.numpy()))
    got = loss.clusterability()
    assert list(got) == [g.name for g in gs]
    np.testing.assert_allclose(list(got.values()), want, rtol=1e-5)
    assert float(loss().detach()) == pytest.approx(1 - np.mean(want), rel=1e-5)
    assert float(ClusterabilityLoss(hf, part, graphs=kinds, reduction="sum")().detach()) == pytest.approx(
        len(want) - np.sum(want), rel=1e-5)
    # equal blocks on random weights sit near chance 1/k
    blocks = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4))
    assert all(v == pytest.approx(0.25) for v in blocks.chance().values())
    assert all(abs(v - 0.25) < 0.05 for v in blocks.clusterability().values())


@pytest.mark.parametrize("family", FAMILIES)
def test_gradient_only_on_regularised_params_with_the_right_sign(family):
    hf, _ = build_tiny(family)
    loss = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4, ("mlp_in", "mlp_out")), graphs=("mlp_in", "mlp_out"))
    loss().backward()
    reg = {id(p) for p in regularised_parameters(loss)}
    assert len(reg) == 8  # 4 layers x (in, out)
    for name, p in hf.named_parameters():
        if id(p) in reg:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None or not p.grad.any(), f"{name} got a gradient but is not regularised"
    for g in loss.graphs:
        part = loss.partition[g.name]
        inside = part.row_labels[:, None] == part.col_labels[None, :]
        w, grad = g.weight.detach(), oriented(g, g._param.grad)
        push = grad * w  # > 0: descent shrinks |w|
        assert (push[~inside] >= 0).all() and (push[~inside] > 0).any(), "off-cluster entries must shrink"
        assert (push[inside] <= 0).all() and (push[inside] < 0).any(), "in-cluster entries must grow"
        # C is scale invariant: the gradient is orthogonal to W
        assert abs(float((grad * w).sum())) < 1e-6 * float(grad.norm() * w.norm())


def test_fused_qkv_slice_gets_gradient_only_on_its_part():
    hf, _ = build_tiny("tiny-gpt2")
    loss = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4, ("attn_q",)), graphs=("attn_q",))
    loss().backward()
    grad = hf.transformer.h[0].attn.c_attn.weight.grad  # [d_model, 3 d_model] = [Q | K | V]
    d = hf.config.n_embd
    assert grad[:, :d].abs().sum() > 0
    assert not grad[:, d:].any()


def test_spectral_mode_gives_a_consistent_partition():
    hf, _ = build_tiny("tiny-gemma")
    with warnings.catch_warnings():  # the spectral partitioner may not be installed yet: blocks fallback
        warnings.simplefilter("ignore")
        part = make_partition(hf, "spectral", 4, ("mlp_in", "mlp_gate", "mlp_out"))
    for l in range(4):
        lab = part.space_labels[f"mlp.{l}"]
        assert torch.equal(part[f"blocks.{l}.mlp.in"].col_labels, lab)
        assert torch.equal(part[f"blocks.{l}.mlp.gate"].col_labels, lab)
        assert torch.equal(part[f"blocks.{l}.mlp.out"].row_labels, lab)


@pytest.mark.parametrize("family", FAMILIES)
def test_permutation_keeps_logits_and_makes_clusters_contiguous(family):
    hf, _ = build_tiny(family)
    hf.eval()
    ids = torch.randint(0, hf.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = hf(ids).logits
    gs = weight_graphs(hf, parts=("mlp",))
    gen = torch.Generator().manual_seed(2)
    spaces = {f"mlp.{l}": torch.randint(0, 4, (256,), generator=gen) for l in range(4)}
    part = ModelPartition.from_space_labels(gs, 4, spaces)
    c_before = ClusterabilityLoss(hf, part, graphs=("mlp",)).clusterability()
    new = permute_contiguous(hf, part)
    with torch.no_grad():
        after = hf(ids).logits
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    assert not torch.equal(new.space_labels["mlp.0"], part.space_labels["mlp.0"])
    for l in range(4):
        lab = new.space_labels[f"mlp.{l}"]
        assert bool((lab[1:] >= lab[:-1]).all())
        assert torch.equal(torch.bincount(lab, minlength=4), torch.bincount(spaces[f"mlp.{l}"], minlength=4))
    c_after = ClusterabilityLoss(hf, new, graphs=("mlp",)).clusterability()
    np.testing.assert_allclose(list(c_after.values()), list(c_before.values()), rtol=1e-5)


def test_entries_reduction_is_the_effective_count_of_off_cluster_weights():
    hf, _ = build_tiny("tiny-gemma")
    mean = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4, ("mlp_in", "mlp_out")), graphs=("mlp_in", "mlp_out"))
    entries = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4, ("mlp_in", "mlp_out")), graphs=("mlp_in", "mlp_out"), reduction="entries")
    c = np.array(list(mean.clusterability().values()))
    n = np.array([g.shape[0] * g.shape[1] for g in mean.graphs], dtype=float)
    assert float(entries().detach()) == pytest.approx(float((n * (1 - c)).sum()), rel=1e-5)
    # per weight, "entries" is "mean" scaled by (number of matrices x entries of that matrix)
    grads = []
    for loss in (mean, entries):
        hf.zero_grad(set_to_none=True)
        loss().backward()
        grads.append({g.name: g.parameter.grad.clone() for g in loss.graphs})
    for g in mean.graphs:
        torch.testing.assert_close(grads[1][g.name], grads[0][g.name] * len(n) * g.shape[0] * g.shape[1],
                                   rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="entries"):
        ClusterabilityLoss(hf, make_partition(hf, "blocks", 4), reduction="median")
