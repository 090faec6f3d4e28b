"""Model adapters: loading (HF + TransformerBridge), architecture tables, weight graphs."""
from .families import FAMILIES, MATRIX_KINDS, Family, Source, family_for
from .graphs import WeightGraph, hf_model_of, matrix_kinds, model_device, model_shapes, weight_graphs
from .loading import TINY_CONFIGS, build_tiny, load_hf, load_model

__all__ = ["FAMILIES", "MATRIX_KINDS", "Family", "Source", "family_for", "WeightGraph", "hf_model_of",
           "matrix_kinds", "model_device", "model_shapes", "weight_graphs", "TINY_CONFIGS", "build_tiny", "load_hf", "load_model"]
