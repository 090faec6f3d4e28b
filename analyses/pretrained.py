"""The papers' pretrained-model experiments with the toolkit: cluster, fine-tune with the clusterability loss,
re-score, patch and compare layers, then tabulate the claims (pretrained models are enmeshed; clustered
models form smaller circuits; they do not specialise more).

    python analyses/pretrained.py --models gpt2 EleutherAI/pythia-70m --data wiki --out runs/papers_wiki
    python analyses/pretrained.py --models gemma-3-270m --data chemistry --out runs/gemma_chemistry

Each model runs the demo pipeline (``circuitclust.demo.run_demo``, what ``circuitclust demo`` runs) once per
seed of ``--seeds`` into OUT/<model>/seed<S>/ (the seed sets the partition, the fine-tuning's data order, the
prompt sample and every null), and each figure is given as its mean and Student t 95% interval across seeds.
The default is 3 seeds; one demo run of an embedded model takes about 25 minutes of the 2-core CPU, and with a
single seed the table says it has no interval. A model whose weights are not available here (no hub access,
not cached) is recorded as such, never faked. Writes OUT/summary.json and OUT/summary.md and prints the table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from circuitclust import runfiles
from circuitclust.core.replicates import aggregate


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


def summarise(run: Path) -> dict:
    """Headline figures of one demo run folder (reads the run files only)."""
    base = runfiles.load_clusterability(run / "cluster_base")
    after = runfiles.load_clusterability(run / "cluster_finetuned")
    metrics = runfiles.load_metrics(run / "finetune")
    first, last = metrics[0], metrics[-1]
    circ_b = runfiles.load_circuits(run / "patch")
    circ_f = runfiles.load_circuits(run / "patch" / "compare")
    spec_b = runfiles.load_specialisation(run / "patch")
    spec_f = runfiles.load_specialisation(run / "patch" / "compare")

    def cl(doc):
        g = doc["graphs"]
        return {"mean_C": _mean([r["clusterability"] for r in g]), "mean_chance": _mean([r["chance"] for r in g]),
                "mean_shuffle": _mean([r["shuffle_mean"] for r in g]),
                "share_p_le_0.1": _mean([None if r["p"] is None else float(r["p"] <= 0.1) for r in g])}

    def circuits(doc):
        return {t: {"units": v["circuit_size"], "fraction": v["fraction"],
                    "clusters": v.get("cluster_circuit_size")} for t, v in doc["tasks"].items()}

    return {
        "spectral_base": cl(base), "spectral_finetuned": cl(after),
        "training_partition": {"C_before": first["mean_clusterability"], "C_after": last["mean_clusterability"],
                               "chance": last["chance"], "steps": last["step"]},
        "heldout_ppl_before": first["heldout_ppl"], "heldout_ppl_after": last["heldout_ppl"],
        "circuits_base": circuits(circ_b), "circuits_finetuned": circuits(circ_f),
        "specialisation_base": spec_b["model_score"], "specialisation_finetuned": spec_f["model_score"],
    }


def _fmt(v, digits: int = 3) -> str:
    """A number, or an across-seed summary as ``mean [lo, hi]`` (``mean`` alone with one seed)."""
    if isinstance(v, dict):
        if v.get("mean") is None:
            return "-"
        text = f"{v['mean']:.{digits}f}"
        return text + (f" [{v['lo']:.{digits}f}, {v['hi']:.{digits}f}]" if v.get("lo") is not None else "")
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(results: dict) -> str:
    """The claims table: one row per model, every figure as mean [95% t interval over the seeds]."""
    lines = ["| model | seeds | C base (chance, shuffle) | C after fine-tune (train partition) | held-out ppl before "
             "-> after | mean circuit fraction base -> tuned | specialisation base -> tuned |",
             "|---|---|---|---|---|---|---|"]
    for model, r in results.items():
        if "error" in r:
            lines.append(f"| {model} | - | not run: {r['error']} | | | | |")
            continue
        a, seeds = r["summary"], r["seeds"]
        s, t = a["spectral_base"], a["training_partition"]
        ppl = ", ".join(f"{d} {_fmt(a['heldout_ppl_before'][d], 1)} -> {_fmt(a['heldout_ppl_after'][d], 1)}"
                        for d in a["heldout_ppl_before"])
        lines.append(f"| {model} | {','.join(map(str, seeds))}{' (one seed: no interval)' if len(seeds) < 2 else ''} "
                     f"| {_fmt(s['mean_C'])} ({_fmt(s['mean_chance'])}, {_fmt(s['mean_shuffle'])}) "
                     f"| {_fmt(t['C_before'])} -> {_fmt(t['C_after'])} (chance {_fmt(t['chance'])}) "
                     f"| {ppl} | {_fmt(a['mean_fraction_base'])} -> {_fmt(a['mean_fraction_finetuned'])} "
                     f"| {_fmt(a['specialisation_base'])} -> {_fmt(a['specialisation_finetuned'])} |")
    lines.append("")
    lines.append("Mean [Student t 95% interval] across seeds; each seed is a whole demo run.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["gpt2", "EleutherAI/pythia-70m"])
    ap.add_argument("--data", default="wiki")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds: one whole demo run each")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=50, help="fine-tuning optimizer steps per model")
    ap.add_argument("--minutes", type=float, default=30.0, help="safety cap on each fine-tuning's wall time")
    ap.add_argument("--balance", type=float, default=0.5,
                    help="spectral partitions keep every cluster at least this share of n/k units per side (the "
                         "analyses' default: unbalanced spectral clusters of a real model can be empty on one side, "
                         "which inflates the chance level; 0 = k-means as it is)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="further DemoOptions fields, e.g. k=8 max_prompts=16 (see circuitclust/demo.py)")
    args = ap.parse_args(argv)
    from dataclasses import fields

    from circuitclust.demo import DemoOptions, run_demo
    from circuitclust.errors import ModelNotAvailableError
    from circuitclust.models.loading import load_hf

    types = {f.name: type(f.default) for f in fields(DemoOptions)}
    extra = {}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in types:
            ap.error(f"--set {item}: unknown option {key!r}; DemoOptions has {', '.join(types)}")
        extra[key] = value if types[key] in (str, type(None)) else types[key](value)

    from circuitclust.pipeline import parse_seeds

    seeds = parse_seeds(args.seeds)
    results = {}
    for model in args.models:
        try:
            load_hf(model)  # fail early and plainly when the weights are not available here
        except ModelNotAvailableError as e:
            results[model] = {"error": str(e)}
            continue
        t0 = time.perf_counter()
        extra.setdefault("balance", args.balance)
        per_seed = []
        for seed in seeds:
            run = args.out / model.replace("/", "__") / f"seed{seed}"
            run_demo(DemoOptions(model=model, data=args.data, steps=args.steps, minutes=args.minutes,
                                 **{**extra, "seed": seed}), run)
            per_seed.append({**summarise(run), "run": str(run)})
        for r in per_seed:  # one number per seed for the table's circuit column
            r["mean_fraction_base"] = _mean([v["fraction"] for v in r["circuits_base"].values()])
            r["mean_fraction_finetuned"] = _mean([v["fraction"] for v in r["circuits_finetuned"].values()])
        results[model] = {"seeds": list(seeds), "per_seed": per_seed, "summary": aggregate(per_seed),
                          "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"command": " ".join(["python", "analyses/pretrained.py", *(argv or sys.argv[1:])]), "data": args.data,
           "results": results}
    (args.out / "summary.json").write_text(json.dumps(doc, indent=1))
    table = markdown(results)
    (args.out / "summary.md").write_text(table + "\n")
    print(table)
    return doc


if __name__ == "__main__":
    main()
