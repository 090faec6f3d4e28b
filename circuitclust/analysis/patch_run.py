"""The whole patching analysis of one model (or a base/other pair). ``circuitclust.runfiles`` writes its
results into a run folder (JSON with a top-level ``schema``; CSV twins for the tables):

- ``effects.json`` ``circuitclust.effects/1``: ``model``, ``k``, ``metric`` (``logit_diff`` | ``logprob`` |
  ``neg_loss``; higher is better), ``method`` (``zero`` | ``mean`` | ``resample``), ``scope`` (``layer``:
  one cluster of one block; ``model``: a cluster in all blocks, ``layer`` null), ``seed``, ``n_boot``,
  ``tasks`` [T], ``n_prompts`` {task: n}, ``nodes`` [S] ``{layer, part, cluster, size (dims), n_units}``,
  ``effect`` [S][T] mean drop of the metric under ablation, ``ci_low`` / ``ci_high`` [S][T] 95% bootstrap
  interval over prompts, ``baseline`` {task: mean clean metric}. CSV: ``effects.csv`` one row per
  (node, task).
- ``specialisation.json`` ``circuitclust.specialisation/1``: ``per_cluster`` [S] ``{layer, part, cluster,
  size, n_units, specialisation (1 - normalised entropy of |effect| over tasks), max_share, top_task,
  total_abs_effect}``, ``model_score`` (|effect|-weighted mean), ``model_score_ci`` [lo, hi],
  ``chance_max_share`` (1/T), ``flips_histogram`` {task: [prompts flipped by exactly 0, 1, ... S nodes]},
  ``n_correct`` {task: correctly answered prompts}. CSV: ``specialisation.csv`` per node.
- ``circuits.json`` ``circuitclust.circuits/1``: ``threshold``, ``ablation`` ("mean"), ``tasks`` {task:
  {``faithfulness_curve`` [[n_units, frac]], ``circuit_size``, ``fraction``, ``n_units_total``,
  ``share_largest_cluster``, ``clusters_touched``, ``units`` (global unit ids), ``cluster_counts``
  {node index: units}, ``cluster_faithfulness_curve`` [[n_nodes, frac]], ``cluster_circuit_size``,
  ``cluster_circuit_fraction``, ``cluster_circuit`` [node dicts], ``full_metric``, ``empty_metric``,
  ``n_ablation_evals``}}, ``attribution_spearman`` (mean over tasks of the Spearman agreement between
  attribution patching and exact resample patching per node), ``attribution_spearman_per_task``
  {task: rho}, ``timing_s`` {``attribution``, ``exact_patching``}. CSV: ``circuits.csv`` per task and
  ``faithfulness.csv`` (task, level, size, faithfulness).
- ``comparison.json`` ``circuitclust.comparison/1`` (``--compare``): ``base``, ``other``, ``tasks``,
  ``nodes``, ``effect_diff`` [S][T] (other - base, same prompts), ``ci_low`` / ``ci_high`` (paired
  bootstrap), ``specialisation`` {base, other, diff, diff_ci}, ``circuits`` {task: {base_size, other_size,
  base_fraction, other_fraction, fraction_diff, base_cluster_size, other_cluster_size}}. The other model's
  own three files go to RUN_DIR/compare/. CSV: ``comparison.csv``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ..core.measures import interval_method
from ..core.partition import ModelPartition
from ..errors import OptionError, check_choice, check_float, check_int
from .circuits import task_circuits
from .interventions import Ablation, ablation_sweep, node_masks
from .metrics import METRICS
from .patching import EffectMatrix, attribution_agreement, bootstrap_mean, effect_matrix, specialisation_summary
from .prompts import TaskPrompts
from .units import unit_layout


def check_patch_options(*, metric: str = "logit_diff", method: str = "mean", threshold: float = 0.8,
                        batch_size: int = 8, n_boot: int = 1000, max_rows: int = 64) -> None:
    """Validate :func:`analyse_model`'s options; :class:`OptionError` names the parameter."""
    check_choice("metric", metric, [m for m in METRICS if m != "neg_loss"])
    Ablation.parse(method, "method")
    check_float("threshold", threshold, 0.0, 1.0, open_min=True)
    check_int("batch_size", batch_size, 1)
    check_int("n_boot", n_boot, 10, 100_000)
    check_int("max_rows", max_rows, 1)


@dataclass
class ModelPatching:
    """The patching analysis of one model: the JSON-ready ``effects``, ``specialisation`` and ``circuits``
    documents (schemas in the module docstring), the :class:`~.patching.EffectMatrix` behind them and the
    bootstrap model specialisation scores (``score_boot`` ``[n_boot]`` or None), kept for paired comparisons."""

    effects: dict[str, Any]
    specialisation: dict[str, Any]
    circuits: dict[str, Any]
    effect_matrix: EffectMatrix
    score_boot: torch.Tensor | None = None


