"""Reorder MLP hidden neurons so that every cluster is contiguous, without changing the model's function.

An MLP neuron is a row of ``W_in``/``W_gate`` (plus its bias entry) and the matching row of ``W_out``:
permuting all of them together leaves the block's output unchanged, so block-diagonal plots of a
spectral partition become readable. Residual dimensions are not permuted (that would need every
residual-stream parameter of the model), so their labels stay as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from ..core.partition import ModelPartition, Partition, is_tied_space
from ..models.graphs import WeightGraph, hf_model_of, weight_graphs


def _hidden_axis(g: WeightGraph) -> int:
    """Axis of the stored HF parameter that indexes the MLP hidden neurons."""
    in_out = g.stored_in_out
    if g.kind == "mlp_out":  # hidden neurons are the input side
        return 0 if in_out else 1
    return 1 if in_out else 0


@torch.no_grad()
def permute_contiguous(model: nn.Module, partition: ModelPartition) -> ModelPartition:
    """Permute, in place, each layer's MLP neurons so neurons of cluster 0 come first, then 1, ...

    Inputs: ``model`` (bridge or HF causal LM) and a ``partition`` with ``mlp.{l}`` space labels. Every MLP
    matrix of the layer (in, gate, out) and the in/gate biases are permuted, whether or not the partition
    covers them. Returns the partition with the same clusters in the new neuron order (labels sorted).
    """
    hf = hf_model_of(model)
    perms: dict[str, torch.Tensor] = {}
    for space, labels in partition.space_labels.items():
        if not space.startswith("mlp."):
            continue
        layer = int(space.split(".")[1])
        perm = torch.sort(labels.cpu(), stable=True).indices
        perms[space] = perm
        for g in weight_graphs(hf, parts=("mlp",), layers=[layer]):
            param = hf.get_parameter(g.param_name)
            axis = _hidden_axis(g)
            param.copy_(param.index_select(axis, perm.to(param.device)))
            if g.kind != "mlp_out" and g.param_name.endswith(".weight"):
                try:
                    bias = hf.get_parameter(g.param_name[: -len("weight")] + "bias")
                except AttributeError:
                    continue
                bias.copy_(bias[perm.to(bias.device)])

    def relabel(space: str, lab: torch.Tensor) -> torch.Tensor:
        return lab[perms[space].to(lab.device)] if space in perms else lab

    graphs = {}
    for name, p in partition.graphs.items():
        s_in, s_out = partition.spaces[name]
        graphs[name] = Partition(relabel(s_in, p.row_labels), relabel(s_out, p.col_labels), p.k,
                                 {**p.provenance, "permuted": "contiguous"})
    spaces = {s: relabel(s, lab) for s, lab in partition.space_labels.items() if is_tied_space(s)}
    return ModelPartition(graphs, dict(partition.spaces), partition.k, spaces,
                          {**partition.provenance, "permuted": "contiguous"})
