"""Reorder MLP hidden neurons so that every cluster is contiguous, without changing the model's function.

An MLP neuron is a row of ``W_in``/``W_gate`` (plus its bias entry) and the matching row of ``W_out``:
permuting all of them together leaves the block's output unchanged, so block-diagonal plots of a
spectral partition become readable. Residual dimensions are not permuted (that would need every
residual-stream parameter of the model), so their labels stay as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from ...core.partition import ModelPartition, Partition
from ...models.graphs import space_part, weight_graphs


@torch.no_grad()
def permute_contiguous(model: nn.Module, partition: ModelPartition) -> ModelPartition:
    """Permute, in place, each layer's MLP neurons so neurons of cluster 0 come first, then 1, ...

    Inputs: ``model`` (bridge or HF causal LM) and a ``partition`` with ``mlp.{l}`` space labels. Every MLP
    matrix of the layer (in, gate, out) and the in/gate biases are permuted, whether or not the partition
    covers them. Returns the partition with the same clusters in the new neuron order (labels sorted).
    """
    perms: dict[str, torch.Tensor] = {}
    for space, labels in partition.space_labels.items():
        part, layer = space_part(space)
        if part != "mlp":
            continue
        perm = torch.sort(labels.cpu(), stable=True).indices
        perms[space] = perm
        for g in weight_graphs(model, parts=("mlp",), layers=[layer]):
            # g.weight is a view of the parameter (of its gate or up half when they are fused), so permuting
            # it in place permutes the stored parameter; the hidden neurons are its rows for mlp_out
            w = g.weight
            axis = 0 if g.tied_side == "in" else 1
            w.copy_(w.index_select(axis, perm.to(w.device)))
            bias = g.bias if g.tied_side == "out" else None
            if bias is not None:
                bias.copy_(bias[perm.to(bias.device)])

    def relabel(space: str, lab: torch.Tensor) -> torch.Tensor:
        return lab[perms[space].to(lab.device)] if space in perms else lab

    graphs = {}
    for name, p in partition.graphs.items():
        s_in, s_out = partition.spaces[name]
        graphs[name] = Partition(relabel(s_in, p.row_labels), relabel(s_out, p.col_labels), p.k,
                                 {**p.provenance, "permuted": "contiguous"})
    spaces = {s: relabel(s, lab) for s, lab in partition.space_labels.items()}
    return ModelPartition(graphs, dict(partition.spaces), partition.k, spaces,
                          {**partition.provenance, "permuted": "contiguous"})
