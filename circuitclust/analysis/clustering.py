"""Partition a model's weight graphs with tied unit spaces, and score how clusterable the model is.

Tied spaces. Every weight graph has one hidden side (``mlp.{l}``, ``attn.{l}``, ``attn_qk.{l}``, ...) and
one residual side. All graphs that share a hidden space are co-clustered TOGETHER: their matrices are
oriented with the hidden units as rows and stacked side by side, e.g. for a gated MLP
``[W_in^T | W_gate^T | W_out]`` ``[d_mlp, 3 d_model]``, and that one matrix is co-clustered. Each hidden
unit thus gets ONE label shared by every graph that touches it, so cluster ``i`` of a layer is a real
sub-network.

Residual-side labels (a choice, documented here): each graph's residual units are the columns of its own
slice of the stacked matrix, so they get their labels from the same co-clustering (the same k-means over
rows and columns). A residual unit can therefore carry different labels in ``W_in`` and in ``W_out``: the
residual stream is shared by every layer, so no single label could serve them all.

Same-shape stacks (the same space in different layers) go through one batched computation on the device.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..core.cocluster import cocluster_labels
from ..core.measures import chance_level, clusterability, ncut, null_stats
from ..core.network import NetworkGraph, spectral_clustering
from ..core.partition import ModelPartition, is_tied_space
from ..core.svd import resolve_method
from ..errors import CircuitclustError, OptionError, PartitionMismatchError, check_choice, check_int
from ..models import hf_model_of, weight_graphs

#: Upper bound on matrix entries clustered in one batch (keeps peak memory near 1-2 GB in float32).
BATCH_ELEMENTS = 48 * 2**20


def model_id(model: nn.Module) -> str:
    """The spec a model was loaded from (or its HF ``name_or_path``)."""
    spec = getattr(model, "circuitclust_spec", None)
    return str(spec) if spec else str(getattr(hf_model_of(model).config, "_name_or_path", "") or "unknown")


def _tied_side(g) -> str:
    if is_tied_space(g.in_space):
        return "in"
    if is_tied_space(g.out_space):
        return "out"
    raise CircuitclustError(f"{g.name} has no hidden (tied) side: {g.in_space} -> {g.out_space}")


def tied_groups(graphs: Iterable) -> dict[str, list]:
    """Graphs grouped by their hidden space, in first-seen order: ``{space: [graph, ...]}``."""
    groups: dict[str, list] = {}
    for g in graphs:
        space = g.in_space if _tied_side(g) == "in" else g.out_space
        groups.setdefault(space, []).append(g)
    return groups


def _oriented(g, w: torch.Tensor) -> torch.Tensor:
    """``w`` (``[..., n_in, n_out]``) with the hidden units as rows: ``[..., n_hidden, n_resid]``."""
    return w if _tied_side(g) == "in" else w.transpose(-1, -2)


def _split_cols(members: Sequence, cols: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split stacked column labels ``[..., sum n_resid]`` back into each member's residual labels."""
    sizes = [g.shape[1] if _tied_side(g) == "in" else g.shape[0] for g in members]
    return {g.name: c for g, c in zip(members, cols.split(sizes, dim=-1))}


