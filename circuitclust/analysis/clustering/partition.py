"""Partition a model's weight graphs into ``k`` clusters with tied unit spaces (see :mod:`.stacks`).
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ...core.partition import ModelPartition
from ...core.svd import resolve_method
from ...errors import OptionError, PartitionMismatchError, check_choice, check_float, check_int
from ...models import adapter_for, source_name, weight_graphs
from .stacks import _bar, _cluster_stacks, _oriented, _resid_sizes, _split_cols, _weights, tied_groups


def model_id(model: nn.Module) -> str:
    """The spec a model was loaded from (or its HF ``name_or_path``)."""
    spec = getattr(model, "circuitclust_spec", None)
    return str(spec) if spec else (source_name(model) or "unknown")


METHODS = ("spectral", "blocks")


def check_architecture(model: nn.Module, partition: ModelPartition) -> None:
    """Raise :class:`PartitionMismatchError` if ``partition`` was made for another architecture than
    ``model``'s (two families can share every graph shape, e.g. GPT-2 and Pythia of one width). A partition
    may move between models of one architecture: a fine-tuned model and its base share their partition."""
    made_for = partition.provenance.get("model_type")
    model_type = adapter_for(model).model_type
    if made_for is not None and made_for != model_type:
        raise PartitionMismatchError(
            f"this partition was made for a {made_for} model ({partition.provenance.get('model', 'unknown')}), "
            f"not for this {model_type} model: re-run `circuitclust cluster` on it")


def check_k(k: int, graphs: Sequence) -> int:
    """``k`` if every graph can be split into ``k`` non-empty clusters on both sides; :class:`OptionError`
    otherwise (checked before any work starts)."""
    k = check_int("k", k, 2)
    smallest = min(min(g.shape) for g in graphs)
    if k > smallest:
        raise OptionError(f"k={k} is more clusters than the smallest weight graph has units ({smallest}): "
                          f"choose 2 <= k <= {smallest}", option="k")
    return k


def partition_model(
    model: nn.Module,
    k: int = 4,
    parts: Sequence[str] = ("mlp",),
    method: str = "spectral",
    seed: int = 0,
    device: torch.device | str | None = None,
    power: int = 1,
    *,
    svd: str = "auto",
    n_init: int = 10,
    balance: float = 0.0,
    layers: Iterable[int] | None = None,
    progress: bool = False,
) -> ModelPartition:
    """Partition every weight graph of ``model`` (``parts``: ``"mlp"``, ``"attn"`` or matrix kinds) into
    ``k`` clusters with tied hidden spaces (see the module docstring).

    ``method``: ``"spectral"`` (Dhillon co-clustering of each stacked hidden space, ``power`` 1 = |W|,
    2 = W^2) or ``"blocks"`` (equal contiguous blocks). ``balance`` (spectral, in ``[0, 1]``): every cluster
    keeps at least ``balance * n / k`` of the hidden units and of each graph's residual units (0: k-means'
    assignment as it is; spectral clusters can be empty on one side). ``device`` defaults to the model's.
    Returns a :class:`ModelPartition` whose provenance records model, method, k, seed, parts and (spectral)
    the co-clustering options under ``cocluster``.
    """
    check_choice("method", method, METHODS)
    check_choice("power", power, (1, 2))
    check_int("n_init", n_init, 1)
    resolve_method(svd, 2, 2, 1)  # an unknown SVD method fails here, before any work
    graphs = weight_graphs(model, parts=parts, layers=layers)
    if not graphs:
        raise OptionError(f"the model has no weight graphs for parts {list(parts)}")
    check_k(k, graphs)
    prov = {"model": model_id(model), "model_type": adapter_for(model).model_type, "seed": int(seed),
            "parts": list(parts)}
    if method == "blocks":
        return ModelPartition.blocks(graphs, k, **prov)
    dev = torch.device(device) if device is not None else graphs[0].weight.device
    groups = tied_groups(graphs)
    w = _weights(graphs, dev)
    stacks = [torch.cat([_oriented(g, w[g.name]) for g in members], 1) for members in groups.values()]
    opts = {"power": power, "svd": svd, "n_init": n_init}
    if balance:
        opts["balance"] = check_float("balance", balance, 0.0, 1.0)
    bar = _bar(len(stacks), "partition", progress)
    labels = _cluster_stacks(stacks, k, seed, opts, progress=bar,
                             col_groups=[_resid_sizes(members) for members in groups.values()])
    if bar is not None:
        bar.close()
    space_labels, resid = {}, {}
    for (space, members), (rows, cols) in zip(groups.items(), labels):
        space_labels[space] = rows.cpu()
        resid.update({n: c.cpu() for n, c in _split_cols(members, cols).items()})
    svd_used = sorted({resolve_method(svd, *s.shape, k) for s in stacks})
    return ModelPartition.from_space_labels(
        graphs, k, space_labels, resid, method="spectral", power=power, svd=",".join(svd_used), n_init=n_init,
        cocluster=opts, **prov)
