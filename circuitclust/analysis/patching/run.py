"""The whole patching analysis of one model (or a base/other pair). ``circuitclust.runfiles`` writes its
results into a run folder (JSON with a top-level ``schema``; CSV twins for the tables):

- ``effects.json`` ``circuitclust.effects/1``: ``model``, ``k``, ``metric`` (``logit_diff`` | ``logprob``;
  texts use ``neg_loss``; higher is better), ``method`` (``zero`` | ``mean`` | ``counterfactual``), ``scope``
  (``layer``: one cluster of one block), ``seed``, ``n_boot``, ``interval``, ``tasks`` [T], ``n_prompts``
  {task: n}, ``nodes`` [S] ``{layer, part, cluster, size (dims), n_units}``, ``effect`` [S][T] mean drop of
  the metric under ablation, ``ci_low`` / ``ci_high`` [S][T] 95% bootstrap interval over prompts, ``p``
  [S][T] two-sided bootstrap p, ``q`` [S][T] Benjamini-Hochberg across the matrix, ``n_significant_bh``
  (cells with q <= 0.05), ``baseline`` {task: mean clean metric}. CSV: ``effects.csv`` one row per (node, task).
- ``specialisation.json`` ``circuitclust.specialisation/1``: ``per_cluster`` [S] ``{layer, part, cluster,
  size, n_units, specialisation (1 - normalised entropy of |effect| over tasks), top_task_share (share of the
  node's |effect| on its top task), top_task, total_abs_effect}``, ``model_score`` (|effect|-weighted mean),
  ``model_score_ci`` [lo, hi], ``nulls`` {``label_shuffle``, ``random_partition``: {observed, null_mean,
  null_range_95, p, n_null, basis}} (see :func:`~.patching.specialisation_nulls`), ``chance_top_task_share``
  (1/T), ``flips_histogram`` {task: [prompts flipped by exactly 0, 1, ... S nodes]}, ``n_correct``.
  CSV: ``specialisation.csv`` per node.
- ``circuits.json`` ``circuitclust.circuits/2``: ``threshold``, ``ablation`` (how units outside a circuit
  are ablated), ``grid`` (fractions of units), ``units`` {parts, n_units, per_part, kinds}, ``tasks`` {task:
  :func:`~.circuits.task_circuits` (``curve`` [[fraction, n_units, f]], ``cpr``, ``cmd``, ``circuit_size``,
  ``fraction``, ``circuit_faithfulness``, ``search``, ``parts``, ``cluster_share``, ``random`` (the
  random-ranking baseline curve), ``cluster_circuit``..., ``full_metric``, ``empty_metric``) plus
  ``nonsense`` (the same search on the task with answers shuffled across prompts, with ``red_flag``) and
  ``attribution_check`` (:func:`~.patching.attribution_check`), ``prompts`` (the sample)}, ``red_flags``
  [tasks whose nonsense control found a circuit as small as the real one], ``attribution_spearman``
  (mean over tasks of the node-level Spearman between attribution estimates and the exact effect matrix),
  ``attribution_spearman_per_task``, ``attribution_check`` {task: {spearman, spearman_random,
  top_k_overlap}}, ``timing_s``. With several seeds, ``replicates`` (see ``circuitclust.pipeline.patch``).
  CSV: ``circuits.csv`` per task and ``faithfulness.csv`` (task, curve, fraction, size, faithfulness).
- ``comparison.json`` ``circuitclust.comparison/1`` (``--compare``): ``base``, ``other``, ``tasks``,
  ``nodes``, ``effect_diff`` [S][T] (other - base, same prompts), ``ci_low`` / ``ci_high`` (paired
  bootstrap), ``specialisation`` {base, other, diff, diff_ci}, ``circuits`` {task: {base_size, other_size,
  base_fraction, other_fraction, fraction_diff, base_cpr, other_cpr, base_cluster_size, other_cluster_size}}.
  The other model's own three files go to RUN_DIR/compare/. CSV: ``comparison.csv``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ...core.measures import interval_method
from ...core.partition import ModelPartition
from ...errors import OptionError, check_choice, check_float, check_int
from .attribution import attribution_patching, estimate_key
from .circuits import GRID, Faithfulness, find_circuit, task_circuits
from .interventions import Ablation, mean_activations
from .metrics import METRICS
from .effects import (EffectMatrix, attribution_check, bootstrap_mean, effect_matrix, spearman,
                      specialisation_nulls, specialisation_summary)
from .prompts import TaskPrompts, nonsense_task, sample_task
from .scores import Scores
from .units import PARTS, complete_partition, unit_layout


def check_patch_options(*, metric: str = "logit_diff", method: str = "mean", threshold: float = 0.8,
                        batch_size: int = 8, n_boot: int = 1000, max_rows: int = 64,
                        circuit_method: str = "counterfactual", n_check: int = 32, top_k: int = 8,
                        n_null: int = 1000, parts: tuple[str, ...] = PARTS) -> None:
    """Validate :func:`analyse_model`'s options; :class:`OptionError` names the parameter."""
    check_choice("metric", metric, [m for m in METRICS if m != "neg_loss"])
    Ablation.parse(method, "method")
    Ablation.parse(circuit_method, "circuit_method")
    check_float("threshold", threshold, 0.0, 1.0, open_min=True)
    check_int("batch_size", batch_size, 1)
    check_int("n_boot", n_boot, 10, 100_000)
    check_int("max_rows", max_rows, 1)
    check_int("n_check", n_check, 0, 100_000)
    check_int("top_k", top_k, 1, 100_000)
    check_int("n_null", n_null, 0, 100_000)
    if not parts:
        raise OptionError("parts is empty: give mlp, attn or both", option="parts")
    for p in parts:
        check_choice("parts", p, PARTS)


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


