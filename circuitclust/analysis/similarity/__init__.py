"""Layer similarity (Gao et al. 2024): representations of every pair of layers compared with
Gromov-Wasserstein distances and linear CKA, layer groups (sub-networks) with bootstrap stability, and
base vs fine-tuned comparison. Run folder files: similarity.json, similarity.safetensors, gw.csv, cka.csv.

Modules, one job each: :mod:`.representations` (hooks, prompts, sampled token positions, activations),
:mod:`.layers` (:func:`layer_similarity` and its saved result :class:`LayerSimilarity`), :mod:`.groups`
(layer groups and their bootstrap stability), :mod:`.compare` (two models on the same inputs).
"""
from .compare import COMPARE_SCHEMA, compare_similarity
from .groups import LayerGroups, bootstrap_groups, find_groups
from .layers import SCHEMA, LayerSimilarity, check_similarity_options, layer_similarity
from .representations import (
                              HOOK_SHORTCUTS,
                              collect_representations,
                              load_prompts,
                              resolve_hooks,
                              sample_positions,
                              tokenize_prompts,
)

__all__ = ["LayerSimilarity", "LayerGroups", "layer_similarity", "compare_similarity", "check_similarity_options",
           "find_groups", "bootstrap_groups", "resolve_hooks", "load_prompts", "tokenize_prompts",
           "sample_positions", "collect_representations", "HOOK_SHORTCUTS", "SCHEMA", "COMPARE_SCHEMA"]