def _chunks(n: int, per_item: int) -> list[slice]:
    step = max(1, BATCH_ELEMENTS // max(per_item, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def _seed_for(seed: int, key: str) -> int:
    # A stable per-batch seed, so that one batch's randomness does not depend on what ran before it.
    return (int(seed) * 1_000_003 + zlib.crc32(key.encode())) % 2**62


def _cluster_stacks(stacks: list[torch.Tensor], k: int, seed: int, options: dict[str, Any], key: str = "",
                    progress=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Co-cluster each ``[n_hidden, n_cols]`` stack (or ``[S, n_hidden, n_cols]`` batch of them), batching
    same shapes. Returns ``(row_labels, col_labels)`` per stack, shaped like the stack's leading dims."""
    out: list = [None] * len(stacks)
    by_shape: dict[tuple, list[int]] = {}
    for i, s in enumerate(stacks):
        by_shape.setdefault(tuple(s.shape[-2:]), []).append(i)
    for shape, idx in by_shape.items():
        flat = [s.reshape(-1, *shape) for s in (stacks[i] for i in idx)]
        counts = [f.shape[0] for f in flat]
        big = torch.cat(flat) if len(flat) > 1 else flat[0]
        rows, cols = [], []
        for j, sl in enumerate(_chunks(big.shape[0], shape[0] * shape[1])):
            r, c = cocluster_labels(big[sl], k, seed=_seed_for(seed, f"{key}{shape}{j}"), **options)
            rows.append(r)
            cols.append(c)
            if progress is not None:
                progress.update(sl.stop - sl.start)
        rows, cols = torch.cat(rows), torch.cat(cols)
        for i, r, c in zip(idx, rows.split(counts), cols.split(counts)):
            lead = stacks[i].shape[:-2]
            out[i] = (r.reshape(*lead, shape[0]), c.reshape(*lead, shape[1]))
    return out


def _weights(graphs: Sequence, device) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return {g.name: g.weight.detach().to(device, torch.float32) for g in graphs}


METHODS = ("spectral", "blocks")


def check_architecture(model: nn.Module, partition: ModelPartition) -> None:
    """Raise :class:`PartitionMismatchError` if ``partition`` was made for another architecture than
    ``model``'s (two families can share every graph shape, e.g. GPT-2 and Pythia of one width). A partition
    may move between models of one architecture: a fine-tuned model and its base share their partition."""
    made_for = partition.provenance.get("model_type")
    model_type = hf_model_of(model).config.model_type
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
    layers: Iterable[int] | None = None,
    progress: bool = False,
) -> ModelPartition:
    """Partition every weight graph of ``model`` (``parts``: ``"mlp"``, ``"attn"`` or matrix kinds) into
    ``k`` clusters with tied hidden spaces (see the module docstring).

    ``method``: ``"spectral"`` (Dhillon co-clustering of each stacked hidden space, ``power`` 1 = |W|,
    2 = W^2) or ``"blocks"`` (equal contiguous blocks). ``device`` defaults to the model's. Returns a
    :class:`ModelPartition` whose provenance records model, method, k, seed, power, svd, n_init and parts.
    """
    check_choice("method", method, METHODS)
    check_choice("power", power, (1, 2))
    check_int("n_init", n_init, 1)
    resolve_method(svd, 2, 2, 1)  # an unknown SVD method fails here, before any work
    graphs = weight_graphs(model, parts=parts, layers=layers)
    if not graphs:
        raise OptionError(f"the model has no weight graphs for parts {list(parts)}")
    check_k(k, graphs)
    prov = {"model": model_id(model), "model_type": hf_model_of(model).config.model_type, "seed": int(seed),
            "parts": list(parts)}
    if method == "blocks":
        return ModelPartition.blocks(graphs, k, **prov)
    dev = torch.device(device) if device is not None else graphs[0].weight.device
    groups = tied_groups(graphs)
    w = _weights(graphs, dev)
    stacks = [torch.cat([_oriented(g, w[g.name]) for g in members], 1) for members in groups.values()]
    opts = {"power": power, "svd": svd, "n_init": n_init}
    bar = _bar(len(stacks), "partition", progress)
    labels = _cluster_stacks(stacks, k, seed, opts, progress=bar)
    if bar is not None:
        bar.close()
    space_labels, resid = {}, {}
    for (space, members), (rows, cols) in zip(groups.items(), labels):
        space_labels[space] = rows.cpu()
        resid.update({n: c.cpu() for n, c in _split_cols(members, cols).items()})
    svd_used = sorted({resolve_method(svd, *s.shape, k) for s in stacks})
    return ModelPartition.from_space_labels(
        graphs, k, space_labels, resid, method="spectral", power=power, svd=",".join(svd_used), n_init=n_init,
        cocluster={"power": power, "svd": svd, "n_init": n_init}, **prov)


def _bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="graph", leave=False)


def _legacy_cocluster_options(prov: dict[str, Any]) -> dict[str, Any]:
    """The co-clustering options of a partition file written before they were recorded as ``cocluster``: its
    ``svd`` holds the methods used per stack, so several mean the request was ``auto``."""
    svd = str(prov.get("svd", "auto"))
    return {"power": int(prov.get("power", 1)), "n_init": int(prov.get("n_init", 10)),
            "svd": "auto" if "," in svd else svd}


