"""Attribution patching vs exact activation patching for every cluster of every layer, timed in one run.

Exact: every (layer, part, cluster) node per batch ablated by resampling the paired corrupted prompts'
activations, plus the intact model; ``ablation_sweep`` stacks ``--max-rows // batch`` of these per forward and
unembeds only the last prompt positions. Attribution: 2 forward + 1 backward passes per batch for all units.
Prints wall and CPU times (CPU time is less polluted on a shared machine), the ratio, the Spearman agreement
per task, the projected cost of exact patching per unit (n_units set evaluations), and the old exact path
(one set per forward, every position unembedded) against the new one in the same run, with the speed-up and
the largest difference of their results (``--no-old`` skips it).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/patching.py --model tiny-gpt2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/patching.py --model gemma-3-270m --max-prompts 16 --threads 2

Tasks: ``--tasks`` (bundled names or .jsonl paths); default: the bundled tasks, or a built-in capital-city
recall task and a colour task when none is bundled.
"""
from __future__ import annotations

import argparse
import time

import torch
from _timing import timed

CAPITALS = [("France", " Paris"), ("Japan", " Tokyo"), ("Italy", " Rome"), ("Egypt", " Cairo"),
            ("Spain", " Madrid"), ("Germany", " Berlin"), ("Russia", " Moscow"), ("Greece", " Athens"),
            ("Kenya", " Nairobi"), ("Peru", " Lima"), ("Canada", " Ottawa"), ("Norway", " Oslo"),
            ("Poland", " Warsaw"), ("Austria", " Vienna"), ("Portugal", " Lisbon"), ("Ireland", " Dublin")]


# Subjects that are two tokens each in the tiny models' tokenizer (and one in Gemma's), so pairs align.
COLOURS = [("grass", " green"), ("sea", " blue"), ("snow", " white"), ("coal", " black"), ("fire", " red"),
           ("sun", " yellow"), ("gold", " yellow"), ("star", " white")]


