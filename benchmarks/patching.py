"""Attribution patching vs exact activation patching for every cluster of every layer, timed in one run.

Exact: one forward pass per (layer, part, cluster) node per batch (resample ablation with the paired
corrupted prompts) plus the clean pass. Attribution: 2 forward + 1 backward passes per batch for all units.
Prints wall times, the ratio, the Spearman agreement per task, and the projected cost of exact patching per
unit (n_units forwards) from the measured per-forward time.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/patching.py --model tiny-gpt2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/patching.py --model gemma-3-270m --max-prompts 16 --threads 2

Tasks: ``--tasks`` (bundled names or .jsonl paths); default: the bundled tasks, or a built-in capital-city
recall task and a colour task when none is bundled.
"""
from __future__ import annotations

import argparse
import time

import torch

CAPITALS = [("France", " Paris"), ("Japan", " Tokyo"), ("Italy", " Rome"), ("Egypt", " Cairo"),
            ("Spain", " Madrid"), ("Germany", " Berlin"), ("Russia", " Moscow"), ("Greece", " Athens"),
            ("Kenya", " Nairobi"), ("Peru", " Lima"), ("Canada", " Ottawa"), ("Norway", " Oslo"),
            ("Poland", " Warsaw"), ("Austria", " Vienna"), ("Portugal", " Lisbon"), ("Ireland", " Dublin")]


# Subjects that are two tokens each in the tiny models' tokenizer (and one in Gemma's), so pairs align.
COLOURS = [("grass", " green"), ("sea", " blue"), ("snow", " white"), ("coal", " black"), ("fire", " red"),
           ("sun", " yellow"), ("gold", " yellow"), ("star", " white")]


def chained_rows(items, template: str) -> list[dict]:
    """Rows pairing each item with the next one as its corruption."""
    rows = []
    for i, (c, a) in enumerate(items):
        d, b = items[(i + 1) % len(items)]
        rows.append({"prompt": template.format(c), "answer": a, "corrupted_prompt": template.format(d),
                     "corrupted_answer": b})
    return rows


def builtin_tasks() -> dict[str, list[dict]]:
    return {"capitals (built-in)": chained_rows(CAPITALS, "The capital city of {} is"),
            "colours (built-in)": chained_rows(COLOURS, "The colour of the {} is")}


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
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from circuitclust.analysis.attribution import attribution_patching
    from circuitclust.analysis.interventions import ablation_sweep, node_masks
    from circuitclust.analysis.patching import spearman
    from circuitclust.analysis.prompts import encode_task
    from circuitclust.analysis.units import default_partition, unit_layout
    from circuitclust.core.partition import ModelPartition
    from circuitclust.data import list_tasks
    from circuitclust.models import load_model, weight_graphs

    t0 = time.perf_counter()
    m = load_model(args.model)
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s on {next(m.parameters()).device}, "
          f"{torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    if args.partition:
        mp = ModelPartition.load(args.partition)
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
        m(tasks[0].subset(slice(0, args.batch_size)).clean.to(next(m.parameters()).device))
    tot_exact = tot_attr = 0.0
    for p in tasks:
        sets = node_masks(layout)
        t0 = time.perf_counter()
        exact = ablation_sweep(m, p, layout, sets, "resample", args.metric, batch_size=args.batch_size)
        t_exact = time.perf_counter() - t0
        t0 = time.perf_counter()
        att = attribution_patching(m, p, layout, args.metric, batch_size=args.batch_size)
        t_attr = time.perf_counter() - t0
        est = layout.dims_to_nodes(att["corrupted"]).mean(0)
        change = (exact["ablated"] - exact["clean"][None]).mean(1)
        rho = spearman(est, change)
        n_batches = -(-len(p) // args.batch_size)
        per_fwd = t_exact / (n_batches * (len(layout.nodes) + 2))
        proj_unit = per_fwd * n_batches * (layout.n_units + 2)
        print(f"task {p.name}: {len(p)} prompts (clean metric {float(exact['clean'].mean()):.3f}); exact patching of "
              f"{len(layout.nodes)} nodes {t_exact:.2f} s, attribution of all {layout.n_units} units {t_attr:.2f} s, "
              f"ratio exact/attribution {t_exact / t_attr:.1f}x; Spearman(nodes) {rho:.3f}; exact per unit "
              f"projected {proj_unit:.0f} s ({proj_unit / t_attr:.0f}x attribution)")
        tot_exact += t_exact
        tot_attr += t_attr
    print(f"total: exact {tot_exact:.2f} s, attribution {tot_attr:.2f} s, ratio {tot_exact / tot_attr:.1f}x")


if __name__ == "__main__":
    main()