def _shuffle_null(members: Sequence, w: dict[str, torch.Tensor], partition: ModelPartition, n: int, seed: int,
                  space: str) -> dict[str, torch.Tensor]:
    """Clusterability of each member graph over ``n`` shuffles ``[n]``: every member's entries permuted
    within its matrix, the stack re-clustered with the partition's own procedure (fixed labels for
    ``blocks``)."""
    prov = partition.provenance
    g0 = members[0]
    dev = w[g0.name].device
    gen = torch.Generator(device=dev).manual_seed(_seed_for(seed, "shuffle" + space))
    per_item = sum(g.shape[0] * g.shape[1] for g in members)
    nulls: dict[str, list[torch.Tensor]] = {g.name: [] for g in members}
    for sl in _chunks(n, per_item):
        s = sl.stop - sl.start
        shuffled = {}
        for g in members:
            flat = w[g.name].reshape(-1)
            perm = torch.stack([torch.randperm(flat.numel(), generator=gen, device=dev) for _ in range(s)])
            shuffled[g.name] = flat[perm].view(s, *g.shape)
        if prov.get("method") == "blocks":
            labs = {g.name: (partition[g.name].row_labels.to(dev), partition[g.name].col_labels.to(dev))
                    for g in members}
        else:
            stack = torch.cat([_oriented(g, shuffled[g.name]) for g in members], 2)
            opts = prov.get("cocluster") or _legacy_cocluster_options(prov)
            ((rows, cols),) = _cluster_stacks([stack], partition.k, seed + 7919 * (sl.start + 1), opts,
                                              key="shuffle" + space)
            res = _split_cols(members, cols)
            labs = {g.name: (res[g.name], rows) if _tied_side(g) == "out" else (rows, res[g.name])
                    for g in members}
        for g in members:
            r, c = labs[g.name]
            nulls[g.name].append(clusterability(shuffled[g.name], r, c))
    return {name: torch.cat(v) for name, v in nulls.items()}


