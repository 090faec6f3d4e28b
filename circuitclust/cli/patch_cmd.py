"""``circuitclust patch MODEL_OR_RUN``: cluster ablation effects, specialisation and circuits per task.

Writes RUN_DIR/effects.json, specialisation.json, circuits.json (+ CSV twins; schemas in
``circuitclust.analysis.patch_run``), partition.json/.safetensors (the partition used) and run_config.json;
with ``--compare OTHER``: RUN_DIR/compare/ (the other model's files) and comparison.json/.csv.
"""
from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import echo, format_table, one_line_errors
from .main import app


def _run_partition(spec: str | None):
    """The partition.json a fine-tuning/cluster run folder brings, or None."""
    from ..core.partition import ModelPartition

    if spec and Path(spec).is_dir() and (Path(spec) / "partition.json").is_file():
        return ModelPartition.load(Path(spec) / "partition"), str(Path(spec) / "partition.json")
    return None, None


@app.command("patch")
@one_line_errors
def patch(
    model: str = typer.Argument(..., help="gemma-3-270m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a run folder, a .gguf or a hub name"),
    out: Path = typer.Option(..., "--out", help="run folder to write (new or empty; see --overwrite)"),
    partition: Path = typer.Option(None, "--partition", help="partition.json (default: the run folder's, else co-cluster with --k)"),
    tasks: str = typer.Option(None, "--tasks", help="comma-separated task names or .jsonl paths (default: all bundled tasks)"),
    k: int = typer.Option(4, "--k", help="clusters per layer when co-clustering here"),
    metric: str = typer.Option("logit_diff", help="logit_diff or logprob"),
    method: str = typer.Option("mean", help="cluster ablation for the effect matrix: zero, mean or resample"),
    threshold: float = typer.Option(0.8, help="fraction of the task metric a circuit must keep"),
    batch_size: int = typer.Option(8, "--batch-size", help="prompts per batch"),
    max_rows: int = typer.Option(64, "--max-rows", help="rows per forward pass: ablation sets x prompts stacked (raise on a GPU)"),
    max_prompts: int = typer.Option(None, "--max-prompts", help="first N usable prompts per task"),
    n_boot: int = typer.Option(1000, "--n-boot", help="bootstrap resamples for CIs"),
    seed: int = typer.Option(0, help="seed of the bootstrap and the co-clustering"),
    circuits: bool = typer.Option(True, "--circuits/--no-circuits", help="also search circuits per task"),
    compare: str = typer.Option(None, "--compare", help="a second model (e.g. the fine-tuned run) to compare on the same tasks and partition"),
    device: str = typer.Option(None, help="cpu, cuda ... (default: CUDA if available)"),
    threads: int = typer.Option(None, help="CPU threads for torch"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run already in --out"),
) -> None:
    """Ablate every (layer, cluster) on every task; effect matrix with CIs, specialisation, flips, attribution
    agreement and smallest circuits."""
    import torch

    from ..analysis.patch_run import analyse_model, check_patch_options
    from ..analysis.patch_run import compare as compare_results
    from ..analysis.prompts import encode_task
    from ..analysis.units import default_partition, unit_layout
    from ..core.partition import ModelPartition
    from ..data import list_tasks, load_task
    from ..errors import DataError, check_int, resolve_device
    from ..models import load_model
    from ..models.loading import check_spec
    from ..runfiles import new_run_folder, write_comparison, write_patch_results, write_run_config

    # Every option, the partition file and the task files are checked before a model loads.
    check_patch_options(metric=metric, method=method, threshold=threshold, batch_size=batch_size, n_boot=n_boot,
                        max_rows=max_rows, prefix="--")
    check_int("--k", k, 2)
    if max_prompts is not None:
        check_int("--max-prompts", max_prompts, 1)
    if threads is not None:
        torch.set_num_threads(check_int("--threads", threads, 1))
    dev = str(resolve_device(device))
    for spec in (model, compare) if compare else (model,):
        check_spec(spec)
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else list_tasks()
    if not names:
        raise DataError("no tasks given: pass --tasks with task names or .jsonl files")
    for t in names:
        load_task(t)
    given = ModelPartition.load(partition) if partition is not None else None
    with new_run_folder(out, overwrite=overwrite) as staging:
        t0 = time.perf_counter()
        m = load_model(model, device=dev)
        part_src = "given"
        if given is not None:
            mp = given
        else:
            mp, part_src = _run_partition(model)
            if mp is None:
                mp, part_src = _run_partition(compare)
            if mp is None:
                mp, part_src = default_partition(m, k=k, seed=seed), f"co-clustered here (k={k})"
        unit_layout(m, mp)  # fail fast on a partition made for another model
        prompts = [encode_task(m, t, max_prompts=max_prompts) for t in names]
        for p in prompts:
            echo(f"task {p.name}: {len(p)} prompts ({p.dropped} pairs dropped for unequal token lengths)")
        opts = dict(metric=metric, method=method, threshold=threshold, batch_size=batch_size, n_boot=n_boot,
                    seed=seed, circuits=circuits, progress=True, max_rows=max_rows)
        res = analyse_model(m, mp, prompts, model_name=model, **opts)
        write_patch_results(staging, res)
        mp.save(staging / "partition")
        config = {"model": model, "partition": str(partition) if partition else part_src, "tasks": names,
                  "k": mp.k, "compare": compare, "max_prompts": max_prompts, "device": str(next(m.parameters()).device),
                  **{key: v for key, v in opts.items() if key != "progress"}}
        if compare:
            del m
            other = load_model(compare, device=dev)
            other_prompts = [encode_task(other, t, max_prompts=max_prompts) for t in names]
            res_o = analyse_model(other, mp, other_prompts, model_name=compare, **opts)
            write_patch_results(staging / "compare", res_o)
            comp = compare_results(res, res_o, n_boot, seed)
            write_comparison(staging, comp)
        config["wall_s"] = time.perf_counter() - t0
        write_run_config(staging, config)
    _print_summary(res, echo, format_table)
    if compare:
        s = comp["specialisation"]
        echo(f"specialisation base {s['base']:.4g} vs other {s['other']:.4g}"
             + (f", diff {s['diff']:.4g} [{s['diff_ci'][0]:.4g}, {s['diff_ci'][1]:.4g}]" if "diff" in s else ""))
        echo(format_table(["task", "base circuit", "other circuit", "fraction diff"],
                          [[t, c["base_size"], c["other_size"], c["fraction_diff"]] for t, c in comp["circuits"].items()]))
    echo(f"wrote {out} in {config['wall_s']:.1f} s")


def _print_summary(res: dict, echo, format_table) -> None:
    eff, spec, circ = res["effects"], res["specialisation"], res["circuits"]
    rows = []
    for t in eff["tasks"]:
        j = eff["tasks"].index(t)
        col = [r[j] for r in eff["effect"]]
        top = max(range(len(col)), key=lambda i: abs(col[i]))
        n = eff["nodes"][top]
        c = circ["tasks"].get(t, {})
        rows.append([t, eff["baseline"][t], f"L{n['layer']} {n['part']} c{n['cluster']}", col[top],
                     c.get("circuit_size"), c.get("fraction"), c.get("cluster_circuit_size"),
                     circ["attribution_spearman_per_task"].get(t)])
    echo(format_table(["task", "clean metric", "top node", "top effect", "circuit", "fraction", "cluster circuit",
                       "attr. spearman"], rows))
    if spec.get("model_score") is not None:
        lo, hi = spec["model_score_ci"]
        echo(f"specialisation (model): {spec['model_score']:.4g} [{lo:.4g}, {hi:.4g}]")
