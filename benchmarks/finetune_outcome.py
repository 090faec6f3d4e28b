"""Outcome of clusterability fine-tuning: held-out perplexity (wiki and chemistry) and mean clusterability
over all MLP matrices, before and after, with and without the distillation term.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/finetune_outcome.py --model gemma-3-270m --steps 60 \
        --out runs/outcome

Each variant is a normal ``finetune`` run (its RUN_DIR holds metrics.jsonl, checkpoints, final/); the
table compares its step-0 (base model) and last evaluation.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuitclust.analysis.finetuning import FinetuneConfig, finetune  # noqa: E402
from circuitclust.data import corpus_texts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--data", default="wiki")
    ap.add_argument("--out", default="runs/outcome")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--lam", type=float, default=20.0)
    ap.add_argument("--loss-reduction", default="mean", help="mean | entries (lam per weight, see finetune_study.py)")
    ap.add_argument("--lr-warmup", type=int, default=5)
    ap.add_argument("--max-minutes", type=float, default=0.0, help="time budget per variant (0 = none)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--eval-blocks", type=int, default=16)
    ap.add_argument("--distill", type=float, nargs="+", default=[0.0, 1.0])
    ap.add_argument("--train", default="regularised", help="regularised | mlp | all (all: the non-MLP weights can compensate)")
    ap.add_argument("--graphs", default="mlp_in,mlp_gate,mlp_out")
    a = ap.parse_args()

    other = "chemistry" if a.data == "wiki" else "wiki"
    train = corpus_texts(a.data, "train")
    evals = {a.data: corpus_texts(a.data, "heldout"), other: corpus_texts(other, "heldout")}
    rows = []
    for distill in a.distill:
        out = Path(a.out) / f"distill-{distill:g}"
        cfg = FinetuneConfig(model=a.model, out=str(out), data=a.data, k=a.k, lam=a.lam, steps=a.steps,
                             loss_reduction=a.loss_reduction, max_minutes=a.max_minutes,
                             batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr, lr_warmup=a.lr_warmup, distill=distill,
                             graphs=tuple(a.graphs.split(",")), train=a.train, eval_every=a.steps,
                             eval_blocks=a.eval_blocks, save_every=a.steps, keep_checkpoints=1)
        t0 = time.time()
        finetune(cfg, train_texts=train, eval_texts=evals)
        recs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        b, e = recs[0], recs[-1]
        rows.append((distill, b, e, time.time() - t0))
    print(f"\nmodel {a.model}, data {a.data}, k {a.k}, lam {a.lam} ({a.loss_reduction}), lr {a.lr}, steps {a.steps}, "
          f"batch {a.batch_size}x{a.seq_len} tokens, trained: {a.train} ({a.graphs})")
    print(f"{'distill':>7} {'C before':>9} {'C after':>8} {'chance':>6} "
          + " ".join(f"{'ppl ' + d + ' before':>18} {'after':>8} {'change':>7}" for d in evals) + f" {'wall s':>7}")
    for distill, b, e, wall in rows:
        cells = []
        for d in evals:
            p0, p1 = b["heldout_ppl"][d], e["heldout_ppl"][d]
            cells.append(f"{p0:18.3f} {p1:8.3f} {100 * (p1 / p0 - 1):+6.1f}%")
        print(f"{distill:7g} {b['mean_clusterability']:9.4f} {e['mean_clusterability']:8.4f} {e['chance']:6.3f} "
              + " ".join(cells) + f" {wall:7.0f}")


if __name__ == "__main__":
    main()
