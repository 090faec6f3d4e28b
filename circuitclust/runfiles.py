"""Reading the files that the sub-commands write into a run folder (see the run-folder contract in the
README). One loader per file: each takes the file itself or the folder that holds it, checks the
``schema`` string and returns the parsed JSON. :func:`discover` finds every such file under a run folder,
grouped by the sub-folder (pipeline step) that wrote it. No maths here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

# file name -> schema prefix it must carry (None: no schema string, e.g. JSON lines)
RUN_FILES: dict[str, str | None] = {
    "clusterability.json": "circuitclust.clusterability/",
    "metrics.jsonl": None,
    "effects.json": "circuitclust.effects/",
    "specialisation.json": "circuitclust.specialisation/",
    "circuits.json": "circuitclust.circuits/",
    "similarity.json": "circuitclust.similarity/",
    "partition.json": None,  # its own "format" string, checked by ModelPartition.load
    "run_config.json": None,
}


def _file(path: str | Path, name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise DataError(f"{path} does not exist: run the step that writes {name} first")
    return path


def _load_json(path: str | Path, name: str) -> dict[str, Any]:
    path = _file(path, name)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {path} as JSON: {str(e).splitlines()[0]}") from e
    prefix = RUN_FILES.get(name)
    if prefix is not None:
        schema = data.get("schema") if isinstance(data, dict) else None
        if not isinstance(schema, str) or not schema.startswith(prefix):
            raise DataError(f"{path} has schema {schema!r}, expected '{prefix}N': it was not written by circuitclust "
                            "or by an incompatible version")
    return data


def load_clusterability(path: str | Path) -> dict[str, Any]:
    """``clusterability.json`` (schema ``circuitclust.clusterability/1``): model, k, seed, shuffles, graphs
    (name, layer, kind, shape, clusterability, chance, shuffle_mean/std, z, p), ncut or null."""
    data = _load_json(path, "clusterability.json")
    if not isinstance(data.get("graphs"), list):
        raise DataError(f"{_file(path, 'clusterability.json')} has no 'graphs' list")
    return data


def load_metrics(path: str | Path) -> list[dict[str, Any]]:
    """``metrics.jsonl``: one dict per evaluation (step, tokens, task_loss, lam, mean_clusterability,
    chance, clusterability per graph, heldout_ppl per domain, optional kl, tokens_per_s), in file order.
    Blank lines are skipped; a truncated last line (a run killed mid-write) is dropped."""
    path = _file(path, "metrics.jsonl")
    rows, lines = [], path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break
            raise DataError(f"{path} line {i + 1} is not JSON: {e.msg}") from e
    if not rows:
        raise DataError(f"{path} holds no evaluations yet")
    return rows


def load_effects(path: str | Path) -> dict[str, Any]:
    """``effects.json`` (schema ``circuitclust.effects/1``): tasks, nodes (layer, part, cluster, size),
    effect / ci_low / ci_high ``[node][task]``, baseline per task, metric."""
    return _load_json(path, "effects.json")


def load_specialisation(path: str | Path) -> dict[str, Any]:
    """``specialisation.json`` (schema ``circuitclust.specialisation/1``): per_cluster, model_score,
    flips_histogram ``{task: [counts by number of flipping clusters]}``."""
    return _load_json(path, "specialisation.json")


def load_circuits(path: str | Path) -> dict[str, Any]:
    """``circuits.json`` (schema ``circuitclust.circuits/1``): threshold, tasks ``{task: {faithfulness_curve
    [[n_units, frac]], circuit_size, fraction, n_units_total, share_largest_cluster, clusters_touched,
    cluster_circuit}}``, attribution_spearman."""
    return _load_json(path, "circuits.json")


def load_similarity(path: str | Path) -> dict[str, Any]:
    """``similarity.json`` (schema ``circuitclust.similarity/1``): layers (hook names), gw and cka
    ``[L][L]``, groups (boundaries, labels, stability), n, seed."""
    return _load_json(path, "similarity.json")


def load_run_config(path: str | Path) -> dict[str, Any]:
    """``run_config.json`` of a fine-tuning run (all options, seed, model spec)."""
    return _load_json(path, "run_config.json")


def load_partition(path: str | Path):
    """``partition.json`` + ``partition.safetensors`` as a :class:`~circuitclust.core.partition.ModelPartition`."""
    from .core.partition import ModelPartition

    path = Path(path)
    return ModelPartition.load(path / "partition.json" if path.is_dir() else path)


@dataclass
class StepFiles:
    """The run files of one folder (one pipeline step): ``files`` maps file name -> path."""

    folder: Path
    label: str  # the folder relative to the run folder ("." for the run folder itself)
    files: dict[str, Path] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.files


def discover(run_dir: str | Path) -> list[StepFiles]:
    """Every folder under ``run_dir`` (itself included) that holds at least one run file, sorted by relative
    path. Model checkpoints (``checkpoints/``, ``final/``) are not searched. Raises :class:`DataError` if
    ``run_dir`` is not a folder or holds no run file."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(f"{run_dir} is not a folder: pass a run folder written by circuitclust")
    steps: dict[Path, StepFiles] = {}
    for name in RUN_FILES:
        for p in run_dir.rglob(name):
            rel = p.parent.relative_to(run_dir)
            if any(part in ("checkpoints", "final") for part in rel.parts):
                continue
            step = steps.setdefault(p.parent, StepFiles(p.parent, rel.as_posix() or "."))
            step.files[name] = p
    if not steps:
        raise DataError(f"{run_dir} holds none of {', '.join(RUN_FILES)}: run `circuitclust cluster`, "
                        "`finetune`, `patch` or `similarity` with --out there first")
    return sorted(steps.values(), key=lambda s: (s.label != ".", s.label))
