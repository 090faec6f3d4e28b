"""``circuitclust finetune MODEL --data wiki --k 4 --lam 20 --steps N --out RUN_DIR``: clusterability fine-tuning."""
from __future__ import annotations

import typer

from .common import echo, format_table, one_line_errors
from .main import app


@app.command("finetune")
@one_line_errors
def finetune(
    model: str = typer.Argument(..., help="gemma-3-270m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    data: str = typer.Option("wiki", help="wiki | chemistry | a .jsonl/.txt file | a hub dataset name"),
    out: str = typer.Option(..., help="run folder (metrics.jsonl, partition, checkpoints/, final/)"),
    k: int = typer.Option(4, help="clusters per matrix"),
    lam: float = typer.Option(20.0, help="weight of the clusterability loss (mean 1 - C)"),
    loss_reduction: str = typer.Option("mean", help="mean: lam x mean(1 - C) (lam ~ 20); entries: lam x sum of "
                                       "n_in*n_out*(1 - C), a per-weight lam that transfers across model sizes "
                                       "(~1e-5 to 1e-4)"),
    lam_schedule: str = typer.Option("constant", help="constant | linear (ramp over --lam-warmup steps)"),
    lam_warmup: int = typer.Option(0, help="steps of the linear lambda ramp"),
    steps: int = typer.Option(100, help="optimizer steps (with --resume: the new total)"),
    batch_size: int = typer.Option(8, help="sequences per process and micro-batch"),
    grad_accum: int = typer.Option(1, help="micro-batches per optimizer step"),
    seq_len: int = typer.Option(128, help="tokens per sequence"),
    lr: float = typer.Option(1e-4, help="AdamW learning rate"),
    weight_decay: float = typer.Option(0.0, help="AdamW weight decay"),
    lr_warmup: int = typer.Option(0, help="linear learning-rate warm-up steps"),
    max_grad_norm: float = typer.Option(0.0, help="gradient clipping norm (0 = off)"),
    distill: float = typer.Option(0.0, help="weight of KL(base model || model), keeps capability"),
    partition: str = typer.Option("blocks", help="blocks (equal contiguous) | spectral (co-clustering)"),
    partition_warmup: int = typer.Option(0, help="task-only steps before a spectral partition is frozen"),
    graphs: str = typer.Option("mlp_in,mlp_out", help="regularised matrix kinds, e.g. mlp_in,mlp_gate,mlp_out,attn_o"),
    train: str = typer.Option("all", help="trained parameters: all | mlp | regularised"),
    permute: bool = typer.Option(False, help="reorder MLP neurons so clusters are contiguous (same function)"),
    eval_every: int = typer.Option(50, help="steps between held-out evaluations"),
    max_minutes: float = typer.Option(0.0, help="stop cleanly (evaluate, checkpoint, final/) after this many minutes of training (0 = no limit)"),
    eval_blocks: int = typer.Option(32, help="held-out sequences per domain"),
    save_every: int = typer.Option(0, help="steps between checkpoints (0 = at every evaluation)"),
    keep_checkpoints: int = typer.Option(2, help="checkpoints kept (0 = all)"),
    seed: int = typer.Option(0, help="seed of initialisation-free randomness: data order, dropout, partition"),
    device: str = typer.Option(None, help="cpu | cuda | cuda:N (default: CUDA if available)"),
    resume: bool = typer.Option(False, help="continue RUN_DIR from its newest checkpoint (or start it if it holds none)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="delete the run already in RUN_DIR and start again"),
) -> None:
    """Fine-tune MODEL with the clusterability loss; evaluate held-out perplexity on both bundled domains."""
    from ..analysis.finetune import FinetuneConfig
    from ..analysis.finetune import finetune as run

    cfg = FinetuneConfig(
        model=model, out=out, data=data, k=k, lam=lam, loss_reduction=loss_reduction, lam_schedule=lam_schedule, lam_warmup=lam_warmup,
        steps=steps, batch_size=batch_size, grad_accum=grad_accum, seq_len=seq_len, lr=lr,
        weight_decay=weight_decay, lr_warmup=lr_warmup, max_grad_norm=max_grad_norm, distill=distill,
        partition=partition, partition_warmup=partition_warmup,
        graphs=tuple(g.strip() for g in graphs.split(",") if g.strip()), train=train, permute=permute,
        eval_every=eval_every, max_minutes=max_minutes, eval_blocks=eval_blocks, save_every=save_every,
        keep_checkpoints=keep_checkpoints, seed=seed, device=device,
    )
    last = run(cfg, resume=resume, overwrite=overwrite)
    if last:
        rows = [("step", last["step"]), ("mean clusterability", last["mean_clusterability"]),
                ("chance", last["chance"])]
        rows += [(f"held-out ppl {name}", v) for name, v in last["heldout_ppl"].items()]
        echo(format_table(["", "value"], rows))
    echo(f"run folder: {out}")
