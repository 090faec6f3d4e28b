"""Which fine-tuning settings raise MLP clusterability fastest per step at the smallest held-out perplexity
cost? A cheap proxy for the Gemma outcome runs, in one run.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/finetune_study.py --out runs/study \
        [--grad-scale-model gemma-3-270m]

1. Proxy: a GPT-2-architecture model (4 layers, d_model 128, d_mlp 512, the bundled 2048-token tokenizer)
   pretrained from scratch on the bundled wiki train split with the task loss only (``finetune`` with
   lam 0), so that held-out perplexity means something.
2. Variants: each a normal ``finetune`` run from that base (same data order and seed), differing in one or
   two settings from the CLI defaults; the table gives mean C over all MLP matrices after a quarter, half
   and all of the steps (chance 1/k beside it) and the held-out perplexity change on wiki (same domain)
   and chemistry (other domain).
3. Gradient scale (``--grad-scale-model``): per-weight RMS of the task gradient vs the clusterability
   gradient at lam 1 on one batch of a real model, i.e. which lam makes the loss felt at all.
4. One-shot edits (``--oneshot-model``): what a given normalised clusterability costs when it is imposed on
   the pretrained weights at once, without training: (a) every off-cluster weight scaled by the same factor
   (the decay regulariser's direction), (b) per matrix, the smallest off-cluster weights zeroed until the
   matrix reaches the target normalised C (magnitude pruning, the cheapest way to remove off-cluster mass
   when each weight's importance is its size). Balanced spectral partition (k 4, balance 0.5, seed 0) of the
   three MLP matrices, as in the recipe study; held-out perplexity on its 32 blocks of 64 tokens per domain.

Reading (measured 2026-11-21, see the report in the commit log): AdamW normalises each weight's update, so
what matters is lam x (clusterability gradient per weight) against the task gradient per weight. Below
~1x the "match" lam the task wins and C crawls (lam 0.2 on the proxy: C 0.60 after 40 steps); from ~1x
up the update is sign-like and C rises at a rate set by lr / (weight RMS), whatever lam (lam 2, 20, 200
and entries 1e-4 give the same curve at lr 1e-3: C 0.96 after 40 steps). The mean reduction's match lam
grows with (matrices x entries per matrix): ~2 on the proxy, ~5000 on Gemma 3 270M, hence lam 20 does
nothing there.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuitclust.analysis.finetuning import (ClusterabilityLoss, FinetuneConfig, finetune,  # noqa: E402
                                              heldout_perplexity, make_partition)
from circuitclust.analysis.finetuning.objectives import lm_loss  # noqa: E402
from circuitclust.data import corpus_texts, token_blocks  # noqa: E402

MLP = ("mlp_in", "mlp_gate", "mlp_out")


def build_base(out: Path, steps: int, train, evals) -> Path:
    """Pretrain the proxy model on wiki train; returns its folder (``final/``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from circuitclust.models.loading import _load_tokenizer, tiny_tokenizer_dir

    final = out / "base" / "final"
    if final.is_dir():
        return final
    tok = _load_tokenizer(tiny_tokenizer_dir())
    cfg = AutoConfig.for_model("gpt2", n_layer=4, n_embd=128, n_head=4, n_inner=512, n_positions=256,
                               vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    init = out / "init"
    AutoModelForCausalLM.from_config(cfg).save_pretrained(init)
    tok.save_pretrained(init)
    finetune(FinetuneConfig(model=str(init), out=str(out / "base"), lam=0.0, lr=2e-3, lr_warmup=20, steps=steps,
                            batch_size=16, seq_len=64, eval_every=steps, eval_blocks=32, save_every=steps,
                            keep_checkpoints=1), progress=False, train_texts=train, eval_texts=evals)
    return final


def variants(lam_entries: float) -> dict[str, dict]:
    """Name -> FinetuneConfig overrides, relative to the CLI defaults (lam 20 mean, lr 1e-4, train all)."""
    return {
        "default (lam 20, lr 1e-4)": {},
        "lam 20, lr 1e-3": {"lr": 1e-3},
        "lam 200, lr 1e-4": {"lam": 200.0},
        "lam 200, lr 1e-3": {"lam": 200.0, "lr": 1e-3},
        "lam 0.2, lr 1e-3": {"lam": 0.2, "lr": 1e-3},
        "lam 2, lr 1e-3": {"lam": 2.0, "lr": 1e-3},
        f"entries {lam_entries:g}, lr 1e-4": {"loss_reduction": "entries", "lam": lam_entries},
        f"entries {lam_entries:g}, lr 1e-3": {"loss_reduction": "entries", "lam": lam_entries, "lr": 1e-3},
        "lam 200, lr 1e-3, train mlp": {"lam": 200.0, "lr": 1e-3, "train": "mlp"},
        "lam 200, lr 1e-3, distill 1": {"lam": 200.0, "lr": 1e-3, "distill": 1.0},
        "lam 200, lr 1e-3, mlp+distill": {"lam": 200.0, "lr": 1e-3, "train": "mlp", "distill": 1.0},
        "lam 200, lr 1e-3, spectral": {"lam": 200.0, "lr": 1e-3, "partition": "spectral"},
        "lam 200, lr 1e-3, spectral+mlp+distill": {"lam": 200.0, "lr": 1e-3, "partition": "spectral",
                                                   "train": "mlp", "distill": 1.0},
        "no loss, lr 1e-3 (control)": {"lam": 0.0, "lr": 1e-3},
    }


def grad_scale(model_spec: str, batch: int, seq: int) -> None:
    """Per-weight RMS of the task gradient vs the clusterability gradient (lam 1, both reductions)."""
    from circuitclust.models.loading import load_hf

    hf, tok, _ = load_hf(model_spec)
    hf.train()
    x = token_blocks(corpus_texts("wiki", "heldout"), tok, seq)[:batch]
    hf.zero_grad(set_to_none=True)
    lm_loss(hf(input_ids=x).logits, x).backward()
    closs = ClusterabilityLoss(hf, make_partition(hf, "blocks", 4, MLP), graphs=MLP)
    params = {id(g.parameter): g.parameter for g in closs.graphs}
    task = torch.cat([p.grad.flatten() for p in params.values()])
    n_graphs = len(closs.graphs)
    sizes = sorted({g.shape for g in closs.graphs})
    hf.zero_grad(set_to_none=True)
    closs().backward()
    clus = torch.cat([p.grad.flatten() for p in params.values()])
    sigma = torch.cat([p.detach().flatten() for p in params.values()]).float().pow(2).mean().sqrt()
    rms = lambda t: float(t.float().pow(2).mean().sqrt())  # noqa: E731
    n_per = sizes[0][0] * sizes[0][1]
    print(f"\ngradient scale on {model_spec} ({n_graphs} MLP matrices of {sizes}, weight RMS {float(sigma):.4f}, "
          f"one batch {batch}x{seq} of wiki held-out):")
    print(f"  task-loss gradient, RMS per MLP weight:            {rms(task):.3e}")
    print(f"  clusterability gradient at lam 1 ('mean'):         {rms(clus):.3e}  -> lam to match the task: "
          f"{rms(task) / rms(clus):.3g}")
    print(f"  clusterability gradient at lam 1 ('entries'):      {rms(clus) * n_graphs * n_per:.3e}  -> lam to "
          f"match the task: {rms(task) / (rms(clus) * n_graphs * n_per):.3g}")


@torch.no_grad()
def _prune_to(weight: torch.Tensor, inside: torch.Tensor, target_c: float) -> None:
    """Zero the smallest off-cluster entries of ``weight`` (in place) until its clusterability reaches
    ``target_c``: the largest off-cluster squared mass allowed is ``in_mass (1 - target) / target``."""
    w2 = weight.float().square()
    allowed = float((w2 * inside).sum()) * (1 - target_c) / target_c
    off = torch.where(inside, torch.zeros_like(w2), w2).flatten()
    order = off.argsort(descending=True)
    keep = torch.zeros_like(off, dtype=torch.bool)
    keep[order] = off[order].cumsum(0) <= allowed
    weight.mul_((inside.flatten() | keep).view_as(weight).to(weight.dtype))


@torch.no_grad()
def off_cluster_concentration(weights: list[torch.Tensor], inside: list[torch.Tensor],
                              tops: tuple[float, ...] = (0.01, 0.1)) -> dict[float, float]:
    """Mean over matrices of the share of the off-cluster squared mass held by the largest ``top`` fraction of
    off-cluster entries (squared mass is what clusterability counts)."""
    out = {t: 0.0 for t in tops}
    for w, ins in zip(weights, inside):
        off = w.float().square()[~ins].sort(descending=True).values
        cum = off.cumsum(0) / off.sum()
        for t in tops:
            out[t] += float(cum[max(int(t * len(off)) - 1, 0)]) / len(weights)
    return out


def oneshot(model_spec: str, seq: int = 64, blocks: int = 32) -> None:
    """Held-out perplexity after imposing clusterability on the pretrained MLPs at once (no training)."""
    from circuitclust.core.measures import normalised_clusterability
    from circuitclust.models.loading import load_hf

    hf, tok, _ = load_hf(model_spec)
    hf.eval().requires_grad_(False)
    evals = {d: token_blocks(corpus_texts(d, "heldout"), tok, seq)[:blocks] for d in ("wiki", "chemistry")}
    closs = ClusterabilityLoss(hf, make_partition(hf, "spectral", 4, MLP, seed=0, balance=0.5), graphs=MLP)
    chance = torch.tensor(list(closs.chance().values()))
    originals = [g.weight.detach().clone() for g in closs.graphs]
    inside = [(closs.partition[g.name].row_labels[:, None] == closs.partition[g.name].col_labels[None, :])
              for g in closs.graphs]
    conc = off_cluster_concentration(originals, inside)
    print("share of the off-cluster squared mass in the largest off-cluster entries (mean over matrices): "
          + ", ".join(f"top {100 * t:g}%: {v:.3f}" for t, v in conc.items()))
    base = {d: heldout_perplexity(hf, b, 4) for d, b in evals.items()}

    def measure(label: str) -> None:
        norm = float(normalised_clusterability(torch.tensor(list(closs.clusterability().values())), chance).mean())
        ppl = {d: heldout_perplexity(hf, b, 4) for d, b in evals.items()}
        rise = "  ".join(f"{d} {ppl[d]:8.2f} ({100 * (ppl[d] / base[d] - 1):+7.1f}%)" for d in ppl)
        print(f"  {label:34s} normalised C {norm:.3f}  {rise}", flush=True)
        for g, w in zip(closs.graphs, originals):
            g.weight.copy_(w)

    print(f"\none-shot edits of {model_spec}'s {len(originals)} MLP matrices (balanced spectral k 4, mean chance "
          f"{float(chance.mean()):.3f}); base perplexity "
          + ", ".join(f"{d} {v:.2f}" for d, v in base.items()))
    measure("none")
    for factor in (0.8, 0.6, 0.4, 0.2, 0.05):
        closs.shrink_off_cluster_(1.0 - factor)
        measure(f"(a) off-cluster weights x {factor:g}")
    for target in (0.3, 0.4, 0.5, 0.6, 0.73):
        for g, ins, ch in zip(closs.graphs, inside, chance.tolist()):
            _prune_to(g.weight, ins.to(g.weight.device), ch + target * (1 - ch))
        measure(f"(b) pruned to normalised C {target:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/study")
    ap.add_argument("--base-steps", type=int, default=400)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lam-entries", type=float, default=1e-4)
    ap.add_argument("--only", nargs="*", default=None, help="run only variants whose name contains one of these")
    ap.add_argument("--grad-scale-model", nargs="*", default=[], help="e.g. gemma-3-270m (loads the model)")
    ap.add_argument("--oneshot-model", nargs="*", default=[], help="e.g. gemma-3-270m: the one-shot edits only")
    a = ap.parse_args()
    if a.oneshot_model:
        for spec in a.oneshot_model:
            oneshot(spec)
        return
    torch.set_num_threads(1)
    out = Path(a.out)
    train = corpus_texts("wiki", "train")
    evals = {"wiki": corpus_texts("wiki", "heldout"), "chemistry": corpus_texts("chemistry", "heldout")}
    t0 = time.process_time()
    base = build_base(out, a.base_steps, train, evals)
    print(f"proxy base: {base} (pretrained {a.base_steps} steps, {time.process_time() - t0:.0f} s CPU)")
    quarter = max(a.steps // 4, 1)
    rows = []
    for name, over in variants(a.lam_entries).items():
        if a.only and not any(s in name for s in a.only):
            continue
        run_dir = out / "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in name)
        if not (run_dir / "final").is_dir():
            cfg = FinetuneConfig(model=str(base), out=str(run_dir), data="wiki", steps=a.steps,
                                 batch_size=a.batch_size, seq_len=a.seq_len, eval_every=quarter, eval_blocks=32,
                                 save_every=a.steps, keep_checkpoints=1, graphs=MLP, **over)
            t = time.process_time()
            finetune(cfg, progress=False, train_texts=train, eval_texts=evals)
            (run_dir / "study_cpu_s.txt").write_text(f"{time.process_time() - t:.1f}")
        recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rows.append((name, recs))
    print(f"\nproxy: GPT-2 arch 4x128, d_mlp 512; {a.steps} steps of {a.batch_size}x{a.seq_len} wiki tokens from "
          f"the base; k 4, MLP in+out regularised (chance {rows[0][1][0]['chance']:.3f}); other settings = CLI "
          f"defaults (AdamW, no warm-up, train all, blocks)")
    steps_shown = [r["step"] for r in rows[0][1]][1:]
    head = " ".join(f"{'C@' + str(s):>7s}" for s in steps_shown)
    # The base is still learning, so perplexity changes are given vs the base AND vs the no-loss control
    # trained with the same lr (the cost of the clusterability term itself).
    control: dict[str, float] = {}
    for name, recs in rows:
        if name.startswith("no loss"):
            control = recs[-1]["heldout_ppl"]
    print(f"{'variant':40s} {'C@0':>6s} {head} {'ppl wiki':>9s} {'vs base':>7s} {'vs ctrl':>7s} "
          f"{'ppl chem':>9s} {'vs base':>7s} {'vs ctrl':>7s}")
    for name, recs in rows:
        b, e = recs[0], recs[-1]
        cs = " ".join(f"{r['mean_clusterability']:7.3f}" for r in recs[1:])
        cells = []
        for dom in ("wiki", "chemistry"):
            p0, p1 = b["heldout_ppl"][dom], e["heldout_ppl"][dom]
            ctrl = f"{100 * (p1 / control[dom] - 1):+6.1f}%" if control else "      -"
            cells.append(f"{p1:9.2f} {100 * (p1 / p0 - 1):+6.1f}% {ctrl}")
        print(f"{name:40s} {b['mean_clusterability']:6.3f} {cs} " + " ".join(cells))
    print("(vs ctrl: against the no-loss control with lr 1e-3; rows with lr 1e-4 should be read vs base)")
    print(f"base perplexity: wiki {rows[0][1][0]['heldout_ppl']['wiki']:.2f}, "
          f"chemistry {rows[0][1][0]['heldout_ppl']['chemistry']:.2f}")
    grad_scale(str(base), 8, a.seq_len)
    for spec in a.grad_scale_model:
        grad_scale(spec, 2, 128)


if __name__ == "__main__":
    main()
