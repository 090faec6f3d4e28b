"""Benchmark: circuitclust's spectral co-clustering vs scikit-learn's SpectralCoclustering, in one run.

Cases: a GPT-2-small-shaped (768x3072) and a Gemma-2-2b-shaped (2304x9216) random-plus-structure matrix
(4 planted blocks under random row/column permutations, buried in i.i.d. noise; at the default --noise 3
the structure is weak and the spectrum nearly flat, the hard case for a randomized SVD), and every MLP +
attention graph of a randomly initialised GPT-2 small (transformers GPT2Config(), no download; 72 graphs).

Both methods get |W| and the same k. scikit-learn runs with its defaults: svd_method="randomized"
(1 + ceil(log2 k) singular vectors, 10 oversamples, n_iter="auto" = 7 power iterations, float64),
k-means n_init=10; it has no batch mode, so it runs one graph at a time. circuitclust runs with its
defaults (float32, k singular vectors with the trivial one in closed form, the other k-1 by randomized
block Lanczos: block k, at most SVD_N_ITER = 10 steps of one pass over W each, fewer once its error
bound guarantees a cosine > 0.9999; |W| formed once, the degree scaling applied to the thin factors; k-means++ with
n_init=10 restarts batched, each stopping on its own convergence, on the k-1 informative coordinates)
and batches same-shape graphs. The accuracy of that SVD against the exact one is what benchmarks/svd_accuracy.py
prints.

Accuracy of the SVD, for the single-matrix cases: "energy" is the spectral relaxation's objective captured by
the informative singular vectors each method clusters on, sum_i |An v_i|^2 / sum_i sigma_i^2 (1 = the exact top
vectors; sigma from scipy's ARPACK in float64). scikit-learn clusters on 1 + ceil(log2 k) - 1 informative
vectors (2 for k = 4), circuitclust on k - 1 (3): each is scored against the exact optimum for its own count.
benchmarks/svd_accuracy.py prints the same figure (and subspace cosines) on every stack of a real model.

How to read it: each row gives the median over --repeats of the wall-clock time and of the process CPU
time (all threads) of both methods, their ratios (sklearn / ours: > 1 means circuitclust is faster), and
the clusterability (squared-weight in-cluster fraction; higher is better) of both partitions of the same
matrix, beside the chance level of equal blocks (1/k). On a machine shared with other jobs, wall time
is inflated by preemption for both methods alike; the CPU-time ratio is the steadier figure with
--threads 1 (one thread does all the work), while with several threads it compares total work, not
latency. Pin threads (--threads) to compare like with like: both libraries get the same limit.
The model case runs --model-repeats times (sklearn takes tens of seconds there).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/partition.py [--device cuda] [--threads 1] [--k 4]
        [--repeats 3] [--model-repeats 1] [--skip-model] [--svd-n-iter 10]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from _timing import median_timed


def planted(n_in: int, n_out: int, k: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, k, (n_in,), generator=g)
    c = torch.randint(0, k, (n_out,), generator=g)
    signal = (r[:, None] == c[None, :]) * torch.randn(n_in, n_out, generator=g)
    return 0.02 * (noise * torch.randn(n_in, n_out, generator=g) + signal)


def svd_energy(w: torch.Tensor, k: int, n_iter: int) -> tuple[float, float]:
    """(circuitclust, scikit-learn) share of the exact top singular values' energy that their informative right
    singular vectors of Dhillon's ``An`` (of ``|w|``) capture, each with its own number of vectors."""
    import math

    from scipy.sparse.linalg import svds
    from sklearn.utils.extmath import randomized_svd

    from circuitclust.core.cocluster import SVD_TOL, informative_vectors
    from circuitclust.core.normalised_graph import NormalisedGraph

    graph = NormalisedGraph(w[None], 1)
    an = graph.dense()[0].double()
    n_sk = 1 + int(math.ceil(math.log2(k)))  # sklearn's n_svd_vecs rule, first one discarded
    exact = np.sort(svds(an.numpy(), k=max(k, n_sk) + 1, return_singular_vectors=False))[::-1]

    def energy(v: torch.Tensor) -> float:  # v [n, c]: informative vectors 1..c
        vq = torch.linalg.qr(v.double()).Q
        return float(((an @ vq) ** 2).sum() / float((exact[1:1 + v.shape[1]] ** 2).sum()))

    _, v = informative_vectors(graph, k - 1, n_iter=n_iter, svd_tol=SVD_TOL, generator=torch.Generator().manual_seed(0))
    _, _, vt = randomized_svd(an.numpy(), n_sk, random_state=0)  # exactly sklearn's call (defaults)
    return energy(v[0]), energy(torch.as_tensor(vt[1:].T.copy()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch and BLAS/OpenMP threads for both libraries")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--noise", type=float, default=3.0, help="noise / signal ratio of the planted matrices")
    ap.add_argument("--repeats", type=int, default=3, help="repeats of the single-matrix cases (median)")
    ap.add_argument("--model-repeats", type=int, default=3,
                    help="repeats of the GPT-2 model case (median; the two methods alternate)")
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--seeds", type=int, default=5, help="seeds for the (untimed) clusterability spread of the "
                    "single-matrix cases")
    ap.add_argument("--svd-n-iter", type=int, default=None,
                    help="block Lanczos step cap for circuitclust (default: the library's SVD_N_ITER)")
    args = ap.parse_args()

    from sklearn.cluster import SpectralCoclustering
    from threadpoolctl import threadpool_limits

    from circuitclust.core.cocluster import SVD_N_ITER, cocluster_labels
    from circuitclust.core.measures import clusterability

    if args.threads:
        torch.set_num_threads(args.threads)
    limit = threadpool_limits(args.threads) if args.threads else None  # numpy/scipy BLAS and sklearn OpenMP
    dev = torch.device(args.device)
    k = args.k
    n_iter = args.svd_n_iter or SVD_N_ITER
    print(f"device {dev}, torch threads {torch.get_num_threads()}, BLAS/OpenMP limit {args.threads or 'default'}, "
          f"k {k}, median of {args.repeats} (model case: {args.model_repeats}), block Lanczos cap {n_iter} steps")

    def ours(ws: torch.Tensor, seed: int = 0):
        return cocluster_labels(ws.to(dev), k, seed=seed, n_iter=n_iter)

    def sk(w: np.ndarray, seed: int = 0):
        m = SpectralCoclustering(k, random_state=seed).fit(w)  # defaults: svd_method="randomized", n_init=10
        return torch.as_tensor(m.row_labels_), torch.as_tensor(m.column_labels_)

    rows, seed_rows = [], []
    for name, shape in (("gpt2-small mlp", (768, 3072)), ("gemma-2-2b mlp", (2304, 9216))):
        w = planted(*shape, k, args.noise)
        ours(w[None])  # warm-up (allocator, thread pool)
        wo, co, (r, c) = median_timed(lambda: ours(w[None]), args.repeats, dev)
        c_ours = float(clusterability(w, r[0].cpu(), c[0].cpu()))
        wn = w.abs().numpy()
        sk(wn)  # warm-up for sklearn too (its first call here was up to 2x slower: imports, allocator)
        ws_, cs_, (rs, cs) = median_timed(lambda: sk(wn), args.repeats, dev)
        c_sk = float(clusterability(w, rs, cs))
        rows.append((f"{name} {shape[0]}x{shape[1]}", wo, ws_, co, cs_, c_ours, c_sk, *svd_energy(w, k, n_iter)))
        # One seed's clusterability differs between two good partitions by k-means' luck; over several seeds
        # (untimed) it shows whether one method is systematically better.
        cs_o = [c_ours] + [float(clusterability(w, *(t[0].cpu() for t in ours(w[None], sd))))
                           for sd in range(1, args.seeds)]
        cs_s = [c_sk] + [float(clusterability(w, *sk(wn, sd))) for sd in range(1, args.seeds)]
        seed_rows.append((f"{name} {shape[0]}x{shape[1]}", cs_o, cs_s))

    if not args.skip_model:
        from transformers import GPT2Config, GPT2LMHeadModel

        from circuitclust.analysis.clustering import partition_model
        from circuitclust.models import weight_graphs

        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config()).eval()
        graphs = weight_graphs(model, parts=("mlp", "attn"))
        with torch.no_grad():
            ws = {g.name: g.weight.detach().float().contiguous() for g in graphs}
        by_shape: dict[tuple, list[str]] = {}
        for g in graphs:
            by_shape.setdefault(tuple(g.shape), []).append(g.name)

        def ours_all():
            labels = {}
            for names in by_shape.values():
                r, c = ours(torch.stack([ws[n] for n in names]))
                labels.update({n: (r[i].cpu(), c[i].cpu()) for i, n in enumerate(names)})
            return labels

        def sk_all():
            return {n: sk(w.abs().numpy()) for n, w in ws.items()}

        ours_all(), sk_all()  # warm-up: first touches of these sizes' buffers
        timings = [(median_timed(ours_all, 1, dev), median_timed(sk_all, 1, dev))
                   for _ in range(args.model_repeats)]
        wo, co = (float(np.median([t[0][i] for t in timings])) for i in (0, 1))
        ws_, cs_ = (float(np.median([t[1][i] for t in timings])) for i in (0, 1))
        lab_o, lab_s = timings[-1][0][2], timings[-1][1][2]
        mean_c = lambda lab: float(np.mean([float(clusterability(ws[n], *lab[n])) for n in ws]))  # noqa: E731
        rows.append((f"gpt2-small all {len(graphs)} graphs (untied)", wo, ws_, co, cs_, mean_c(lab_o), mean_c(lab_s),
                     float("nan"), float("nan")))
        wt, ct, _ = median_timed(lambda: partition_model(model, k=k, parts=("mlp", "attn"), device=dev),
                                 args.model_repeats, dev)
        print(f"circuitclust tied partition_model (mlp+attn, {len(graphs)} graphs): wall {wt:.3f} s, cpu {ct:.3f} s")
    if limit is not None:
        limit.restore_original_limits()

    print(f"{'case':42s} {'wall ours':>9s} {'wall sk':>8s} {'ratio':>6s} {'cpu ours':>9s} {'cpu sk':>7s} {'ratio':>6s} "
          f"{'C ours':>7s} {'C sk':>7s} {'chance':>6s} {'energy ours':>11s} {'energy sk':>9s}")
    for name, wo, ws_, co, cs_, c_o, c_s, e_o, e_s in rows:
        print(f"{name:42s} {wo:9.3f} {ws_:8.3f} {ws_ / wo:5.1f}x {co:9.3f} {cs_:7.3f} {cs_ / co:5.1f}x "
              f"{c_o:7.4f} {c_s:7.4f} {1 / k:6.3f} {e_o:11.4f} {e_s:9.4f}")
    print(f"\nclusterability over seeds 0..{args.seeds - 1} (untimed): mean, sd, min, max")
    for name, cs_o, cs_s in seed_rows:
        print(f"{name:42s} ours {np.mean(cs_o):.4f} sd {np.std(cs_o):.4f} [{min(cs_o):.4f}, {max(cs_o):.4f}]   "
              f"sklearn {np.mean(cs_s):.4f} sd {np.std(cs_s):.4f} [{min(cs_s):.4f}, {max(cs_s):.4f}]")


if __name__ == "__main__":
    main()
