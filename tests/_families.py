"""Small random models of every supported family, saved to a folder, and each family's weights written out by
hand from the HF modules (independent of circuitclust's adapters, which read TransformerBridge's tables).

Every config has 2 blocks, d_model 32, 4 query heads of width 8 and (where the family has grouped-query
attention) 2 KV heads, an MLP of 64 hidden neurons, and the tiny models' 2048-token tokenizer.
"""
from __future__ import annotations

from pathlib import Path

import torch

_LLAMA = dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
              intermediate_size=64, max_position_embeddings=128)
CONFIGS: dict[str, dict] = {
    "gpt2": dict(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=128),
    "gpt_neox": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=128, rotary_pct=0.25),
    "gptj": dict(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=128, rotary_dim=4),
    "gpt_neo": dict(num_layers=2, hidden_size=32, num_heads=4, intermediate_size=64, max_position_embeddings=128,
                    attention_types=[[["global", "local"], 1]], window_size=16),
    "gpt_bigcode": dict(n_layer=2, n_embd=32, n_head=4, n_inner=64, n_positions=128, multi_query=True),
    "bloom": dict(n_layer=2, hidden_size=32, n_head=4),
    "opt": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, ffn_dim=64, max_position_embeddings=128,
                word_embed_proj_dim=32),
    "xglm": dict(num_layers=2, d_model=32, attention_heads=4, ffn_dim=64, max_position_embeddings=128),
    "mpt": dict(n_layers=2, d_model=32, n_heads=4, expansion_ratio=2, max_seq_len=128),
    "phi": dict(num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=128),
    **{mt: dict(_LLAMA) for mt in (
        "gemma", "gemma2", "gemma3_text", "vaultgemma", "llama", "mistral", "ministral3", "qwen2", "qwen3", "olmo",
        "olmo2", "olmo3", "phi3", "granite", "cohere", "cohere2", "stablelm", "starcoder2", "smollm3", "glm", "glm4",
        "arcee", "apertus", "exaone4", "ernie4_5", "hunyuan_v1_dense", "seed_oss", "nemotron", "bitnet", "jais2")},
}
CONFIGS["stablelm"]["num_key_value_heads"] = 4  # StableLM's parallel-residual option is tested on MHA below
PARALLEL = {"gpt_neox", "gptj", "phi", "cohere", "cohere2"}


def tokenizer():
    from transformers import AutoTokenizer

    from circuitclust.models.loading import tiny_tokenizer_dir

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir()))


def save_random(model_type: str, folder: Path, seed: int = 0, **overrides) -> Path:
    """A randomly initialised model of ``model_type`` (``CONFIGS``) and the tiny tokenizer, saved to ``folder``
    the way ``save_pretrained`` does (config.json with ``architectures``, model.safetensors, tokenizer files)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = tokenizer()
    kwargs = {**CONFIGS[model_type], **overrides}
    config = AutoConfig.for_model(model_type, vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                  eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # some families initialise biases and norms to constants; make every weight distinct
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _lin(module) -> torch.Tensor:
    """An nn.Linear's weight turned to [in, out]."""
    return module.weight.T


