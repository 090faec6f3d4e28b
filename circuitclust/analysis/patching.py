"""Cluster effects on tasks: the effect matrix with bootstrap CIs, specialisation, flips, attribution agreement.

Effect of a node (one cluster of one part of one block, or a cluster in all layers at once) on a task = mean
over prompts of ``metric(clean) - metric(ablated)`` (metrics are "higher is better", so a positive effect is
harm). CIs are percentile bootstrap intervals over prompts (``n_boot`` resamples, seeded).

Specialisation of a node over T tasks: with shares ``p_t = |e_t| / sum_t |e_t|``,
``specialisation = 1 - H(p) / log T`` (0 = the same absolute effect on every task, 1 = effect on one task
only; 0 for a node with no effect at all), and ``max_share = max_t p_t`` (chance ``1/T``). The model score is
the mean of node specialisations weighted by each node's total absolute effect, so clusters that do nothing
do not pull it towards 0 or 1; its CI resamples prompts within every task.

Flips (the papers' per-sample view): for every prompt whose clean top-1 prediction is the answer, the number
of nodes whose ablation makes the top-1 prediction wrong; ``histogram[j]`` = prompts flipped by exactly j nodes.

Attribution agreement: Spearman rank correlation between attribution patching's per-node estimate of the
metric change when the node takes the corrupted activations and the exact change under resample ablation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..errors import CircuitclustError
from .attribution import attribution_patching
from .interventions import ablation_sweep, cluster_masks, mean_activations, node_masks
from .metrics import check_metric
from .prompts import TaskPrompts
from .scores import Scores
from .units import UnitLayout


def bootstrap_mean(x: torch.Tensor, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over the last axis of ``x`` ``[..., n]`` with a percentile bootstrap ``1 - alpha`` interval.
    Returns ``(mean, low, high)``, each ``[...]``."""
    n = x.shape[-1]
    if n == 0:
        raise CircuitclustError("cannot bootstrap an empty prompt set")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (n_boot, n), generator=g)
    means = x[..., idx].mean(-1)  # [..., B]
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=means.dtype)
    lo, hi = torch.quantile(means, q, dim=-1)
    return x.mean(-1), lo, hi


def specialisation(effect: torch.Tensor) -> dict[str, torch.Tensor]:
    """``effect`` ``[..., S, T]`` (nodes x tasks) -> ``{"score": [..., S], "max_share": [..., S],
    "model": [...]}`` as defined in the module docstring. Needs T >= 2."""
    t = effect.shape[-1]
    if t < 2:
        raise CircuitclustError("specialisation needs at least two tasks")
    a = effect.abs()
    total = a.sum(-1)
    p = a / total.clamp_min(1e-12)[..., None]
    h = -(p * p.clamp_min(1e-12).log()).sum(-1)
    score = torch.where(total > 0, 1 - h / math.log(t), torch.zeros_like(total))
    max_share = torch.where(total > 0, p.max(-1).values, torch.full_like(total, 1 / t))
    model = (score * total).sum(-1) / total.sum(-1).clamp_min(1e-12)
    return {"score": score, "max_share": max_share, "model": model}


def flips_histogram(clean_correct: torch.Tensor, ablated_correct: torch.Tensor) -> list[int]:
    """``clean_correct`` ``[n]`` bool, ``ablated_correct`` ``[S, n]`` bool -> counts ``[S + 1]``: among
    prompts answered correctly, how many are flipped by exactly 0, 1, ..., S node ablations."""
    flips = (clean_correct[None, :] & ~ablated_correct).sum(0)[clean_correct]
    return torch.bincount(flips, minlength=ablated_correct.shape[0] + 1).tolist()


def spearman(x: torch.Tensor, y: torch.Tensor) -> float:
    """Spearman rank correlation of two 1-D tensors (NaN if either is constant)."""
    from scipy.stats import spearmanr

    if x.numel() < 2 or float(x.std()) == 0 or float(y.std()) == 0:
        return float("nan")
    return float(spearmanr(x.double().numpy(), y.double().numpy()).statistic)


@dataclass
class TaskEffects:
    """Per-prompt results of one task: ``drops`` ``[S, n]`` (clean - ablated metric), ``clean`` ``[n]``,
    correctness ``clean_correct`` ``[n]`` and ``ablated_correct`` ``[S, n]``."""

    task: str
    clean: torch.Tensor
    drops: torch.Tensor
    clean_correct: torch.Tensor
    ablated_correct: torch.Tensor


@dataclass
class EffectMatrix:
    """Effects of every node on every task. ``effect``, ``ci_low``, ``ci_high`` ``[S, T]``; ``nodes`` are dicts
    (``layer`` is ``None`` for all-layer clusters); ``per_task`` keeps the per-prompt data."""

    tasks: list[str]
    nodes: list[dict]
    effect: torch.Tensor
    ci_low: torch.Tensor
    ci_high: torch.Tensor
    baseline: dict[str, float]
    per_task: list[TaskEffects]
    metric: str
    method: str
    scope: str
    info: dict = field(default_factory=dict)


def scope_sets(layout: UnitLayout, scope: str = "layer") -> tuple[torch.Tensor, list[dict]]:
    """The node sets to ablate: ``"layer"`` = one cluster of one part of one block (``[n_nodes, n_dims]``),
    ``"model"`` = one cluster of one part in all blocks at once (``[n_parts * k, n_dims]``)."""
    if scope == "layer":
        return node_masks(layout), [n.as_dict() for n in layout.nodes]
    if scope == "model":
        parts = list(dict.fromkeys(s.part for s in layout.slots))
        sets = torch.cat([cluster_masks(layout, p) for p in parts])
        sizes = sets.sum(1).tolist()
        nodes = [{"layer": None, "part": p, "cluster": c, "size": int(sizes[i * layout.k + c])}
                 for i, p in enumerate(parts) for c in range(layout.k)]
        return sets, nodes
    raise CircuitclustError(f"unknown scope '{scope}': use 'layer' or 'model'")


