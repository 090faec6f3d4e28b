"""Time all-pairs GW between the layers of the embedded Gemma 3 270M (18 residual-stream layers, 153 pairs)
at n = 256 and n = 1024 token positions, exact (POT conditional gradient, the baseline) vs entropic (POT's
batched proximal solver), plus linear CKA for scale.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/similarity.py [--device cuda] [--max-pairs K]

``--max-pairs K`` times only the first K layer pairs and extrapolates to all 153 (marked "extrap" in the table):
on a small shared CPU the n = 1024 runs take hours. On a machine with few cores and other jobs running, set
OMP_NUM_THREADS=1: torch's OpenMP threads spinning against other processes made logsumexp 50x slower here.
"""
from __future__ import annotations

import argparse
import time

import torch


def _texts() -> list[str]:
    try:
        from circuitclust.data import load_corpus

        return list(load_corpus("wiki", split="train")["text"])
    except Exception as e:  # the data module is being written in parallel; read the bundled files directly
        import json

        from circuitclust.resources import data_dir

        print(f"(load_corpus failed: {e!r}; reading data/wiki/*.jsonl train rows directly)")
        return [r["text"] for f in sorted((data_dir() / "wiki").glob("*.jsonl"))
                for r in map(json.loads, f.read_text().splitlines()) if r.get("split", "train") == "train"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--ns", default="256,1024")
    ap.add_argument("--solvers", default="exact,entropic")
    ap.add_argument("--max-pairs", type=int, default=0, help="time only this many pairs and extrapolate (0 = all)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from circuitclust.analysis.similarity import (collect_representations, resolve_hooks, sample_positions,
                                                  tokenize_prompts)
    from circuitclust.core.similarity import cka_matrix, gw_paired, pairwise_distances
    from circuitclust.models import load_model

    device = torch.device(args.device)
    t0 = time.perf_counter()
    model = load_model(args.model, device=device)
    print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s on {device}; torch threads "
          f"{torch.get_num_threads()}")
    hooks = resolve_hooks(model, None)
    tokens, valid = tokenize_prompts(model.tokenizer, _texts(), max_tokens=128)
    n_layers = len(hooks)
    ij = torch.triu_indices(n_layers, n_layers, offset=1)
    n_pairs = ij.shape[1]
    rows = []
    for n in [int(v) for v in args.ns.split(",")]:
        positions = sample_positions(valid, n, args.seed)
        t = time.perf_counter()
        reps = collect_representations(model, tokens, positions, hooks, batch_size=8)
        t_fwd = time.perf_counter() - t
        t = time.perf_counter()
        dists = torch.stack([pairwise_distances(r) for r in reps])
        t_dist = time.perf_counter() - t
        t = time.perf_counter()
        cka_matrix(reps)
        t_cka = time.perf_counter() - t
        print(f"n={n}: activations {t_fwd:.1f} s, {n_layers} distance matrices {t_dist:.2f} s, "
              f"all-pairs CKA {t_cka:.2f} s")
        k = n_pairs if args.max_pairs <= 0 else min(args.max_pairs, n_pairs)
        base = None
        for solver in args.solvers.split(","):
            left = [dists[i] for i in ij[0, :k].tolist()]
            right = [dists[j] for j in ij[1, :k].tolist()]
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            vals = gw_paired(left, right, solver=solver)
            if device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t
            total = dt * n_pairs / k
            base = total if solver == "exact" else base
            ratio = f"{base / total:.2f}x" if base else "-"
            rows.append((n, solver, k, dt, total, "all" if k == n_pairs else "extrap", ratio,
                         float(vals.mean()), float(vals.max())))
            print(f"  {solver:9s} {k} pairs {dt:.1f} s -> {total:.1f} s for {n_pairs} pairs "
                  f"({'measured' if k == n_pairs else 'extrapolated'}); speed-up vs exact {ratio}; "
                  f"mean GW {float(vals.mean()):.4f}")
    print("\nn     solver     pairs timed  time(s)  all-pairs(s)  kind    speed-up vs exact  mean GW  max GW")
    for r in rows:
        print(f"{r[0]:<5d} {r[1]:10s} {r[2]:<11d} {r[3]:<8.1f} {r[4]:<13.1f} {r[5]:7s} {r[6]:18s} {r[7]:.4f}   {r[8]:.4f}")


if __name__ == "__main__":
    main()
