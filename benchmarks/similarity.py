"""Time all-pairs GW between the layers of the embedded Gemma 3 270M (18 residual-stream layers, 153 pairs) at
n = 256 and n = 1024 token positions: the exact solver (multi-start POT conditional gradient from the default
starts p q^T, identity, distance profile, 2 random vertices) vs the entropic solver (POT's batched proximal
solver, relative epsilon, cost tolerance), on the CPU and, when a CUDA device exists, on the GPU through
POT's torch backend; plus the baseline (CG from p q^T only), optionally exact with the opt-in entropic-plan
start, and how far the solvers' distance matrices differ. ``--old-entropic-pairs K`` also times the previous
entropic configuration (absolute epsilon 0.01, 200 outer x 20 inner iterations, no effective stop) on K pairs
at the smallest n, for the per-pair before/after CPU time.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/similarity.py [--max-pairs 256:153,1024:3]
        [--devices cpu,cuda] [--cache-dir DIR] [--old-entropic-pairs 4]

Every row prints wall time AND process CPU time (all threads of this process; on a shared machine wall time is
polluted by other jobs, CPU time much less). ``--max-pairs n:K`` times K layer pairs evenly spread over the 153
(so layer 0's pairs, the hardest, are not over-represented) and extrapolates linearly to all 153: those rows
say "extrap". Differences between solvers are computed on the pairs that were solved. ``--cache-dir`` keeps
the [L, n, n] distance matrices so a re-run skips Gemma's forward passes. On a machine with few cores and other
jobs running keep OMP_NUM_THREADS small: torch's OpenMP threads spinning against other processes made
logsumexp 50x slower here.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

VARIANTS = {  # name -> (solver, starts); None = the library default EXACT_STARTS
    "entropic": ("entropic", None),
    "exact": ("exact", None),  # default multi-start: product, identity, profile, random, random
    "exact+entropic-start": ("exact", ("product", "identity", "profile", "random", "random", "entropic")),
    "exact-product (baseline)": ("exact", ("product",)),
}
DEFAULT_VARIANTS = "entropic,exact,exact-product (baseline)"


def _old_entropic(left, right) -> torch.Tensor:
    """The previous entropic configuration (before relative epsilon and the cost tolerance), for timing."""
    import warnings

    import ot

    from circuitclust.core.gw import _gw_loss_to_distance, gw_cost, round_to_coupling

    a, b = torch.stack(left), torch.stack(right)
    n = a.shape[1]
    p = torch.full((a.shape[0], n), 1.0 / n, dtype=a.dtype, device=a.device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ot.batch.solve_gromov_batch(a, b, reg=1e-2, a=p, b=p, symmetric=True, max_iter=200, tol=1e-4 / (n * n),
                                          max_iter_inner=20, tol_inner=1e-6, grad="detach")
    return _gw_loss_to_distance(gw_cost(a, b, round_to_coupling(torch.as_tensor(res.plan).to(a), p, p)))


def _distances(args, n: int, model_box: dict) -> torch.Tensor:
    from circuitclust.analysis.similarity import (collect_representations, load_prompts, resolve_hooks,
                                                  sample_positions, tokenize_prompts)
    from circuitclust.core.distances import pairwise_distances
    from circuitclust.models import load_model

    cache = None if not args.cache_dir else Path(args.cache_dir) / f"dists_{args.model}_n{n}_seed{args.seed}.pt"
    if cache is not None and cache.is_file():
        print(f"n={n}: distance matrices read from {cache}")
        return torch.load(cache)["dists"]
    if "model" not in model_box:
        t0 = time.perf_counter()
        model_box["model"] = load_model(args.model, device="cpu")
        print(f"model {args.model} loaded in {time.perf_counter() - t0:.1f} s")
    model = model_box["model"]
    texts, _ = load_prompts("wiki", split="train")
    tokens, valid = tokenize_prompts(model.tokenizer, texts, max_tokens=128)
    hooks = resolve_hooks(model, None)
    w, c = time.perf_counter(), time.process_time()
    reps = collect_representations(model, tokens, sample_positions(valid, n, args.seed), hooks, batch_size=8)
    dists = torch.stack([pairwise_distances(r) for r in reps])
    print(f"n={n}: activations + {len(hooks)} distance matrices {time.perf_counter() - w:.1f} s wall, "
          f"{time.process_time() - c:.1f} s CPU")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"dists": dists}, cache)
    return dists


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--devices", default="cpu,cuda", help="cuda rows are skipped when no CUDA device exists")
    ap.add_argument("--ns", default="256,1024")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--max-pairs", default="256:153,1024:3", help="n:K pairs timed per n (K >= 153 = all)")
    ap.add_argument("--old-entropic-pairs", type=int, default=4,
                    help="pairs (spread) timed with the previous entropic configuration at the smallest n (0 = skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache-dir", default="")
    args = ap.parse_args()

    from circuitclust.core.gw import EXACT_STARTS, gw_paired_starts, start_summary

    limits = {int(a): int(b) for a, b in (kv.split(":") for kv in args.max_pairs.split(","))}
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    print(f"torch threads {torch.get_num_threads()}; devices {devices}; exact starts {EXACT_STARTS}")
    rows, box = [], {}
    for n in [int(v) for v in args.ns.split(",")]:
        dists = _distances(args, n, box)
        n_layers = dists.shape[0]
        ij = torch.triu_indices(n_layers, n_layers, offset=1)
        n_pairs = ij.shape[1]
        k = min(limits.get(n, n_pairs), n_pairs)
        pick = torch.linspace(0, n_pairs - 1, k).round().long().unique()
        k = pick.numel()
        pairs = ij[:, pick]
        kind = "all" if k == n_pairs else "extrap"
        print(f"n={n}: timing {k} of {n_pairs} pairs ({kind}): {[tuple(p) for p in pairs.T.tolist()]}")
        for device in devices:
            d = dists.to(device)
            left, right = [d[i] for i in pairs[0].tolist()], [d[j] for j in pairs[1].tolist()]
            vals = {}
            if args.old_entropic_pairs and n == min(int(v) for v in args.ns.split(",")):
                sub = torch.linspace(0, k - 1, min(args.old_entropic_pairs, k)).round().long().unique().tolist()
                c = time.process_time()
                old = _old_entropic([left[i] for i in sub], [right[i] for i in sub])
                per = (time.process_time() - c) / len(sub)
                rows.append((n, device, "entropic-old (before)", len(sub), "extrap", float("nan"), per * len(sub),
                             float("nan"), per * n_pairs, float(old.mean()), float(old.max())))
                names = [tuple(pairs[:, i].tolist()) for i in sub]
                print(f"  {device} entropic-old (before) {len(sub)} pairs {names}: "
                      f"{per:.2f} s CPU per pair -> all {n_pairs}: {per * n_pairs:.1f} s CPU (extrap); "
                      f"values {[round(v, 4) for v in old.tolist()]}", flush=True)
                vals["_old"], vals["_old_idx"] = old.double().cpu(), sub
            for name in args.variants.split(","):
                solver, starts = VARIANTS[name]
                if device == "cuda":
                    torch.cuda.synchronize()
                w, c = time.perf_counter(), time.process_time()
                v, per = gw_paired_starts(left, right, solver=solver, starts=starts or EXACT_STARTS, seed=args.seed)
                if device == "cuda":
                    torch.cuda.synchronize()
                wall, cpu = time.perf_counter() - w, time.process_time() - c
                vals[name] = v.double().cpu()
                extra = ""
                if per is not None and starts is None:
                    extra = f"; starts that won: {start_summary(EXACT_STARTS, per)['wins']}"
                rows.append((n, device, name, k, kind, wall, cpu, wall * n_pairs / k, cpu * n_pairs / k,
                             float(v.mean()), float(v.max())))
                print(f"  {device} {name:25s} {k} pairs: {wall:.1f} s wall, {cpu:.1f} s CPU ({cpu / k:.2f} s CPU "
                      f"per pair) -> all {n_pairs}: "
                      f"{wall * n_pairs / k:.1f} s wall, {cpu * n_pairs / k:.1f} s CPU ({kind}); "
                      f"mean GW {float(v.mean()):.4f}{extra}", flush=True)
            if "exact" in vals and "entropic" in vals:
                diff = vals["exact"] - vals["entropic"]
                print(f"  {device} exact - entropic over {k} pairs: max |diff| {float(diff.abs().max()):.4f}, mean "
                      f"{float(diff.mean()):.4f}; exact lower on {int((diff < -1e-9).sum())}, above on "
                      f"{int((diff > 1e-9).sum())} (the default exact starts do not include the entropic plan)")
                if "_old" in vals:
                    sub = vals["_old_idx"]
                    print(f"  {device} on the {len(sub)} 'before' pairs: exact "
                          f"{[round(vals['exact'][i].item(), 4) for i in sub]}, "
                          f"entropic now {[round(vals['entropic'][i].item(), 4) for i in sub]}, entropic before "
                          f"{[round(v, 4) for v in vals['_old'].tolist()]}")
            if "exact" in vals and "exact-product (baseline)" in vals:
                gain = vals["exact-product (baseline)"] - vals["exact"]
                print(f"  {device} baseline (p q^T start only) - multi-start: max {float(gain.max()):.4f}, mean "
                      f"{float(gain.mean()):.4f}; multi-start lower on {int((gain > 1e-9).sum())} of {k} pairs")
    print("\n(CPU time = process_time of this process, all its threads; wall time is polluted on a shared machine)")
    print("n     device variant                    pairs kind    wall(s) cpu(s)  all-pairs wall(s) all-pairs cpu(s) "
          "speed-up vs baseline (cpu)  mean GW  max GW")
    base = {(r[0], r[1]): r[8] for r in rows if r[2].startswith("exact-product")}
    for r in rows:
        ratio = f"{base[(r[0], r[1])] / r[8]:.2f}x" if (r[0], r[1]) in base and r[8] > 0 else "-"
        print(f"{r[0]:<5d} {r[1]:6s} {r[2]:26s} {r[3]:<5d} {r[4]:7s} {r[5]:<7.1f} {r[6]:<7.1f} {r[7]:<17.1f} "
              f"{r[8]:<16.1f} {ratio:26s} {r[9]:.4f}   {r[10]:.4f}")


if __name__ == "__main__":
    main()
