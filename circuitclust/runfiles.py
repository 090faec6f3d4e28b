"""Run folders: claiming one for writing, and reading the files that the sub-commands write into it (see
the run-folder contract in the README).

Writing: :func:`new_run_folder` stages a command's whole output in a temporary folder and puts it in place
only when the command succeeds, so a killed command leaves the old folder untouched and two runs never mix
their files; it refuses a folder that already holds a run unless ``overwrite`` is given.

Reading: one loader per file; each takes the file itself or the folder that holds it, checks the ``schema``
string and returns the parsed JSON. :func:`discover` finds every such file under a run folder, grouped by the
sub-folder (pipeline step) that wrote it. No maths here.
"""
from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .atomic import append_jsonl, atomic_folder, atomic_path, remove_stale_partials, write_csv, write_json, write_text
from .errors import DataError, RunFolderError

# file name -> schema prefix it must carry (None: no schema string, e.g. JSON lines)
RUN_FILES: dict[str, str | None] = {
    "clusterability.json": "circuitclust.clusterability/",
    "metrics.jsonl": None,
    "effects.json": "circuitclust.effects/",
    "specialisation.json": "circuitclust.specialisation/",
    "circuits.json": "circuitclust.circuits/",
    "similarity.json": "circuitclust.similarity/",
    "finetune_study.json": "circuitclust.finetune_study/",
    "partition.json": None,  # its own "format" string, checked by ModelPartition.load
    "run_config.json": None,
    "replicates.json": "circuitclust.replicates/",
}


# Every run folder circuitclust writes carries this marker at its top; --overwrite only ever replaces a folder
# that has it (or, written before the marker existed, a top-level run file with a circuitclust schema).
MARKER = ".circuitclust-run"
MARKER_SCHEMA = "circuitclust.run/1"
FINETUNE_CONFIG_PREFIX = "circuitclust.finetune_config/"


def mark_run_folder(folder: str | Path, kind: str) -> Path:
    """Write the marker that makes ``folder`` a circuitclust run folder of ``kind`` (cluster, patch, ...)."""
    return write_json(Path(folder) / MARKER, {"schema": MARKER_SCHEMA, "kind": kind}, indent=None)


