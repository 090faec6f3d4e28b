"""Every supported architecture family, each as a small random model saved to a folder and loaded from it:
weight graphs equal the HF parameters element-wise in [n_in, n_out] and reproduce the model's own forward
pass, the partition is tied across in/gate/out, the clusterability loss's gradient lands on exactly the
right slices of (fused) parameters, ablating a cluster equals zeroing its weights, and patching and layer
similarity run. Unsupported kinds of model get a one-line error listing what is supported."""
from __future__ import annotations

import pytest
import torch
from _families import CONFIGS, PARALLEL, expected, save_random
from _helpers import run_ablated
from _patching_data import capital_rows

from circuitclust.analysis.finetuning import ClusterabilityLoss
from circuitclust.analysis.clustering import partition_model
from circuitclust.analysis.patching.interventions import node_masks
from circuitclust.analysis.patching.prompts import encode_task
from circuitclust.analysis.similarity import resolve_hooks
from circuitclust.analysis.patching.units import unit_layout
from circuitclust.core.partition import ModelPartition
from circuitclust.errors import UnsupportedModelError
from circuitclust.models import FAMILY_LIST, MATRIX_KINDS, adapter_for, hf_model_of, load_model, weight_graphs

TEXTS = ["The river flows through the old town and past the mill before it reaches the sea.",
         "Copper conducts electricity well, which is why it is used in wires and motors.",
         "In the spring the farmers plant barley, and in the autumn they bring in the harvest."]
SITES = {"attn_q": "attn.q", "attn_k": "attn.k", "attn_v": "attn.v", "attn_o": "attn.o", "mlp_in": "mlp.in",
         "mlp_gate": "mlp.gate", "mlp_out": "mlp.out"}


def test_every_family_has_a_test_config():
    assert {mt for f in FAMILY_LIST for mt in f.model_types} == set(CONFIGS)


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def family(request, tmp_path_factory):
    """(model_type, bridge loaded from a saved folder, an independent unbridged HF copy of the same weights)."""
    from transformers import AutoModelForCausalLM

    mt = request.param
    folder = save_random(mt, tmp_path_factory.mktemp(mt))
    bridge = load_model(str(folder), device="cpu")
    ref = AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    return mt, bridge, ref


def test_graphs_equal_hf_parameters(family):
    mt, model, ref = family
    graphs = weight_graphs(model)
    kinds = set(expected(ref, 0))
    assert {g.kind for g in graphs} == kinds and len(graphs) == 2 * len(kinds)
    for g in graphs:
        exp = expected(ref, g.layer)[g.kind]
        assert tuple(g.weight.shape) == g.shape == tuple(exp.shape), g
        assert torch.equal(g.weight, exp), g.name


def test_graphs_reproduce_the_forward_pass(family):
    """x @ W + b through each graph equals what the model computed at that projection inside its own
    forward pass (TransformerBridge's hooks around every projection, its own split of fused ones)."""
    mt, model, _ = family
    names = [f"blocks.1.{site}.hook_{end}" for site in SITES.values() for end in ("in", "out")]
    with torch.no_grad():
        _, cache = model.run_with_cache("Sodium chloride dissolves in water", names_filter=lambda n: n in names)
        for g in weight_graphs(model, layers=[1]):
            x, y = cache[f"blocks.1.{SITES[g.kind]}.hook_in"], cache[f"blocks.1.{SITES[g.kind]}.hook_out"]
            x = x.reshape(*x.shape[:2], -1)
            pred = x @ g.weight + (g.bias if g.bias is not None else 0)
            torch.testing.assert_close(pred, y.reshape(pred.shape), atol=1e-5, rtol=1e-4, msg=g.name)
    assert adapter_for(model).parallel_residual == (mt in PARALLEL)


def test_partition_is_tied_across_in_gate_out(family):
    _, model, _ = family
    part = partition_model(model, k=3, parts=("mlp", "attn"), seed=0)
    s = adapter_for(model).shapes
    for layer in range(2):
        hidden = part.space_labels[f"mlp.{layer}"]
        assert torch.equal(part[f"blocks.{layer}.mlp.out"].row_labels, hidden)
        assert torch.equal(part[f"blocks.{layer}.mlp.in"].col_labels, hidden)
        if f"blocks.{layer}.mlp.gate" in part:
            assert torch.equal(part[f"blocks.{layer}.mlp.gate"].col_labels, hidden)
        assert torch.equal(part[f"blocks.{layer}.attn.o"].row_labels, part.space_labels[f"attn.{layer}"])
        if s.n_kv_heads == s.n_heads:
            assert torch.equal(part[f"blocks.{layer}.attn.v"].col_labels, part.space_labels[f"attn.{layer}"])
            assert torch.equal(part[f"blocks.{layer}.attn.k"].col_labels, part[f"blocks.{layer}.attn.q"].col_labels)
        assert len(torch.unique(hidden)) == 3


def test_loss_gradient_lands_on_the_right_slices(family):
    """d(sum of 1 - C)/dW = -2 W (M - C) / ||W||^2 on each graph's own slice of its parameter, nothing elsewhere."""
    _, model, _ = family
    hf = hf_model_of(model)
    part = ModelPartition.blocks(weight_graphs(model), 3)
    loss = ClusterabilityLoss(model, part, graphs=MATRIX_KINDS, reduction="sum")
    hf.zero_grad(set_to_none=True)
    with torch.enable_grad():
        loss().backward()
    seen = {}
    for g in loss.graphs:
        p = part[g.name]
        w = g.weight.detach()
        same = (p.row_labels[:, None] == p.col_labels[None, :]).float()
        c = float((w ** 2 * same).sum() / (w ** 2).sum())
        want = -2 * w * (same - c) / (w ** 2).sum()
        got = g._source.view(g.parameter.grad, g._n_heads, g._d_head)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-9, msg=g.name)
        seen.setdefault(id(g.parameter), [g.parameter, 0.0])[1] += float(got.abs().sum())
    for param, on_slices in seen.values():  # the slices cover all of the gradient
        assert float(param.grad.abs().sum()) == pytest.approx(on_slices, rel=1e-5)
    hf.zero_grad(set_to_none=True)


