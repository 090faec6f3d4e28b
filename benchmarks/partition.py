"""Benchmark: circuitclust's spectral co-clustering vs scikit-learn's SpectralCoclustering, in one run.

Cases: a GPT-2-small-shaped (768x3072) and a Gemma-2-2b-shaped (2304x9216) random-plus-structure matrix
(4 planted blocks under random row/column permutations, buried in i.i.d. noise), and every MLP + attention
graph of a randomly initialised GPT-2 small (transformers GPT2Config(), no download; 72 graphs). Both
methods get |W| and k clusters; time (best of --repeats) and clusterability (squared-weight in-cluster
fraction) are printed with the ratios. sklearn runs one graph at a time (it has no batch mode);
circuitclust batches same-shape graphs.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/partition.py [--device cuda] [--threads 1] [--k 4]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def planted(n_in: int, n_out: int, k: int, noise: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, k, (n_in,), generator=g)
    c = torch.randint(0, k, (n_out,), generator=g)
    signal = (r[:, None] == c[None, :]) * torch.randn(n_in, n_out, generator=g)
    return 0.02 * (noise * torch.randn(n_in, n_out, generator=g) + signal)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fn, repeats: int, device: torch.device):
    best, out = float("inf"), None
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch and BLAS/OpenMP threads for both libraries")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--noise", type=float, default=3.0, help="noise / signal ratio of the planted matrices")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip-model", action="store_true")
    args = ap.parse_args()

    from sklearn.cluster import SpectralCoclustering
    from threadpoolctl import threadpool_limits

    from circuitclust.core.cocluster import cocluster_labels
    from circuitclust.core.measures import clusterability

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    k = args.k
    print(f"device {dev}, torch threads {torch.get_num_threads()}, k {k}, best of {args.repeats}")

    def ours(ws: torch.Tensor):
        return cocluster_labels(ws.to(dev), k, seed=0)

    def sk(w: np.ndarray):
        m = SpectralCoclustering(k, random_state=0).fit(w)
        return torch.as_tensor(m.row_labels_), torch.as_tensor(m.column_labels_)

    limit = threadpool_limits(args.threads) if args.threads else None
    rows = []
    for name, shape in (("gpt2-small mlp", (768, 3072)), ("gemma-2-2b mlp", (2304, 9216))):
        w = planted(*shape, k, args.noise)
        t_ours, (r, c) = best_of(lambda: ours(w[None]), args.repeats, dev)
        c_ours = float(clusterability(w, r[0].cpu(), c[0].cpu()))
        wn = w.abs().numpy()
        t_sk, (rs, cs) = best_of(lambda: sk(wn), args.repeats, dev)
        c_sk = float(clusterability(w, rs, cs))
        rows.append((f"{name} {shape[0]}x{shape[1]}", t_ours, t_sk, c_ours, c_sk))

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

        t_ours, lab_o = best_of(ours_all, 1, dev)
        t_sk, lab_s = best_of(sk_all, 1, dev)
        mean_c = lambda lab: float(np.mean([float(clusterability(ws[n], *lab[n])) for n in ws]))  # noqa: E731
        rows.append((f"gpt2-small all {len(graphs)} graphs (untied)", t_ours, t_sk, mean_c(lab_o), mean_c(lab_s)))
        t_tied, _ = best_of(lambda: partition_model(model, k=k, parts=("mlp", "attn"), device=dev), 1, dev)
        print(f"circuitclust tied partition_model (mlp+attn, {len(graphs)} graphs): {t_tied:.3f} s")
    if limit is not None:
        limit.unregister() if hasattr(limit, "unregister") else None

    print(f"{'case':44s} {'ours s':>8s} {'sklearn s':>9s} {'speed-up':>8s} {'C ours':>8s} {'C sklearn':>9s}")
    for name, to, ts, co, cs in rows:
        print(f"{name:44s} {to:8.3f} {ts:9.3f} {ts / to:7.1f}x {co:8.4f} {cs:9.4f}")


if __name__ == "__main__":
    main()
