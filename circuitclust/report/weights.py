"""The report's weights section: each folder with a partition gets its model's weight matrices reordered by
cluster (base and fine-tuned side by side for a fine-tuning folder), within a page-wide cell budget. The only
part of the report that loads a model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import plots, runfiles
from ..errors import CircuitclustError
from .collect import _Step
from .sections import _Builder, _Section


@dataclass
class _WeightPlan:
    step: _Step
    partition: Any
    before_spec: str
    after_spec: str | None
    names: list[str]


def _model_spec(step: _Step, data: dict[str, dict[str, Any]], partition) -> str | None:
    for kind in ("run_config", "clusterability"):
        d = data[kind].get(step.name)
        if d and d.get("model"):
            return str(d["model"])
    return partition.provenance.get("model")


def _plan_weights(steps, data, notes: list[str]) -> list[_WeightPlan]:
    plans = []
    for s in steps:
        if not s.files.has("partition.json"):
            continue
        try:
            part = runfiles.load_partition(s.files.files["partition.json"])
        except CircuitclustError as e:
            notes.append(f"{s.name}: {e}")
            continue
        spec = _model_spec(s, data, part)
        if spec is None:
            notes.append(f"{s.name}: the partition does not say which model it belongs to; weights not shown")
            continue
        after = None
        if s.files.has("run_config.json") and ((s.files.folder / "final").is_dir()
                                               or (s.files.folder / "checkpoints").is_dir()):
            after = str(s.files.folder)
        plans.append(_WeightPlan(s, part, spec, after, list(part.graphs)))
    return plans


def _load_weights(spec: str, names: list[str], cache: dict) -> dict[str, Any]:
    if spec not in cache:
        import torch

        from ..models import load_hf, weight_graphs

        hf, _, _ = load_hf(spec)
        with torch.no_grad():
            cache[spec] = {g.name: g.weight.detach().float().cpu().clone() for g in weight_graphs(hf, ("mlp", "attn"))}
        del hf
    return {n: cache[spec][n] for n in names if n in cache[spec]}


def _weights_section(plans: list[_WeightPlan], builder: _Builder, budget: int, notes: list[str]) -> _Section:
    sec = _Section("Weights reordered by cluster",
                   "Rows (input units) and columns (output units) sorted by cluster label, so a clusterable matrix "
                   "is block-diagonal; white lines mark cluster boundaries. Pick the weight graph in the menu. "
                   "Fine-tuning folders show the base model and the fine-tuned model on one colour scale, both "
                   "ordered by the fixed fine-tuning partition.")
    sec.notes += notes
    n_panels = sum(len(p.names) * (2 if p.after_spec else 1) for p in plans)
    if not n_panels:
        return sec
    side = int(max(48, min(256, math.sqrt(budget / n_panels))))
    cache: dict = {}
    for p in plans:
        try:
            before = _load_weights(p.before_spec, p.names, cache)
            after = _load_weights(p.after_spec, p.names, cache) if p.after_spec else None
        except (CircuitclustError, OSError, ValueError) as e:
            sec.notes.append(f"{p.step.name}: weights of {p.before_spec} not available ({e}); heatmap omitted")
            continue
        labels = (f"base ({p.before_spec})", f"fine-tuned ({p.step.name})") if after else (p.before_spec, "")
        builder.add(sec, f"weights of {p.step.name}", lambda: plots.weight_heatmaps(
            before, p.partition, after=after, labels=labels, max_cells=side,
            title=f"{p.step.name}: |W| by cluster"))
    cache.clear()
    return sec
