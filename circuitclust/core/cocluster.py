"""Bipartite spectral co-clustering (Dhillon 2001) of weight matrices, batched, on any torch device.

For ``W`` ``[n_in, n_out]``: ``A = |W|`` (``power=1``) or ``W**2`` (``power=2``); ``D_r``, ``D_c`` = row and
column sums; ``An = D_r^-1/2 A D_c^-1/2``; ``U``, ``V`` = its top ``n_vectors`` singular vectors (default
``k``, the trivial first pair included: after scaling it is constant over all units, so it does not move
k-means, and when the graph falls apart into components it carries exactly that split);
``Z = [D_r^-1/2 U ; D_c^-1/2 V]``; ONE k-means over the stacked rows of ``Z``, so row cluster ``i`` and
column cluster ``i`` are the same co-cluster by construction. ``A`` is formed once and ``An`` is
applied through it in cache-sized row blocks, never materialised
(:class:`~circuitclust.core.normalised_graph.NormalisedGraph`).

Zero rows / columns (isolated units): they carry no weight, so no label changes any clusterability. They are
left out of the embedding and of the k-means fit (weight 0) and get the label of the centre nearest the
origin, which is where their (zero) embedding lies; never NaN. A matrix with no non-zero entry, or fewer
non-isolated units than ``k``, raises :class:`~circuitclust.errors.CircuitclustError`.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import CircuitclustError, OptionError, check_float
from .kmeans import kmeans, rebalance
from .partition import Partition
from .normalised_graph import NormalisedGraph
from .svd import block_lanczos_svd, exact_svd, resolve_method

#: Default early-stop tolerance of the randomized (block Lanczos) SVD: stop once the a-posteriori bound on
#: the sine of the angle between every wanted singular vector and the exact one is below it (see
#: :func:`~circuitclust.core.svd.block_lanczos_svd`). The bound is conservative (measured on the embedded
#: Gemma 3 270M MLP stacks: 0.03 while the subspace cosine vs float64 exact SVD was already 0.9999), so
#: it only ends easy (well-separated) cases early; the accuracy is otherwise set by ``n_iter``
#: (benchmarks/svd_accuracy.py prints the trade).
SVD_TOL = 1e-2

#: Default maximum number of block Lanczos steps. A sine bound below ``SVD_TOL`` means a cosine above
#: 0.99995, so the early stop never costs accuracy; this cap sets the accuracy where the bound is not met
#: (nearly degenerate sigma_k, sigma_k+1: most Gemma 3 270M attention stacks, every random matrix).
#: With 10 steps the worst direction is at least as accurate as :func:`~circuitclust.core.svd.randomized_svd`'s
#: on every Gemma 3 270M stack at about its CPU time; 6 or 8 steps fall short on some attention stacks
#: (benchmarks/svd_accuracy.py; numbers in analyses/RESULTS.md).
SVD_N_ITER = 10


def _check(weights: torch.Tensor, k: int) -> None:
    if weights.dim() != 3:
        raise CircuitclustError(f"expected a [n_in, n_out] matrix (or a [B, n_in, n_out] batch), got {tuple(weights.shape)}")
    n_in, n_out = weights.shape[-2:]
    if not 2 <= k <= min(n_in, n_out):
        raise OptionError(
            f"k={k} clusters is impossible for a {n_in}x{n_out} matrix: choose 2 <= k <= {min(n_in, n_out)}",
            option="k")


def trivial_pair(graph: NormalisedGraph) -> tuple[torch.Tensor, torch.Tensor]:
    """The leading singular pair of ``An``, known in closed form: ``u0 = sqrt(d_r / total)`` ``[B, m, 1]``,
    ``v0 = sqrt(d_c / total)`` ``[B, n, 1]`` (``An v0 = u0``, singular value 1, the largest)."""
    total = graph.row_degrees.sum(1, keepdim=True)
    return (graph.row_degrees / total).sqrt()[:, :, None], (graph.col_degrees / total).sqrt()[:, :, None]


def informative_vectors(
    graph: NormalisedGraph, n: int, *, n_iter: int = SVD_N_ITER, oversample: int = 1,
    generator: torch.Generator | None = None, svd_tol: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``n`` singular pairs of ``An`` after the trivial one, by randomized block Lanczos (a block of
    ``n + oversample`` vectors, at most ``n_iter`` steps of one pass over the matrix each, stopping early by
    ``svd_tol``: see :func:`~circuitclust.core.svd.block_lanczos_svd`) with the trivial pair deflated, so the
    Krylov space is spent on the informative directions only. Returns ``U`` ``[B, m, n]``, ``V`` ``[B, n_cols, n]``.
    """
    B, _, n_cols = graph.shape
    _, v0 = trivial_pair(graph)
    u, _, v, _ = block_lanczos_svd(graph.gram, B, n_cols, n, block=n + oversample, n_iter=n_iter, tol=svd_tol,
                                   generator=generator, dtype=graph.dtype, device=v0.device, deflate=v0)
    return u, v