def red_flag(real: dict, nonsense: dict) -> bool:
    """True when the nonsense control found a faithful circuit no more than twice the real task's size (or
    the real task has none): the search then finds "circuits" whatever the task."""
    fn, fr = nonsense.get("fraction"), real.get("fraction")
    return fn is not None and (fr is None or fn <= 2 * fr)


def analyse_model(model, partition: ModelPartition, tasks: list[TaskPrompts], *, metric: str = "logit_diff",
                  method: Ablation | str = Ablation.MEAN, threshold: float = 0.8, batch_size: int = 8,
                  n_boot: int = 1000, seed: int = 0, circuits: bool = True, progress: bool = False,
                  model_name: str = "model", max_rows: int = 64,
                  references: list[TaskPrompts] | None = None, parts: tuple[str, ...] = PARTS,
                  circuit_method: Ablation | str = Ablation.COUNTERFACTUAL, controls: bool = True,
                  n_check: int = 32, top_k: int = 8, n_null: int = 1000, cluster_level: bool = True
                  ) -> ModelPatching:
    """Effects (``method``), specialisation with its nulls, attribution checks and circuits (units outside
    ablated with ``circuit_method``; with ``controls``, the random-ranking baseline and the nonsense task) of
    one model on ``tasks``.

    ``references``: one disjoint reference set per task (mean ablation takes its means from it); ``None``
    splits each task with :func:`~.prompts.sample_task` (``seed``). ``parts``: the units (MLP neurons and/or
    attention heads or head dims; a part ``partition`` lacks is co-clustered with its k, see
    :func:`~.units.complete_partition`). ``n_check``: units per task whose attribution is checked by exact
    ablation (0: none). ``max_rows``: prompt rows per forward pass (raise it on a GPU). Returns a
    :class:`ModelPatching`.
    """
    check_patch_options(metric=metric, method=method, threshold=threshold, batch_size=batch_size, n_boot=n_boot,
                        max_rows=max_rows, circuit_method=circuit_method, n_check=n_check, top_k=top_k,
                        n_null=n_null, parts=tuple(parts))
    method, circuit_method = Ablation.parse(method), Ablation.parse(circuit_method)
    if references is None:
        split = [sample_task(p, None, seed=seed) for p in tasks]
        tasks, references = [a for a, _ in split], [b for _, b in split]
    if len(references) != len(tasks):
        raise OptionError("give one reference set per task", option="references")
    partition, added = complete_partition(model, partition, parts, seed)
    layout = unit_layout(model, partition, parts)
    torch.manual_seed(seed)
    timing: dict[str, float] = {}

    def clock(key: str, t0: float) -> None:
        timing[key] = timing.get(key, 0.0) + time.perf_counter() - t0

    t0 = time.perf_counter()
    refs = {}
    if Ablation.MEAN in (method, circuit_method):
        refs = {p.name: mean_activations(model, r, layout.hooks, batch_size) for p, r in zip(tasks, references)}
    clock("reference_means", t0)
    t0 = time.perf_counter()
    em = effect_matrix(model, tasks, layout, method, metric, "layer", batch_size, n_boot, seed, progress, max_rows,
                       references=refs)
    clock("effect_matrix", t0)
    spec = specialisation_summary(em, n_boot, seed)
    boot = spec.pop("model_score_boot", None)
    units_doc = {"parts": list(dict.fromkeys(s.part for s in layout.slots)), "n_units": layout.n_units,
                 "per_part": {}, "kinds": {}, "co_clustered_here": added}
    for sl in layout.slots:
        units_doc["per_part"][sl.part] = units_doc["per_part"].get(sl.part, 0) + sl.n_units
        units_doc["kinds"][sl.part] = sl.unit_kind if units_doc["kinds"].get(sl.part, sl.unit_kind) == sl.unit_kind \
            else "mixed"
    circ: dict[str, Any] = {"schema": "circuitclust.circuits/2", "threshold": threshold,
                            "ablation": circuit_method.value, "metric": metric, "grid": list(GRID), "units": units_doc,
                            "tasks": {}, "red_flags": [], "attribution_spearman_per_task": {},
                            "attribution_check": {}, "timing_s": timing}
    unit_drops = []
    key_e, key_c = estimate_key(method), estimate_key(circuit_method)
    for i, p in enumerate(tasks):
        ref = refs.get(p.name)
        t0 = time.perf_counter()
        att = attribution_patching(model, p, layout, metric, reference=ref, batch_size=batch_size)
        clock("attribution", t0)
        if key_e in att:  # attribution estimates (metric change) vs the exact drops of the effect matrix
            circ["attribution_spearman_per_task"][p.name] = spearman(layout.dims_to_nodes(att[key_e]).mean(0),
                                                                     -em.effect[:, i])
            unit_drops.append(-layout.dims_to_units(att[key_e]).mean(0))
        if not circuits:
            continue
        if key_c not in att:
            circ["tasks"][p.name] = {"note": f"'{p.name}' has no corrupted prompts: {circuit_method.value} "
                                             "ablation of circuits needs them"}
            continue
        scores = Scores(layout.dims_to_units(att[key_c]).mean(0), layout, source="attribution")
        t0 = time.perf_counter()
        c = task_circuits(model, p, layout, scores, ref, metric, threshold, batch_size, max_rows, circuit_method,
                          cluster_level, random_seed=seed if controls else None)
        c["prompts"] = {"n": len(p), "reference_n": len(references[i]), **p.info.get("sample", {})}
        clock("circuits", t0)
        if n_check:
            t0 = time.perf_counter()
            chk = attribution_check(model, p, layout, scores.values, circuit_method, metric, ref, n_check, top_k,
                                    seed, batch_size, max_rows)
            c["attribution_check"] = chk
            circ["attribution_check"][p.name] = {k: chk[k] for k in ("spearman", "spearman_random", "top_k_overlap",
                                                                      "top_k", "n_sample")}
            clock("attribution_check", t0)
        if controls and not p.is_text:
            t0 = time.perf_counter()
            nz = nonsense_task(p, seed)
            att_n = attribution_patching(model, nz, layout, metric, reference=ref, batch_size=batch_size)
            fn = Faithfulness(model, nz, layout, metric, circuit_method, ref, batch_size, max_rows)
            found = find_circuit(fn, Scores(layout.dims_to_units(att_n[key_c]).mean(0), layout,
                                            source="attribution (nonsense task)"), threshold)
            found.update(full_metric=fn.full, empty_metric=fn.empty, gap_se=fn.gap_se, n_ablation_evals=fn.n_evals,
                         red_flag=red_flag(c, found))
            found.pop("units", None)
            c["nonsense"] = found
            if found["red_flag"]:
                circ["red_flags"].append(p.name)
            clock("nonsense_control", t0)
        circ["tasks"][p.name] = c
    rhos = [v for v in circ["attribution_spearman_per_task"].values() if v == v]
    circ["attribution_spearman"] = sum(rhos) / len(rhos) if rhos else None
    t0 = time.perf_counter()
    nulls = specialisation_nulls(em, layout, torch.stack(unit_drops) if len(unit_drops) == len(tasks) else None,
                                 n_null, seed) if n_null else {}
    clock("specialisation_nulls", t0)
    effects = {"schema": "circuitclust.effects/1", "model": model_name, "k": partition.k, "metric": metric,
               "method": method.value, "scope": "layer", "seed": seed, "n_boot": n_boot,
               "interval": interval_method(n_boot), "tasks": em.tasks,
               "n_prompts": em.info["n_prompts"], "nodes": em.nodes, "effect": em.effect.tolist(),
               "ci_low": em.ci_low.tolist(), "ci_high": em.ci_high.tolist(), "p": em.p.tolist(), "q": em.q.tolist(),
               "n_significant_bh": int((em.q <= 0.05).sum()), "n_cells": em.q.numel(), "bh_alpha": 0.05,
               "baseline": em.baseline, "reference_n": {p.name: len(r) for p, r in zip(tasks, references)}}
    spec = {"schema": "circuitclust.specialisation/1", "model": model_name, "interval": interval_method(n_boot),
            **spec, "nulls": nulls}
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
                   "base_fraction": fb, "other_fraction": fo, "base_cpr": cb.get("cpr"), "other_cpr": co.get("cpr"),
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