def effect_matrix(model, tasks: list[TaskPrompts], layout: UnitLayout, method: str = "mean",
                  metric: str = "logit_diff", scope: str = "layer", batch_size: int = 16, n_boot: int = 1000,
                  seed: int = 0, progress: bool = False, max_rows: int = 64) -> EffectMatrix:
    """Ablate every node (see :func:`scope_sets`) on every task; mean drop with bootstrap CIs.

    ``method``: zero / mean (reference = the task's own clean prompts) / resample. ``max_rows``: prompt rows
    per forward pass (several ablation sets share one pass; raise it on a GPU). Returns an
    :class:`EffectMatrix`. Raises :class:`CircuitclustError` for an empty task list or prompt set.
    """
    if not tasks:
        raise CircuitclustError("no tasks given: pass at least one task")
    sets, nodes = scope_sets(layout, scope)
    per_task, cols, lows, highs, baseline = [], [], [], [], {}
    for ti, p in enumerate(tasks):
        if len(p) == 0:
            raise CircuitclustError(f"task '{p.name}' has no prompts")
        m = check_metric(metric, p)
        r = ablation_sweep(model, p, layout, sets, method, m, batch_size=batch_size, progress=progress,
                           max_rows=max_rows)
        drops = r["clean"][None, :] - r["ablated"]
        mean, lo, hi = bootstrap_mean(drops, n_boot, seed + ti)
        cols.append(mean)
        lows.append(lo)
        highs.append(hi)
        baseline[p.name] = float(r["clean"].mean())
        per_task.append(TaskEffects(p.name, r["clean"], drops, r["clean_correct"], r["ablated_correct"]))
    return EffectMatrix([p.name for p in tasks], nodes, torch.stack(cols, 1), torch.stack(lows, 1),
                        torch.stack(highs, 1), baseline, per_task, metric, method, scope,
                        {"n_boot": n_boot, "seed": seed, "n_prompts": {p.name: len(p) for p in tasks}})


def specialisation_summary(em: EffectMatrix, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-node specialisation, the model score with a bootstrap CI over prompts, and flips histograms.
    Returns a JSON-ready dict (see the module docstring); tasks = columns of ``em``."""
    g = torch.Generator().manual_seed(seed)
    boot_cols = []
    for te in em.per_task:
        n = te.drops.shape[1]
        idx = torch.randint(n, (n_boot, n), generator=g)
        boot_cols.append(te.drops[:, idx].mean(-1).T)  # [B, S]
    out = {"per_cluster": [], "model_score": None, "model_score_ci": None, "chance_max_share": 1 / len(em.tasks),
           "flips_histogram": {te.task: flips_histogram(te.clean_correct, te.ablated_correct) for te in em.per_task},
           "n_correct": {te.task: int(te.clean_correct.sum()) for te in em.per_task}}
    if len(em.tasks) >= 2:
        sp = specialisation(em.effect)
        boot = specialisation(torch.stack(boot_cols, -1))["model"]
        out["model_score"] = float(sp["model"])
        out["model_score_ci"] = [float(v) for v in torch.quantile(boot, torch.tensor([0.025, 0.975]))]
        out["model_score_boot"] = boot  # for comparisons; dropped when written
        for i, node in enumerate(em.nodes):
            out["per_cluster"].append({**node, "specialisation": float(sp["score"][i]),
                                       "max_share": float(sp["max_share"][i]),
                                       "top_task": em.tasks[int(em.effect[i].abs().argmax())],
                                       "total_abs_effect": float(em.effect[i].abs().sum())})
    return out


def attribution_agreement(model, prompts: TaskPrompts, layout: UnitLayout, metric: str = "logit_diff",
                          batch_size: int = 8, exact: dict | None = None, max_rows: int = 64) -> dict:
    """Spearman agreement between attribution patching and exact resample ablation on every node.

    ``exact``: an :func:`~.interventions.ablation_sweep` result with ``method="resample"`` over
    ``node_masks(layout)`` to reuse; computed when ``None``. Returns ``{"spearman", "attribution" [S] (mean
    estimated metric change), "exact" [S] (mean exact change), "unit_attribution_mean" and
    "unit_attribution_corrupted" (unit-level :class:`~.scores.Scores` against the mean and the corrupted
    reference), "reference"}``.
    """
    if prompts.corrupted is None:
        raise CircuitclustError(f"'{prompts.name}' has no corrupted prompts: attribution patching needs them")
    ref = mean_activations(model, prompts, layout.hooks, batch_size)
    att = attribution_patching(model, prompts, layout, metric, reference=ref, batch_size=batch_size)
    est = layout.dims_to_nodes(att["corrupted"]).mean(0)
    if exact is None:
        exact = ablation_sweep(model, prompts, layout, node_masks(layout), "resample", metric, batch_size=batch_size,
                               max_rows=max_rows)
    change = (exact["ablated"] - exact["clean"][None, :]).mean(1)
    return {"spearman": spearman(est, change), "attribution": Scores(est, layout, "node", "attribution"),
            "exact": Scores(change, layout, "node", "exact"),
            "unit_attribution_mean": Scores(layout.dims_to_units(att["mean"]).mean(0), layout),
            "unit_attribution_corrupted": Scores(layout.dims_to_units(att["corrupted"]).mean(0), layout),
            "reference": ref}
