"""``circuitclust patch MODEL_OR_RUN``: cluster ablation effects, specialisation and circuits per task.

Writes RUN_DIR/effects.json, specialisation.json, circuits.json (+ CSV twins; schemas in
``circuitclust.analysis.patch_run``), partition.json/.safetensors (the partition used) and run_config.json;
with ``--compare OTHER``: RUN_DIR/compare/ (the other model's files) and comparison.json/.csv.
"""
from __future__ import annotations

from pathlib import Path

import typer

from ..pipeline import PatchOptions
from .common import DEVICE_MAP_HELP, DTYPE_HELP, echo, format_table, one_line_errors
from .main import app

_D = PatchOptions()  # the defaults live in the options object


@app.command("patch")
@one_line_errors
def patch(
    model: str = typer.Argument(..., help="gemma-3-270m|smollm2-135m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a run folder, a .gguf or a hub name"),
    out: Path = typer.Option(..., "--out", help="run folder to write (new or empty; see --overwrite)"),
    partition: Path = typer.Option(None, "--partition", help="partition.json (default: the run folder's, else co-cluster with --k)"),
    tasks: str = typer.Option(None, "--tasks", help="comma-separated task names or .jsonl paths (default: all bundled tasks)"),
    k: int = typer.Option(_D.k, "--k", help="clusters per layer when co-clustering here"),
    metric: str = typer.Option(_D.metric, help="logit_diff or logprob"),
    method: str = typer.Option(_D.method.value, help="cluster ablation for the effect matrix: zero, mean or resample"),
    threshold: float = typer.Option(_D.threshold, help="fraction of the task metric a circuit must keep"),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", help="prompts per batch"),
    max_rows: int = typer.Option(_D.max_rows, "--max-rows", help="rows per forward pass: ablation sets x prompts stacked (raise on a GPU)"),
    max_prompts: int = typer.Option(_D.max_prompts, "--max-prompts", help="first N usable prompts per task"),
    n_boot: int = typer.Option(_D.n_boot, "--n-boot", help="bootstrap resamples for CIs"),
    seed: int = typer.Option(_D.seed, help="seed of the bootstrap and the co-clustering"),
    circuits: bool = typer.Option(_D.circuits, "--circuits/--no-circuits", help="also search circuits per task"),
    compare: str = typer.Option(None, "--compare", help="a second model (e.g. the fine-tuned run) to compare on the same tasks and partition"),
    device: str = typer.Option(None, help="cpu, cuda ... (default: CUDA if available)"),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
    device_map: str = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    threads: int = typer.Option(None, help="CPU threads for torch"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run already in --out"),
) -> None:
    """Ablate every (layer, cluster) on every task; effect matrix with CIs, specialisation, flips, attribution
    agreement and smallest circuits."""
    import torch

    from ..data import list_tasks, load_task
    from ..errors import DataError, OptionError, check_threads
    from ..models.loading import check_spec
    from ..pipeline import patch as run
    from ..runfiles import load_partition, new_run_folder

    # Every option, the partition file and the task files are checked before a model loads.
    options = PatchOptions(metric=metric, method=method, threshold=threshold, batch_size=batch_size,
                           max_rows=max_rows, max_prompts=max_prompts, n_boot=n_boot, seed=seed, circuits=circuits,
                           k=k, device=device, dtype=dtype, device_map=device_map)
    if threads is not None:
        torch.set_num_threads(check_threads(threads))
    for spec in (model, compare) if compare else (model,):
        check_spec(spec)
    names = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else list_tasks()
    if not names:
        raise DataError("no tasks given: pass --tasks with task names or .jsonl files")
    if len(set(names)) != len(names):
        raise OptionError(f"--tasks {tasks}: a task is listed twice")
    for t in names:
        load_task(t)
    given = load_partition(partition) if partition is not None else None

    def show(prompts) -> None:
        for p in prompts:
            echo(f"task {p.name}: {len(p)} prompts ({p.dropped} pairs dropped for unequal token lengths)")

    with new_run_folder(out, overwrite=overwrite, kind="patch") as staging:
        result = run(model, names, partition=given, options=options, compare=compare, progress=True,
                     on_tasks=show)
        if given is not None:
            result.partition_source = str(partition)
        result.save(staging)
    res, comp = result.base, result.comparison
    _print_summary(res, echo, format_table)
    if compare:
        s = comp["specialisation"]
        echo(f"specialisation base {s['base']:.4g} vs other {s['other']:.4g}"
             + (f", diff {s['diff']:.4g} [{s['diff_ci'][0]:.4g}, {s['diff_ci'][1]:.4g}]" if "diff" in s else ""))
        echo(format_table(["task", "base circuit", "other circuit", "fraction diff"],
                          [[t, c["base_size"], c["other_size"], c["fraction_diff"]] for t, c in comp["circuits"].items()]))
    echo(f"wrote {out} in {result.wall_s:.1f} s")


def _print_summary(res: dict, echo, format_table) -> None:
    eff, spec, circ = res.effects, res.specialisation, res.circuits
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
        iv = spec.get("interval", {})
        echo(f"specialisation (model): {spec['model_score']:.4g} [{lo:.4g}, {hi:.4g}] "
             f"({iv.get('method', 'bootstrap')}, {iv.get('n_boot')} resamples)" + (f"; note: {iv['note']}" if "note" in iv else ""))
