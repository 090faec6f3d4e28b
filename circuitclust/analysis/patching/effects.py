"""Cluster effects on tasks: the effect matrix with bootstrap CIs and Benjamini-Hochberg q-values,
specialisation against two nulls, flips, and attribution checked against exact ablation.

Effect of a node (one cluster of one part of one block, or a cluster in all layers at once) on a task = mean
over prompts of ``metric(clean) - metric(ablated)`` (metrics are "higher is better", so a positive effect is
harm). CIs are 95% percentile bootstrap intervals over prompts (``n_boot`` resamples, seeded); each cell's
two-sided bootstrap p-value (the share of resampled means on the other side of 0, doubled, ``(r+1)/(B+1)``)
is corrected across the whole matrix with Benjamini-Hochberg (``q``).

Specialisation of a node over T tasks: with shares ``p_t = |e_t| / sum_t |e_t|``,
``specialisation = 1 - H(p) / log T`` (0 = the same absolute effect on every task, 1 = effect on one task
only; 0 for a node with no effect at all), and ``top_task_share = max_t p_t``: the share of the node's total
|effect| that falls on its top task (chance ``1/T``; it is not a share of the task's circuit). |effect| counts
ablations that help a task as well as those that harm it. The model score is the mean of node
specialisations weighted by each node's total absolute effect, so clusters that do nothing do not pull it
towards 0 or 1; its CI resamples prompts within every task. Two nulls put it in context
(:func:`specialisation_nulls`): shuffled task labels (prompts reassigned to tasks at random, same task
sizes, on the exact per-prompt drops) and random partitions with the same cluster sizes (units relabelled
at random within each layer and part; node effects from the attribution estimates, the observed partition
scored on the same estimates, since exact ablation of every random partition would cost a full effect
matrix each).

Flips (the papers' per-sample view): for every prompt whose clean top-1 prediction is the answer, the number
of nodes whose ablation makes the top-1 prediction wrong; ``histogram[j]`` = prompts flipped by exactly j nodes.

Attribution agreement: Spearman rank correlation between attribution patching's per-node estimate of the
metric change when the node takes the corrupted activations and the exact change under counterfactual
ablation; :func:`attribution_check` does the same for single units, where circuits rank them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ...core.measures import benjamini_hochberg
from ...errors import CircuitclustError
from .attribution import attribution_patching
from .interventions import Ablation, ablation_sweep, cluster_masks, mean_activations, node_masks
from .metrics import check_metric
from .prompts import TaskPrompts
from .scores import Scores
from .units import UnitLayout


def bootstrap_test(x: torch.Tensor, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over the last axis of ``x`` ``[..., n]`` with a percentile bootstrap ``1 - alpha`` interval and a
    two-sided bootstrap p-value for "mean = 0" (``(r + 1) / (B + 1)``, r = twice the resampled means on the
    smaller side of 0). Returns ``(mean, low, high, p)``, each ``[...]``."""
    n = x.shape[-1]
    if n == 0:
        raise CircuitclustError("cannot bootstrap an empty prompt set")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(n, (n_boot, n), generator=g)
    means = x[..., idx].mean(-1)  # [..., B]
    q = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=means.dtype)
    lo, hi = torch.quantile(means, q, dim=-1)
    r = 2 * torch.minimum((means <= 0).sum(-1), (means >= 0).sum(-1))
    p = ((r + 1).float() / (n_boot + 1)).clamp(max=1.0)
    return x.mean(-1), lo, hi, p


