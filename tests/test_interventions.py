"""Cluster ablations: hook names and shapes, equivalences with weight edits, mean/resample semantics, errors,
and the fast paths (last-position logits, set-batched sweeps) against the plain ones."""
from __future__ import annotations

import pytest
import torch
from _helpers import run_ablated
from _patching_data import capital_rows, colour_rows

from circuitclust.analysis.patching.interventions import (ablation_sweep, cache_activations, cluster_masks,
                                                          mean_activations, metric_logits, node_masks)
from circuitclust.analysis.patching.metrics import last_logits
from circuitclust.analysis.patching.prompts import encode_task
from circuitclust.analysis.patching.units import unit_layout
from circuitclust.core.partition import ModelPartition
from circuitclust.errors import DataError, PartitionMismatchError
from circuitclust.models import load_model, weight_graphs


def _setup(model, k=4):
    part = ModelPartition.blocks(weight_graphs(model), k)
    layout = unit_layout(model, part)
    prompts = encode_task(model, capital_rows(), name="capital")
    return part, layout, prompts


def test_hook_shapes(tiny_bridge):
    m = tiny_bridge
    _, layout, prompts = _setup(m)
    with torch.no_grad():
        _, acts = cache_activations(m, prompts.clean, layout.hooks)
    for s in layout.slots:
        assert acts[s.hook].shape == (len(prompts), prompts.clean.shape[1], s.n_dims)
    # blocks split 4 heads into 4 clusters: attention units are whole heads
    assert {s.unit_kind for s in layout.slots if s.part == "attn"} == {"head"}
    assert layout.n_units == 4 * (256 + 4)


def test_zero_ablating_mlp_cluster_equals_zeroing_w_out_rows(tiny_bridge):
    m = tiny_bridge
    part, layout, prompts = _setup(m)
    node = next(i for i, n in enumerate(layout.nodes) if n.layer == 2 and n.part == "mlp" and n.cluster == 1)
    dims = node_masks(layout, [node])[0]
    with torch.no_grad():
        ablated = run_ablated(m, prompts, layout, dims, "zero")
        g = next(g for g in weight_graphs(m, layers=[2]) if g.kind == "mlp_out")
        rows = part.space_labels["mlp.2"] == 1
        saved = g._param.detach().clone()
        g.weight.data[rows] = 0
        edited = m(prompts.clean)
        g._param.data.copy_(saved)
        base = m(prompts.clean)
    assert (ablated - base).abs().max() > 1e-4  # the ablation does something
    torch.testing.assert_close(ablated, edited, atol=1e-5, rtol=1e-5)


def test_zero_ablating_attn_cluster_equals_zeroing_w_o_rows(tiny_bridge):
    m = tiny_bridge
    part, layout, prompts = _setup(m)
    node = next(i for i, n in enumerate(layout.nodes) if n.layer == 1 and n.part == "attn" and n.cluster == 2)
    with torch.no_grad():
        ablated = run_ablated(m, prompts, layout, node_masks(layout, [node])[0], "zero")
        g = next(g for g in weight_graphs(m, layers=[1]) if g.kind == "attn_o")
        saved = g._param.detach().clone()
        g.weight.data[part.space_labels["attn.1"] == 2] = 0
        edited = m(prompts.clean)
        g._param.data.copy_(saved)
    torch.testing.assert_close(ablated, edited, atol=1e-5, rtol=1e-5)


def test_mean_and_resample_semantics():
    m = load_model("tiny-gpt2", device="cpu")
    _, layout, prompts = _setup(m)
    all_dims = torch.ones(layout.n_dims, dtype=torch.bool)
    with torch.no_grad():
        # resampling every unit of every layer from the corrupted prompt: later units see corrupted inputs,
        # but the residual stream still carries clean embeddings, so compare the unit activations themselves
        _, corr = cache_activations(m, prompts.corrupted, layout.hooks)
        seen = {}

        def grabber(name):
            def grab(act, hook):
                seen[name] = act.reshape(act.shape[0], act.shape[1], -1).clone()
            return grab

        from circuitclust.analysis.patching.interventions import ablation_hooks
        hooks = ablation_hooks(layout.split_dims(all_dims), "resample", corrupted=corr)
        m.run_with_hooks(prompts.clean, fwd_hooks=hooks + [(h, grabber(h)) for h in layout.hooks])
        for h in layout.hooks:
            torch.testing.assert_close(seen[h], corr[h])
        # mean ablation over a single-prompt reference set restores that prompt exactly
        one = prompts.subset(slice(0, 1))
        ref = mean_activations(m, one, layout.hooks)
        out = run_ablated(m, one, layout, all_dims, "mean", reference=ref)
        torch.testing.assert_close(out, m(one.clean), atol=1e-5, rtol=1e-5)


def test_sweep_all_layers_and_empty_set():
    m = load_model("tiny-pythia", device="cpu")
    _, layout, prompts = _setup(m)
    sets = torch.cat([cluster_masks(layout, "mlp"), torch.zeros(1, layout.n_dims, dtype=torch.bool)])
    r = ablation_sweep(m, prompts, layout, sets, method="resample", batch_size=4)
    assert r["ablated"].shape == (5, len(prompts))
    torch.testing.assert_close(r["ablated"][-1], r["clean"])  # ablating nothing changes nothing
    assert (r["ablated"][:4] - r["clean"]).abs().max() > 1e-4
    # one cluster in all layers at once touches exactly that cluster's dims of every mlp slot
    assert int(sets[0].sum()) == sum(int((s.labels == 0).sum()) for s in layout.slots if s.part == "mlp")