def analyse_model(model, partition: ModelPartition, tasks: list[TaskPrompts], *, metric: str = "logit_diff",
                  method: Ablation | str = Ablation.MEAN, threshold: float = 0.8, batch_size: int = 8,
                  n_boot: int = 1000, seed: int = 0, circuits: bool = True, progress: bool = False,
                  model_name: str = "model", max_rows: int = 64) -> ModelPatching:
    """Effects, specialisation, attribution agreement and circuits of one model on ``tasks``.

    ``max_rows``: prompt rows per forward pass (ablation sets are stacked up to it; raise it on a GPU).
    Returns a :class:`ModelPatching`.
    """
    check_patch_options(metric=metric, method=method, threshold=threshold, batch_size=batch_size, n_boot=n_boot,
                        max_rows=max_rows)
    method = Ablation.parse(method)
    layout = unit_layout(model, partition)
    torch.manual_seed(seed)
    em = effect_matrix(model, tasks, layout, method, metric, "layer", batch_size, n_boot, seed, progress, max_rows)
    spec = specialisation_summary(em, n_boot, seed)
    boot = spec.pop("model_score_boot", None)
    circ: dict[str, Any] = {"schema": "circuitclust.circuits/1", "threshold": threshold, "ablation": "mean",
                            "metric": metric, "tasks": {}, "attribution_spearman_per_task": {},
                            "timing_s": {"attribution": 0.0, "exact_patching": 0.0}}
    for i, p in enumerate(tasks):
        if p.corrupted is None:
            continue
        exact = None
        if method == "resample":  # the effect matrix already is exact activation patching
            te = em.per_task[i]
            exact = {"clean": te.clean, "ablated": te.clean[None, :] - te.drops}
        else:
            t0 = time.perf_counter()
            exact = ablation_sweep(model, p, layout, node_masks(layout), Ablation.RESAMPLE, metric, batch_size=batch_size,
                                   max_rows=max_rows)
            circ["timing_s"]["exact_patching"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        agree = attribution_agreement(model, p, layout, metric, batch_size, exact=exact, max_rows=max_rows)
        circ["timing_s"]["attribution"] += time.perf_counter() - t0
        circ["attribution_spearman_per_task"][p.name] = agree["spearman"]
        if circuits:
            circ["tasks"][p.name] = task_circuits(model, p, layout, agree["unit_attribution_mean"],
                                                  agree["reference"], metric, threshold, batch_size, max_rows)
    rhos = [v for v in circ["attribution_spearman_per_task"].values() if v == v]
    circ["attribution_spearman"] = sum(rhos) / len(rhos) if rhos else None
    effects = {"schema": "circuitclust.effects/1", "model": model_name, "k": partition.k, "metric": metric,
               "method": method, "scope": "layer", "seed": seed, "n_boot": n_boot,
               "interval": interval_method(n_boot), "tasks": em.tasks,
               "n_prompts": em.info["n_prompts"], "nodes": em.nodes, "effect": em.effect.tolist(),
               "ci_low": em.ci_low.tolist(), "ci_high": em.ci_high.tolist(), "baseline": em.baseline}
    spec = {"schema": "circuitclust.specialisation/1", "model": model_name, "interval": interval_method(n_boot),
            **spec}
    return ModelPatching(effects, spec, circ, em, boot)


def compare(base: ModelPatching, other: ModelPatching, n_boot: int = 1000, seed: int = 0) -> dict:
    """Differences other - base of two :func:`analyse_model` results on the same tasks and partition,
    with paired bootstrap CIs over prompts. Returns the ``comparison.json`` dict."""
    eb, eo = base.effect_matrix, other.effect_matrix
    if eb.tasks != eo.tasks or len(eb.nodes) != len(eo.nodes):
        raise OptionError("compare needs the same tasks and partition definition for both models")
    diff, lo, hi = [], [], []
    for ti, (tb, to) in enumerate(zip(eb.per_task, eo.per_task)):
        m, a, b = bootstrap_mean(to.drops - tb.drops, n_boot, seed + ti)
        diff.append(m)
        lo.append(a)
        hi.append(b)
    spec = {"base": base.specialisation["model_score"], "other": other.specialisation["model_score"]}
    if base.score_boot is not None and other.score_boot is not None:  # same seeds: paired resamples
        d = other.score_boot - base.score_boot
        spec["diff"] = spec["other"] - spec["base"]
        spec["diff_ci"] = torch.quantile(d, torch.tensor([0.025, 0.975])).tolist()
    circ = {}
    for t in base.circuits["tasks"]:
        cb, co = base.circuits["tasks"][t], other.circuits["tasks"].get(t, {})
        fb, fo = cb.get("fraction"), co.get("fraction")
        circ[t] = {"base_size": cb.get("circuit_size"), "other_size": co.get("circuit_size"),
                   "base_fraction": fb, "other_fraction": fo,
                   "fraction_diff": None if fb is None or fo is None else fo - fb,
                   "base_cluster_size": cb.get("cluster_circuit_size"),
                   "other_cluster_size": co.get("cluster_circuit_size")}
    return {"schema": "circuitclust.comparison/1", "interval": interval_method(n_boot, "prompts (paired)"),
            "base": base.effects["model"],
            "other": other.effects["model"], "metric": eb.metric, "method": eb.method, "tasks": eb.tasks,
            "nodes": eb.nodes, "effect_diff": torch.stack(diff, 1).tolist(), "ci_low": torch.stack(lo, 1).tolist(),
            "ci_high": torch.stack(hi, 1).tolist(), "specialisation": spec, "circuits": circ,
            "attribution_spearman": {"base": base.circuits["attribution_spearman"],
                                     "other": other.circuits["attribution_spearman"]}}
