"""The whole-network graph of a model (Filan et al.) and its n-cut against a shuffle null.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...core.measures import ncut, null_stats
from ...core.network import NetworkGraph, spectral_clustering
from ...errors import CircuitclustError, check_int
from ...models import adapter_for, weight_graphs
from .stacks import _bar, _seed_for, _tied_side


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
    parallel = adapter_for(model).parallel_residual
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