REPLICATE_KEYS = ("fraction", "cpr", "cmd", "circuit_faithfulness", "random_cpr", "nonsense_fraction",
                  "nonsense_cpr", "attribution_spearman", "top_k_overlap")


def replicate_summary(res: ModelPatching) -> dict:
    """The numbers of one seed's analysis that replicates are compared on: per task the keys of
    :data:`REPLICATE_KEYS`, and the model's specialisation score and BH-significant effect count."""
    out: dict[str, dict] = {}
    for t, c in res.circuits["tasks"].items():
        chk = c.get("attribution_check") or {}
        out[t] = {"fraction": c.get("fraction"), "cpr": c.get("cpr"), "cmd": c.get("cmd"),
                  "circuit_faithfulness": c.get("circuit_faithfulness"),
                  "random_cpr": (c.get("random") or {}).get("cpr"),
                  "nonsense_fraction": (c.get("nonsense") or {}).get("fraction"),
                  "nonsense_cpr": (c.get("nonsense") or {}).get("cpr"),
                  "attribution_spearman": chk.get("spearman"), "top_k_overlap": chk.get("top_k_overlap")}
    out["_model"] = {"specialisation": res.specialisation.get("model_score"),
                     "n_significant_bh": res.effects.get("n_significant_bh")}
    return out


