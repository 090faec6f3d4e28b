"""One table per architecture family: where each weight matrix lives in the HF model and how it is stored.

This is the only place that knows HF parameter names. Everything downstream sees matrices oriented
``[n_in, n_out]`` (rows = input units, columns = output units), whatever the framework stores:
GPT-2's ``Conv1D`` stores ``[in, out]``; ``nn.Linear`` stores ``[out, in]``.

Fused projections are described, not special-cased in code paths:
- ``concat``: GPT-2 ``c_attn`` holds ``[Q | K | V]`` side by side along the output dimension.
- ``per_head``: GPT-NeoX (Pythia) ``query_key_value`` holds, per head, ``[q_h | k_h | v_h]``
  (HF reshapes the projection to ``[..., n_heads, 3 * d_head]`` and chunks the last axis).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnsupportedModelError

MATRIX_KINDS = ("mlp_in", "mlp_gate", "mlp_out", "attn_q", "attn_k", "attn_v", "attn_o")


@dataclass(frozen=True)
class Source:
    """Where one logical matrix lives inside a transformer block.

    ``path`` is relative to the block module; ``layout`` is ``"in_out"`` or ``"out_in"``;
    ``fused`` (``None``, ``"concat"`` or ``"per_head"``) with ``part`` (0 = Q, 1 = K, 2 = V) selects a
    slice of a fused QKV projection.
    """

    path: str
    layout: str
    fused: str | None = None
    part: int = 0


@dataclass(frozen=True)
class Family:
    """Architecture table for one HF ``model_type`` family.

    ``blocks`` is the dotted path of the ``ModuleList`` of transformer blocks; ``matrices`` maps each
    matrix kind to its :class:`Source`. Gated families have an ``mlp_gate`` that shares hidden neurons
    with ``mlp_in``.
    """

    name: str
    blocks: str
    matrices: dict[str, Source] = field(default_factory=dict)


_LLAMA_LIKE = {
    "mlp_in": Source("mlp.up_proj.weight", "out_in"),
    "mlp_gate": Source("mlp.gate_proj.weight", "out_in"),
    "mlp_out": Source("mlp.down_proj.weight", "out_in"),
    "attn_q": Source("self_attn.q_proj.weight", "out_in"),
    "attn_k": Source("self_attn.k_proj.weight", "out_in"),
    "attn_v": Source("self_attn.v_proj.weight", "out_in"),
    "attn_o": Source("self_attn.o_proj.weight", "out_in"),
}

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        "gpt2",
        "transformer.h",
        {
            "mlp_in": Source("mlp.c_fc.weight", "in_out"),
            "mlp_out": Source("mlp.c_proj.weight", "in_out"),
            "attn_q": Source("attn.c_attn.weight", "in_out", "concat", 0),
            "attn_k": Source("attn.c_attn.weight", "in_out", "concat", 1),
            "attn_v": Source("attn.c_attn.weight", "in_out", "concat", 2),
            "attn_o": Source("attn.c_proj.weight", "in_out"),
        },
    ),
    "gpt_neox": Family(
        "gpt_neox",
        "gpt_neox.layers",
        {
            "mlp_in": Source("mlp.dense_h_to_4h.weight", "out_in"),
            "mlp_out": Source("mlp.dense_4h_to_h.weight", "out_in"),
            "attn_q": Source("attention.query_key_value.weight", "out_in", "per_head", 0),
            "attn_k": Source("attention.query_key_value.weight", "out_in", "per_head", 1),
            "attn_v": Source("attention.query_key_value.weight", "out_in", "per_head", 2),
            "attn_o": Source("attention.dense.weight", "out_in"),
        },
    ),
    # Gemma 1/2/3 and Llama-style models (SmolLM2, Qwen2, Mistral) share one layout.
    **{
        name: Family(name, "model.layers", dict(_LLAMA_LIKE))
        for name in ("gemma", "gemma2", "gemma3_text", "llama", "mistral", "qwen2")
    },
}


def family_for(model_type: str) -> Family:
    """Return the architecture table for an HF ``config.model_type``; raises :class:`UnsupportedModelError` if unknown."""
    try:
        return FAMILIES[model_type]
    except KeyError:
        known = ", ".join(sorted(FAMILIES))
        raise UnsupportedModelError(
            f"circuitclust has no weight table for model_type '{model_type}'; supported: {known}"
        ) from None
