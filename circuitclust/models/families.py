"""The architecture families circuitclust supports: one entry per family, holding what TransformerBridge's own
architecture adapter does not say in a form the weight graphs can use.

TransformerLens 4.x already knows, for every architecture it bridges, where the transformer blocks live and
the HF module names of each block's Q/K/V/O and MLP in/gate/out projections (its ``component_mapping``),
the head counts (grouped-query attention), and whether attention and MLP run in parallel.
:mod:`circuitclust.models.adapter` reads all of that from the bridge's adapter. What a family entry adds:

- ``model_types``: the HF ``config.model_type`` values of the family (what a config on disk says);
- ``qkv``: how a fused QKV projection is laid out along its output dimension, so that Q, K and V can be
  read as differentiable views of the live parameter (the bridge's own split copies them into new
  modules): ``"blocks"`` = ``[Q | K | V]`` one after the other (GPT-2 ``c_attn``, Phi-3 ``qkv_proj`` with
  grouped-query sizes, GPT-BigCode, MPT), ``"per_head"`` = ``[q_h | k_h | v_h]`` for every head h in turn
  (GPT-NeoX ``query_key_value``, BLOOM);
- ``gate_up``: the HF name of a fused ``[gate | up]`` MLP projection (Phi-3, GLM ``gate_up_proj``), gate first;
- ``example``: a hub name of the family (from TransformerLens's registry of supported models where it lists
  one): the bridge's model name for circuitclust's built-in tiny models, and the README's table.

Everything else about a family is read from TransformerBridge at run time.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UnsupportedModelError

MATRIX_KINDS = ("mlp_in", "mlp_gate", "mlp_out", "attn_q", "attn_k", "attn_v", "attn_o")


@dataclass(frozen=True)
class Family:
    """One architecture family (see the module docstring for what each field means)."""

    name: str
    label: str
    model_types: tuple[str, ...]
    example: str
    qkv: str | None = None
    gate_up: str | None = None


_F = Family
FAMILY_LIST: tuple[Family, ...] = (
    _F("gpt2", "GPT-2", ("gpt2",), "openai-community/gpt2", qkv="blocks"),
    _F("gpt_neox", "GPT-NeoX / Pythia", ("gpt_neox",), "EleutherAI/pythia-70m", qkv="per_head"),
    _F("gptj", "GPT-J", ("gptj",), "EleutherAI/gpt-j-6b"),
    _F("gpt_neo", "GPT-Neo", ("gpt_neo",), "EleutherAI/gpt-neo-125m"),
    _F("gpt_bigcode", "GPT-BigCode / StarCoder", ("gpt_bigcode",), "bigcode/gpt_bigcode-santacoder", qkv="blocks"),
    _F("bloom", "BLOOM", ("bloom",), "bigscience/bloom-560m", qkv="per_head"),
    _F("opt", "OPT", ("opt",), "facebook/opt-125m"),
    _F("xglm", "XGLM", ("xglm",), "facebook/xglm-1.7B"),
    _F("mpt", "MPT", ("mpt",), "mosaicml/mpt-7b", qkv="blocks"),
    _F("gemma", "Gemma 1", ("gemma",), "google/gemma-2b"),
    _F("gemma2", "Gemma 2", ("gemma2",), "google/gemma-2-2b"),
    _F("gemma3", "Gemma 3 (text)", ("gemma3_text",), "google/gemma-3-270m"),
    _F("vaultgemma", "VaultGemma", ("vaultgemma",), "google/vaultgemma-1b"),
    _F("llama", "Llama (SmolLM2)", ("llama",), "meta-llama/Llama-3.2-1B"),
    _F("mistral", "Mistral", ("mistral",), "mistralai/Mistral-7B-v0.1"),
    _F("ministral3", "Ministral 3", ("ministral3",), "mistralai/Ministral-3-3B-Reasoning-2512"),
    _F("qwen2", "Qwen2 / Qwen2.5", ("qwen2",), "Qwen/Qwen2.5-0.5B"),
    _F("qwen3", "Qwen3", ("qwen3",), "Qwen/Qwen3-0.6B"),
    _F("olmo", "OLMo", ("olmo",), "allenai/OLMo-1B-hf"),
    _F("olmo2", "OLMo 2", ("olmo2",), "allenai/OLMo-2-0325-32B"),
    _F("olmo3", "OLMo 3", ("olmo3",), "allenai/Olmo-3-1025-7B"),
    _F("phi", "Phi-1/2", ("phi",), "microsoft/phi-2"),
    _F("phi3", "Phi-3", ("phi3",), "microsoft/Phi-3-medium-4k-instruct", qkv="blocks", gate_up="gate_up_proj"),
    _F("granite", "Granite", ("granite",), "ibm-granite/granite-3.0-2b-base"),
    _F("cohere", "Cohere (Command R)", ("cohere",), "CohereLabs/c4ai-command-r-v01"),
    _F("cohere2", "Cohere 2", ("cohere2",), "CohereLabs/c4ai-command-r7b-12-2024"),
    _F("stablelm", "StableLM", ("stablelm",), "stabilityai/stablelm-2-1_6b"),
    _F("starcoder2", "StarCoder2", ("starcoder2",), "bigcode/starcoder2-3b"),
    _F("smollm3", "SmolLM3", ("smollm3",), "HuggingFaceTB/SmolLM3-3B"),
    _F("glm", "GLM", ("glm",), "zai-org/glm-4-9b-hf", gate_up="gate_up_proj"),
    _F("glm4", "GLM-4", ("glm4",), "zai-org/GLM-4-9B-0414", gate_up="gate_up_proj"),
    _F("arcee", "Arcee (AFM)", ("arcee",), "arcee-ai/AFM-4.5B-Base"),
    _F("apertus", "Apertus", ("apertus",), "swiss-ai/Apertus-8B-2509"),
    _F("exaone4", "EXAONE 4", ("exaone4",), "LGAI-EXAONE/EXAONE-4.0-1.2B"),
    _F("ernie4_5", "ERNIE 4.5 (dense)", ("ernie4_5",), "baidu/ERNIE-4.5-0.3B-PT"),
    _F("hunyuan_v1_dense", "Hunyuan (dense)", ("hunyuan_v1_dense",), "tencent/Hunyuan-0.5B-Instruct"),
    _F("seed_oss", "Seed-OSS", ("seed_oss",), "ByteDance-Seed/Seed-OSS-36B-Base"),
    _F("nemotron", "Nemotron", ("nemotron",), "nvidia/Minitron-4B-Base"),
    _F("bitnet", "BitNet", ("bitnet",), "microsoft/bitnet-b1.58-2B-4T-bf16"),
    _F("jais2", "Jais 2", ("jais2",), "inceptionai/Jais-2-2B"),
)
FAMILIES: dict[str, Family] = {f.name: f for f in FAMILY_LIST}
_BY_MODEL_TYPE: dict[str, Family] = {mt: f for f in FAMILY_LIST for mt in f.model_types}

# Why a model that is not listed above is refused, by model_type: these are the kinds circuitclust cannot
# turn into weight graphs (no single MLP per block, no attention, or an encoder).
_MIXTURE_OF_EXPERTS = {
    "mixtral", "olmoe", "qwen2_moe", "qwen3_moe", "granitemoe", "granitemoeshared", "phimoe", "deepseek_v2",
    "deepseek_v3", "gpt_oss", "llama4", "llama4_text", "jetmoe", "dbrx", "glm4_moe", "minimax_m2", "afmoe",
    "ernie4_5_moe", "flex_olmo", "lfm2_moe", "qwen3_next", "qwen3_5_moe", "laguna", "hunyuan_v1_moe"}
_STATE_SPACE = {"mamba", "mamba2", "falcon_mamba", "jamba", "bamba", "zamba", "zamba2", "falcon_h1", "rwkv",
                "rwkv7", "nemotron_h", "recurrent_gemma", "lfm2", "granitemoehybrid", "olmo_hybrid", "qwen3_5"}
_ENCODERS = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "modernbert", "t5",
             "mt5", "bart", "mbart", "pegasus", "marian", "longt5", "led", "m2m_100", "blenderbot", "t5gemma",
             "t5gemma2", "switch_transformers", "xlm-roberta", "hubert", "wav2vec2", "vit", "whisper"}


def supported_summary() -> str:
    """The supported families, for error messages: ``GPT-2 (gpt2), GPT-NeoX / Pythia (gpt_neox), ...``."""
    return ", ".join(f"{f.label} ({'/'.join(f.model_types)})" for f in FAMILY_LIST)


def _kind_of_unsupported(config) -> str:
    model_type = getattr(config, "model_type", None)
    if model_type in _MIXTURE_OF_EXPERTS or any(
            (getattr(config, a, None) or 0) > 1 for a in ("num_local_experts", "num_experts", "n_routed_experts")):
        return "a mixture-of-experts model (its MLP is many experts, not one weight graph)"
    if model_type in _STATE_SPACE or getattr(config, "state_size", None) or getattr(config, "ssm_state_size", None):
        return "a state-space or recurrent model (no attention/MLP blocks to turn into weight graphs)"
    if model_type in _ENCODERS or getattr(config, "is_encoder_decoder", False):
        return "an encoder or encoder-decoder model (circuitclust needs a decoder-only causal LM)"
    return "not a dense decoder-only LM circuitclust has an adapter for"


def family_for(config_or_model_type) -> Family:
    """The :class:`Family` of an HF config (or a ``model_type`` string); raises
    :class:`UnsupportedModelError` with one line naming why and every supported family otherwise."""
    model_type = config_or_model_type if isinstance(config_or_model_type, str) else \
        getattr(config_or_model_type, "model_type", None)
    family = _BY_MODEL_TYPE.get(model_type)
    if family is None:
        why = (_kind_of_unsupported(config_or_model_type) if not isinstance(config_or_model_type, str)
               else _kind_of_unsupported(type("C", (), {"model_type": model_type})()))
        raise UnsupportedModelError(f"model_type {model_type!r} is not supported: it is {why}; supported: "
                                    f"{supported_summary()}")
    return family
