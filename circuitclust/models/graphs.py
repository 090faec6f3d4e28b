"""Weight matrices of a transformer as bipartite graphs, oriented ``[n_in, n_out]``.

A :class:`WeightGraph` does not copy weights: ``graph.weight`` is recomputed from the live HF parameter on
every access (a transpose or a slice of it), so a loss on it back-propagates into the model and never sees
stale values after an optimiser step.

Unit spaces name what the rows and columns index, so graphs that share units can be partitioned
consistently:

- ``resid``: the residual stream (``d_model``); not tied across graphs by the partitioner.
- ``mlp.{l}``: MLP hidden neurons of block ``l`` (shared by ``mlp_in``, ``mlp_gate`` and ``mlp_out``).
- ``attn.{l}``: attention value/output head dimensions (``n_heads * d_head``): the output of ``attn_v``
  and the input of ``attn_o``. With grouped-query attention ``attn_v`` has fewer heads, so its output is
  ``attn_v.{l}`` instead.
- ``attn_qk.{l}``: query/key head dimensions (``attn_q`` outputs; ``attn_k`` outputs too unless
  grouped-query attention gives it ``attn_k.{l}``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from ..errors import OptionError
from .families import MATRIX_KINDS, Family, Source, family_for

PARTS = {"mlp": ("mlp_in", "mlp_gate", "mlp_out"), "attn": ("attn_q", "attn_k", "attn_v", "attn_o")}
_SHORT = {"mlp_in": "mlp.in", "mlp_gate": "mlp.gate", "mlp_out": "mlp.out",
          "attn_q": "attn.q", "attn_k": "attn.k", "attn_v": "attn.v", "attn_o": "attn.o"}


@dataclass(frozen=True)
class Shapes:
    """The dimensions of a model that the weight tables need."""

    n_layers: int
    d_model: int
    d_mlp: int
    n_heads: int
    n_kv_heads: int
    d_head: int


def model_shapes(hf_model: nn.Module) -> Shapes:
    """Read layer count and widths from an HF causal-LM config (GPT-2, GPT-NeoX, Gemma, Llama names)."""
    c = hf_model.config
    n_layers = getattr(c, "num_hidden_layers", None) or c.n_layer
    d_model = getattr(c, "hidden_size", None) or c.n_embd
    n_heads = getattr(c, "num_attention_heads", None) or c.n_head
    d_mlp = getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * d_model
    n_kv = getattr(c, "num_key_value_heads", None) or n_heads
    d_head = getattr(c, "head_dim", None) or d_model // n_heads
    return Shapes(int(n_layers), int(d_model), int(d_mlp), int(n_heads), int(n_kv), int(d_head))


def hf_model_of(model: nn.Module) -> nn.Module:
    """The underlying HF ``PreTrainedModel`` of a TransformerBridge (or the model itself)."""
    return getattr(model, "original_model", model)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (of the HF model inside a TransformerBridge)."""
    return next(hf_model_of(model).parameters()).device


@dataclass(frozen=True, eq=False)
class WeightGraph:
    """One weight matrix as a bipartite graph.

    Attributes: ``name`` (``blocks.{l}.mlp.in`` ...), ``layer``, ``kind`` (one of ``MATRIX_KINDS``),
    ``in_space`` / ``out_space`` (unit-space names, see module docstring), ``shape`` ``(n_in, n_out)``,
    ``param_name`` (the HF parameter it reads). ``weight`` is a ``[n_in, n_out]`` tensor tied to that
    parameter.
    """

    name: str
    layer: int
    kind: str
    in_space: str
    out_space: str
    shape: tuple[int, int]
    param_name: str
    _param: nn.Parameter
    _source: Source
    _n_heads: int
    _n_kv_heads: int
    _d_head: int

    @property
    def weight(self) -> torch.Tensor:
        """The matrix ``[n_in, n_out]``: a differentiable view (or slice) of the live HF parameter."""
        w = self._param if self._source.layout == "in_out" else self._param.t()
        src = self._source
        if src.fused == "concat":
            w = w.chunk(3, dim=1)[src.part]
        elif src.fused == "per_head":
            n_in = w.shape[0]
            w = w.reshape(n_in, self._n_heads, 3, self._d_head)[:, :, src.part, :]
            w = w.reshape(n_in, self._n_heads * self._d_head)
        return w

    @property
    def parameter(self) -> nn.Parameter:
        """The HF parameter this graph reads (a fused QKV graph shares it with its siblings)."""
        return self._param

    @property
    def stored_in_out(self) -> bool:
        """True when the parameter is stored ``[in, out]`` (GPT-2 ``Conv1D``), False for ``nn.Linear``."""
        return self._source.layout == "in_out"

    @property
    def n_heads(self) -> int:
        """Heads along the head-dimension side (``n_kv_heads`` for K/V under grouped-query attention)."""
        return self._n_kv_heads if self.kind in ("attn_k", "attn_v") else self._n_heads

    def __repr__(self) -> str:
        return f"WeightGraph({self.name!r}, {self.kind}, {self.in_space}->{self.out_space}, {self.shape})"