def test_bad_inputs():
    m = load_model("tiny-gpt2", device="cpu")
    other = load_model("tiny-gemma", device="cpu")
    other_part = ModelPartition.blocks(weight_graphs(other), 4, model="tiny-gemma")
    # same shapes but wrong family spaces/graphs must still be caught; widen one space to force a mismatch
    other_part.space_labels["mlp.0"] = torch.zeros(512, dtype=torch.int64)
    with pytest.raises(PartitionMismatchError):
        unit_layout(m, other_part)
    with pytest.raises(DataError, match="no prompts"):
        encode_task(m, [], name="empty")
    with pytest.raises(DataError, match="lacks columns"):
        encode_task(m, [{"prompt": "x"}], name="broken")
    with pytest.raises(DataError, match="unknown task"):
        encode_task(m, "no-such-task")


def _mixed_lengths(model):
    """Prompts of two lengths, so that the batch's last positions differ (several kept logits positions)."""
    p = encode_task(model, capital_rows()[:3] + colour_rows()[:3], name="mixed")
    assert len(set(p.lengths.tolist())) == 2
    return p


class _Spy:
    """Wraps a bridge; records the logits shape of every forward, optionally rejecting or ignoring
    ``logits_to_keep`` like an HF model without it (by a TypeError, or through ``**kwargs``)."""

    def __init__(self, model, mode="pass"):
        self.model, self.mode, self.shapes = model, mode, []

    def parameters(self):
        return self.model.parameters()

    def run_with_hooks(self, tokens, fwd_hooks=(), **kw):
        if "logits_to_keep" in kw and self.mode == "reject":
            raise TypeError("forward() got an unexpected keyword argument 'logits_to_keep'")
        if self.mode == "ignore":
            kw.pop("logits_to_keep", None)
        out = self.model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks), **kw)
        self.shapes.append(tuple(out.shape))
        return out


def test_metric_logits_keep_only_last_positions(tiny_bridge):
    m = tiny_bridge
    p = _mixed_lengths(m)
    with torch.no_grad():
        full = last_logits(m(p.clean), p.lengths)
        for mode in ("pass", "reject", "ignore"):
            spy = _Spy(m, mode)
            got = metric_logits(spy, p)
            torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
            n_pos = spy.shapes[-1][1]
            # the bridge unembeds only the 2 distinct last positions; the fallbacks unembed every position
            assert n_pos == (2 if mode == "pass" else p.clean.shape[1])
        assert metric_logits(m, p, full_logits=True).shape == (len(p), p.clean.shape[1], full.shape[-1])
        # activations only: the early-stopped pass caches the same values as a full one
        _, layout, _ = _setup(m)
        logits, acts = cache_activations(m, p.clean, layout.hooks)
        none, early = cache_activations(m, p.clean, layout.hooks, logits=False)
    assert none is None and logits.shape[:2] == p.clean.shape
    for h in layout.hooks:
        torch.testing.assert_close(early[h], acts[h])


@pytest.mark.parametrize("method", ["zero", "mean", "resample"])
def test_set_batched_sweep_equals_one_set_at_a_time(tiny_bridge, method):
    m = tiny_bridge
    _, layout, _ = _setup(m)
    p = _mixed_lengths(m)
    sets = torch.cat([node_masks(layout)[::3], cluster_masks(layout, "mlp"),
                      torch.zeros(1, layout.n_dims, dtype=torch.bool)])
    # the old path: one set per forward, every position unembedded
    old = ablation_sweep(m, p, layout, sets, method, batch_size=4, max_rows=0, full_logits=True)
    new = ablation_sweep(m, p, layout, sets, method, batch_size=4, max_rows=20)  # 5 sets per forward, ragged
    assert (old["ablated"] - old["clean"]).abs().max() > 1e-3  # the ablations do something
    for key in ("clean", "ablated"):
        torch.testing.assert_close(new[key], old[key], atol=1e-4, rtol=1e-4)
    for key in ("clean_correct", "ablated_correct"):
        assert torch.equal(new[key], old[key])
    only = ablation_sweep(m, p, layout, sets[:7], method, batch_size=4, max_rows=64, clean=False)
    assert set(only) == {"ablated", "ablated_correct"}
    torch.testing.assert_close(only["ablated"], old["ablated"][:7], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia", "tiny-gemma"])
def test_counterfactual_with_the_clean_prompt_as_its_own_counterfactual_changes_nothing(name):
    from circuitclust.analysis.patching.attribution import attribution_patching
    from circuitclust.analysis.patching.prompts import TaskPrompts

    m = load_model(name, device="cpu")
    _, layout, p = _setup(m)
    same = TaskPrompts(p.name, p.clean, p.lengths, p.clean, p.answer, p.corrupted_answer)
    every = torch.ones(1, layout.n_dims, dtype=torch.bool)
    r = ablation_sweep(m, same, layout, torch.cat([every, node_masks(layout)[:3]]), "counterfactual", batch_size=4)
    for row in r["ablated"]:
        torch.testing.assert_close(row, r["clean"], atol=1e-5, rtol=1e-5)
    assert attribution_patching(m, same, layout, batch_size=4)["corrupted"].abs().max() == 0