def scaled_embedding(graph: NormalisedGraph, u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dhillon's embedding ``Z = [D_r^-1/2 U ; D_c^-1/2 V]`` ``[B, m + n, d]`` of singular vectors ``u``
    ``[B, m, d]``, ``v`` ``[B, n, d]`` (isolated units at the origin), and ``active`` ``[B, m + n]`` bool (units
    with non-zero degree). Each batch member is scaled to unit mean squared norm, which k-means does not notice
    but float32 distances do."""
    z = torch.cat([graph.row_scale[:, :, None] * u, graph.col_scale[:, :, None] * v], 1)
    active = torch.cat([graph.row_degrees > 0, graph.col_degrees > 0], 1)
    ms = (z * z).sum(-1).sum(1) / active.sum(1).clamp_min(1)
    return z / ms.clamp_min(torch.finfo(z.dtype).tiny).sqrt()[:, None, None], active


def bipartite_embedding(
    graph: NormalisedGraph, n_vectors: int, *, svd: str = "auto", n_iter: int = SVD_N_ITER, oversample: int = 1,
    generator: torch.Generator | None = None, svd_tol: float = 0.0, keep_trivial: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dhillon's scaled spectral embedding (:func:`scaled_embedding`) of the top ``n_vectors`` singular
    vectors of a normalised bipartite graph ``graph`` (batch ``[B, m, n]``).

    Returns ``z`` ``[B, m + n, d]`` (rows first, then columns; isolated units at the origin) and
    ``active`` ``[B, m + n]`` bool (units with non-zero degree). ``d = n_vectors``, except on the randomized
    path with ``keep_trivial=False``, where the trivial coordinate is left out (``d = n_vectors - 1``): there
    it is the closed-form ``D^-1/2 sqrt(d / total) = 1 / sqrt(total)``, the same for every active unit, so it
    moves no k-means distance and only costs time.
    ``svd="randomized"``: :func:`informative_vectors` for the ``n_vectors - 1`` after the trivial pair.
    """
    _, m, n = graph.shape
    if resolve_method(svd, m, n, n_vectors) == "exact":
        u, _, v = exact_svd(graph.dense(), n_vectors)
    else:
        u0, v0 = trivial_pair(graph)
        u, v = u0, v0
        if n_vectors > 1:
            u1, v1 = informative_vectors(graph, n_vectors - 1, n_iter=n_iter, oversample=oversample,
                                         generator=generator, svd_tol=svd_tol)
            u, v = (torch.cat([u0, u1], 2), torch.cat([v0, v1], 2)) if keep_trivial else (u1, v1)
    return scaled_embedding(graph, u, v)


def cocluster_labels(
    weights: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    n_init: int = 10,
    power: int = 1,
    svd: str = "auto",
    n_iter: int = SVD_N_ITER,
    oversample: int = 1,
    n_vectors: int | None = None,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    svd_tol: float = SVD_TOL,
    balance: float = 0.0,
    col_groups: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Co-cluster a batch of same-shape matrices ``weights`` ``[B, n_in, n_out]`` in one computation.

    Returns ``(row_labels [B, n_in], col_labels [B, n_out])`` int64 in ``[0, k)`` on the compute device.
    ``balance`` in ``[0, 1]``: every cluster keeps at least ``floor(balance * n / k)`` (and at least one) of
    the ``n`` rows, and likewise of the columns of each of ``col_groups`` (sizes of consecutive column blocks,
    e.g. the residual sides of graphs stacked side by side; default one block), by a least-cost repair of the
    k-means assignment on the spectral embedding (:func:`~.kmeans.rebalance`); 0 keeps k-means' labels.
    See :func:`cocluster` for the other options.
    """
    if weights.dim() == 2:
        weights = weights[None]
    _check(weights, k)
    if power not in (1, 2):
        raise OptionError(f"power must be 1 (|W|) or 2 (W^2), got {power}", option="power")
    check_float("balance", balance, 0.0, 1.0)
    dev = torch.device(device) if device is not None else weights.device
    dtype = torch.float64 if weights.dtype == torch.float64 else torch.float32
    graph = NormalisedGraph(weights.detach().to(dev), power, dtype=dtype)
    return cocluster_graph(graph, k, seed=seed, n_init=n_init, svd=svd, n_iter=n_iter, oversample=oversample,
                           n_vectors=n_vectors, generator=generator, svd_tol=svd_tol, balance=balance,
                           col_groups=col_groups)


def cocluster_graph(
    graph: NormalisedGraph,
    k: int,
    *,
    seed: int = 0,
    n_init: int = 10,
    svd: str = "auto",
    n_iter: int = SVD_N_ITER,
    oversample: int = 1,
    n_vectors: int | None = None,
    generator: torch.Generator | None = None,
    svd_tol: float = SVD_TOL,
    balance: float = 0.0,
    col_groups: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`cocluster_labels` of a ready normalised graph ``graph`` (batch ``[B, n_in, n_out]``, e.g.
    :meth:`NormalisedGraph.from_a` of shuffled ``|W|`` values): ``(row_labels [B, n_in], col_labels
    [B, n_out])`` int64 on the graph's device."""
    _check(graph.a, k)
    check_float("balance", balance, 0.0, 1.0)
    dev = graph.a.device
    if generator is None:
        generator = torch.Generator(device=dev).manual_seed(int(seed))
    B, n_in, n_out = graph.shape
    rs, cs = graph.row_degrees, graph.col_degrees
    if not bool(torch.isfinite(rs).all()):
        raise CircuitclustError("the weight matrix contains NaN or inf: fix or drop those entries before clustering")
    active_rows, active_cols = (rs > 0).sum(1), (cs > 0).sum(1)
    if bool((active_rows == 0).any()):
        raise CircuitclustError("a weight matrix is all zero: there is nothing to cluster")
    if bool((active_rows + active_cols < k).any()):
        raise CircuitclustError(f"fewer than k={k} units have any non-zero weight: lower k")
    nv = min(n_vectors or k, n_in, n_out)
    z, active = bipartite_embedding(graph, nv, svd=svd, n_iter=n_iter, oversample=oversample, generator=generator,
                                    svd_tol=svd_tol, keep_trivial=False)
    res = kmeans(z, k, n_init=n_init, generator=generator, sample_weight=active.to(z.dtype))
    rows, cols = res.labels[:, :n_in], res.labels[:, n_in:]
    if balance > 0:
        groups = list(col_groups) if col_groups is not None else [n_out]
        if sum(groups) != n_out or min(groups) < k:
            raise OptionError(f"col_groups {groups} must add up to the {n_out} columns, each block >= k={k}")
        rows = rebalance(z[:, :n_in], rows, res.centers, max(1, int(balance * n_in / k)))
        parts, start = [], n_in
        for size in groups:
            parts.append(rebalance(z[:, start:start + size], res.labels[:, start:start + size], res.centers,
                                   max(1, int(balance * size / k))))
            start += size
        cols = torch.cat(parts, 1)
    return rows, cols


def cocluster_batch(weights: torch.Tensor, k: int, *, seed: int = 0, n_init: int = 10, power: int = 1,
                    svd: str = "auto", n_iter: int = SVD_N_ITER, device: torch.device | str | None = None,
                    svd_tol: float = SVD_TOL, **provenance) -> list[Partition]:
    """:func:`cocluster` for ``B`` same-shape matrices ``[B, n_in, n_out]`` at once -> ``B`` partitions."""
    rows, cols = cocluster_labels(weights, k, seed=seed, n_init=n_init, power=power, svd=svd, n_iter=n_iter,
                                  device=device, svd_tol=svd_tol)
    prov = _provenance(weights.shape[-2:], k, seed, n_init, power, svd, n_iter, provenance)
    prov["svd_tol"] = svd_tol
    return [Partition(r, c, k, dict(prov)) for r, c in zip(rows, cols)]


def _provenance(shape, k, seed, n_init, power, svd, n_iter, extra) -> dict:
    used = resolve_method(svd, int(shape[0]), int(shape[1]), k)
    algo = {"svd_algorithm": "block_lanczos"} if used == "randomized" else {}
    return {"method": "spectral", "seed": int(seed), "n_init": n_init, "power": power, "svd": used,
            "svd_n_iter": n_iter, **algo, **extra}


def cocluster(
    weight: torch.Tensor,
    k: int,
    *,
    seed: int = 0,
    n_init: int = 10,
    power: int = 1,
    svd: str = "auto",
    n_iter: int = SVD_N_ITER,
    device: torch.device | str | None = None,
    svd_tol: float = SVD_TOL,
    **provenance,
) -> Partition:
    """Split the bipartite graph of ``weight`` ``[n_in, n_out]`` into ``k`` co-clusters.

    - ``power``: 1 clusters ``|W|``, 2 clusters ``W**2`` (the mass that :func:`clusterability` counts).
    - ``svd``: ``"exact"``, ``"randomized"`` (randomized block Lanczos: a Gaussian start block of ``k``
      vectors, at most ``n_iter`` steps of one pass over ``W`` each, stopping early once the error bound of
      every wanted singular vector is below ``svd_tol``; the trivial first pair is known in closed form and
      deflated), or ``"auto"`` (exact when the smaller side is <= 512).
    - ``n_init``: k-means restarts (k-means++ seeding); ``seed`` fixes all randomness on a given device.
    - ``device``: where to compute (default: ``weight``'s device); the labels live there.

    Returns a :class:`Partition` whose ``row_labels`` ``[n_in]`` and ``col_labels`` ``[n_out]`` share
    cluster ids; extra keyword arguments go into its provenance. Raises
    :class:`~circuitclust.errors.CircuitclustError` for ``k < 2``, ``k > min(n_in, n_out)``, NaN/inf, or an
    all-zero matrix. Isolated units: see the module docstring.
    """
    if weight.dim() != 2:
        raise CircuitclustError(f"cocluster expects one [n_in, n_out] matrix, got shape {tuple(weight.shape)}; "
                                "use cocluster_batch for a batch")
    return cocluster_batch(weight[None], k, seed=seed, n_init=n_init, power=power, svd=svd, n_iter=n_iter,
                           device=device, svd_tol=svd_tol, **provenance)[0]