def is_run_folder(path: str | Path) -> bool:
    """True if ``path`` is a folder that circuitclust wrote: it holds the run marker, or a top-level run file
    whose schema string is circuitclust's. Nothing below the top level counts, so a folder that merely
    contains run folders is not one."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / MARKER).is_file():
        return True
    prefixes = {name: prefix for name, prefix in RUN_FILES.items() if prefix} | {"run_config.json": FINETUNE_CONFIG_PREFIX}
    for name, prefix in prefixes.items():
        try:
            doc = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith(prefix):
            return True
    return False


def run_kind(path: str | Path) -> str | None:
    """The kind named by the run marker in ``path`` (cluster, finetune, ...), None without a readable marker."""
    path = Path(path)
    try:
        return json.loads((path / MARKER).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def check_output_folder(out: str | Path, *, overwrite: bool = False, option: str = "--out",
                        kind: str | None = None) -> Path:
    """Check that ``out`` may receive a new run: absent, empty, or (with ``overwrite``) a circuitclust run
    folder of the same ``kind`` (a ``cluster`` run never replaces a fine-tuning run); never the working folder
    or one above it. ``~`` is expanded and a link to a folder stands for that folder. Raises
    :class:`RunFolderError` with what to do otherwise. Returns the folder to write as a Path."""
    out = Path(out).expanduser()
    if out.is_symlink():
        if not out.exists():
            raise RunFolderError(f"{option} {out} is a broken link: remove it or give another folder")
        out = out.resolve()
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise RunFolderError(f"{option} {out} is the current folder or one above it: give a new sub-folder for "
                             "the run, e.g. runs/NAME")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{option} {out} is a file: give a folder path for the run")
    if out.is_dir() and any(out.iterdir()):
        if not is_run_folder(out):
            raise RunFolderError(f"{option} {out} is a folder holding other files: choose a new or empty folder "
                                 "(--overwrite only replaces a circuitclust run folder)")
        if not overwrite:
            raise RunFolderError(f"{option} {out} already holds a run: pass --overwrite to replace it, or choose "
                                 "a new folder")
        there = run_kind(out)
        if kind is not None and there is not None and there != kind:
            raise RunFolderError(f"{option} {out} holds a {there} run, which a {kind} run does not replace: choose "
                                 "another folder")
    return out


@contextlib.contextmanager
def new_run_folder(out: str | Path, *, overwrite: bool = False, option: str = "--out",
                   kind: str = "run") -> Iterator[Path]:
    """Claim ``out`` for a new run (see :func:`check_output_folder`) and yield an empty staging folder to
    write into; when the block ends without an exception the staging folder replaces ``out`` in one rename
    (an old run there is deleted only then), otherwise it is deleted and ``out`` is left as it was."""
    out = check_output_folder(out, overwrite=overwrite, option=option, kind=kind)
    with atomic_folder(out) as staging:
        mark_run_folder(staging, kind)
        yield staging


def remove_run_folder(out: str | Path, *, option: str = "--out", kind: str | None = None) -> None:
    """Delete a circuitclust run folder of ``kind`` (for ``--overwrite`` of a command that writes in place,
    such as fine-tuning); refuses a folder that is not one."""
    out = check_output_folder(out, overwrite=True, option=option, kind=kind)
    if out.is_dir():
        shutil.rmtree(out)
    remove_stale_partials(out)


# ------------------------------------------------------------------------------------------------ writers
CLUSTERABILITY_SCHEMA = "circuitclust.clusterability/1"
CLUSTERABILITY_CSV = ["name", "layer", "kind", "shape", "k", "row_sizes", "col_sizes", "clusterability", "chance",
                      "clusterability_norm", "shuffle_mean", "shuffle_std", "z", "p", "p_floor", "q"]


def _cell(v: Any) -> Any:
    return " ".join(map(str, v)) if isinstance(v, list) else v


def write_clusterability(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``clusterability.json`` (``doc`` plus its schema string; ``doc["graphs"]`` holds one row per
    graph) and its CSV twin into ``folder``, each atomically. Returns the JSON path."""
    folder = Path(folder)
    write_csv(folder / "clusterability.csv", CLUSTERABILITY_CSV,
              [[_cell(r.get(key)) for key in CLUSTERABILITY_CSV] for r in doc["graphs"]])
    return write_json(folder / "clusterability.json", {"schema": CLUSTERABILITY_SCHEMA, **doc})


REPLICATES_SCHEMA = "circuitclust.replicates/1"


def _ends(summary: Any) -> list[Any]:
    """``[mean, lo, hi]`` of one across-seed summary (``circuitclust.core.replicates.summarise``)."""
    return [summary.get(k) for k in ("mean", "lo", "hi")] if isinstance(summary, dict) else [None] * 3


