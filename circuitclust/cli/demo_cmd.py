"""``circuitclust demo``: the whole pipeline on one model, as a user would chain the commands.

Steps (each writes its own sub-folder of OUT, so every step can be re-run or inspected alone):
``cluster_base`` (spectral partition of the MLPs, clusterability vs chance and shuffles) -> ``finetune``
(clusterability loss with a distillation term, time-boxed) -> ``cluster_finetuned`` (re-score) -> ``patch``
(cluster ablation, attribution, circuits; base vs fine-tuned on the same partition) -> ``similarity`` (GW and CKA
layer distances, base vs fine-tuned) -> ``report.html``. No maths here: each step is the sub-command of the
same name, run in-process.
"""
from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import echo, one_line_errors
from .main import app

# Share of the time budget each step may use, measured on a 2-core CPU with the embedded Gemma 3 270M.
# Only fine-tuning is elastic (it stops at its deadline); the others are sized by their options.
_FINETUNE_SHARE = 0.4


def _run_step(name: str, args: list[str], log: list[dict]) -> None:
    from typer.main import get_command

    echo(f"\n=== {name}: circuitclust {' '.join(args)}")
    t0 = time.perf_counter()
    rc = get_command(app).main(args=args, prog_name="circuitclust", standalone_mode=False)
    elapsed = time.perf_counter() - t0
    log.append({"step": name, "args": args, "seconds": round(elapsed, 1), "rc": rc or 0})
    if rc:  # the step has printed its one-line error
        raise typer.Exit(rc)
    echo(f"=== {name} done in {elapsed:.0f} s")


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
    from ..runfiles import write_demo_log

    t0 = time.perf_counter()
    log: list[dict] = []
    dev = ["--device", device] if device else []
    ft = out / "finetune"
    _run_step("cluster_base", ["cluster", model, "--k", str(k), "--parts", "mlp", "--out", str(out / "cluster_base"),
                               "--shuffles", str(shuffles), "--seed", str(seed), *dev], log)
    ft_minutes = max(0.5, minutes * _FINETUNE_SHARE)
    _run_step("finetune", ["finetune", model, "--data", data, "--out", str(ft), "--k", str(k), "--lam", str(lam),
                           "--loss-reduction", "entries", "--distill", str(distill), "--partition", "spectral",
                           "--graphs", "mlp_in,mlp_gate,mlp_out",
                           "--steps", "100000", "--max-minutes", f"{ft_minutes:.2f}", "--seq-len", str(seq_len),
                           "--batch-size", "4", "--lr", "1e-4", "--eval-every", "25", "--eval-blocks", "8", "--train", "regularised",
                           "--seed", str(seed), *dev], log)
    _run_step("cluster_finetuned", ["cluster", str(ft), "--k", str(k), "--parts", "mlp",
                                    "--out", str(out / "cluster_finetuned"), "--shuffles", str(shuffles),
                                    "--seed", str(seed), *dev], log)
    task_opt = ["--tasks", tasks] if tasks and tasks != "all" else []
    _run_step("patch", ["patch", model, "--partition", str(ft / "partition.json"), "--compare", str(ft),
                        "--out", str(out / "patch"), "--max-prompts", str(max_prompts), "--seed", str(seed),
                        *task_opt, *dev], log)
    _run_step("similarity", ["similarity", model, "--data", data, "--n", str(similarity_n), "--compare", str(ft),
                             "--out", str(out / "similarity"), "--seed", str(seed), *dev], log)
    _run_step("report", ["report", str(out), "-o", str(out / "report.html")], log)
    total = time.perf_counter() - t0
    write_demo_log(out, {"model": model, "data": data, "minutes_budget": minutes, "seconds": round(total, 1),
                         "steps": log})
    echo(f"\ndemo finished in {total / 60:.1f} min; report: {(out / 'report.html').resolve()}")
