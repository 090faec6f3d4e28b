"""Benchmark: the accuracy the co-clusterer's randomized SVD trades for speed, in one run.

For every tied stack that ``circuitclust cluster`` co-clusters with the randomized SVD (smaller side > 512) of
a model (default: the embedded Gemma 3 270M; ``--model tiny-gemma`` etc. work too), and for two planted
noise matrices of the benchmarks/partition.py shapes, it forms Dhillon's normalised ``An`` (float64), takes
the exact SVD, and compares the k-1 informative singular vectors (the trivial pair is known in closed form
and deflated by both methods) found by

- block Lanczos (what ``cocluster`` uses now: block k, ``n_iter`` steps of one pass over W each), at
  several step counts with the early stop off, and with ``cocluster``'s defaults (at most ``SVD_N_ITER``
  steps, stopping early once the error bound is below ``SVD_TOL``), and
- subspace (power) iteration (what ``cocluster`` used before: 2(k-1)+10 sketch vectors, 6 iterations,
  early stop at 1e-3), for reference.

Three accuracies per method, each the worst over the seeds:

- cos: the cosine of the largest principal angle between the found and the exact subspace (the worse of
  left and right; 1 = exact). Where sigma_{k-1} and sigma_k of ``An`` nearly coincide (printed as the
  relative gap) the k-th vector is not determined and no method pins it down; the planted noise matrices are
  such cases by construction (their spectrum is flat). Then cos can be low although the found subspace is as
  good an answer to the spectral relaxation as the exact one, which is what the next two figures check.
- energy: the relaxation's objective, ``sum_i |An v_i|^2 / sum_i sigma_i^2`` over the k-1 informative
  vectors (1 = as much as the exact top k-1; Musco & Musco 2015's per-vector guarantee is of this kind).
- dC: clusterability (squared-weight in-cluster fraction, what ``circuitclust cluster`` reports) of the
  partition built from the found embedding minus that from the exact SVD's, k-means with the same seed
  (0 = the same quality; positive = better). Printed in the summary, with its spread over the stacks.

Time = process CPU time of the SVD alone.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/svd_accuracy.py [--model gemma-3-270m]
        [--k 4] [--threads 1] [--max-stacks 0] [--steps 4,5,6,8] [--seeds 2] [--match attn.6,attn_qk.3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def normalised(w: torch.Tensor) -> torch.Tensor:
    """Dhillon's ``An`` of ``|w|`` in float64 ``[1, m, n]``, the reference for the exact SVD."""
    from circuitclust.core.normalised_graph import NormalisedGraph

    return NormalisedGraph(w.double()[None], 1, dtype=torch.float64).dense()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-stacks", type=int, default=0, help="at most this many model stacks per shape (0: all)")
    ap.add_argument("--steps", default="4,5,6,8", help="block Lanczos step counts to compare, each optionally "
                    "with a block size as STEPS:BLOCK (default block k), e.g. 10,5:8")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--match", default="", help="comma-separated tied spaces to keep (e.g. attn.6,attn_qk.3; "
                    "default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from circuitclust.analysis.clustering.stacks import _oriented, _weights, tied_groups
    from circuitclust.core.cocluster import SVD_N_ITER, SVD_TOL, informative_vectors, scaled_embedding, trivial_pair
    from circuitclust.core.kmeans import kmeans
    from circuitclust.core.measures import clusterability
    from circuitclust.core.normalised_graph import NormalisedGraph
    from circuitclust.core.svd import EXACT_MAX_SIDE, randomized_svd, subspace_cosines
    from circuitclust.models import load_model, weight_graphs

    k = args.k
    steps = [tuple(int(x) for x in (s.split(":") + [str(args.k)])[:2]) for s in args.steps.split(",")]
    cases: list[tuple[str, torch.Tensor]] = []
    g = torch.Generator().manual_seed(0)
    for shape in ((768, 3072), (2304, 9216)):
        r, c = torch.randint(0, k, (shape[0],), generator=g), torch.randint(0, k, (shape[1],), generator=g)
        w = 3 * torch.randn(*shape, generator=g) + (r[:, None] == c[None, :]) * torch.randn(*shape, generator=g)
        cases.append((f"planted noise {shape[0]}x{shape[1]}", w))
    t0 = time.perf_counter()
    model = load_model(args.model)
    print(f"loaded {args.model} in {time.perf_counter() - t0:.1f} s")
    graphs = weight_graphs(model, parts=("mlp", "attn"))
    w = _weights(graphs, "cpu")
    per_shape: dict[tuple, int] = {}
    for space, members in tied_groups(graphs).items():
        stack = torch.cat([_oriented(m, w[m.name]) for m in members], 1).contiguous()
        if min(stack.shape) <= EXACT_MAX_SIDE:
            continue  # the exact SVD handles these
        if args.match and space not in args.match.split(","):
            continue
        per_shape[tuple(stack.shape)] = per_shape.get(tuple(stack.shape), 0) + 1
        if args.max_stacks and per_shape[tuple(stack.shape)] > args.max_stacks:
            continue
        cases.append((f"{args.model} {space} {stack.shape[0]}x{stack.shape[1]}", stack))
    del model

    methods = [(f"lanczos n_iter={s} block {b}", (s, 0.0, b)) for s, b in steps] + [
        (f"default {SVD_N_ITER} tol {SVD_TOL:g}", (SVD_N_ITER, SVD_TOL, k)), ("subspace iter. (old)", None)]
    rows: dict[str, list] = {name: [] for name, _ in methods}

    def partition_c(w, graph, uu, vv) -> float:
        """C of the co-clustering from informative vectors uu [1, m, k-1], vv [1, n, k-1] (as cocluster)."""
        z, active = scaled_embedding(graph, uu.float(), vv.float())
        lab = kmeans(z, k, n_init=10, generator=torch.Generator().manual_seed(0),
                     sample_weight=active.float()).labels[0]
        return float(clusterability(w, lab[:w.shape[0]], lab[w.shape[0]:]))

    print(f"k {k}, torch threads {torch.get_num_threads()}, {len(cases)} matrices, {args.seeds} seeds each")
    print("each cell: cos, energy, dC (worst of the seeds), median CPU time of the SVD")
    print(f"{'matrix':44s} {'rel.gap':>7s} " + " ".join(f"{n:>31s}" for n, _ in methods))
    for name, w in cases:
        an = normalised(w)
        u, s, vh = torch.linalg.svd(an, full_matrices=False)
        ue, ve = u[:, :, 1:k], vh[:, 1:k].transpose(1, 2)
        top = float((s[0, 1:k] ** 2).sum())
        gap = float((s[0, k - 1] - s[0, k]) / s[0, k - 1])
        graph = NormalisedGraph(w[None], 1)
        c_exact = partition_c(w, graph, ue, ve)
        cells = []
        for mname, st in methods:
            cos, cpu, energy, dc = [], [], [], []
            for seed in range(args.seeds):
                gen = torch.Generator().manual_seed(seed)
                c0 = time.process_time()
                if st is None:
                    a32 = graph.dense()  # the old path materialised An
                    uu, _, vv = randomized_svd(a32, k - 1, n_iter=6, generator=gen, tol=1e-3,
                                               deflate=trivial_pair(graph))
                else:
                    uu, vv = informative_vectors(graph, k - 1, n_iter=st[0], svd_tol=st[1],
                                                 oversample=st[2] - (k - 1), generator=gen)
                cpu.append(time.process_time() - c0)
                cos.append(min(float(subspace_cosines(ue, uu.double())[0, -1]),
                               float(subspace_cosines(ve, vv.double())[0, -1])))
                vq = torch.linalg.qr(vv.double()).Q  # the subspace found (Ritz vectors are orthonormal anyway)
                energy.append(float((torch.bmm(an, vq) ** 2).sum()) / top)
                dc.append(partition_c(w, graph, uu, vv) - c_exact)
            rows[mname].append((min(cos), float(np.median(cpu)), min(energy), min(dc)))
            cells.append(f"{min(cos):.3f} {min(energy):.5f} {min(dc):+.4f} {np.median(cpu) * 1e3:6.1f}ms")
        print(f"{name:44s} {gap:7.4f} " + " ".join(f"{c:>31s}" for c in cells), flush=True)
    print("\nsummary over the model stacks (worst of the seeds per matrix): cosine median / 10th percentile / min; "
          "energy min; dC min / median / max; total CPU")
    model_idx = [i for i, (n, _) in enumerate(cases) if not n.startswith("planted")]
    for mname, _ in methods:
        v = np.array([rows[mname][i][0] for i in model_idx]) if model_idx else np.array([np.nan])
        t = sum(rows[mname][i][1] for i in model_idx) if model_idx else float("nan")
        e = np.array([rows[mname][i][2] for i in model_idx]) if model_idx else np.array([np.nan])
        d = np.array([rows[mname][i][3] for i in model_idx]) if model_idx else np.array([np.nan])
        print(f"  {mname:22s} cos median {np.median(v):.4f}  p10 {np.percentile(v, 10):.4f}  min {v.min():.4f}  "
              f"energy min {e.min():.5f}  dC min {d.min():+.4f} median {np.median(d):+.4f} max {d.max():+.4f}  "
              f"cpu {t:.2f} s")


if __name__ == "__main__":
    main()
