"""Layer similarity of one model: :func:`layer_similarity` (GW and linear CKA between the representations of
every pair of hooked layers, with layer groups) and its result :class:`LayerSimilarity`, saved to and loaded
from a run folder (similarity.json, similarity.safetensors, gw.csv, cka.csv).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from ...core.cka import cka_matrix
from ...core.distances import NORMALIZE, pairwise_distances
from ...core.gw import EXACT_STARTS, SOLVERS, START_KINDS, gw_matrix
from ...errors import check_choice, check_choices, check_float, check_int
from .groups import LayerGroups, bootstrap_groups, find_groups
from .representations import (
    _check_n,
    collect_representations,
    load_prompts,
    resolve_hooks,
    sample_positions,
    tokenize_prompts,
)

SCHEMA = "circuitclust.similarity/1"
GW_DEFINITION = ("0.5*sqrt(GW), GW = min_T sum (D1_ik - D2_jl)^2 T_ij T_kl over couplings with uniform "
                 "marginals; D = pairwise distances divided by their mean off-diagonal entry")


@dataclass
class LayerSimilarity:
    """Layer-by-layer similarity of one model on one set of token positions.

    ``distances[L, L]``: GW distances (see ``GW_DEFINITION``); ``cka[L, L]``: linear CKA; ``layers``: hook
    names; ``positions[n, 2]``: the sampled (prompt, position) pairs; ``layer_dists[L, n, n]``: the
    normalised per-layer distance matrices (kept in memory for bootstrap and comparison, not saved);
    ``groups``: :class:`LayerGroups`; ``provenance``: model, n, seed, solver, metric, normalisation, prompts.
    """
    distances: torch.Tensor
    cka: torch.Tensor
    layers: list[str]
    positions: torch.Tensor
    provenance: dict[str, Any]
    groups: LayerGroups | None = None
    layer_dists: torch.Tensor | None = None
    gw_ci: tuple[torch.Tensor, torch.Tensor] | None = None

    def to_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """``(doc, tensors)``: the JSON document (schema, layers, GW and CKA matrices, groups, provenance) and
        the float64 matrices and sampled positions that ``circuitclust.runfiles`` writes."""
        prov = self.provenance
        doc = {"schema": SCHEMA, "model": prov.get("model"), "layers": self.layers, "n": prov.get("n"),
               "seed": prov.get("seed"), "gw": self.distances.double().cpu().tolist(),
               "cka": self.cka.double().cpu().tolist(),
               "groups": None if self.groups is None else self.groups.to_json(),
               "solver": prov.get("solver"), "metric": prov.get("metric"), "normalize": prov.get("normalize"),
               "gw_definition": GW_DEFINITION, "provenance": prov}
        tensors = {"gw": self.distances.double().cpu().contiguous(), "cka": self.cka.double().cpu().contiguous(),
                   "positions": self.positions.cpu().contiguous()}
        if self.gw_ci is not None:
            doc["gw_ci_low"] = self.gw_ci[0].double().cpu().tolist()
            doc["gw_ci_high"] = self.gw_ci[1].double().cpu().tolist()
            tensors["gw_ci_low"] = self.gw_ci[0].double().cpu().contiguous()
            tensors["gw_ci_high"] = self.gw_ci[1].double().cpu().contiguous()
        return doc, tensors

    @classmethod
    def from_state(cls, doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "LayerSimilarity":
        """Rebuild from :meth:`to_state`'s parts (``layer_dists`` is not saved and comes back as None)."""
        ci = (tensors["gw_ci_low"], tensors["gw_ci_high"]) if "gw_ci_low" in tensors else None
        groups = None if doc.get("groups") is None else LayerGroups.from_json(doc["groups"])
        return cls(distances=tensors["gw"], cka=tensors["cka"], layers=list(doc["layers"]),
                   positions=tensors["positions"], provenance=doc["provenance"], groups=groups, gw_ci=ci)

    def save(self, out_dir: str | Path) -> Path:
        """Write similarity.json, similarity.safetensors, gw.csv and cka.csv into ``out_dir``."""
        from ...runfiles import save_layer_similarity

        return save_layer_similarity(self, out_dir)

    @classmethod
    def load(cls, out_dir: str | Path) -> "LayerSimilarity":
        """Read what :meth:`save` wrote."""
        from ...runfiles import load_layer_similarity

        return load_layer_similarity(out_dir, cls.from_state)


def _prepare(model, prompts, *, hooks, n, seed, split, max_tokens):
    names = resolve_hooks(model, hooks)
    texts, source = load_prompts(prompts, split=split)
    tokens, valid = tokenize_prompts(model.tokenizer, texts, max_tokens=max_tokens)
    positions = sample_positions(valid, n, seed)
    return names, texts, source, tokens, positions