def score_model(
    model: nn.Module,
    partition: ModelPartition,
    shuffles: int = 0,
    seed: int = 0,
    *,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> list[dict]:
    """Score every graph of ``partition`` on ``model``'s current weights.

    Returns one dict per graph: ``name, layer, kind, shape [n_in, n_out], k, row_sizes, col_sizes,
    clusterability, chance`` and, with ``shuffles > 0``, the shuffle null of the same partitioning
    procedure (``shuffle_mean, shuffle_std, z, p``; otherwise ``None``). Raises
    :class:`~circuitclust.errors.PartitionMismatchError` if the partition does not fit the model.
    """
    check_int("shuffles", shuffles, 0)
    check_architecture(model, partition)
    names = set(partition.graphs)
    graphs = [g for g in weight_graphs(model, parts=("mlp", "attn")) if g.name in names]
    if len(graphs) != len(names):
        missing = sorted(names - {g.name for g in graphs})
        raise PartitionMismatchError(f"the model has no graphs {missing[:3]}: this partition was made for "
                                     f"another model ({partition.provenance.get('model', 'unknown')})")
    partition.check_graphs(graphs)
    dev = torch.device(device) if device is not None else graphs[0].weight.device
    w = _weights(graphs, dev)
    nulls: dict[str, torch.Tensor] = {}
    if shuffles > 0:
        groups = tied_groups(graphs)
        bar = _bar(len(groups), f"shuffles x{shuffles}", progress)
        for space, members in groups.items():
            nulls.update(_shuffle_null(members, w, partition, shuffles, seed, space))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    rows = []
    for g in graphs:
        p = partition[g.name]
        r, c = p.row_labels.to(dev), p.col_labels.to(dev)
        value = float(clusterability(w[g.name], r, c))
        row_sizes, col_sizes = p.sizes()
        row = {"name": g.name, "layer": g.layer, "kind": g.kind, "shape": list(g.shape), "k": p.k,
               "row_sizes": row_sizes, "col_sizes": col_sizes, "clusterability": value,
               "chance": float(chance_level(r, c, p.k)),
               "shuffle_mean": None, "shuffle_std": None, "z": None, "p": None}
        if g.name in nulls:
            st = null_stats(value, nulls[g.name])
            row.update(shuffle_mean=st.mean, shuffle_std=st.std, z=st.z, p=st.p)
        rows.append(row)
    return rows


def network_graph(model: nn.Module, parts: Sequence[str] = ("mlp", "attn"), device=None
                  ) -> tuple[NetworkGraph, dict[str, tuple[int, int]]]:
    """Filan et al.'s whole-network graph of ``model``: nodes = every unit of every layer, edges = |w|.

    Residual units are one node set per position in the stream: ``pre.{l}`` (read by attention),
    ``mid.{l}`` (written by attention, read by the MLP; the same as ``pre.{l}`` when attention is not
    included or the model uses parallel attention + MLP, as Pythia does) and ``pre.{l+1}`` (written by the
    MLP). Skip connections add no edges (as Filan et al.'s MLPs have none); norms are ignored. Hidden spaces
    (``mlp.{l}``, ``attn.{l}``...) are node sets of their own. Returns the graph and ``{node set: (start,
    size)}``.
    """
    graphs = weight_graphs(model, parts=parts)
    if not graphs:
        raise CircuitclustError(f"the model has no weight graphs for parts {list(parts)}")
    cfg = hf_model_of(model).config
    parallel = bool(getattr(cfg, "use_parallel_residual", False) or getattr(cfg, "parallel_attn", False))
    has_attn = any(g.kind.startswith("attn") for g in graphs)
    mid = (lambda l: f"pre.{l}") if (parallel or not has_attn) else (lambda l: f"mid.{l}")

    def resid_key(g) -> str:
        reads = _tied_side(g) == "out"
        if g.kind.startswith("attn"):
            return f"pre.{g.layer}" if reads else (f"pre.{g.layer + 1}" if parallel else mid(g.layer))
        return (f"pre.{g.layer}" if parallel else mid(g.layer)) if reads else f"pre.{g.layer + 1}"

    sets: dict[str, tuple[int, int]] = {}
    n = 0
    dev = torch.device(device) if device is not None else graphs[0].weight.device
    placed = []
    for g in graphs:
        tied = g.in_space if _tied_side(g) == "in" else g.out_space
        rk = resid_key(g)
        for key, size in ((tied, g.shape[0] if _tied_side(g) == "in" else g.shape[1]),
                          (rk, g.shape[1] if _tied_side(g) == "in" else g.shape[0])):
            if key not in sets:
                sets[key] = (n, size)
                n += size
        placed.append((g, tied, rk))
    net = NetworkGraph(n)
    with torch.no_grad():
        for g, tied, rk in placed:
            ins, outs = (tied, rk) if _tied_side(g) == "in" else (rk, tied)
            net.add(g.weight.detach().to(dev, torch.float32), sets[ins][0], sets[outs][0])
    return net, sets


def ncut_model(model: nn.Module, k: int = 4, parts: Sequence[str] = ("mlp", "attn"), shuffles: int = 0,
               seed: int = 0, device=None, progress: bool = False) -> dict:
    """n-cut of the spectral clustering of the whole-network graph (:func:`network_graph`) into ``k``
    clusters, against ``shuffles`` re-clustered copies with every matrix's entries permuted (run one after
    another: each is a whole-model eigen-solve). Returns ``{"value", "shuffle_mean", "shuffle_std", "z",
    "p", "k", "n_nodes"}`` (lower n-cut = more clusterable; ``p`` counts shuffles with n-cut <= value)."""
    check_int("shuffles", shuffles, 0)
    check_int("k", k, 2)
    net, _ = network_graph(model, parts, device)
    value = ncut(net, spectral_clustering(net, k, seed=seed), k)
    out = {"value": value, "shuffle_mean": None, "shuffle_std": None, "z": None, "p": None, "k": k,
           "n_nodes": int((net.degrees() > 0).sum())}
    if shuffles > 0:
        gen = torch.Generator(device=net.device).manual_seed(_seed_for(seed, "ncut"))
        null = []
        bar = _bar(shuffles, "n-cut shuffles", progress)
        for i in range(shuffles):
            sh = net.shuffled(gen)
            null.append(ncut(sh, spectral_clustering(sh, k, seed=seed + i + 1), k))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        st = null_stats(value, null, higher_is_better=False)
        out.update(shuffle_mean=st.mean, shuffle_std=st.std, z=st.z, p=st.p)
    return out
