"""Step-time overhead of the clusterability loss vs plain causal-LM fine-tuning, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/finetune.py [--device cuda] [--models tiny-gpt2 gpt2-small]

For each model: AdamW steps on random token batches, alternating "plain" (task loss only) and "with loss"
(task + lam * ClusterabilityLoss over all MLP matrices) so that load drift on a shared machine hits both
alike; prints median step times (wall clock and process CPU time: on a shared machine the CPU figures are
the trustworthy ones), the overhead ratio (target <= 3%), tokens/s, and the loss's own forward+backward time
measured alone. The batch is the ``circuitclust finetune`` default, 8 sequences x 128 tokens (the loss costs
the same whatever the batch, so its share falls as the batch grows). Run with ``OMP_NUM_THREADS=1`` on CPU
for comparable figures.
``gpt2-small`` is a randomly initialised model of GPT-2 small's shape (12 layers, d_model 768, d_mlp 3072,
vocab 50257).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _timing import timed  # noqa: E402
from circuitclust.analysis.finetuning import ClusterabilityLoss, make_partition  # noqa: E402


def build(name: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    from circuitclust.models import build_tiny

    if name == "gpt2-small":
        cfg = AutoConfig.for_model("gpt2", n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(cfg)
    return build_tiny(name)[0]


def bench(name: str, device: torch.device, steps: int, batch: int, seq: int, lam: float) -> dict:
    model = build(name).to(device).train()
    closs = ClusterabilityLoss(model, make_partition(model, "blocks", 4, ("mlp_in", "mlp_gate", "mlp_out")),
                               graphs=("mlp_in", "mlp_gate", "mlp_out"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen).to(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(with_loss: bool) -> None:
        with amp:
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
        if with_loss:
            loss = loss + lam * closs()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def loss_alone() -> None:
        closs().backward()

    for _ in range(2):  # warm-up (allocator, kernels, AdamW state)
        step(True), step(False)
    plain, withl, alone = [], [], []
    for i in range(steps):
        # alternate the order so that load drift on a shared machine hits both variants alike
        for w in ((False, True) if i % 2 == 0 else (True, False)):
            (withl if w else plain).append(timed(lambda: step(w), device)[1:])
        alone.append(timed(loss_alone, device)[1:])
        opt.zero_grad(set_to_none=True)
    med = lambda xs, j: statistics.median(t[j] for t in xs)  # noqa: E731
    r = {"model": name, "tokens": batch * seq, "graphs": len(closs.graphs),
         "plain": (med(plain, 0), med(plain, 1)), "with": (med(withl, 0), med(withl, 1)),
         "alone": (med(alone, 0), med(alone, 1))}
    n_params = sum(q.numel() for q in model.parameters())
    n_reg = sum(g.shape[0] * g.shape[1] for g in closs.graphs)
    print(f"{name:11s} {device.type:4s} params {n_params / 1e6:7.1f}M  regularised {n_reg / 1e6:6.1f}M in "
          f"{len(closs.graphs)} matrices  batch {batch}x{seq}  (medians of {steps} steps)")
    for j, clock in enumerate(("wall", "cpu")):
        p, w, a = r["plain"][j], r["with"][j], r["alone"][j]
        print(f"  {clock:4s}  plain {1e3 * p:9.1f} ms ({batch * seq / p:7.0f} tok/s)   + loss {1e3 * w:9.1f} ms "
              f"({batch * seq / w:7.0f} tok/s)   ratio {w / p:.4f} (overhead {100 * (w / p - 1):+5.2f}%)   "
              f"loss fwd+bwd alone {1e3 * a:7.2f} ms = {100 * a / p:5.2f}% of plain")
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny-gpt2", "tiny-gemma", "gpt2-small"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per variant, tiny models")
    ap.add_argument("--big-steps", type=int, default=4, help="timed steps per variant, gpt2-small")
    ap.add_argument("--batch", type=int, default=8, help="sequences per step (the finetune CLI default)")
    ap.add_argument("--seq", type=int, default=128, help="tokens per sequence (the finetune CLI default)")
    ap.add_argument("--lam", type=float, default=20.0)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")
    rows = [bench(name, torch.device(a.device), a.big_steps if name == "gpt2-small" else a.steps, a.batch,
                  a.seq, a.lam) for name in a.models]
    print("\nsummary (target: overhead <= 3%; 'alone' = the loss's own forward+backward / a plain step)")
    print(f"{'model':11s} {'cpu ratio':>9s} {'wall ratio':>10s} {'alone cpu':>9s} {'tok/s plain':>11s} {'tok/s +loss':>11s}")
    for r in rows:
        print(f"{r['model']:11s} {r['with'][1] / r['plain'][1]:9.4f} {r['with'][0] / r['plain'][0]:10.4f} "
              f"{100 * r['alone'][1] / r['plain'][1]:8.2f}% {r['tokens'] / r['plain'][0]:11.0f} "
              f"{r['tokens'] / r['with'][0]:11.0f}")


if __name__ == "__main__":
    main()
