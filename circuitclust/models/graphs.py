"""Weight matrices of a transformer as bipartite graphs, oriented ``[n_in, n_out]``.

Where each matrix lives and how it is stored comes from the model's adapter (:mod:`.adapter`). A
:class:`WeightGraph` does not copy weights: ``graph.weight`` is recomputed from the live HF parameter on
every access (a transpose or a slice of it, in the parameter's dtype), so a loss on it back-propagates into
the model and never sees stale values after an optimiser step.

Unit spaces name what the rows and columns index, so graphs that share units can be partitioned
consistently:

- ``resid``: the residual stream (``d_model``); not tied across graphs by the partitioner (every graph's
  other side is its ``tied_side``).
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
from .adapter import Shapes, Source, adapter_for, hf_model_of, model_device, resolve  # noqa: F401 (re-exported)
from .families import MATRIX_KINDS

PARTS = {"mlp": ("mlp_in", "mlp_gate", "mlp_out"), "attn": ("attn_q", "attn_k", "attn_v", "attn_o")}
_SHORT = {"mlp_in": "mlp.in", "mlp_gate": "mlp.gate", "mlp_out": "mlp.out",
          "attn_q": "attn.q", "attn_k": "attn.k", "attn_v": "attn.v", "attn_o": "attn.o"}
RESID = "resid"


def unit_space(part: str, layer: int) -> str:
    """The unit space of ``part``'s units in block ``layer``: ``mlp.{l}`` (hidden neurons) or ``attn.{l}``
    (attention value/output head dims), the spaces a partition labels and patching ablates."""
    return f"{part}.{layer}"


def space_part(space: str) -> tuple[str, int | None]:
    """``"mlp.3"`` -> ``("mlp", 3)``; ``"resid"`` -> ``("resid", None)``."""
    head, _, layer = space.partition(".")
    return head, (int(layer) if layer else None)


def model_shapes(model: nn.Module) -> Shapes:
    """Layer count and widths of a model (TransformerBridge or HF causal LM), from its adapter."""
    return adapter_for(model).shapes


@dataclass(frozen=True, eq=False)
class WeightGraph:
    """One weight matrix as a bipartite graph.

    Attributes: ``name`` (``blocks.{l}.mlp.in`` ...), ``layer``, ``kind`` (one of ``MATRIX_KINDS``),
    ``in_space`` / ``out_space`` (unit-space names, see module docstring), ``tied_side`` (``"in"`` or
    ``"out"``: the side whose units are shared with other graphs), ``shape`` ``(n_in, n_out)``,
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
    _bias: nn.Parameter | None
    _source: Source
    _n_heads: int
    _n_kv_heads: int
    _d_head: int

    @property
    def weight(self) -> torch.Tensor:
        """The matrix ``[n_in, n_out]``: a differentiable view (or slice) of the live HF parameter."""
        return self._source.view(self._param, self._n_heads, self._d_head)

    @property
    def bias(self) -> torch.Tensor | None:
        """The output bias ``[n_out]`` of this matrix (its slice of a fused bias), or None."""
        if self._bias is None:
            return None
        return self._source.bias_view(self._bias, self._n_heads, self._d_head)

    @property
    def parameter(self) -> nn.Parameter:
        """The HF parameter this graph reads (a fused QKV graph shares it with its siblings)."""
        return self._param

    @property
    def stored_in_out(self) -> bool:
        """True when the parameter is stored ``[in, out]`` (GPT-2 ``Conv1D``), False for ``nn.Linear``."""
        return self._source.layout == "in_out"

    @property
    def tied_side(self) -> str:
        """``"in"`` when the rows are the hidden units shared with other graphs (``mlp_out``, ``attn_o``),
        ``"out"`` when the columns are."""
        return "in" if self.out_space == RESID else "out"

    @property
    def n_heads(self) -> int:
        """Heads along the head-dimension side (``n_kv_heads`` for K/V under grouped-query attention)."""
        return self._n_kv_heads if self.kind in ("attn_k", "attn_v") else self._n_heads

    @property
    def d_head(self) -> int:
        """Width of one head along the head-dimension side."""
        return self._d_head

    def __repr__(self) -> str:
        return f"WeightGraph({self.name!r}, {self.kind}, {self.in_space}->{self.out_space}, {self.shape})"


def _spaces(kind: str, layer: int, s: Shapes) -> tuple[str, str]:
    gqa = s.n_kv_heads != s.n_heads
    head = {
        "mlp_in": "mlp", "mlp_gate": "mlp", "mlp_out": "mlp", "attn_q": "attn_qk",
        "attn_k": "attn_k" if gqa else "attn_qk", "attn_v": "attn_v" if gqa else "attn", "attn_o": "attn",
    }[kind]
    head = unit_space(head, layer)
    return (head, RESID) if kind in ("mlp_out", "attn_o") else (RESID, head)


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
    disagrees with the config, :class:`~circuitclust.errors.UnsupportedModelError` for an unsupported model.
    """
    ad = adapter_for(model)
    hf = hf_model_of(model)
    s = ad.shapes
    kinds = [k for k in matrix_kinds(parts) if k in ad.sources]
    blocks = resolve(hf, ad.blocks)
    layer_ids = range(s.n_layers) if layers is None else list(layers)
    graphs = []
    for layer in layer_ids:
        if not 0 <= layer < s.n_layers:
            raise OptionError(f"layer {layer} out of range: the model has {s.n_layers} blocks")
        for kind in kinds:
            src = ad.sources[kind]
            param = resolve(blocks[layer], src.path)
            bias = None
            if src.bias_path is not None:
                try:
                    bias = resolve(blocks[layer], src.bias_path)  # None for bias=False
                except AttributeError:  # a module without a bias attribute
                    bias = None
            spaces = _spaces(kind, layer, s)
            g = WeightGraph(
                name=f"blocks.{layer}.{_SHORT[kind]}", layer=layer, kind=kind, in_space=spaces[0],
                out_space=spaces[1], shape=_shape(kind, s), param_name=ad.param_name(layer, kind),
                _param=param, _bias=bias, _source=src, _n_heads=s.n_heads,
                _n_kv_heads=s.n_kv_heads if kind in ("attn_k", "attn_v") else s.n_heads, _d_head=s.d_head,
            )
            if tuple(g.weight.shape) != g.shape:
                raise ValueError(
                    f"{g.name}: parameter {g.param_name} gives shape {tuple(g.weight.shape)}, "
                    f"the config implies {g.shape}"
                )
            graphs.append(g)
    return graphs