def write_replicates(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``replicates.json`` (schema ``circuitclust.replicates/1``: ``kind`` (cluster | similarity),
    ``seeds``, ``interval`` (how the across-seed intervals were made) and the kind's summary, every number as
    ``{"mean", "sd", "n", "lo", "hi", "min", "max", "values"}``) and ``replicates.csv`` (cluster: one row per
    graph; similarity: one row per layer; finetune: one row per number of the final model's evaluation) into
    ``folder``, each atomically. Returns the JSON path."""
    folder = Path(folder)
    if doc["kind"] == "cluster":
        fields = ("clusterability", "chance", "clusterability_norm", "shuffle_mean", "z")
        header = ["name"] + [f"{f}_{e}" for f in fields for e in ("mean", "lo", "hi")] + ["p_max", "q_max"]
        rows = [[g["name"]] + [x for f in fields for x in _ends(g.get(f))]
                + [(g.get(f) or {}).get("max") if isinstance(g.get(f), dict) else None for f in ("p", "q")]
                for g in doc["graphs"]]
    elif doc["kind"] == "finetune":
        header = ["quantity", "mean", "lo", "hi"]
        rows = []
        for name, v in doc["model_level"].items():
            for sub, x in (v.items() if isinstance(v, dict) and "mean" not in v else [(None, v)]):
                if isinstance(x, dict) and "mean" in x:
                    rows.append([name if sub is None else f"{name}.{sub}"] + _ends(x))
    else:
        header = ["layer"] + [f"{f}_{e}" for f in ("gw_to_next", "cka_to_next") for e in ("mean", "lo", "hi")]
        base = doc["base"]
        rows = [[layer] + (_ends(base["gw_to_next"][i]) + _ends(base["cka_to_next"][i])
                           if i < len(base["gw_to_next"]) else [None] * 6)
                for i, layer in enumerate(doc["layers"])]
    write_csv(folder / "replicates.csv", header, rows)
    return write_json(folder / "replicates.json", {"schema": REPLICATES_SCHEMA, **doc})


def write_patch_results(out: str | Path, result: dict) -> list[Path]:
    """Write effects/specialisation/circuits JSON + CSV twins of one patching result (the
    ``ModelPatching`` that ``circuitclust.analysis.patching.run.analyse_model`` returns) into ``out``, each file
    atomically. Returns the written paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    eff, spec, circ = result.effects, result.specialisation, result.circuits
    write_json(out / "effects.json", eff)
    q = eff.get("q")
    rows = [[n["layer"], n["part"], n["cluster"], n["size"], t, eff["effect"][i][j], eff["ci_low"][i][j],
             eff["ci_high"][i][j], None if q is None else q[i][j]]
            for i, n in enumerate(eff["nodes"]) for j, t in enumerate(eff["tasks"])]
    write_csv(out / "effects.csv", ["layer", "part", "cluster", "size", "task", "effect", "ci_low", "ci_high", "q_bh"],
              rows)
    write_json(out / "specialisation.json", spec)
    write_csv(out / "specialisation.csv",
               ["layer", "part", "cluster", "size", "specialisation", "top_task_share", "top_task", "total_abs_effect"],
               [[c["layer"], c["part"], c["cluster"], c["size"], c["specialisation"], c["top_task_share"],
                 c["top_task"], c["total_abs_effect"]] for c in spec["per_cluster"]])
    write_json(out / "circuits.json", circ)
    keys = ["circuit_size", "fraction", "circuit_faithfulness", "cpr", "cmd", "n_units_total", "share_largest_cluster",
            "clusters_touched", "cluster_circuit_size", "cluster_circuit_fraction", "full_metric", "empty_metric"]

    def sub(c: dict, part: str, key: str):
        return (c.get(part) or {}).get(key)

    write_csv(out / "circuits.csv", ["task", *keys, "random_cpr", "nonsense_fraction", "nonsense_cpr", "red_flag",
                                     "attribution_spearman_nodes", "attribution_spearman_units", "top_k_overlap"],
               [[t, *[c.get(k) for k in keys], sub(c, "random", "cpr"), sub(c, "nonsense", "fraction"),
                 sub(c, "nonsense", "cpr"), sub(c, "nonsense", "red_flag"),
                 circ["attribution_spearman_per_task"].get(t), sub(c, "attribution_check", "spearman"),
                 sub(c, "attribution_check", "top_k_overlap")]
                for t, c in circ["tasks"].items()])
    curve_rows = []
    for t, c in circ["tasks"].items():
        for name, curve in (("attribution", c.get("curve")), ("random", sub(c, "random", "curve")),
                            ("nonsense", sub(c, "nonsense", "curve"))):
            curve_rows += [[t, name, q_, n_, f_] for q_, n_, f_ in curve or []]
        curve_rows += [[t, "cluster nodes", None, n_, f_] for n_, f_ in c.get("cluster_faithfulness_curve") or []]
    write_csv(out / "faithfulness.csv", ["task", "curve", "fraction", "size", "faithfulness"], curve_rows)
    return [out / n for n in ("effects.json", "effects.csv", "specialisation.json", "specialisation.csv",
                              "circuits.json", "circuits.csv", "faithfulness.csv")]


def write_comparison(out: str | Path, comp: dict) -> list[Path]:
    """Write ``comparison.json`` and ``comparison.csv`` (a base/other patching comparison) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", comp)
    rows = [[n["layer"], n["part"], n["cluster"], t, comp["effect_diff"][i][j], comp["ci_low"][i][j],
             comp["ci_high"][i][j]] for i, n in enumerate(comp["nodes"]) for j, t in enumerate(comp["tasks"])]
    write_csv(out / "comparison.csv", ["layer", "part", "cluster", "task", "effect_diff", "ci_low", "ci_high"], rows)
    return [out / "comparison.json", out / "comparison.csv"]


def write_similarity_compare(folder: str | Path, comparison: dict[str, Any]) -> Path:
    """Write ``similarity_compare.json`` (a base/other layer-similarity comparison) and its per-layer CSV
    into ``folder``, each atomically. Returns the JSON path."""
    folder = Path(folder)
    layers = comparison["layers"]
    per_layer = comparison.get("per_layer_gw") or [float("nan")] * len(layers)
    write_csv(folder / "similarity_compare.csv", ["layer", "per_layer_gw"],
              [[a, f"{b:.6g}"] for a, b in zip(layers, per_layer)])
    return write_json(folder / "similarity_compare.json", comparison)


def write_run_config(folder: str | Path, config: dict[str, Any]) -> Path:
    """Write ``run_config.json`` (every option of a command's run) into ``folder`` atomically."""
    return write_json(Path(folder) / "run_config.json", config)


RECALL_SCHEMA = "circuitclust.recall/1"


def write_recall(path: str | Path, model: str, results: list[dict[str, Any]]) -> Path:
    """Write the recall accuracy of ``model`` per task (``circuitclust tasks --json``) to ``path`` atomically."""
    return write_json(path, {"schema": RECALL_SCHEMA, "model": model, "tasks": results}, indent=2)


def write_demo_log(folder: str | Path, log: dict[str, Any]) -> Path:
    """Write ``demo_log.json`` (the demo's steps, their commands and times) into ``folder`` atomically."""
    return write_json(Path(folder) / "demo_log.json", log)


def _file(path: str | Path, name: str) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise DataError(f"{path} does not exist: run the step that writes {name} first")
    return path


def _load_json(path: str | Path, name: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``path`` (or ``path/name``), its schema prefix and ``required`` keys checked."""
    path = _file(path, name)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read {path} as JSON: {str(e).splitlines()[0]}") from e
    if not isinstance(data, dict):
        raise DataError(f"{path} holds no JSON object: it was not written by circuitclust")
    prefix = RUN_FILES.get(name)
    if prefix is not None:
        schema = data.get("schema") if isinstance(data, dict) else None
        if not isinstance(schema, str) or not schema.startswith(prefix):
            raise DataError(f"{path} has schema {schema!r}, expected '{prefix}N': it was not written by circuitclust "
                            "or by an incompatible version")
    missing = [key for key in required if key not in data]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)}: it is incomplete; re-run the step that writes it")
    return data


def load_clusterability(path: str | Path) -> dict[str, Any]:
    """``clusterability.json`` (schema ``circuitclust.clusterability/1``): model, k, seed, shuffles, graphs
    (name, layer, kind, shape, clusterability, chance, shuffle_mean/std, z, p), ncut or null."""
    data = _load_json(path, "clusterability.json")
    if not isinstance(data.get("graphs"), list):
        raise DataError(f"{_file(path, 'clusterability.json')} has no 'graphs' list")
    return data


def load_replicates(path: str | Path) -> dict[str, Any]:
    """``replicates.json`` (schema ``circuitclust.replicates/1``): kind, seeds, interval and the across-seed
    summary (see :func:`write_replicates`)."""
    return _load_json(path, "replicates.json", ("kind", "seeds", "interval"))


def load_metrics(path: str | Path) -> list[dict[str, Any]]:
    """``metrics.jsonl``: one dict per evaluation (step, tokens, task_loss, lam, mean_clusterability,
    chance, clusterability per graph, heldout_ppl per domain, optional kl, tokens_per_s), in file order; a run
    that chose its final model among its evaluations (``--final in-budget``) ends with a copy of the chosen
    evaluation marked ``final`` (see :func:`evaluations`).
    Blank lines are skipped; a truncated last line (a run killed mid-write) is dropped."""
    path = _file(path, "metrics.jsonl")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path} as text ({type(e).__name__}): it is damaged; re-run the step "
                        "that writes it") from None
    rows = []
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
    return _load_json(path, "effects.json", ("tasks", "nodes", "effect", "ci_low", "ci_high", "baseline"))


def load_specialisation(path: str | Path) -> dict[str, Any]:
    """``specialisation.json`` (schema ``circuitclust.specialisation/1``): per_cluster, model_score,
    flips_histogram ``{task: [counts by number of flipping clusters]}``."""
    return _load_json(path, "specialisation.json", ("per_cluster",))


def load_circuits(path: str | Path) -> dict[str, Any]:
    """``circuits.json`` (schema ``circuitclust.circuits/N``; /2 is described in
    ``circuitclust.analysis.patching.run``): threshold, ablation, grid, tasks ``{task: {curve [[fraction, n_units,
    f]], cpr, cmd, circuit_size, fraction, random, nonsense, attribution_check, cluster_circuit, ...}}``,
    red_flags, attribution_spearman."""
    return _load_json(path, "circuits.json", ("tasks",))


def load_similarity(path: str | Path) -> dict[str, Any]:
    """``similarity.json`` (schema ``circuitclust.similarity/1``): layers (hook names), gw and cka
    ``[L][L]``, groups (boundaries, labels, stability), n, seed."""
    return _load_json(path, "similarity.json", ("layers", "gw", "cka"))


def load_run_config(path: str | Path) -> dict[str, Any]:
    """``run_config.json`` of a fine-tuning run (all options, seed, model spec)."""
    return _load_json(path, "run_config.json")


# ------------------------------------------------------------------------------------------- partitions
def _partition_stem(path: str | Path) -> Path:
    """``path`` names the partition's .json (or .safetensors) file, or else the folder that holds it."""
    path = Path(path)
    return path.with_suffix("") if path.suffix in (".json", ".safetensors") else path / "partition"


def save_partition(partition, path: str | Path) -> Path:
    """Write a :class:`~circuitclust.core.partition.ModelPartition` as ``partition.json`` +
    ``partition.safetensors`` into the folder ``path`` (created if needed), or, for a ``path`` ending in
    ``.json``, as that file and its ``.safetensors`` twin; each
    file atomically, the tensors first, so a reader never sees a JSON without its tensors. Returns the JSON
    path."""
    from safetensors.torch import save_file

    stem = _partition_stem(path)
    meta, tensors = partition.to_state()
    with atomic_path(stem.with_suffix(".safetensors")) as tmp:
        save_file(tensors, str(tmp))
    return write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1, default=str))


def load_partition(path: str | Path):
    """The partition written by :func:`save_partition` (give its folder or either file). Raises
    :class:`~circuitclust.errors.PartitionMismatchError` when a file is missing or damaged."""
    from safetensors.torch import load_file

    from .core.partition import ModelPartition
    from .errors import PartitionMismatchError

    stem = _partition_stem(path)
    jpath, tpath = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    if not jpath.is_file() or not tpath.is_file():
        raise PartitionMismatchError(f"partition files {jpath} and {tpath} are both needed; one is missing")
    try:
        meta = json.loads(jpath.read_text())
        tensors = load_file(str(tpath))
    except Exception as e:
        raise PartitionMismatchError(f"cannot read partition {stem}: {str(e).splitlines()[0]}") from e
    return ModelPartition.from_state(meta, tensors, source=str(jpath))


def run_partition(folder: str | Path | None):
    """``(partition, path of its partition.json)`` of a run folder that holds one (a cluster or fine-tuning
    run), else None."""
    if folder is None:
        return None
    folder = Path(folder)
    if folder.is_dir() and (folder / "partition.json").is_file():
        return load_partition(folder), str(folder / "partition.json")
    return None


# ------------------------------------------------------------------------------------- layer similarity
def save_layer_similarity(sim, folder: str | Path) -> Path:
    """Write a layer-similarity result (``analysis.similarity.LayerSimilarity``) into ``folder``:
    ``similarity.safetensors`` (float64 GW and CKA matrices, sampled positions), ``gw.csv``, ``cka.csv`` and,
    last, ``similarity.json`` (schema ``circuitclust.similarity/1``), each atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    doc, tensors = sim.to_state()
    with atomic_path(folder / "similarity.safetensors") as tmp:
        save_file(tensors, str(tmp), metadata={"schema": doc["schema"]})
    for name, key in (("gw.csv", "gw"), ("cka.csv", "cka")):
        write_csv(folder / name, ["layer", *doc["layers"]],
                  [[n, *(f"{v:.6g}" for v in row)] for n, row in zip(doc["layers"], doc[key])])
    write_json(folder / "similarity.json", doc)  # last: its presence means the folder is complete
    return folder


def load_layer_similarity(folder: str | Path, build):
    """``build(doc, tensors)`` of what :func:`save_layer_similarity` wrote into ``folder``; raises
    :class:`DataError` for a missing, foreign or damaged result."""
    from safetensors.torch import load_file

    folder = Path(folder)
    doc = load_similarity(folder)
    try:
        return build(doc, load_file(str(folder / "similarity.safetensors")))
    except Exception as e:  # safetensors and key errors of a damaged folder
        raise DataError(f"{folder} holds a damaged similarity result ({type(e).__name__}): re-run "
                        "`circuitclust similarity`") from None


# ----------------------------------------------------------------------------------- fine-tuning runs
FINETUNE_CONFIG_SCHEMA = "circuitclust.finetune_config/1"
FINETUNE_METRICS_SCHEMA = "circuitclust.finetune_metrics/1"
CHECKPOINT_STATE = "trainer_state.pt"


def write_finetune_config(folder: str | Path, config: dict[str, Any], **extra: Any) -> Path:
    """Write a fine-tuning run's ``run_config.json``: every option (``config``) plus ``extra`` facts (seed,
    world size, device, versions, data sizes)."""
    return write_json(Path(folder) / "run_config.json", {"schema": FINETUNE_CONFIG_SCHEMA, "config": config,
                                                          **extra})


FINETUNE_STUDY_SCHEMA = "circuitclust.finetune_study/1"


def write_finetune_study(folder: str | Path, doc: dict[str, Any]) -> Path:
    """Write ``finetune_study.json``: the evaluations of several fine-tuning runs compared as a Pareto study.

    ``doc``: ``model``, ``command``, ``git_commit``, ``machine`` and ``runs``: ``{run name: {recipe, seed,
    steps, finished, config, evaluations: [{step, tokens, C, chance, C_norm, ppl: {domain: value},
    ppl_increase: {domain: ppl / ppl at step 0 - 1}, lam, budget_held?}]}}``.
    """
    return write_json(Path(folder) / "finetune_study.json", {"schema": FINETUNE_STUDY_SCHEMA, **doc})


def load_finetune_study(path: str | Path) -> dict[str, Any]:
    """``finetune_study.json`` (see :func:`write_finetune_study`)."""
    return _load_json(path, "finetune_study.json", ("model", "runs"))


def append_metrics(folder: str | Path, record: dict[str, Any]) -> Path:
    """Append one evaluation record to ``metrics.jsonl`` (atomically: the file is rewritten whole)."""
    return append_jsonl(Path(folder) / "metrics.jsonl", {"schema": FINETUNE_METRICS_SCHEMA, **record})


def trim_metrics(folder: str | Path, last_step: int | None) -> None:
    """Drop the evaluations logged after ``last_step`` (a run resumed from that checkpoint logs them again) and
    the closing ``final`` record (the resumed run writes its own); ``None`` drops them all (a run started over)."""
    path = Path(folder) / "metrics.jsonl"
    if last_step is None:
        path.unlink(missing_ok=True)
    elif path.is_file():
        keep = [json.dumps(r) for r in load_metrics(path)
                if isinstance(r, dict) and r.get("step", 0) <= last_step and not r.get("final")]
        write_text(path, "".join(ln + "\n" for ln in keep))


def evaluations(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation records of a parsed ``metrics.jsonl``, in file order, without the closing ``final``
    record (which repeats the evaluation whose model ``final/`` holds)."""
    return [m for m in metrics if not m.get("final")]


def checkpoint_folder(folder: str | Path, step: int) -> Path:
    return Path(folder) / "checkpoints" / f"step-{step}"


def checkpoint_steps(folder: str | Path) -> list[int]:
    """Steps of the complete checkpoints in ``folder/checkpoints`` (ascending)."""
    steps = []
    for p in (Path(folder) / "checkpoints").glob("step-*"):
        if (p / CHECKPOINT_STATE).is_file() and (p / "config.json").is_file():
            steps.append(int(p.name.split("-")[-1]))
    return sorted(steps)


def save_model_folder(dest: str | Path, hf_model, tokenizer, state: dict[str, Any] | None = None) -> Path:
    """Write ``hf_model`` (``save_pretrained``), its tokenizer and, for a checkpoint, the trainer ``state``
    (``trainer_state.pt``) to the folder ``dest``, atomically: a run killed while saving keeps the previous
    folder whole."""
    import torch

    with atomic_folder(dest) as tmp:
        hf_model.save_pretrained(str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        if state is not None:
            torch.save(state, tmp / CHECKPOINT_STATE)
    return Path(dest)


def prune_checkpoints(folder: str | Path, keep: int, protect: int | None = None) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps all) and the one of step
    ``protect``."""
    if keep <= 0:
        return
    for step in checkpoint_steps(folder)[:-keep]:
        if step != protect:
            shutil.rmtree(checkpoint_folder(folder, step), ignore_errors=True)


def copy_model_folder(src: str | Path, dest: str | Path) -> Path:
    """Copy the HF model folder ``src`` (a checkpoint) to ``dest`` without its trainer state, atomically."""
    with atomic_folder(dest) as tmp:
        for f in Path(src).iterdir():
            if f.is_file() and f.name != CHECKPOINT_STATE:
                shutil.copy2(f, tmp / f.name)
    return Path(dest)


def load_checkpoint_state(folder: str | Path) -> dict[str, Any]:
    """The trainer state (optimizer, scheduler, RNG, accumulators) saved in the checkpoint ``folder``."""
    import torch

    return torch.load(Path(folder) / CHECKPOINT_STATE, map_location="cpu", weights_only=False)


def model_folder(path: str | Path) -> Path | None:
    """The HF model folder inside ``path``: itself, or for a fine-tuning run folder its ``final`` model or its
    newest checkpoint; None if there is none."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / "final" / "config.json").is_file():
        return path / "final"
    steps = checkpoint_steps(path)
    return checkpoint_folder(path, steps[-1]) if steps else None


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
