"""Benchmark: the batched shuffle null against the per-shuffle path it replaced, in one run.

Case (default): every MLP graph of the embedded Gemma 3 270M (18 layers x mlp_in / mlp_gate / mlp_out = 54
graphs, 18 tied stacks of 2048 x 1920), its spectral k = 4 partition (seed 0), and N shuffles per graph.

- batched: ``circuitclust.analysis.clustering.null.shuffle_null``, what ``score_model`` runs (values of |W|
  gathered straight into the stack layout through one shared permutation per shuffle, stacks of all layers
  co-clustered together in large calls, ``--workers`` threads).
- per-shuffle (reference): the path as it was before (``tests/_helpers.reference_shuffle_null``): for each
  tied stack, the signed weights of each member permuted with a fresh ``randperm`` per graph and shuffle,
  stacked, handed to ``cocluster_labels`` (which takes ``|W|`` again), and scored with ``clusterability``.
  It is slow, so it runs ``--reference-shuffles`` shuffles; its time is given per shuffle and scaled to N.

Both use the same partitioner code (this checkout's), so the ratio is what the batching buys. The two null
samples are also compared per graph (two-sample Kolmogorov-Smirnov; the thorough check of the null's
distribution is ``tests/test_clustering.py``, with many shuffles on tiny models).

Timing needs a quiet machine: the script prints the load average (``uptime``) before and after beside the
figures, and process CPU time beside wall time.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/shuffle_null.py [--shuffles 100]
        [--reference-shuffles 3] [--workers 2] [--model gemma-3-270m] [--parts mlp] [--k 4] [--balance 0]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
from _timing import timed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _helpers import reference_shuffle_null  # noqa: E402  (the per-shuffle path, kept as the tests' reference)


def load_average() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--parts", default="mlp")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--balance", type=float, default=0.0)
    ap.add_argument("--shuffles", type=int, default=100)
    ap.add_argument("--reference-shuffles", type=int, default=3)
    ap.add_argument("--workers", default="1,2", help="comma-separated thread counts of the batched null, each "
                    "timed (torch ops run single-threaded in each with OMP_NUM_THREADS=1)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()

    from circuitclust.analysis.clustering import partition_model
    from circuitclust.analysis.clustering.null import shuffle_null
    from circuitclust.analysis.clustering.stacks import _weights, tied_groups
    from circuitclust.models import load_model, weight_graphs

    dev = torch.device(args.device)
    model = load_model(args.model, device=args.device)
    parts = tuple(p for p in args.parts.split(",") if p)
    partition = partition_model(model, k=args.k, parts=parts, seed=args.seed, device=dev, balance=args.balance)
    graphs = [g for g in weight_graphs(model, parts=parts) if g.name in partition.graphs]
    w = _weights(graphs, dev)
    n_stacks = len(tied_groups(graphs))
    print(f"{args.model} {args.parts}: {len(graphs)} graphs in {n_stacks} tied stacks, k {args.k}, balance "
          f"{args.balance}; device {dev}, torch threads {torch.get_num_threads()}, OMP_NUM_THREADS "
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}")
    print(f"before: {load_average()}")
    record = {"model": args.model, "parts": args.parts, "k": args.k, "balance": args.balance, "graphs": len(graphs),
              "stacks": n_stacks, "shuffles": args.shuffles, "seed": args.seed, "device": str(dev),
              "load_before": load_average(), "batched": []}

    reference_shuffle_null(graphs, w, partition, 1, args.seed + 1)  # warm-up (allocator, thread pools)
    ref, ref_wall, ref_cpu = timed(lambda: reference_shuffle_null(graphs, w, partition, args.reference_shuffles,
                                                                  args.seed), dev)
    per_ref, per_ref_cpu = ref_wall / args.reference_shuffles, ref_cpu / args.reference_shuffles
    print(f"per-shuffle path: {args.reference_shuffles} shuffles in {ref_wall:.1f} s wall ({ref_cpu:.1f} s CPU): "
          f"{per_ref:.2f} s per shuffle of all {len(graphs)} graphs, {per_ref * args.shuffles:.0f} s for "
          f"{args.shuffles} (scaled)")
    record["reference"] = {"shuffles": args.reference_shuffles, "wall_s": ref_wall, "cpu_s": ref_cpu,
                           "per_shuffle_wall_s": per_ref, "per_shuffle_cpu_s": per_ref_cpu,
                           "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}

    new = None
    for workers in (int(x) for x in args.workers.split(",") if x):
        out, wall, cpu = timed(lambda: shuffle_null(graphs, w, partition, args.shuffles, args.seed,
                                                    workers=workers), dev)
        if new is not None:
            assert all(torch.equal(new[n], out[n]) for n in new), "the null must not depend on the workers"
        new = out
        print(f"batched, {workers} worker(s): {args.shuffles} shuffles of all {len(graphs)} graphs in {wall:.1f} s "
              f"wall ({cpu:.1f} s CPU): {wall / args.shuffles:.3f} s per shuffle; speedup over the per-shuffle "
              f"path x{per_ref * args.shuffles / wall:.1f} wall, x{per_ref_cpu * args.shuffles / cpu:.1f} CPU")
        print(f"  {load_average()}")
        record["batched"].append({"workers": workers, "wall_s": wall, "cpu_s": cpu,
                                  "speedup_wall": per_ref * args.shuffles / wall,
                                  "speedup_cpu": per_ref_cpu * args.shuffles / cpu,
                                  "load": " ".join(f"{x:.2f}" for x in os.getloadavg())})

    # Same null? Per graph, a two-sample Kolmogorov-Smirnov test of the two null samples (the null has heavy
    # right tails, so means in standard errors mislead). Over many graphs a few small p are expected by chance.
    from scipy.stats import ks_2samp

    ks = sorted((float(ks_2samp(new[g.name].numpy(), ref[g.name].numpy()).pvalue), g.name) for g in graphs)
    print(f"same null? KS p per graph, batched vs per-shuffle: smallest {ks[0][0]:.3g} ({ks[0][1]}), median "
          f"{ks[len(ks) // 2][0]:.3g}; {sum(p < 0.01 for p, _ in ks)} of {len(ks)} graphs below 0.01")
    record["ks"] = {"smallest": ks[0][0], "smallest_graph": ks[0][1], "median": ks[len(ks) // 2][0],
                    "below_0.01": sum(p < 0.01 for p, _ in ks), "graphs": len(ks)}
    means = torch.stack([new[g.name].mean() for g in graphs])
    print(f"batched null: mean clusterability {float(means.mean()):.4f} (per graph {float(means.min()):.4f} to "
          f"{float(means.max()):.4f})")
    record["null_mean"] = float(means.mean())
    record["load_after"] = load_average()
    if args.json is not None:
        import json

        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
