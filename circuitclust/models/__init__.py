"""Model adapters: one per architecture family (``families.py`` + ``adapter.py``), loading (HF +
TransformerBridge, the embedded real models), and weight graphs."""
from .adapter import (EXAMPLE_HOOK, LAYER_HOOKS, UNIT_HOOKS, ModelAdapter, Shapes, Source, adapter_for, hf_model_of, is_bridge,
                      layer_hook, model_device, source_name, unit_hook)
from .families import FAMILIES, FAMILY_LIST, MATRIX_KINDS, Family, family_for, supported_summary
from .graphs import (RESID, WeightGraph, matrix_kinds, model_shapes, space_part, unit_space, weight_graphs)
from .loading import TINY_CONFIGS, build_tiny, load_hf, load_model

__all__ = ["EXAMPLE_HOOK", "LAYER_HOOKS", "UNIT_HOOKS", "ModelAdapter", "Shapes", "Source", "adapter_for", "hf_model_of",
           "is_bridge", "layer_hook", "model_device", "source_name", "unit_hook", "FAMILIES", "FAMILY_LIST",
           "MATRIX_KINDS", "Family", "family_for", "supported_summary", "RESID", "WeightGraph", "matrix_kinds",
           "model_shapes", "space_part", "unit_space", "weight_graphs", "TINY_CONFIGS", "build_tiny", "load_hf",
           "load_model"]
