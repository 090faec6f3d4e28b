"""Step-time overhead of the clusterability loss vs plain causal-LM fine-tuning, in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/finetune.py [--device cuda] [--models tiny-gpt2 gpt2-small]

For each model: AdamW steps on random token batches, alternating "plain" (task loss only) and "with loss"
(task + lam * ClusterabilityLoss over all MLP matrices) so that load drift on a shared machine hits both
alike; prints median step times, the overhead ratio (target <= 3%), tokens/s, and the loss's own
forward+backward time measured alone (the cleaner figure when the machine is noisy).
``gpt2-small`` is a randomly initialised model of GPT-2 small's shape (12 layers, d_model 768, d_mlp 3072,
vocab 50257).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuitclust.analysis.cluster_loss import ClusterabilityLoss  # noqa: E402


def build(name: str):
    from transformers import AutoConfig, AutoModelForCausalLM

    from circuitclust.models import build_tiny

    if name == "gpt2-small":
        cfg = AutoConfig.for_model("gpt2", n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024)
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(cfg)
    return build_tiny(name)[0]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name: str, device: torch.device, steps: int, batch: int, seq: int, lam: float) -> None:
    model = build(name).to(device).train()
    closs = ClusterabilityLoss(model, "blocks", graphs=("mlp_in", "mlp_gate", "mlp_out"), k=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (batch, seq), generator=gen).to(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(with_loss: bool) -> float:
        sync(device)
        t = time.perf_counter()
        with amp:
            logits = model(input_ids=x).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), x[:, 1:].flatten())
        if with_loss:
            loss = loss + lam * closs()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        return time.perf_counter() - t

    def loss_alone() -> float:
        sync(device)
        t = time.perf_counter()
        closs().backward()
        sync(device)
        dt = time.perf_counter() - t
        opt.zero_grad(set_to_none=True)
        return dt

    for _ in range(1):  # warm-up (allocator, kernels)
        step(True), step(False)
    plain, withl, alone = [], [], []
    for i in range(steps):
        order = (False, True) if i % 2 == 0 else (True, False)
        for w in order:
            (withl if w else plain).append(step(w))
        alone.append(loss_alone())
    p, w, a = statistics.median(plain), statistics.median(withl), statistics.median(alone)
    n_params = sum(q.numel() for q in model.parameters())
    n_reg = sum(g.shape[0] * g.shape[1] for g in closs.graphs)
    print(f"{name:11s} {device.type:4s} params {n_params / 1e6:7.1f}M  regularised {n_reg / 1e6:6.1f}M in "
          f"{len(closs.graphs)} matrices  batch {batch}x{seq}")
    print(f"  plain step   {1e3 * p:9.1f} ms  ({batch * seq / p:8.0f} tokens/s)")
    print(f"  + cluster    {1e3 * w:9.1f} ms  ({batch * seq / w:8.0f} tokens/s)  overhead {100 * (w / p - 1):+6.2f}%")
    print(f"  loss fwd+bwd alone {1e3 * a:7.2f} ms = {100 * a / p:5.2f}% of a plain step  (median of {steps})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["tiny-gpt2", "tiny-gemma", "gpt2-small"])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lam", type=float, default=20.0)
    a = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {a.device}")
    for name in a.models:
        bench(name, torch.device(a.device), a.steps, a.batch, a.seq, a.lam)


if __name__ == "__main__":
    main()
