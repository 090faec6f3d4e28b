"""The architecture adapter of one loaded model: every architectural fact the rest of circuitclust uses.

:func:`adapter_for` binds a model (a TransformerBridge or a plain HF causal LM) to a :class:`ModelAdapter`,
read from TransformerBridge's own architecture adapter (``bridge.adapter``; for a plain HF model, the one
TransformerLens would pick for it) plus the few facts of :mod:`.families` it does not expose usably:

- where the blocks live and, per block, the HF parameter of every matrix kind (``component_mapping``:
  ``blocks`` -> ``attn`` -> ``q``/``k``/``v``/``o`` or a fused ``qkv``; ``mlp`` -> ``in``/``gate``/``out``);
- how each parameter is stored: ``nn.Linear`` keeps ``[out, in]``, GPT-2's ``Conv1D`` ``[in, out]`` (read
  from the module's class, so a square matrix cannot be turned the wrong way);
- how a fused QKV or gate/up projection splits (the family's ``qkv`` / ``gate_up``);
- head counts and widths (``cfg.n_heads``, ``n_key_value_heads``, ``d_head``), the hidden MLP width read from
  the ``W_out`` parameter itself (TransformerLens guesses it for some configs), and whether attention and
  MLP read the same residual stream (``cfg.parallel_attn_mlp``: GPT-NeoX, GPT-J, Phi, Cohere...);
- the hook points that carry units and layer outputs (TransformerBridge's canonical names, which it keeps
  the same for every architecture it bridges).

Nothing outside :mod:`circuitclust.models` names an HF module path, an HF config field or a hook string.
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UnsupportedModelError
from .families import MATRIX_KINDS, Family, family_for

# TransformerBridge's canonical hook names: ``hook_post`` is the input of the MLP's output projection (the
# hidden neurons after the activation and any gate), ``hook_z`` the per-head input of the attention output
# projection ``[batch, pos, n_heads, d_head]``; the layer hooks are the residual stream and block outputs.
UNIT_HOOKS = {"mlp": "blocks.{layer}.mlp.hook_post", "attn": "blocks.{layer}.attn.hook_z"}
LAYER_HOOKS = {
    "resid_post": "blocks.{layer}.hook_resid_post",
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "attn_out": "blocks.{layer}.hook_attn_out",
}
EXAMPLE_HOOK = LAYER_HOOKS["resid_post"].format(layer=0)


def unit_hook(layer: int, part: str) -> str:
    """The hook point carrying the units of ``part`` (``"mlp"`` or ``"attn"``) of block ``layer``."""
    return UNIT_HOOKS[part].format(layer=layer)


def layer_hook(shortcut: str, layer: int) -> str:
    """The hook point a layer shortcut (``resid_post``, ``resid_pre``, ``mlp_out``, ``attn_out``) names in
    block ``layer``."""
    return LAYER_HOOKS[shortcut].format(layer=layer)


def hook_label(name: str) -> str:
    """A short label for a hook name: ``blocks.3.hook_resid_post`` -> ``3 resid_post`` (others unchanged)."""
    parts = name.split(".")
    if len(parts) >= 3 and parts[0] == "blocks":
        return f"{parts[1]} {parts[-1].removeprefix('hook_')}"
    return name


@dataclass(frozen=True)
class Shapes:
    """The dimensions of a model that the weight graphs need."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int


@dataclass(frozen=True)
class Source:
    """Where one logical matrix lives inside a transformer block.

    ``path``: the parameter, relative to the block module; ``layout``: ``"in_out"`` (stored ``[in, out]``) or
    ``"out_in"``; ``split`` (``None``, ``"blocks"`` or ``"per_head"``) with ``part`` selects a piece of a
    fused projection along its output: ``"blocks"`` cuts it into consecutive pieces of widths ``sizes``,
    ``"per_head"`` reads piece ``part`` of every head's ``[q_h | k_h | v_h]``.
    """

    path: str
    layout: str
    split: str | None = None
    part: int = 0
    sizes: tuple[int, ...] = ()

    def view(self, param: torch.Tensor, n_heads: int, d_head: int) -> torch.Tensor:
        """``param`` as ``[n_in, n_out]`` (a view of it, or a differentiable slice for ``per_head``)."""
        w = param if self.layout == "in_out" else param.t()
        return self._cut(w, n_heads, d_head, dim=1)

    def bias_view(self, bias: torch.Tensor, n_heads: int, d_head: int) -> torch.Tensor:
        """The piece of an output bias ``[n_out_stored]`` that belongs to this matrix ``[n_out]``."""
        return self._cut(bias, n_heads, d_head, dim=0)

    def _cut(self, t: torch.Tensor, n_heads: int, d_head: int, dim: int) -> torch.Tensor:
        if self.split == "blocks":
            return t.narrow(dim, sum(self.sizes[:self.part]), self.sizes[self.part])
        if self.split == "per_head":
            lead = t.shape[:dim]
            t = t.reshape(*lead, n_heads, 3, d_head).select(dim + 1, self.part)
            return t.reshape(*lead, n_heads * d_head)
        return t

    @property
    def bias_path(self) -> str | None:
        """The bias beside the weight (``...bias``), or None when the path is not a ``.weight``."""
        return self.path[: -len("weight")] + "bias" if self.path.endswith(".weight") else None