def _mean_interval(values: list) -> dict:
    """Mean of the defined values with a 95% t interval across them (None below two values)."""
    import math

    from scipy.stats import t as student

    vals = [float(v) for v in values if isinstance(v, (int, float)) and v == v]
    if not vals:
        return {"mean": None, "ci": None, "n": 0}
    m = sum(vals) / len(vals)
    if len(vals) < 2:
        return {"mean": m, "ci": None, "n": 1}
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))
    h = float(student.ppf(0.975, len(vals) - 1)) * sd / math.sqrt(len(vals))
    return {"mean": m, "ci": [m - h, m + h], "n": len(vals)}


def aggregate_replicates(seeds: list[int], summaries: list[dict]) -> dict:
    """``{"seeds", "per_seed" {seed: summary}, "aggregate" {task: {key: {mean, ci, n}}}, "interval"}``: each
    number's mean over the seeds (prompt samples) with a 95% Student-t interval across them."""
    agg: dict[str, dict] = {}
    for t in summaries[0]:
        keys = summaries[0][t].keys()
        agg[t] = {k: _mean_interval([s.get(t, {}).get(k) for s in summaries]) for k in keys}
    return {"seeds": list(seeds), "per_seed": {str(sd): s for sd, s in zip(seeds, summaries)}, "aggregate": agg,
            "interval": "mean over seeds (independent prompt samples) with a 95% Student-t interval"}
