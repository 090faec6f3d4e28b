"""``circuitclust patch MODEL_OR_RUN``: cluster ablation effects, specialisation and circuits per task, with the
random-ranking and nonsense-task controls beside every circuit.

Writes RUN_DIR/effects.json, specialisation.json, circuits.json (+ CSV twins; schemas in
``circuitclust.analysis.patching.run``), partition.json/.safetensors (the partition used) and run_config.json;
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
    tasks: str = typer.Option(None, "--tasks", help="comma-separated recall task names, ioi, wiki, chemistry or .jsonl paths; 'recall' = the six recall tasks (default), 'all' = those + ioi, wiki, chemistry"),
    k: int = typer.Option(_D.k, "--k", help="clusters per layer when co-clustering here"),
    metric: str = typer.Option(_D.metric, help="logit_diff or logprob"),
    method: str = typer.Option(_D.method.value, help="cluster ablation for the effect matrix: zero, mean (over a disjoint reference set) or counterfactual"),
    circuit_ablation: str = typer.Option(_D.circuit_method.value, "--circuit-ablation", help="how units outside a circuit are ablated: counterfactual (paired corrupted prompt), mean or zero"),
    parts: str = typer.Option(",".join(_D.parts), "--parts", help="units: mlp (neurons), attn (heads, or head dims where the partition splits them), or both"),
    threshold: float = typer.Option(_D.threshold, help="faithfulness f = (m(C) - m(empty)) / (m(full) - m(empty)) a circuit must reach"),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", help="prompts per batch"),
    max_rows: int = typer.Option(_D.max_rows, "--max-rows", help="rows per forward pass: ablation sets x prompts stacked (raise on a GPU)"),
    max_prompts: int = typer.Option(_D.max_prompts, "--max-prompts", help="prompts per task, drawn at random with the seed"),
    n_reference: int = typer.Option(_D.n_reference, "--n-reference", help="reference prompts per task for mean ablation, disjoint from the evaluated ones"),
    n_boot: int = typer.Option(_D.n_boot, "--n-boot", help="bootstrap resamples for CIs (>= 1000 for a 95% interval)"),
    seed: int = typer.Option(_D.seed, help="seed of the prompt sample, bootstrap, controls and co-clustering"),
    seeds: str = typer.Option(None, "--seeds", help="comma-separated seeds: replicates on independent prompt samples, aggregated as mean and 95% interval"),
    circuits: bool = typer.Option(_D.circuits, "--circuits/--no-circuits", help="also search circuits per task"),
    controls: bool = typer.Option(_D.controls, "--controls/--no-controls", help="random-ranking baseline and nonsense task beside every circuit"),
    check_units: int = typer.Option(_D.n_check, "--check-units", help="units per task whose attribution is checked by exact single-unit ablation (0: none)"),
    n_null: int = typer.Option(_D.n_null, "--n-null", help="samples of each specialisation null (random partitions, shuffled task labels)"),
    text_tokens: int = typer.Option(_D.text_tokens, "--text-tokens", help="tokens per wiki/chemistry window"),
    loss_tokens: int = typer.Option(_D.loss_tokens, "--loss-tokens", help="last tokens of each window the loss is measured on"),
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

    from ..data import expand_tasks, task_kind
    from ..errors import DataError, OptionError, check_threads
    from ..models.loading import check_spec
    from ..pipeline import patch as run
    from ..runfiles import load_partition, new_run_folder

    # Every option, the partition file and the task files are checked before a model loads.
    seed_list = None
    if seeds is not None:
        try:
            seed_list = tuple(int(x) for x in seeds.split(",") if x.strip())
        except ValueError:
            raise OptionError(f"--seeds {seeds}: give comma-separated integers, e.g. 0,1,2") from None
    options = PatchOptions(metric=metric, method=method, circuit_method=circuit_ablation,
                           parts=tuple(x.strip() for x in parts.split(",") if x.strip()), threshold=threshold,
                           batch_size=batch_size, max_rows=max_rows, max_prompts=max_prompts, n_reference=n_reference,
                           n_boot=n_boot, seed=seed, seeds=seed_list, circuits=circuits, controls=controls,
                           n_check=check_units, n_null=n_null, text_tokens=text_tokens, loss_tokens=loss_tokens,
                           k=k, device=device, dtype=dtype, device_map=device_map)
    if threads is not None:
        torch.set_num_threads(check_threads(threads))
    for spec in (model, compare) if compare else (model,):
        check_spec(spec)
    names = expand_tasks(tasks)
    if not names:
        raise DataError("no tasks given: pass --tasks with task names or .jsonl files")
    if len(set(names)) != len(names):
        raise OptionError(f"--tasks {tasks}: a task is listed twice")
    for t in names:
        task_kind(t)
    given = load_partition(partition) if partition is not None else None

    def show(prompts) -> None:
        for p in prompts:
            what = "text windows" if p.is_text else "prompts"
            echo(f"task {p.name}: {len(p)} {what} drawn with seed {p.info.get('sample', {}).get('seed')}"
                 + ("" if p.is_text else f" ({p.dropped} pairs dropped for unequal token lengths)"))

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


def _print_summary(res, echo, format_table) -> None:
    eff, spec, circ = res.effects, res.specialisation, res.circuits
    rows = []
    for t in eff["tasks"]:
        c = circ["tasks"].get(t, {})
        chk = c.get("attribution_check") or {}
        nz = c.get("nonsense") or {}
        rows.append([t, eff["baseline"][t], c.get("circuit_size"), c.get("fraction"), c.get("cpr"), c.get("cmd"),
                     (c.get("random") or {}).get("cpr"),
                     "n/a" if not nz else ("RED FLAG " if nz.get("red_flag") else "") + str(nz.get("fraction")),
                     chk.get("spearman"), chk.get("top_k_overlap")])
    echo(f"circuits: units outside ablated with {circ.get('ablation')}; threshold f >= {circ.get('threshold')}; "
         f"{circ.get('units', {}).get('n_units')} units {circ.get('units', {}).get('per_part')}")
    echo(format_table(["task", "clean metric", "circuit", "fraction", "CPR", "CMD", "random CPR", "nonsense fraction",
                       "attr. rho", "top-k overlap"], rows))
    if circ.get("red_flags"):
        echo(f"red flag: the nonsense control found a circuit as small as the real one for {', '.join(circ['red_flags'])}")
    echo(f"effects: {eff.get('n_significant_bh')} of {eff.get('n_cells')} cells at Benjamini-Hochberg q <= 0.05")
    if spec.get("model_score") is not None:
        lo, hi = spec["model_score_ci"]
        iv = spec.get("interval", {})
        echo(f"specialisation (model): {spec['model_score']:.4g} [{lo:.4g}, {hi:.4g}] "
             f"({iv.get('method', 'bootstrap')}, {iv.get('n_boot')} resamples)" + (f"; note: {iv['note']}" if "note" in iv else ""))
        for name, n in (spec.get("nulls") or {}).items():
            echo(f"  null {name}: observed {n['observed']:.4g}, null mean {n['null_mean']:.4g} "
                 f"[{n['null_range_95'][0]:.4g}, {n['null_range_95'][1]:.4g}], p = {n['p']:.3g}")