@dataclass(frozen=True)
class ModelAdapter:
    """Every architectural fact of one model (see the module docstring): ``family``, TransformerBridge's
    ``architecture`` name, the HF ``model_type``, the ``blocks`` path, one :class:`Source` per matrix kind,
    the ``shapes``, ``parallel_residual`` (attention and MLP read the same residual stream) and ``n_ctx`` (the
    longest context the config declares, or None)."""

    family: Family
    architecture: str
    model_type: str
    blocks: str
    sources: dict[str, Source]
    shapes: Shapes
    parallel_residual: bool
    n_ctx: int | None = None
    unit_hooks: dict[str, str] = field(default_factory=lambda: dict(UNIT_HOOKS))
    layer_hooks: dict[str, str] = field(default_factory=lambda: dict(LAYER_HOOKS))

    def unit_hook(self, layer: int, part: str) -> str:
        """The hook carrying ``part``'s units in block ``layer`` (see :data:`UNIT_HOOKS`)."""
        return self.unit_hooks[part].format(layer=layer)

    def layer_hook(self, shortcut: str, layer: int) -> str:
        """The hook a layer shortcut names in block ``layer`` (see :data:`LAYER_HOOKS`)."""
        return self.layer_hooks[shortcut].format(layer=layer)

    def param_name(self, layer: int, kind: str) -> str:
        """The qualified HF parameter name of matrix ``kind`` in block ``layer``."""
        return f"{self.blocks}.{layer}.{self.sources[kind].path}"


def hf_model_of(model: nn.Module) -> nn.Module:
    """The underlying HF ``PreTrainedModel`` of a TransformerBridge (or the model itself)."""
    return getattr(model, "original_model", model)


def is_bridge(model: nn.Module) -> bool:
    """True for a TransformerBridge (hooks, ``run_with_cache``), False for a plain HF model."""
    return hf_model_of(model) is not model


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's input embedding (where token ids go; with a ``device_map`` the first device)."""
    hf = hf_model_of(model)
    try:
        return hf.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(hf.parameters()).device


def _unwrap(module: nn.Module) -> nn.Module:
    """The HF module inside a TransformerBridge component (the bridge wraps HF modules in place)."""
    while "_original_component" in module._modules:
        module = module._modules["_original_component"]
    return module


def resolve(root: nn.Module, path: str):
    """The attribute at dotted ``path`` below ``root`` in the HF module tree, also after TransformerBridge
    has wrapped the modules in place (each step looks inside the bridge component): a module, a parameter,
    or None (a ``bias=False`` layer's bias). Raises ``AttributeError`` for a path that does not exist."""
    obj = root
    for name in path.split("."):
        obj = getattr(_unwrap(obj), name)
    return obj


def _layout(block: nn.Module, path: str) -> str:
    from transformers.pytorch_utils import Conv1D

    module = _unwrap(resolve(block, path.rsplit(".", 1)[0]))
    return "in_out" if isinstance(module, Conv1D) else "out_in"


def _tl_adapter(model: nn.Module, hf: nn.Module):
    """TransformerBridge's architecture adapter: the bridge's own, or for a plain HF model the one
    TransformerLens would select for it."""
    if is_bridge(model) and getattr(model, "adapter", None) is not None:
        return model.adapter
    from transformer_lens.factories.architecture_adapter_factory import (SUPPORTED_ARCHITECTURES,
                                                                         ArchitectureAdapterFactory)
    from transformer_lens.model_bridge.sources import build_bridge_config_from_hf
    from transformer_lens.model_bridge.sources.transformers import determine_architecture_from_hf_config

    arch = type(hf).__name__
    if arch not in SUPPORTED_ARCHITECTURES:
        arch = determine_architecture_from_hf_config(hf.config)
    dtype = next(hf.parameters()).dtype
    cfg = build_bridge_config_from_hf(hf.config, arch, str(getattr(hf.config, "_name_or_path", "")), dtype)
    return ArchitectureAdapterFactory.select_architecture_adapter(cfg)


