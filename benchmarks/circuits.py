"""Circuit discovery at the scale the issue asks for, timed in one run with attribution checked against exact
ablation: Gemma 3 270M, the six recall tasks + wiki + chemistry, 32 prompts each, MLP neurons + attention heads
as units, units ranked by attribution patching, the MIB faithfulness curve on the fixed grid (0.1 ... 100% of
units) confirmed by real counterfactual ablation, the smallest circuit with f >= 0.8 found by bisection, and
beside it the random-ranking baseline and the nonsense task (answers shuffled across prompts).

Prints per task: prompts, circuit size and fraction, CPR / CMD (attribution vs random), the nonsense
control, the Spearman and top-k overlap of attribution against exact single-unit ablation on ``--check-units``
units (the top ``--top-k`` by attribution plus a uniform draw), and seconds; then the total wall and CPU time.
The target is <= 20 minutes on the project's 2-core CPU. That machine is shared with other jobs, so the
1-minute load average is printed at the start and the end (``os.getloadavg``, what ``uptime`` shows): quote
it beside the time. ``--tasks`` / ``--prompts`` run a reduced version (say so when extrapolating from it).

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 .venv/bin/python benchmarks/circuits.py --threads 2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/circuits.py --model tiny-gpt2      # a smoke run

Units: with the default equal-block partition every head is one unit (a block holds whole heads);
``--spectral`` co-clusters MLPs and attention instead (then heads that the partition splits become head dims).
Clusters only matter for the circuits' cluster shares here, not for the search.
"""
from __future__ import annotations

import argparse
import os
import time

import torch
from _timing import timed

DEFAULT_TASKS = "recall,wiki,chemistry"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help="as `circuitclust patch --tasks` takes them")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n-reference", type=int, default=16)
    ap.add_argument("--check-units", type=int, default=32)
    ap.add_argument("--top-k", type=int, default=8)
    ap.add_argument("--threshold", type=float, default=0.8)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-rows", type=int, default=64)
    ap.add_argument("--text-tokens", type=int, default=48)
    ap.add_argument("--loss-tokens", type=int, default=16)
    ap.add_argument("--no-controls", action="store_true", help="skip the random baseline and the nonsense task")
    ap.add_argument("--spectral", action="store_true", help="co-cluster MLP and attention instead of equal blocks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from circuitclust.analysis.patching.attribution import attribution_patching
    from circuitclust.analysis.patching.circuits import Faithfulness, find_circuit, task_circuits
    from circuitclust.analysis.patching.run import red_flag
    from circuitclust.analysis.patching.effects import attribution_check
    from circuitclust.analysis.patching.prompts import load_task_prompts, nonsense_task, sample_task
    from circuitclust.analysis.patching.scores import Scores
    from circuitclust.analysis.patching.units import default_partition, unit_layout
    from circuitclust.core.partition import ModelPartition
    from circuitclust.data import expand_tasks
    from circuitclust.models import load_model, model_device, weight_graphs

    load0 = os.getloadavg()
    w0, c0 = time.perf_counter(), time.process_time()
    m = load_model(args.model)
    mp = (default_partition(m, k=4, parts=("mlp", "attn"), seed=args.seed) if args.spectral
          else ModelPartition.blocks(weight_graphs(m, parts=("mlp", "attn")), 4))
    layout = unit_layout(m, mp, ("mlp", "attn"))
    per_part = {}
    for s in layout.slots:
        per_part[f"{s.part} ({s.unit_kind}s)"] = per_part.get(f"{s.part} ({s.unit_kind}s)", 0) + s.n_units
    print(f"{args.model} on {model_device(m)}, {torch.get_num_threads()} threads; load average at start "
          f"{load0[0]:.2f} (1 min) {load0[1]:.2f} (5 min); {layout.n_units} units {per_part}; set-up "
          f"{time.perf_counter() - w0:.1f} s")
    rows, rhos, overlaps = [], [], []
    for name in expand_tasks(args.tasks):
        def run_task():
            pool, ref_pool = load_task_prompts(m, name, seed=args.seed, text_tokens=args.text_tokens,
                                               loss_tokens=args.loss_tokens)
            p, ref = sample_task(pool, args.prompts, args.n_reference, args.seed, ref_pool)
            att = attribution_patching(m, p, layout, reference=None, batch_size=args.batch_size)
            scores = Scores(layout.dims_to_units(att["corrupted"]).mean(0), layout)
            c = task_circuits(m, p, layout, scores, None, threshold=args.threshold, batch_size=args.batch_size,
                              max_rows=args.max_rows, method="counterfactual", cluster_level=False,
                              random_seed=None if args.no_controls else args.seed)
            chk = attribution_check(m, p, layout, scores.values, "counterfactual", n_sample=args.check_units,
                                    top_k=args.top_k, seed=args.seed, batch_size=args.batch_size,
                                    max_rows=args.max_rows) if args.check_units else {}
            nz = None
            if not args.no_controls and not p.is_text:
                q = nonsense_task(p, args.seed)
                att_n = attribution_patching(m, q, layout, batch_size=args.batch_size)
                fn = Faithfulness(m, q, layout, "logit_diff", "counterfactual", None, args.batch_size, args.max_rows)
                nz = find_circuit(fn, Scores(layout.dims_to_units(att_n["corrupted"]).mean(0), layout), args.threshold)
                nz["red_flag"] = red_flag(c, nz)
            return p, c, chk, nz

        (p, c, chk, nz), wall, cpu = timed(run_task)
        f = lambda v, d=3: "n/a" if v is None or v != v else f"{v:.{d}g}"  # noqa: E731
        nz_text = "n/a (text)" if nz is None else ("undefined" if not nz.get("defined") else
                                                  f"{nz.get('circuit_size')} units, CPR {f(nz.get('cpr'))}"
                                                  + (" RED FLAG" if nz.get("red_flag") else ""))
        print(f"{name}: {len(p)} prompts; full {c['full_metric']:.3f}, empty {c['empty_metric']:.3f}; circuit "
              f"{c.get('circuit_size')} units ({f(100 * c['fraction'] if c.get('fraction') else None)}%, "
              f"{c.get('parts')}, f = {f(c.get('circuit_faithfulness'))}); CPR {f(c.get('cpr'))} CMD {f(c.get('cmd'))} "
              f"(random CPR {f((c.get('random') or {}).get('cpr'))}); nonsense: {nz_text}; attribution vs exact on "
              f"{chk.get('n_sample')} units: Spearman {f(chk.get('spearman'))} (uniform draw "
              f"{f(chk.get('spearman_random'))}), top-{chk.get('top_k')} overlap {f(chk.get('top_k_overlap'))}; "
              f"{c['n_ablation_evals']} circuit evaluations; {wall:.0f} s wall / {cpu:.0f} s CPU", flush=True)
        rows.append((name, wall, cpu))
        if chk and chk["spearman"] == chk["spearman"]:
            rhos.append(chk["spearman"])
            overlaps.append(chk["top_k_overlap"])
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    load1 = os.getloadavg()
    print(f"total {wall / 60:.1f} min wall / {cpu / 60:.1f} min CPU for {len(rows)} tasks x {args.prompts} prompts "
          f"(target <= 20 min on the 2-core CPU); attribution vs exact: mean Spearman "
          f"{sum(rhos) / max(len(rhos), 1):.3f}, mean top-k overlap {sum(overlaps) / max(len(overlaps), 1):.3f}; "
          f"load average at the end {load1[0]:.2f} (1 min) {load1[1]:.2f} (5 min) {load1[2]:.2f} (15 min)")


if __name__ == "__main__":
    main()