def builtin_tasks() -> dict[str, list[dict]]:
    from circuitclust.data import chained_task_rows

    return {"capitals (built-in)": chained_task_rows(CAPITALS, "The capital city of {} is"),
            "colours (built-in)": chained_task_rows(COLOURS, "The colour of the {} is")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-gpt2")
    ap.add_argument("--tasks", default=None)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-prompts", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--metric", default="logit_diff")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--blocks", action="store_true", help="equal blocks instead of spectral co-clustering")
    ap.add_argument("--partition", default=None, help="a saved partition.json to use instead of clustering here")
    ap.add_argument("--max-rows", type=int, default=64, help="rows per forward of the set-batched exact sweep")
    ap.add_argument("--no-old", action="store_true", help="skip timing the old exact path (one set per forward, "
                    "full logits)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from circuitclust.analysis.patching.attribution import attribution_patching
    from circuitclust.analysis.patching.interventions import ablation_sweep, node_masks
    from circuitclust.analysis.patching.effects import spearman
    from circuitclust.analysis.patching.prompts import encode_task
    from circuitclust.analysis.patching.units import default_partition, unit_layout
    from circuitclust.core.partition import ModelPartition
    from circuitclust.runfiles import load_partition
    from circuitclust.data import list_tasks
    from circuitclust.models import load_model, model_device, weight_graphs

    t0 = time.perf_counter()
    m = load_model(args.model)
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s on {model_device(m)}, "
          f"{torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    if args.partition:
        mp = load_partition(args.partition)
    else:
        mp = (ModelPartition.blocks(weight_graphs(m), args.k) if args.blocks
              else default_partition(m, k=args.k))
    print(f"partition ({mp.provenance.get('method', '?')}, k={mp.k}) in {time.perf_counter() - t0:.1f} s")
    layout = unit_layout(m, mp)
    names = args.tasks.split(",") if args.tasks else list_tasks()
    tasks = ([encode_task(m, t, max_prompts=args.max_prompts) for t in names] if names
             else [encode_task(m, rows, name=n, max_prompts=args.max_prompts) for n, rows in builtin_tasks().items()])
    print(f"{len(layout.nodes)} nodes, {layout.n_units} units, {layout.n_dims} dims")
    with torch.no_grad():  # warm-up pass so that one-off start-up costs are not charged to either method
        m(tasks[0].subset(slice(0, args.batch_size)).clean.to(model_device(m)))
    tot = {"old": [0.0, 0.0], "exact": [0.0, 0.0], "attr": [0.0, 0.0]}  # [wall, cpu] seconds
    for p in tasks:
        sets = node_masks(layout)
        old = None
        if not args.no_old:
            old, w_old, c_old = timed(lambda: ablation_sweep(m, p, layout, sets, "resample", args.metric,
                                                             batch_size=args.batch_size, max_rows=0, full_logits=True))
            tot["old"][0] += w_old
            tot["old"][1] += c_old
        exact, t_exact, c_exact = timed(lambda: ablation_sweep(m, p, layout, sets, "resample", args.metric,
                                                               batch_size=args.batch_size, max_rows=args.max_rows))
        att, t_attr, c_attr = timed(lambda: attribution_patching(m, p, layout, args.metric, batch_size=args.batch_size))
        est = layout.dims_to_nodes(att["corrupted"]).mean(0)
        change = (exact["ablated"] - exact["clean"][None]).mean(1)
        rho = spearman(est, change)
        n_batches = -(-len(p) // args.batch_size)
        per_set = t_exact / (n_batches * (len(layout.nodes) + 1))
        proj_unit = per_set * n_batches * (layout.n_units + 1)
        print(f"task {p.name}: {len(p)} prompts (clean metric {float(exact['clean'].mean()):.3f}); exact patching of "
              f"{len(layout.nodes)} nodes {t_exact:.2f} s wall / {c_exact:.2f} s CPU, attribution of all "
              f"{layout.n_units} units {t_attr:.2f} s wall / {c_attr:.2f} s CPU, ratio exact/attribution "
              f"{t_exact / t_attr:.1f}x wall, {c_exact / c_attr:.1f}x CPU; Spearman(nodes) {rho:.3f}; exact per unit "
              f"projected {proj_unit:.0f} s ({proj_unit / t_attr:.0f}x attribution)")
        if old is not None:
            diff = max(float((old[k] - exact[k]).abs().max()) for k in ("clean", "ablated"))
            same = all(torch.equal(old[k], exact[k]) for k in ("clean_correct", "ablated_correct"))
            print(f"  exact patching, old path (one set per forward, every position unembedded) {w_old:.2f} s wall / "
                  f"{c_old:.2f} s CPU vs new (last positions only, up to {args.max_rows} rows per forward) "
                  f"{t_exact:.2f} s wall / {c_exact:.2f} s CPU: speed-up {w_old / t_exact:.2f}x wall, "
                  f"{c_old / c_exact:.2f}x CPU; max |metric difference| {diff:.2e}, same top-1 flags: {same}")
        tot["exact"][0] += t_exact
        tot["exact"][1] += c_exact
        tot["attr"][0] += t_attr
        tot["attr"][1] += c_attr
    (we, ce), (wa, ca) = tot["exact"], tot["attr"]
    print(f"total: exact {we:.2f} s wall / {ce:.2f} s CPU, attribution {wa:.2f} s wall / {ca:.2f} s CPU, "
          f"ratio {we / wa:.1f}x wall, {ce / ca:.1f}x CPU")
    if not args.no_old:
        wo, co = tot["old"]
        print(f"total exact patching: old path {wo:.2f} s wall / {co:.2f} s CPU, new path {we:.2f} s wall / "
              f"{ce:.2f} s CPU, speed-up {wo / we:.2f}x wall, {co / ce:.2f}x CPU")

if __name__ == "__main__":
    main()
