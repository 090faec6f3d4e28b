"""``circuitclust demo``: the whole pipeline on one model, through the library's pipeline API.

Steps (each writes its own sub-folder of OUT, so every step can be re-run or inspected alone):
``cluster_base`` (spectral partition of the MLPs, clusterability vs chance and shuffles) -> ``finetune``
(clusterability loss with a distillation term, time-boxed) -> ``cluster_finetuned`` (re-score) -> ``patch``
(cluster ablation, attribution, circuits; base vs fine-tuned on the same partition) -> ``similarity`` (GW and CKA
layer distances, base vs fine-tuned) -> ``report.html``. No maths here: each step is one call of
``circuitclust.pipeline``.
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import typer

from .common import echo, one_line_errors
from .main import app

# Share of the time budget each step may use, measured on a 2-core CPU with the embedded Gemma 3 270M.
# Only fine-tuning is elastic (it stops at its deadline); the others are sized by their options.
_FINETUNE_SHARE = 0.4


def _step(name: str, log: list[dict], run: Callable[[], Any], summary: dict[str, Any]) -> Any:
    echo(f"\n=== {name}")
    t0 = time.perf_counter()
    result = run()
    elapsed = time.perf_counter() - t0
    log.append({"step": name, **summary, "seconds": round(elapsed, 1)})
    echo(f"=== {name} done in {elapsed:.0f} s")
    return result


@app.command("demo")
@one_line_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="folder for every step's results and report.html"),
    minutes: float = typer.Option(15.0, "--minutes", help="rough wall-time budget; fine-tuning gets ~40% of it"),
    model: str = typer.Option("gemma-3-270m", "--model", help="model spec (the embedded Gemma by default)"),
    data: str = typer.Option("wiki", "--data", help="fine-tuning and similarity corpus: wiki | chemistry | a .jsonl/.txt file"),
    k: int = typer.Option(4, "--k", help="clusters per layer"),
    # Per-weight lambda (--loss-reduction entries): ~3x the value at which the loss's push on an MLP weight
    # matches the task gradient's on Gemma 3 270M (benchmarks/finetune_study.py), so C moves within minutes.
    lam: float = typer.Option(2e-4, "--lam", help="clusterability loss weight per off-cluster weight (entries reduction)"),
    distill: float = typer.Option(1.0, "--distill", help="KL-to-base weight that preserves capability"),
    shuffles: int = typer.Option(5, "--shuffles", help="shuffle-null re-clusterings per graph"),
    max_prompts: int = typer.Option(8, "--max-prompts", help="prompts per recall task for patching"),
    # Exact cluster ablation costs one forward pass per (layer, cluster) per batch, and the embedded model's
    # 262k-token unembedding makes each pass slow on a CPU: two tasks keep the demo within its budget.
    tasks: str = typer.Option("country_capital,element_symbol", "--tasks",
                              help="comma-separated recall tasks for patching ('all' = every bundled task)"),
    similarity_n: int = typer.Option(128, "--similarity-n", help="token positions for the layer similarity"),
    seq_len: int = typer.Option(64, "--seq-len", help="fine-tuning sequence length"),
    seed: int = typer.Option(0, help="seed of every step"),
    device: str = typer.Option(None, help="cpu | cuda (default: CUDA if available)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete the demo run already in --out and start again"),
) -> None:
    """Partition, score, fine-tune, re-score, patch, compare layers and write the HTML report for MODEL."""
    from ..data import list_tasks, load_corpus, load_task
    from ..errors import check_float, check_int, resolve_device
    from ..models.loading import check_spec
    from ..runfiles import check_output_folder, remove_run_folder

    check_float("--minutes", minutes, 0.0, open_min=True)
    check_int("--k", k, 2)
    check_float("--lam", lam, 0.0)
    check_float("--distill", distill, 0.0)
    check_int("--shuffles", shuffles, 0)
    check_int("--max-prompts", max_prompts, 1)
    check_int("--similarity-n", similarity_n, 4)
    check_int("--seq-len", seq_len, 2)
    resolve_device(device)
    check_spec(model)
    for name in (list_tasks() if tasks == "all" else [t.strip() for t in tasks.split(",") if t.strip()]):
        load_task(name)
    load_corpus(data, "train")
    if overwrite:
        remove_run_folder(out)
    check_output_folder(out)
    try:
        _run_steps(out, model, data, k, lam, distill, shuffles, max_prompts, tasks, similarity_n, seq_len, seed,
                   device, minutes)
    except BaseException:
        if out.is_dir() and not any(out.iterdir()):  # nothing was written: leave no empty folder behind
            out.rmdir()
        raise


def _run_steps(out: Path, model: str, data: str, k: int, lam: float, distill: float, shuffles: int,
               max_prompts: int, tasks: str, similarity_n: int, seq_len: int, seed: int, device: str | None,
               minutes: float) -> None:
    from ..analysis.finetune import FinetuneConfig
    from ..data import list_tasks
    from ..pipeline import ClusterOptions, PatchOptions, SimilarityOptions, cluster, finetune, patch, similarity
    from ..report import build_report
    from ..runfiles import load_partition, new_run_folder, write_demo_log

    t0 = time.perf_counter()
    log: list[dict] = []
    ft = out / "finetune"
    cluster_opts = ClusterOptions(k=k, parts=("mlp",), shuffles=shuffles, seed=seed, device=device)

    def cluster_step(spec: str, folder: Path) -> None:
        with new_run_folder(folder) as staging:
            res = cluster(spec, cluster_opts, progress=True)
            res.save(staging)
        echo(f"mean clusterability {res.mean_clusterability:.4f} vs chance {res.mean_chance:.4f}")

    _step("cluster_base", log, lambda: cluster_step(model, out / "cluster_base"),
          {"model": model, "options": asdict(cluster_opts)})
    cfg = FinetuneConfig(model=model, out=str(ft), data=data, k=k, lam=lam, loss_reduction="entries",
                         distill=distill, partition="spectral", graphs=("mlp_in", "mlp_gate", "mlp_out"),
                         steps=100000, max_minutes=round(max(0.5, minutes * _FINETUNE_SHARE), 2), seq_len=seq_len,
                         batch_size=4, lr=1e-4, eval_every=25, eval_blocks=8, train="regularised", seed=seed,
                         device=device)
    _step("finetune", log, lambda: finetune(cfg), {"config": asdict(cfg)})
    _step("cluster_finetuned", log, lambda: cluster_step(str(ft), out / "cluster_finetuned"),
          {"model": str(ft), "options": asdict(cluster_opts)})
    names = list_tasks() if tasks == "all" else [t.strip() for t in tasks.split(",") if t.strip()]
    patch_opts = PatchOptions(max_prompts=max_prompts, seed=seed, device=device)

    def patch_step() -> None:
        with new_run_folder(out / "patch") as staging:
            patch(model, names, partition=load_partition(ft), options=patch_opts, compare=str(ft),
                  progress=True).save(staging)

    _step("patch", log, patch_step, {"tasks": names, "options": asdict(patch_opts)})
    sim_opts = SimilarityOptions(n=similarity_n, seed=seed, device=device)

    def similarity_step() -> None:
        with new_run_folder(out / "similarity") as staging:
            similarity(model, data, sim_opts, compare=str(ft), progress=True).save(staging)

    _step("similarity", log, similarity_step, {"data": data, "options": asdict(sim_opts)})
    _step("report", log, lambda: build_report(out, out=out / "report.html"), {})
    total = time.perf_counter() - t0
    write_demo_log(out, {"model": model, "data": data, "minutes_budget": minutes, "seconds": round(total, 1),
                         "steps": log})
    echo(f"\ndemo finished in {total / 60:.1f} min; report: {(out / 'report.html').resolve()}")
