"""The fine-tuning Pareto study: held-out perplexity cost against clusterability gained, for fixed budgets of
optimizer steps and tokens, per recipe and seed.

    HF_HUB_OFFLINE=1 nohup .venv/bin/python benchmarks/finetune_pareto.py run --model gemma-3-270m \
        --steps 150 --seeds 0,1 --out runs/pareto > runs/pareto.log 2>&1 &
    .venv/bin/python benchmarks/finetune_pareto.py collect --out runs/pareto --results results/finetune_study

``run`` trains every (recipe, seed) into ``OUT/MODEL/RECIPE/seed-S`` as a normal ``finetune`` run, in the
order seed-major (every recipe once before any second seed), and is resumable: a finished run is skipped and an
interrupted one continues from its last checkpoint (the trainer resumes exactly). ``collect`` reads every
run's ``metrics.jsonl`` (also of unfinished runs) into ``RESULTS/MODEL/finetune_study.json`` (every evaluation:
step, tokens, C, chance, normalised C, held-out perplexity and its rise on wiki and chemistry, lambda, whether a
budget held) and prints the table at the step budgets.

Recipes (all: lr 1e-4, batch 4 x 64 tokens, k 4, wiki training text, the same data order per seed):
- ``papers``: the papers' recipe: ``lam * mean(1 - C)`` with lam 20, equal blocks, mlp_in + mlp_out, every
  parameter trained, no distillation.
- ``lam0``: the control: the papers' recipe with lam 0 (what fine-tuning on wiki alone does).
- ``demo-v1``: the demo's previous recipe: per-weight loss (entries) 2e-4, spectral clusters, the three MLP
  matrices trained, KL to the base model (distill 1).
- ``loss-P``: the budgeted recipe: the per-weight loss (entries, lambda at most 4e-4, about 5x the point where
  its push matches the task gradient; it starts at a quarter of that), balanced spectral clusters (balance
  0.5), the three MLP matrices trained, distill 1, lambda adapted by dual ascent to keep the control-text
  perplexity rise within P% (``--budgets``), ``final/`` the most clusterable evaluation inside the budget on the
  control text (``--final in-budget``; collected as ``final_step``; runs before session 8 wrote the last model).
- ``decay-P``: the same with the decoupled off-cluster decay instead of the loss (lambda at most 50, i.e. 0.5%
  of every off-cluster weight per step).
- ``slow``: a learning rate 4x lower (2.5e-5) for runs 4x longer: the per-weight loss (entries) 2e-4 on
  balanced spectral clusters (balance 0.5), the three MLP matrices trained, distill 1, no budget; it moves the
  off-cluster weights as far as a 1e-4 run in a quarter of the steps while AdamW's step-to-step noise, which
  adds up like a random walk, travels half as far.
- ``loss-P-all``: ``loss-P`` training every parameter, as the papers' recipe does (the same trained parameters,
  learning rate and data: only the regulariser and the distillation differ); ``loss-P-all-nokl`` the same
  without the distillation, so that only the regulariser (and the budget) differ from the papers' recipe;
  ``loss-P-all-nokl-low`` that one at a tenth of the lambda (at most 4e-5), the gentlest pressure on C.
- ``slow-P``: ``loss-P`` (budgeted, ``--final in-budget``) at the learning rate of ``slow``, for runs up to the
  1,000 steps the issue allows.
- ``...-gen``: trained (and distilled) on 512 texts of 128 tokens that the base model samples itself from BOS
  at temperature 1 (generated once, cached) instead of the wiki corpus.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from circuitclust.analysis.finetuning import FinetuneConfig, finetune  # noqa: E402
from circuitclust.atomic import write_json  # noqa: E402
from circuitclust.runfiles import evaluations, load_metrics, write_finetune_study  # noqa: E402

MLP3 = ("mlp_in", "mlp_gate", "mlp_out")
COMMON = dict(lr=1e-4, batch_size=4, seq_len=64, k=4, data="wiki", eval_every=25, eval_blocks=32,
              keep_checkpoints=1)
PAPERS = dict(regulariser="loss", loss_reduction="mean", lam=20.0, partition="blocks", graphs=("mlp_in", "mlp_out"),
              train="all", distill=0.0)


def recipes(budgets: list[float]) -> dict[str, dict]:
    """Recipe name -> FinetuneConfig options (on top of COMMON)."""
    out = {
        "papers": PAPERS,
        "lam0": {**PAPERS, "lam": 0.0},
        "demo-v1": dict(regulariser="loss", loss_reduction="entries", lam=2e-4, partition="spectral", graphs=MLP3,
                        train="regularised", distill=1.0),
        "slow": dict(regulariser="loss", loss_reduction="entries", lam=2e-4, partition="spectral", balance=0.5,
                     graphs=MLP3, train="regularised", distill=1.0, lr=2.5e-5),
    }
    for b in budgets:
        shared = dict(partition="spectral", balance=0.5, graphs=MLP3, train="regularised", distill=1.0,
                      max_ppl_increase=b, budget_every=10, final="in-budget")
        decay = dict(regulariser="decay", lam=50.0, **shared)
        loss = dict(regulariser="loss", loss_reduction="entries", lam=4e-4, **shared)
        for name, recipe in (("decay", decay), ("loss", loss)):
            out[f"{name}-{b * 100:g}"] = recipe
            out[f"{name}-{b * 100:g}-gen"] = {**recipe, "data": "generated"}
        out[f"slow-{b * 100:g}"] = {**loss, "lr": 2.5e-5}
        out[f"loss-{b * 100:g}-all"] = {**loss, "train": "all"}
        out[f"loss-{b * 100:g}-all-nokl"] = {**loss, "train": "all", "distill": 0.0}
        out[f"loss-{b * 100:g}-all-nokl-low"] = {**loss, "train": "all", "distill": 0.0, "lam": 4e-5}
    return out


def run(a: argparse.Namespace) -> None:
    table = recipes(a.budgets)
    names = a.recipes.split(",") if a.recipes else list(table)
    for seed in a.seeds:
        for name in names:
            out = Path(a.out) / a.model / name / f"seed-{seed}"
            if (out / "final" / "config.json").is_file():
                print(f"[pareto] {out}: done, skipped", flush=True)
                continue
            cfg = FinetuneConfig(model=a.model, out=str(out), steps=a.steps, seed=seed, **{**COMMON, **table[name]})
            print(f"[pareto] {out}: {a.steps} steps ({time.strftime('%H:%M:%S')})", flush=True)
            t0 = time.time()
            finetune(cfg, resume=True, progress=False)
            print(f"[pareto] {out}: finished in {time.time() - t0:.0f} s", flush=True)


def _record(rec: dict) -> dict:
    row = {"step": rec["step"], "tokens": rec["tokens"], "C": rec["mean_clusterability"], "chance": rec["chance"],
           "C_norm": rec.get("mean_clusterability_norm"), "ppl": rec["heldout_ppl"],
           "ppl_increase": rec["heldout_ppl_increase"], "lam": rec["lam"]}
    if "budget" in rec:
        row["budget_held"] = rec["budget"]["held"]
    return row


def collect(a: argparse.Namespace) -> None:
    root = Path(a.out) / a.model
    runs = {}
    for metrics in sorted(root.glob("*/seed-*/metrics.jsonl")):
        every = load_metrics(metrics)
        recs = evaluations(every)
        if not recs:
            continue
        cfg = json.loads((metrics.parent / "run_config.json").read_text())["config"]
        name = f"{metrics.parent.parent.name}/{metrics.parent.name}"
        runs[name] = {"recipe": metrics.parent.parent.name, "seed": cfg["seed"], "steps": cfg["steps"],
                      "finished": (metrics.parent / "final" / "config.json").is_file(),
                      "config": {k: cfg[k] for k in sorted(cfg) if k not in ("out", "device")},
                      "evaluations": [_record(r) for r in recs]}
        if every[-1].get("final"):  # the model the run chose for final/ (--final in-budget)
            runs[name]["final_step"] = every[-1]["step"]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc = {"model": a.model,
           "command": f"benchmarks/finetune_pareto.py run --model {a.model} --out {a.out} (then collect)",
           "git_commit": commit, "machine": f"{platform.machine()} {platform.processor() or ''} CPU, "
                                            f"{__import__('os').cpu_count()} cores".strip(),
           "runs": runs}
    dest = write_finetune_study(Path(a.results) / a.model, doc)
    # one manifest for the folder: every model collected into it so far
    studies = [json.loads(p.read_text()) for p in sorted(Path(a.results).glob("*/finetune_study.json"))]
    seeds = sorted({r["seed"] for d in studies for r in d["runs"].values()})
    manifest = {"schema": "circuitclust.results_manifest/1", "commands": [d["command"] for d in studies],
                "git_commit": commit,
                "seeds": seeds, "date": time.strftime("%Y-%m-%d %H:%M"),
                "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                            "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
                "note": "step counts, not wall time, define every run, so the figures do not depend on the load "
                        "(a 100-step run took 7-13 min for Gemma 3 270M and 4-10 min for SmolLM2 135M on this "
                        "machine, alone or beside other jobs; each run's time is in the run log)"}
    write_json(Path(a.results) / "manifest.json", manifest)
    print(f"wrote {dest} ({len(runs)} runs)")
    print(f"{'run':28} {'step':>5} {'C':>6} {'chance':>6} {'C_norm':>6} {'wiki':>7} {'chem':>7} {'lam':>9}")
    for name, r in runs.items():
        for e in r["evaluations"]:
            if e["step"] % a.every == 0 or e is r["evaluations"][-1]:
                pi = e["ppl_increase"]
                print(f"{name:28} {e['step']:5d} {e['C']:6.3f} {e['chance']:6.3f} {e['C_norm']:6.3f} "
                      f"{100 * pi['wiki']:+6.1f}% {100 * pi['chemistry']:+6.1f}% {e['lam']:9.3g}"
                      + ("" if "budget_held" not in e else ("  held" if e["budget_held"] else "  OVER")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", default="gemma-3-270m")
    r.add_argument("--out", default="runs/pareto")
    r.add_argument("--steps", type=int, default=150)
    r.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    r.add_argument("--budgets", type=lambda s: [float(x) for x in s.split(",")], default=[0.10])
    r.add_argument("--recipes", default="", help="comma-separated subset, in this order (default: all)")
    c = sub.add_parser("collect")
    c.add_argument("--model", default="gemma-3-270m")
    c.add_argument("--out", default="runs/pareto")
    c.add_argument("--results", default="results/finetune_study")
    c.add_argument("--every", type=int, default=50, help="print evaluations at multiples of this step")
    a = ap.parse_args()
    run(a) if a.cmd == "run" else collect(a)


if __name__ == "__main__":
    main()
