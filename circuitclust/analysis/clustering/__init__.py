"""Partition a model's weight graphs with tied unit spaces (:mod:`.stacks`, :mod:`.partition`), score how
clusterable the model is against chance and a shuffle null (:mod:`.scoring`), and its whole-network n-cut
(:mod:`.network`)."""
from .network import ncut_model, network_graph
from .partition import METHODS, check_architecture, check_k, model_id, partition_model
from .scoring import score_model
from .stacks import tied_groups

__all__ = ["METHODS", "check_architecture", "check_k", "model_id", "partition_model", "score_model", "network_graph",
           "ncut_model", "tied_groups"]