def bootstrap_mean(x: torch.Tensor, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean over the last axis of ``x`` ``[..., n]`` with a percentile bootstrap ``1 - alpha`` interval.
    Returns ``(mean, low, high)``, each ``[...]``."""
    return bootstrap_test(x, n_boot, seed, alpha)[:3]


def specialisation(effect: torch.Tensor) -> dict[str, torch.Tensor]:
    """``effect`` ``[..., S, T]`` (nodes x tasks) -> ``{"score": [..., S], "top_task_share": [..., S],
    "model": [...]}`` as defined in the module docstring. Needs T >= 2."""
    t = effect.shape[-1]
    if t < 2:
        raise CircuitclustError("specialisation needs at least two tasks")
    a = effect.abs()
    total = a.sum(-1)
    p = a / total.clamp_min(1e-12)[..., None]
    h = -(p * p.clamp_min(1e-12).log()).sum(-1)
    score = torch.where(total > 0, 1 - h / math.log(t), torch.zeros_like(total))
    top_share = torch.where(total > 0, p.max(-1).values, torch.full_like(total, 1 / t))
    model = (score * total).sum(-1) / total.sum(-1).clamp_min(1e-12)
    return {"score": score, "top_task_share": top_share, "model": model}


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
    """Effects of every node on every task. ``effect``, ``ci_low``, ``ci_high``, ``p`` (bootstrap, two-sided) and
    ``q`` (Benjamini-Hochberg across the matrix) ``[S, T]``; ``nodes`` are dicts (``layer`` is ``None`` for
    all-layer clusters); ``per_task`` keeps the per-prompt data."""

    tasks: list[str]
    nodes: list[dict]
    effect: torch.Tensor
    ci_low: torch.Tensor
    ci_high: torch.Tensor
    p: torch.Tensor
    q: torch.Tensor
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
                  seed: int = 0, progress: bool = False, max_rows: int = 64,
                  references: dict[str, dict] | None = None) -> EffectMatrix:
    """Ablate every node (see :func:`scope_sets`) on every task; mean drop with bootstrap CIs, p and BH q.

    ``method``: zero / mean / counterfactual; ``references`` {task name: :func:`mean_activations` of a
    disjoint reference set} for mean ablation (a task without one falls back to its own prompts' means).
    ``max_rows``: prompt rows per forward pass (several ablation sets share one pass; raise it on a GPU).
    Returns an :class:`EffectMatrix`. Raises :class:`CircuitclustError` for an empty task list or prompt set.
    """
    if not tasks:
        raise CircuitclustError("no tasks given: pass at least one task")
    sets, nodes = scope_sets(layout, scope)
    per_task, cols, lows, highs, ps, baseline = [], [], [], [], [], {}
    for ti, p in enumerate(tasks):
        if len(p) == 0:
            raise CircuitclustError(f"task '{p.name}' has no prompts")
        m = check_metric(metric, p)
        r = ablation_sweep(model, p, layout, sets, method, m, (references or {}).get(p.name), batch_size=batch_size,
                           progress=progress, max_rows=max_rows)
        drops = r["clean"][None, :] - r["ablated"]
        mean, lo, hi, pv = bootstrap_test(drops, n_boot, seed + ti)
        cols.append(mean)
        lows.append(lo)
        highs.append(hi)
        ps.append(pv)
        baseline[p.name] = float(r["clean"].mean())
        per_task.append(TaskEffects(p.name, r["clean"], drops, r["clean_correct"], r["ablated_correct"]))
    p_all = torch.stack(ps, 1)
    q_all = benjamini_hochberg(p_all.flatten()).view_as(p_all)
    return EffectMatrix([p.name for p in tasks], nodes, torch.stack(cols, 1), torch.stack(lows, 1),
                        torch.stack(highs, 1), p_all, q_all, baseline, per_task, metric, Ablation.parse(method).value,
                        scope, {"n_boot": n_boot, "seed": seed, "n_prompts": {p.name: len(p) for p in tasks}})


def specialisation_summary(em: EffectMatrix, n_boot: int = 1000, seed: int = 0) -> dict:
    """Per-node specialisation, the model score with a bootstrap CI over prompts, and flips histograms.
    Returns a JSON-ready dict (see the module docstring); tasks = columns of ``em``."""
    g = torch.Generator().manual_seed(seed)
    boot_cols = []
    for te in em.per_task:
        n = te.drops.shape[1]
        idx = torch.randint(n, (n_boot, n), generator=g)
        boot_cols.append(te.drops[:, idx].mean(-1).T)  # [B, S]
    out = {"per_cluster": [], "model_score": None, "model_score_ci": None,
           "chance_top_task_share": 1 / len(em.tasks),
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
                                       "top_task_share": float(sp["top_task_share"][i]),
                                       "top_task": em.tasks[int(em.effect[i].abs().argmax())],
                                       "total_abs_effect": float(em.effect[i].abs().sum())})
    return out


def label_shuffle_null(em: EffectMatrix, n_null: int = 1000, seed: int = 0, chunk: int = 100) -> torch.Tensor:
    """``[n_null]`` model specialisation scores with the prompts reassigned to tasks at random (the task sizes
    kept), on the exact per-prompt drops of ``em`` (nodes must be the same for every task)."""
    drops = torch.cat([te.drops for te in em.per_task], 1).float()  # [S, N]
    sizes = torch.tensor([te.drops.shape[1] for te in em.per_task])
    labels = torch.repeat_interleave(torch.arange(len(sizes)), sizes)
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(0, n_null, chunk):
        r = min(chunk, n_null - c)
        lab = labels[torch.rand(r, labels.numel(), generator=g).argsort(1)]  # [r, N]
        onehot = torch.nn.functional.one_hot(lab, len(sizes)).float() / sizes.float()
        out.append(specialisation(torch.einsum("sn,rnt->rst", drops, onehot))["model"])
    return torch.cat(out)


def partition_null(layout: UnitLayout, unit_effects: torch.Tensor, n_null: int = 1000, seed: int = 0,
                   chunk: int = 20) -> tuple[float, torch.Tensor]:
    """Model specialisation of the layout's nodes and of ``n_null`` random partitions with the same node sizes
    (units relabelled at random within each layer and part), node effects = sums of ``unit_effects``
    ``[T, n_units]`` (e.g. attribution estimates of each unit's effect per task). Returns ``(observed,
    null [n_null])``."""
    node_of_unit = layout.node_of_unit().cpu()
    s, t = len(layout.nodes), unit_effects.shape[0]
    est = unit_effects.float().cpu().T  # [n_units, T]
    observed = float(specialisation(torch.zeros(s, t).index_add_(0, node_of_unit, est))["model"])
    slot_of_unit = torch.repeat_interleave(torch.arange(len(layout.slots)),
                                           torch.tensor([sl.n_units for sl in layout.slots])).float()
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in range(0, n_null, chunk):
        r = min(chunk, n_null - c)
        # random keys within [slot, slot + 1): sorting permutes units only within their own slot
        perm = (torch.rand(r, est.shape[0], generator=g) + slot_of_unit).argsort(1)
        nodes = node_of_unit[perm]  # [r, n_units]
        eff = torch.zeros(r, s, t).scatter_add_(1, nodes[..., None].expand(-1, -1, t), est[None].expand(r, -1, -1))
        out.append(specialisation(eff)["model"])
    return observed, torch.cat(out)


def _null_summary(observed: float, null: torch.Tensor) -> dict:
    lo, hi = torch.quantile(null, torch.tensor([0.025, 0.975])).tolist()
    p = (int((null >= observed).sum()) + 1) / (null.numel() + 1)
    return {"observed": observed, "null_mean": float(null.mean()), "null_range_95": [lo, hi], "p": p,
            "n_null": null.numel()}


def specialisation_nulls(em: EffectMatrix, layout: UnitLayout | None = None, unit_effects: torch.Tensor | None = None,
                         n_null: int = 1000, seed: int = 0) -> dict:
    """The model specialisation score of ``em`` beside its two nulls (module docstring): ``label_shuffle``
    (exact drops) and, given ``layout`` and ``unit_effects`` ``[T, n_units]``, ``random_partition``
    (attribution estimates; ``observed`` is the real partition scored on the same estimates). Each:
    ``{observed, null_mean, null_range_95, p (one-sided, null >= observed), n_null, basis}``."""
    if len(em.tasks) < 2:
        return {}
    obs = float(specialisation(em.effect)["model"])
    out = {"label_shuffle": {**_null_summary(obs, label_shuffle_null(em, n_null, seed)),
                             "basis": "exact per-prompt drops, prompts reassigned to tasks at random"}}
    if layout is not None and unit_effects is not None and em.scope == "layer":
        o, null = partition_null(layout, unit_effects, n_null, seed)
        out["random_partition"] = {**_null_summary(o, null), "exact_observed": obs,
                                   "basis": "attribution estimates of each unit's effect, units relabelled at "
                                            "random within each layer and part (same cluster sizes)"}
    return out


def attribution_check(model, prompts: TaskPrompts, layout: UnitLayout, estimates: torch.Tensor,
                      method: str = "counterfactual", metric: str = "logit_diff", reference: dict | None = None,
                      n_sample: int = 32, top_k: int = 8, seed: int = 0, batch_size: int = 16,
                      max_rows: int = 64) -> dict:
    """Attribution checked against exact single-unit ablation where circuits use it.

    ``estimates`` ``[n_units]``: attribution's estimate of the mean metric change when each unit alone is
    ablated with ``method``. Samples the ``top_k`` units attribution ranks first plus ``n_sample - top_k``
    others drawn uniformly with ``seed``, ablates each alone, and returns ``{"units", "attribution",
    "exact" (mean metric change), "spearman" (all sampled units), "spearman_random" (the uniform draw only),
    "top_k", "top_k_overlap" (share of attribution's top_k among the sample that are also exact ablation's
    top_k), "n_sample", "method"}``."""
    n = layout.n_units
    est = estimates.float().cpu()
    k = min(top_k, n)
    top = est.abs().argsort(descending=True, stable=True)[:k]
    rest_pool = torch.ones(n, dtype=torch.bool)
    rest_pool[top] = False
    others = rest_pool.nonzero().squeeze(1)
    g = torch.Generator().manual_seed(seed)
    rest = others[torch.randperm(others.numel(), generator=g)[:max(0, min(n_sample, n) - k)]]
    sample = torch.cat([top, rest])
    onehot = torch.zeros(sample.numel(), n, dtype=torch.bool)
    onehot[torch.arange(sample.numel()), sample] = True
    r = ablation_sweep(model, prompts, layout, layout.units_to_dims(onehot.T).T, method,
                       check_metric(metric, prompts), reference, batch_size, max_rows=max_rows)
    exact = (r["ablated"] - r["clean"][None, :]).mean(1)
    a = est[sample]
    kk = min(k, sample.numel())
    overlap = len(set(a.abs().argsort(descending=True)[:kk].tolist())
                  & set(exact.abs().argsort(descending=True)[:kk].tolist())) / max(kk, 1)
    return {"units": sample.tolist(), "attribution": a.tolist(), "exact": exact.tolist(), "spearman": spearman(a, exact),
            "spearman_random": spearman(a[k:], exact[k:]), "top_k": kk, "top_k_overlap": overlap,
            "n_sample": int(sample.numel()), "method": Ablation.parse(method).value}


def attribution_agreement(model, prompts: TaskPrompts, layout: UnitLayout, metric: str = "logit_diff",
                          batch_size: int = 8, exact: dict | None = None, max_rows: int = 64) -> dict:
    """Spearman agreement between attribution patching and exact counterfactual ablation on every node.

    ``exact``: an :func:`~.interventions.ablation_sweep` result with ``method="counterfactual"`` over
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
        exact = ablation_sweep(model, prompts, layout, node_masks(layout), Ablation.COUNTERFACTUAL, metric,
                               batch_size=batch_size,
                               max_rows=max_rows)
    change = (exact["ablated"] - exact["clean"][None, :]).mean(1)
    return {"spearman": spearman(est, change), "attribution": Scores(est, layout, "node", "attribution"),
            "exact": Scores(change, layout, "node", "exact"),
            "unit_attribution_mean": Scores(layout.dims_to_units(att["mean"]).mean(0), layout),
            "unit_attribution_corrupted": Scores(layout.dims_to_units(att["corrupted"]).mean(0), layout),
            "reference": ref}