@pytest.mark.parametrize("part_name", ["mlp", "attn"])
def test_ablating_a_cluster_equals_zeroing_its_weights(family, part_name):
    _, model, _ = family
    part = ModelPartition.blocks(weight_graphs(model), 2)
    layout = unit_layout(model, part)
    prompts = encode_task(model, capital_rows(), name="capital")
    node = next(i for i, n in enumerate(layout.nodes) if n.layer == 1 and n.part == part_name and n.cluster == 1)
    kind = "mlp_out" if part_name == "mlp" else "attn_o"
    with torch.no_grad():
        ablated = run_ablated(model, prompts, layout, node_masks(layout, [node])[0], "zero")
        g = next(g for g in weight_graphs(model, layers=[1]) if g.kind == kind)
        saved = g.parameter.detach().clone()
        g.weight[part.space_labels[f"{part_name}.1"] == 1] = 0
        edited = model(prompts.clean)
        g.parameter.copy_(saved)
        base = model(prompts.clean)
    assert (ablated - base).abs().max() > 1e-6  # the ablation does something
    torch.testing.assert_close(ablated, edited, atol=1e-5, rtol=1e-4)


def test_patching_and_similarity_run(family):
    import circuitclust as cc

    mt, model, _ = family
    part = ModelPartition.blocks(weight_graphs(model), 2)
    res = cc.patch(model, ["country_capital"], partition=part,
                   options=cc.PatchOptions(max_prompts=4, n_boot=10, batch_size=4, device="cpu"))
    assert len(res.base.effect_matrix.nodes) >= 2 * 2 * 2 and torch.isfinite(res.base.effect_matrix.effect).all()
    sim = cc.similarity(model, TEXTS, cc.SimilarityOptions(n=12, split="train", solver="entropic", device="cpu"))
    assert sim.base.distances.shape == (2, 2) and torch.isfinite(sim.base.distances).all()
    assert len(resolve_hooks(model, "resid_post,resid_pre,mlp_out,attn_out")) == 8


UNSUPPORTED = [("mixtral", dict(num_local_experts=4), "mixture-of-experts"),
               ("mamba", dict(), "state-space"),
               ("bert", dict(), "encoder")]


@pytest.mark.parametrize("model_type,extra,why", UNSUPPORTED)
def test_unsupported_models_get_one_line_listing_the_supported(tmp_path, model_type, extra, why):
    from transformers import AutoConfig
    from typer.testing import CliRunner

    from _families import tokenizer
    from circuitclust.cli.main import app

    AutoConfig.for_model(model_type, **extra).save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    with pytest.raises(UnsupportedModelError, match=why) as err:
        load_model(str(tmp_path), device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and "Llama" in msg and "GPT-NeoX / Pythia (gpt_neox)" in msg and "Phi-3" in msg
    res = CliRunner().invoke(app, ["graphs", str(tmp_path)])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and why in res.output


@pytest.mark.parametrize("model_type,flag", [("gpt_neox", False), ("gpt_neox", True), ("stablelm", True),
                                             ("stablelm", False)])
def test_parallel_residual_follows_the_config(model_type, flag):
    """Read from TransformerBridge for a plain HF model too (the finetuning path never bridges)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.for_model(model_type, **{**CONFIGS[model_type], "use_parallel_residual": flag}, vocab_size=64)
    assert adapter_for(AutoModelForCausalLM.from_config(cfg)).parallel_residual is flag


def test_no_architecture_knowledge_outside_models():
    """HF module paths, HF config fields and hook strings live in circuitclust/models/ only."""
    import re
    from pathlib import Path

    import circuitclust

    root = Path(circuitclust.__file__).parent
    pattern = re.compile(r"hook_(post|z|resid_pre|resid_post|mlp_out|attn_out)[\"']|[\"']blocks\.|\.config\b|"
                         r"use_parallel_residual|_name_or_path|original_model|num_hidden_layers|num_key_value_heads|"
                         r"q_proj|c_attn|query_key_value|gate_up_proj|up_proj|down_proj")
    offenders = []
    for f in sorted(root.rglob("*.py")):
        rel = f.relative_to(root).as_posix()
        if rel.startswith("models/"):
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.parametrize("model_type,field,match", [("gpt2", "qkv", "split"), ("phi3", "gate_up", "fused one")])
def test_a_fused_projection_without_its_layout_is_refused(monkeypatch, model_type, field, match):
    """Reading a fused parameter needs the family's layout; without it the adapter refuses, never guesses."""
    import dataclasses

    from transformers import AutoConfig, AutoModelForCausalLM

    from circuitclust.models import adapter as adapter_module
    from circuitclust.models import family_for

    family = dataclasses.replace(family_for(model_type), **{field: None})
    monkeypatch.setattr(adapter_module, "family_for", lambda config: family)
    cfg = AutoConfig.for_model(model_type, **CONFIGS[model_type], vocab_size=64, pad_token_id=0)
    with pytest.raises(UnsupportedModelError, match=match):
        adapter_for(AutoModelForCausalLM.from_config(cfg))