def _similarity_from_reps(reps: list[torch.Tensor], names: list[str], positions: torch.Tensor, prov: dict, *,
                          metric: str, normalize: str, solver: str, epsilon: float, n_groups: int | None,
                          contiguous: bool, n_boot: int, seed: int, progress: bool,
                          starts: Sequence[str] = EXACT_STARTS) -> LayerSimilarity:
    dists = torch.stack([pairwise_distances(r, metric=metric, normalize=normalize) for r in reps])
    gw, info = gw_matrix(dists, solver=solver, epsilon=epsilon, starts=starts, seed=seed, progress=progress,
                         return_info=True)
    if info:
        prov["exact_start_summary"] = info
    cka = cka_matrix(reps)
    groups = find_groups(gw, n_groups=n_groups, contiguous=contiguous) if len(names) > 1 else None
    ci = None
    if n_boot > 0 and groups is not None:
        groups.stability, ci = bootstrap_groups(dists, groups, n_boot=n_boot, seed=seed, solver=solver,
                                                epsilon=epsilon, starts=starts, progress=progress)
    return LayerSimilarity(distances=gw, cka=cka, layers=names, positions=positions, provenance=prov,
                           groups=groups, layer_dists=dists, gw_ci=ci)


def _provenance(model, model_name, *, n, seed, solver, metric, normalize, epsilon, source, max_tokens,
                n_prompts, starts=EXACT_STARTS) -> dict:
    uses_eps = solver != "exact" or "entropic" in starts
    return {"model": model_name or getattr(model.cfg, "model_name", type(model).__name__), "n": n, "seed": seed,
            "solver": solver, "epsilon": epsilon if uses_eps else None,
            "exact_starts": list(starts) if solver == "exact" else None, "metric": metric,
            "normalize": normalize, "prompts": source, "n_prompts": n_prompts, "max_tokens": max_tokens,
            "positions": "uniform over (prompt, position) pairs, excluding position 0 and special tokens"}


def check_similarity_options(*, n: int = 256, metric: str = "euclidean", solver: str = "exact", batch_size: int = 8,
                             max_tokens: int = 128, normalize: str = "mean", epsilon: float = 1e-2,
                             split: str = "train", n_boot: int = 0, starts: Sequence[str] = EXACT_STARTS) -> None:
    """Validate :func:`layer_similarity`'s options; :class:`OptionError` names the parameter."""
    _check_n("n", n)
    check_choice("metric", metric, ("euclidean", "cosine"))
    check_choice("solver", solver, SOLVERS)
    check_int("batch_size", batch_size, 1)
    check_int("max_tokens", max_tokens, 2)
    check_choice("normalize", normalize, NORMALIZE)
    check_float("epsilon", epsilon, 0.0, open_min=True)
    check_choice("split", split, ("train", "heldout"))
    check_int("n_boot", n_boot, 0, 100_000)
    check_choices("starts", list(starts), START_KINDS)


def layer_similarity(model, prompts: str | Sequence[str], *, hooks: str | Sequence[str] | None = None,
                     n: int = 256, metric: str = "euclidean", solver: str = "exact", seed: int = 0,
                     batch_size: int = 8, max_tokens: int = 128, normalize: str = "mean", epsilon: float = 1e-2,
                     split: str = "train", n_groups: int | None = None, contiguous: bool = True, n_boot: int = 0,
                     model_name: str | None = None, exact_starts: Sequence[str] = EXACT_STARTS,
                     progress: bool = False) -> LayerSimilarity:
    """GW (and linear CKA) similarity between the representations of every pair of hooked layers.

    ``model``: a TransformerBridge (``circuitclust.models.load_model``); ``prompts``: list of strings or a corpus
    name (``"wiki"``, ``"chemistry"``, a path) read with ``split``; ``hooks``: see :func:`resolve_hooks`;
    ``n`` token positions sampled with ``seed``; ``metric``: euclidean | cosine; ``normalize``: see
    :func:`circuitclust.core.distances.pairwise_distances`; ``solver``: exact | entropic | entropic-pgd;
    ``exact_starts``: the exact solver's starts (:data:`circuitclust.core.gw.EXACT_STARTS`; the lowest
    GW cost is kept and which start won is recorded in ``provenance["exact_start_summary"]``).
    Groups: average-linkage clustering of the GW matrix (``contiguous`` runs of layers or free; ``n_groups``
    or chosen by silhouette); ``n_boot > 0`` adds bootstrap stability and per-entry intervals (a 95% CI
    from 1000 resamples on; fewer give an indicative range, as its ``interval`` record says).
    Returns a :class:`LayerSimilarity` with ``distances[L, L]``, ``cka[L, L]``, ``layers`` and provenance.
    """
    check_similarity_options(n=n, metric=metric, solver=solver, batch_size=batch_size, max_tokens=max_tokens,
                             normalize=normalize, epsilon=epsilon, split=split, n_boot=n_boot, starts=exact_starts)
    names, texts, source, tokens, positions = _prepare(model, prompts, hooks=hooks, n=n, seed=seed, split=split,
                                                       max_tokens=max_tokens)
    if n_groups is not None:
        check_int("n_groups", n_groups, 2, max(2, len(names)))
    reps = collect_representations(model, tokens, positions, names, batch_size=batch_size, progress=progress)
    prov = _provenance(model, model_name, n=n, seed=seed, solver=solver, metric=metric, normalize=normalize,
                       epsilon=epsilon, source=source, max_tokens=max_tokens, n_prompts=len(texts),
                       starts=exact_starts)
    return _similarity_from_reps(reps, names, positions, prov, metric=metric, normalize=normalize, solver=solver,
                                 epsilon=epsilon, n_groups=n_groups, contiguous=contiguous, n_boot=n_boot,
                                 seed=seed, progress=progress, starts=exact_starts)


__all__ = ["LayerSimilarity", "layer_similarity", "check_similarity_options", "SCHEMA"]
