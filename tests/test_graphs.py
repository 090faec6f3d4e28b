"""Weight graphs must equal the HF parameters, oriented [n_in, n_out], for every family."""
import pytest
import torch
from _helpers import head_view

from circuitclust.models import hf_model_of, weight_graphs


def _expected(hf, layer: int) -> dict[str, torch.Tensor]:
    """Each matrix read straight from the HF modules, written out per family (independent of the table)."""
    c = hf.config
    mt = c.model_type
    if mt == "gpt2":
        blk = hf.transformer.h[layer]
        d = c.n_embd
        qkv = blk.attn.c_attn.weight  # Conv1D: [in, out]
        return {"mlp_in": blk.mlp.c_fc.weight, "mlp_out": blk.mlp.c_proj.weight,
                "attn_q": qkv[:, :d], "attn_k": qkv[:, d:2 * d], "attn_v": qkv[:, 2 * d:],
                "attn_o": blk.attn.c_proj.weight}
    if mt == "gpt_neox":
        blk = hf.gpt_neox.layers[layer]
        h, d = c.num_attention_heads, c.hidden_size
        qkv = blk.attention.query_key_value.weight.view(h, 3, d // h, d)  # Linear [out, in], per-head q|k|v
        return {"mlp_in": blk.mlp.dense_h_to_4h.weight.T, "mlp_out": blk.mlp.dense_4h_to_h.weight.T,
                "attn_q": qkv[:, 0].reshape(d, d).T, "attn_k": qkv[:, 1].reshape(d, d).T,
                "attn_v": qkv[:, 2].reshape(d, d).T, "attn_o": blk.attention.dense.weight.T}
    blk = hf.model.layers[layer]
    a = blk.self_attn
    return {"mlp_in": blk.mlp.up_proj.weight.T, "mlp_gate": blk.mlp.gate_proj.weight.T,
            "mlp_out": blk.mlp.down_proj.weight.T, "attn_q": a.q_proj.weight.T, "attn_k": a.k_proj.weight.T,
            "attn_v": a.v_proj.weight.T, "attn_o": a.o_proj.weight.T}


def _check_all_graphs(model):
    hf = hf_model_of(model)
    graphs = weight_graphs(model)
    n_layers = hf.config.num_hidden_layers
    kinds = set(_expected(hf, 0))
    assert len(graphs) == n_layers * len(kinds)
    for g in graphs:
        exp = _expected(hf, g.layer)[g.kind]
        assert tuple(g.weight.shape) == g.shape == tuple(exp.shape), g
        assert torch.equal(g.weight, exp), g.name


def test_graphs_equal_hf_parameters(tiny_bridge):
    _check_all_graphs(tiny_bridge)


def test_orientation_by_forward_pass(tiny_bridge):
    """x @ W (+ bias) through the graph reproduces what the module computed inside the real forward pass."""
    hf = hf_model_of(tiny_bridge)
    names = ["blocks.1.mlp.in.hook_in", "blocks.1.mlp.in.hook_out", "blocks.1.mlp.out.hook_in",
             "blocks.1.mlp.out.hook_out", "blocks.1.attn.o.hook_in", "blocks.1.attn.o.hook_out"]
    with torch.no_grad():
        _, cache = tiny_bridge.run_with_cache("Sodium chloride dissolves in water", names_filter=names)
        graphs = {g.kind: g for g in weight_graphs(tiny_bridge, layers=[1])}
        for kind, site in (("mlp_in", "mlp.in"), ("mlp_out", "mlp.out"), ("attn_o", "attn.o")):
            x, y = cache[f"blocks.1.{site}.hook_in"], cache[f"blocks.1.{site}.hook_out"]
            x = x.reshape(*x.shape[:2], -1)
            pred = x @ graphs[kind].weight
            param = hf.get_parameter(graphs[kind].param_name.removesuffix("weight") + "bias") \
                if hf.config.model_type != "gemma3_text" else None
            if param is not None:
                pred = pred + param
            torch.testing.assert_close(pred, y.reshape(pred.shape), atol=1e-5, rtol=1e-4)


def test_unit_spaces_tie_hidden_neurons(tiny_bridge):
    graphs = weight_graphs(tiny_bridge, layers=[2])
    by_kind = {g.kind: g for g in graphs}
    assert by_kind["mlp_in"].out_space == by_kind["mlp_out"].in_space == "mlp.2"
    assert by_kind["attn_o"].in_space == "attn.2"
    if "mlp_gate" in by_kind:
        assert by_kind["mlp_gate"].out_space == "mlp.2"
    cfg = hf_model_of(tiny_bridge).config
    gqa = getattr(cfg, "num_key_value_heads", cfg.num_attention_heads) != cfg.num_attention_heads
    assert (by_kind["attn_v"].out_space == "attn.2") != gqa


def test_weight_is_tied_to_the_parameter(tiny_bridge):
    hf = hf_model_of(tiny_bridge)
    g = next(g for g in weight_graphs(tiny_bridge, parts=["attn_k"]) if g.layer == 0)
    param = hf.get_parameter(g.param_name)
    g.weight.pow(2).sum().backward()
    assert param.grad is not None
    touched = int((param.grad != 0).sum())
    assert touched == g.weight.numel()  # exactly the K slice of a fused QKV, all of a separate K
    with torch.no_grad():
        param.mul_(2.0)
    assert torch.equal(g.weight, _expected(hf, 0)["attn_k"])  # never stale after an update


def test_head_view(tiny_bridge):
    for g in weight_graphs(tiny_bridge, parts=["attn"], layers=[0]):
        hv = head_view(g)
        if g.kind == "attn_o":
            assert hv.shape == (g.n_heads, g.shape[1])
            torch.testing.assert_close(hv[0], g.weight[: g.shape[0] // g.n_heads].norm(dim=0))
        else:
            assert hv.shape == (g.shape[0], g.n_heads)
    with pytest.raises(ValueError, match="only defined for attention"):
        head_view(weight_graphs(tiny_bridge, parts=["mlp_in"])[0])


def test_bad_parts_and_layers(tiny_bridge):
    with pytest.raises(ValueError, match="unknown part"):
        weight_graphs(tiny_bridge, parts=["ffn"])
    with pytest.raises(ValueError, match="out of range"):
        weight_graphs(tiny_bridge, layers=[99])


@pytest.mark.slow
def test_embedded_graphs_equal_hf_parameters(embedded_bridge):
    _check_all_graphs(embedded_bridge)
    g = weight_graphs(embedded_bridge, parts=["attn_k"], layers=[0])[0]
    assert g.shape == (640, 256) and g.n_heads == 1