def expected(hf, layer: int) -> dict[str, torch.Tensor]:
    """Every matrix of block ``layer`` as [n_in, n_out], read from the HF modules by hand, per family."""
    c, mt = hf.config, hf.config.model_type
    if mt == "gpt2":
        blk, d = hf.transformer.h[layer], c.n_embd
        qkv = blk.attn.c_attn.weight  # Conv1D [in, out]: [Q | K | V]
        return {"mlp_in": blk.mlp.c_fc.weight, "mlp_out": blk.mlp.c_proj.weight, "attn_q": qkv[:, :d],
                "attn_k": qkv[:, d:2 * d], "attn_v": qkv[:, 2 * d:], "attn_o": blk.attn.c_proj.weight}
    if mt == "gpt_bigcode":
        blk, d = hf.transformer.h[layer], c.n_embd
        dh = d // c.n_head
        qkv = _lin(blk.attn.c_attn)  # multi-query: [Q (d) | K (d_head) | V (d_head)]
        return {"mlp_in": _lin(blk.mlp.c_fc), "mlp_out": _lin(blk.mlp.c_proj), "attn_q": qkv[:, :d],
                "attn_k": qkv[:, d:d + dh], "attn_v": qkv[:, d + dh:], "attn_o": _lin(blk.attn.c_proj)}
    if mt in ("gpt_neox", "bloom"):
        blk = hf.gpt_neox.layers[layer] if mt == "gpt_neox" else hf.transformer.h[layer]
        attn = blk.attention if mt == "gpt_neox" else blk.self_attention
        h = c.num_attention_heads if mt == "gpt_neox" else c.n_head
        d = c.hidden_size
        qkv = attn.query_key_value.weight.view(h, 3, d // h, d)  # per head: [q_h | k_h | v_h]
        return {"mlp_in": _lin(blk.mlp.dense_h_to_4h), "mlp_out": _lin(blk.mlp.dense_4h_to_h),
                "attn_q": qkv[:, 0].reshape(d, d).T, "attn_k": qkv[:, 1].reshape(d, d).T,
                "attn_v": qkv[:, 2].reshape(d, d).T, "attn_o": _lin(attn.dense)}
    if mt == "mpt":
        blk, d = hf.transformer.blocks[layer], c.d_model
        qkv = _lin(blk.attn.Wqkv)
        return {"mlp_in": _lin(blk.ffn.up_proj), "mlp_out": _lin(blk.ffn.down_proj), "attn_q": qkv[:, :d],
                "attn_k": qkv[:, d:2 * d], "attn_v": qkv[:, 2 * d:], "attn_o": _lin(blk.attn.out_proj)}
    if mt == "gptj":
        blk = hf.transformer.h[layer]
        a = blk.attn
        return {"mlp_in": _lin(blk.mlp.fc_in), "mlp_out": _lin(blk.mlp.fc_out), "attn_q": _lin(a.q_proj),
                "attn_k": _lin(a.k_proj), "attn_v": _lin(a.v_proj), "attn_o": _lin(a.out_proj)}
    if mt == "gpt_neo":
        blk = hf.transformer.h[layer]
        a = blk.attn.attention
        return {"mlp_in": _lin(blk.mlp.c_fc), "mlp_out": _lin(blk.mlp.c_proj), "attn_q": _lin(a.q_proj),
                "attn_k": _lin(a.k_proj), "attn_v": _lin(a.v_proj), "attn_o": _lin(a.out_proj)}
    if mt in ("opt", "xglm"):
        blk = hf.model.decoder.layers[layer] if mt == "opt" else hf.model.layers[layer]
        a = blk.self_attn
        return {"mlp_in": _lin(blk.fc1), "mlp_out": _lin(blk.fc2), "attn_q": _lin(a.q_proj), "attn_k": _lin(a.k_proj),
                "attn_v": _lin(a.v_proj), "attn_o": _lin(a.out_proj)}
    blk = hf.model.layers[layer]
    a, m = blk.self_attn, blk.mlp
    if mt == "phi":
        return {"mlp_in": _lin(m.fc1), "mlp_out": _lin(m.fc2), "attn_q": _lin(a.q_proj), "attn_k": _lin(a.k_proj),
                "attn_v": _lin(a.v_proj), "attn_o": _lin(a.dense)}
    out = {"attn_o": _lin(a.o_proj)}
    if mt == "phi3":  # fused, grouped-query [Q | K | V]
        q, kv = c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim
        qkv = _lin(a.qkv_proj)
        out.update(attn_q=qkv[:, :q], attn_k=qkv[:, q:q + kv], attn_v=qkv[:, q + kv:])
    else:
        out.update(attn_q=_lin(a.q_proj), attn_k=_lin(a.k_proj), attn_v=_lin(a.v_proj))
    if mt in ("phi3", "glm", "glm4"):  # fused [gate | up]
        gu = _lin(m.gate_up_proj)
        half = gu.shape[1] // 2
        out.update(mlp_gate=gu[:, :half], mlp_in=gu[:, half:], mlp_out=_lin(m.down_proj))
    elif mt == "starcoder2":
        out.update(mlp_in=_lin(m.c_fc), mlp_out=_lin(m.c_proj))
    elif mt in ("arcee", "apertus", "nemotron", "jais2"):  # ungated up/down
        out.update(mlp_in=_lin(m.up_proj), mlp_out=_lin(m.down_proj))
    else:
        out.update(mlp_in=_lin(m.up_proj), mlp_gate=_lin(m.gate_proj), mlp_out=_lin(m.down_proj))
    return out