def _join(*parts: str | None) -> str:
    return ".".join(p for p in parts if p)


def _build(model: nn.Module, hf: nn.Module) -> ModelAdapter:
    family = family_for(hf.config)
    tl = _tl_adapter(model, hf)
    cfg = tl.cfg
    blocks = tl.component_mapping["blocks"]
    attn, mlp = blocks.submodules.get("attn"), blocks.submodules.get("mlp")
    if attn is None or mlp is None:
        raise UnsupportedModelError(f"{cfg.architecture}: TransformerBridge maps no attention or MLP in its blocks")
    block0 = resolve(hf, blocks.name)[0]
    n_heads = int(cfg.n_heads)
    n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
    d_head = int(cfg.d_head)
    a_sub = attn.submodules
    names: dict[str, tuple[str, str | None, int, tuple[int, ...]]] = {}
    if "qkv" in a_sub and family.qkv is None:
        raise UnsupportedModelError(f"{cfg.architecture}: TransformerBridge fuses its QKV projection and the "
                                    f"{family.label} family entry does not say how to split it")
    if "qkv" in a_sub:
        path = _join(attn.name, a_sub["qkv"].name, "weight")
        sizes = (n_heads * d_head, n_kv * d_head, n_kv * d_head)
        for i, kind in enumerate(("attn_q", "attn_k", "attn_v")):
            names[kind] = (path, family.qkv, i, sizes)
    else:
        for kind, key in (("attn_q", "q"), ("attn_k", "k"), ("attn_v", "v")):
            names[kind] = (_join(attn.name, a_sub[key].name, "weight"), None, 0, ())
    names["attn_o"] = (_join(attn.name, a_sub["o"].name, "weight"), None, 0, ())
    m_sub = mlp.submodules
    d_model = int(cfg.d_model)
    out_path = _join(mlp.name, m_sub["out"].name, "weight")
    d_mlp = resolve(block0, out_path).numel() // d_model
    names["mlp_out"] = (out_path, None, 0, ())
    from transformer_lens.model_bridge.generalized_components import JointGateUpMLPBridge, ParallelBlockBridge

    if family.gate_up is None and isinstance(mlp, JointGateUpMLPBridge):
        raise UnsupportedModelError(f"{cfg.architecture}: TransformerBridge fuses the MLP's gate and up projections "
                                    f"and the {family.label} family entry does not name the fused one")
    if family.gate_up is not None:
        path = _join(mlp.name, family.gate_up, "weight")
        names["mlp_gate"] = (path, "blocks", 0, (d_mlp, d_mlp))
        names["mlp_in"] = (path, "blocks", 1, (d_mlp, d_mlp))
    else:
        names["mlp_in"] = (_join(mlp.name, m_sub["in"].name, "weight"), None, 0, ())
        if "gate" in m_sub:
            names["mlp_gate"] = (_join(mlp.name, m_sub["gate"].name, "weight"), None, 0, ())
    sources = {kind: Source(path, _layout(block0, path), split, part, sizes)
               for kind, (path, split, part, sizes) in names.items()}
    parallel = bool(getattr(cfg, "parallel_attn_mlp", False)) or isinstance(blocks, ParallelBlockBridge)
    shapes = Shapes(int(cfg.n_layers), d_model, int(d_mlp), n_heads, n_kv, d_head)
    return ModelAdapter(family, str(cfg.architecture), str(hf.config.model_type), blocks.name,
                        {k: sources[k] for k in MATRIX_KINDS if k in sources}, shapes, parallel,
                        int(cfg.n_ctx) if getattr(cfg, "n_ctx", None) else None)


_ADAPTERS: "weakref.WeakKeyDictionary[nn.Module, ModelAdapter]" = weakref.WeakKeyDictionary()


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The :class:`ModelAdapter` of ``model`` (a TransformerBridge or an HF causal LM), made once per HF
    model. Raises :class:`~circuitclust.errors.UnsupportedModelError` (one line, listing the supported
    families) for an architecture circuitclust has no adapter for."""
    hf = hf_model_of(model)
    found = _ADAPTERS.get(hf)
    if found is None:
        found = _ADAPTERS[hf] = _build(model, hf)
    return found


def source_name(model: nn.Module) -> str:
    """The HF ``name_or_path`` a model was loaded from ("" when unknown)."""
    return str(getattr(hf_model_of(model).config, "_name_or_path", "") or "")
