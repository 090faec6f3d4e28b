"""circuitclust: modular interpretability for transformer language models."""
__version__ = "0.1.0"

# Public API, imported lazily so that `import circuitclust` (and the CLI's start-up) stays fast.
_LAZY = {
    "load_model": "circuitclust.models.loading",
    "weight_graphs": "circuitclust.models.graphs",
    "WeightGraph": "circuitclust.models.graphs",
    "cocluster": "circuitclust.core.cocluster",
    "clusterability": "circuitclust.core.measures",
    "Partition": "circuitclust.core.partition",
    "ModelPartition": "circuitclust.core.partition",
    "partition_model": "circuitclust.analysis.clustering",
    "ClusterabilityLoss": "circuitclust.analysis.finetuning",
    # the pipeline: one function per operation, typed options in, typed results out
    "cluster": "circuitclust.pipeline",
    "ClusterOptions": "circuitclust.pipeline",
    "ClusterResult": "circuitclust.pipeline",
    "finetune": "circuitclust.pipeline",
    "FinetuneConfig": "circuitclust.pipeline",
    "patch": "circuitclust.pipeline",
    "PatchOptions": "circuitclust.pipeline",
    "PatchResult": "circuitclust.pipeline",
    "similarity": "circuitclust.pipeline",
    "SimilarityOptions": "circuitclust.pipeline",
    "SimilarityResult": "circuitclust.pipeline",
    "cluster_seeds": "circuitclust.pipeline",
    "similarity_seeds": "circuitclust.pipeline",
    "finetune_seeds": "circuitclust.pipeline",
    "Replicates": "circuitclust.pipeline",
    "layer_similarity": "circuitclust.analysis.similarity",
    "LayerSimilarity": "circuitclust.analysis.similarity",
    "CircuitclustError": "circuitclust.errors",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'circuitclust' has no attribute {name!r}")
