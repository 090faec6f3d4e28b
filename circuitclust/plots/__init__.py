"""Interactive plotly figures of run-folder results. Each function takes parsed run files (see
:mod:`circuitclust.runfiles`), or weight tensors plus a partition, and returns a ``plotly.graph_objects.Figure``.
Only display work happens here (reordering, downsampling, labels); every number comes from the inputs."""
from .clusterability import clusterability_bars, ncut_figure
from .patching import (circuit_locations, circuit_sizes, effect_heatmaps, faithfulness_curves, flips_histogram,
                       specialisation_bars)
from .similarity import group_spans, layer_similarity_heatmaps
from .training import pareto_front, training_curves
from .weights import axis_bins, block_average, weight_heatmaps

__all__ = ["clusterability_bars", "ncut_figure", "circuit_locations", "circuit_sizes", "effect_heatmaps",
           "faithfulness_curves", "flips_histogram", "specialisation_bars", "group_spans",
           "layer_similarity_heatmaps", "pareto_front", "training_curves", "axis_bins", "block_average", "weight_heatmaps"]