def _spaces(kind: str, layer: int, s: Shapes) -> tuple[str, str]:
    gqa = s.n_kv_heads != s.n_heads
    head = {
        "mlp_in": f"mlp.{layer}", "mlp_gate": f"mlp.{layer}", "mlp_out": f"mlp.{layer}",
        "attn_q": f"attn_qk.{layer}",
        "attn_k": f"attn_k.{layer}" if gqa else f"attn_qk.{layer}",
        "attn_v": f"attn_v.{layer}" if gqa else f"attn.{layer}",
        "attn_o": f"attn.{layer}",
    }[kind]
    return (head, "resid") if kind in ("mlp_out", "attn_o") else ("resid", head)


def _shape(kind: str, s: Shapes) -> tuple[int, int]:
    return {
        "mlp_in": (s.d_model, s.d_mlp), "mlp_gate": (s.d_model, s.d_mlp), "mlp_out": (s.d_mlp, s.d_model),
        "attn_q": (s.d_model, s.n_heads * s.d_head),
        "attn_k": (s.d_model, s.n_kv_heads * s.d_head),
        "attn_v": (s.d_model, s.n_kv_heads * s.d_head),
        "attn_o": (s.n_heads * s.d_head, s.d_model),
    }[kind]


def matrix_kinds(parts: Iterable[str] | str) -> list[str]:
    """The matrix kinds that ``parts`` names (``"mlp"``, ``"attn"``, kinds such as ``"mlp_in"``, or a
    comma-separated string of them), in ``MATRIX_KINDS`` order. Raises :class:`OptionError` for an unknown
    or empty selection."""
    items = [p.strip() for p in parts.split(",")] if isinstance(parts, str) else [str(p).strip() for p in parts]
    items = [p for p in items if p]
    if not items:
        raise OptionError(f"no parts given: use 'mlp', 'attn' or some of {', '.join(MATRIX_KINDS)}")
    kinds: list[str] = []
    for p in items:
        if p in PARTS:
            kinds += PARTS[p]
        elif p in MATRIX_KINDS:
            kinds.append(p)
        else:
            raise OptionError(f"unknown part '{p}': use 'mlp', 'attn' or some of {', '.join(MATRIX_KINDS)}")
    return [k for k in MATRIX_KINDS if k in kinds]


def weight_graphs(
    model: nn.Module,
    parts: Iterable[str] = ("mlp", "attn"),
    layers: Iterable[int] | None = None,
) -> list[WeightGraph]:
    """All weight graphs of ``model`` (a TransformerBridge or an HF causal LM).

    ``parts`` picks ``"mlp"`` and/or ``"attn"`` (or individual kinds such as ``"mlp_in"``); ``layers``
    restricts to some blocks. Returns graphs ordered by layer, then by ``MATRIX_KINDS`` order.
    Raises :class:`OptionError` for an unknown part, ``ValueError`` for a matrix whose stored shape
    disagrees with the config.
    """
    hf = hf_model_of(model)
    family: Family = family_for(hf.config.model_type)
    s = model_shapes(hf)
    kinds = [k for k in matrix_kinds(parts) if k in family.matrices]
    blocks = hf.get_submodule(family.blocks)
    layer_ids = range(s.n_layers) if layers is None else list(layers)
    graphs = []
    for layer in layer_ids:
        if not 0 <= layer < s.n_layers:
            raise OptionError(f"layer {layer} out of range: the model has {s.n_layers} blocks")
        for kind in kinds:
            src = family.matrices[kind]
            param = blocks[layer].get_parameter(src.path)
            g = WeightGraph(
                name=f"blocks.{layer}.{_SHORT[kind]}", layer=layer, kind=kind,
                in_space=_spaces(kind, layer, s)[0], out_space=_spaces(kind, layer, s)[1],
                shape=_shape(kind, s), param_name=f"{family.blocks}.{layer}.{src.path}",
                _param=param, _source=src, _n_heads=s.n_heads,
                _n_kv_heads=s.n_kv_heads if kind in ("attn_k", "attn_v") else s.n_heads, _d_head=s.d_head,
            )
            if tuple(g.weight.shape) != g.shape:
                raise ValueError(
                    f"{g.name}: parameter {g.param_name} gives shape {tuple(g.weight.shape)}, "
                    f"the config implies {g.shape}"
                )
            graphs.append(g)
    return graphs
