"""``circuitclust demo``: the whole pipeline on one model (see :mod:`circuitclust.demo`)."""
from __future__ import annotations

from pathlib import Path

import typer

from ..demo import DemoOptions
from .common import echo, one_line_errors
from .main import app

_D = DemoOptions()  # the defaults live in the options object


@app.command("demo")
@one_line_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="folder for every step's results and report.html"),
    steps: int = typer.Option(_D.steps, "--steps", help="fine-tuning optimizer steps (the run is defined by steps, not time)"),
    minutes: float = typer.Option(_D.minutes, "--minutes", help="safety cap on the fine-tuning's wall time, in minutes "
                                                                "(the run says so if it bites)"),
    model: str = typer.Option(_D.model, "--model", help="model spec (the embedded Gemma by default)"),
    data: str = typer.Option(_D.data, "--data", help="fine-tuning and similarity corpus: wiki | chemistry | a .jsonl/.txt file"),
    k: int = typer.Option(_D.k, "--k", help="clusters per layer"),
    lam: float = typer.Option(_D.lam, "--lam", help="largest clusterability loss weight per weight (entries "
                                                     "reduction); the budget adapts it below this"),
    max_ppl_increase: float = typer.Option(_D.max_ppl_increase, "--max-ppl-increase",
                                           help="capability budget: largest held-out perplexity rise (0.10 = 10%; "
                                                "0 = no budget, lambda stays at --lam)"),
    distill: float = typer.Option(_D.distill, "--distill", help="KL-to-base weight that preserves capability"),
    shuffles: int = typer.Option(_D.shuffles, "--shuffles", help="shuffle-null re-clusterings per graph (99: p can "
                                                                 "reach 0.01)"),
    balance: float = typer.Option(_D.balance, "--balance", help="spectral partition: every cluster keeps at least "
                                                                "this share of n/k units per side (0 = k-means as it is)"),
    max_prompts: int = typer.Option(_D.max_prompts, "--max-prompts", help="prompts per recall task for patching"),
    tasks: str = typer.Option(_D.tasks, "--tasks",
                              help="comma-separated recall tasks for patching ('all' = every bundled task)"),
    similarity_n: int = typer.Option(_D.similarity_n, "--similarity-n", help="token positions for the layer similarity"),
    seq_len: int = typer.Option(_D.seq_len, "--seq-len", help="fine-tuning sequence length"),
    seed: int = typer.Option(_D.seed, help="seed of every step"),
    device: str = typer.Option(_D.device, help="cpu | cuda (default: CUDA if available)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete the demo run already in --out and start again"),
) -> None:
    """Partition, score, fine-tune, re-score, patch, compare layers and write the HTML report for MODEL."""
    from ..demo import run_demo

    options = DemoOptions(model=model, data=data, steps=steps, minutes=minutes, k=k, lam=lam,
                          max_ppl_increase=max_ppl_increase, distill=distill, shuffles=shuffles, balance=balance,
                          max_prompts=max_prompts, tasks=tasks, similarity_n=similarity_n, seq_len=seq_len, seed=seed,
                          device=device)
    run_demo(options, out, overwrite=overwrite, echo=echo)
