"""Group layers by a layer-by-layer distance matrix: average-linkage hierarchical clustering, either free
(scipy) or constrained to contiguous runs of layers, the number of groups chosen by silhouette. Pure tensors.
"""
from __future__ import annotations

import torch

from ..errors import CircuitclustError


def _check_square(dist: torch.Tensor) -> None:
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise CircuitclustError(f"expected a square [L, L] distance matrix, got shape {tuple(dist.shape)}")
    if not torch.isfinite(dist).all():
        raise CircuitclustError("the layer distance matrix contains NaN or inf")


def canonical_labels(labels: torch.Tensor) -> torch.Tensor:
    """Relabel ``labels[L]`` so groups are numbered 0, 1, ... in order of their first layer."""
    _, first = torch.unique(labels, return_inverse=True)
    order = torch.full((int(first.max()) + 1,), labels.numel(), dtype=torch.long)
    order = order.scatter_reduce(0, first, torch.arange(labels.numel()), reduce="amin")
    rank = torch.empty_like(order)
    rank[order.argsort()] = torch.arange(order.numel())
    return rank[first]


def _contiguous_average_linkage(dist: torch.Tensor, n_groups: int) -> torch.Tensor:
    # Agglomerative clustering where only neighbouring segments may merge; the loop runs over merges
    # (at most L), each step scoring all adjacent pairs of segments by their mean cross distance.
    n = dist.shape[0]
    starts = list(range(n))  # segment i covers layers starts[i] .. starts[i+1]-1
    while len(starts) > n_groups:
        bounds = starts + [n]
        scores = [dist[bounds[i]:bounds[i + 1], bounds[i + 1]:bounds[i + 2]].mean() for i in range(len(starts) - 1)]
        best = int(torch.stack(scores).argmin())
        del starts[best + 1]
    labels = torch.zeros(n, dtype=torch.long)
    for g, s in enumerate(starts):
        labels[s:] = g
    return labels


def cluster_layers(dist: torch.Tensor, n_groups: int, *, contiguous: bool = True) -> torch.Tensor:
    """Average-linkage hierarchical clustering of L layers from ``dist[L, L]`` (symmetric, zero diagonal)
    into ``n_groups`` groups -> ``labels[L]`` (int64, CPU, numbered by first layer).

    ``contiguous=True``: only adjacent runs of layers may merge, so each group is a block of consecutive
    layers (the "sub-network" reading of Gao et al.); ``False``: unconstrained (scipy ``linkage``/``fcluster``).
    """
    _check_square(dist)
    n = dist.shape[0]
    if not 1 <= n_groups <= n:
        raise CircuitclustError(f"n_groups must be between 1 and the number of layers ({n}), got {n_groups}")
    d = dist.detach().double().cpu()
    d = 0.5 * (d + d.T)
    d.fill_diagonal_(0.0)
    if n_groups == n:
        return torch.arange(n)
    if contiguous:
        return _contiguous_average_linkage(d, n_groups)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    z = linkage(squareform(d.numpy(), checks=False), method="average")
    labels = torch.as_tensor(fcluster(z, t=n_groups, criterion="maxclust"), dtype=torch.long)
    return canonical_labels(labels)


def silhouette(dist: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean silhouette of ``labels[L]`` under the precomputed distances ``dist[L, L]`` (singleton groups
    score 0, as in Rousseeuw 1987). In [-1, 1]; higher = tighter, better separated groups."""
    d = dist.detach().double().cpu()
    lab = labels.cpu()
    k = int(lab.max()) + 1
    onehot = torch.nn.functional.one_hot(lab, k).double()  # [L, k]
    sizes = onehot.sum(0)
    sums = d @ onehot  # [L, k] summed distance from each layer to each group
    own = sizes[lab]
    a = sums.gather(1, lab[:, None]).squeeze(1) / (own - 1).clamp_min(1)
    other = (sums / sizes).masked_fill(onehot.bool(), float("inf"))
    b = other.min(dim=1).values
    s = (b - a) / torch.maximum(a, b).clamp_min(1e-300)
    s = torch.where(own > 1, s, torch.zeros_like(s))
    return float(s.mean())


def choose_n_groups(dist: torch.Tensor, *, contiguous: bool = True, max_groups: int = 8) -> tuple[int, dict[int, float]]:
    """The number of groups in 2..min(max_groups, L-1) with the best silhouette, and every k's silhouette.
    Returns (1, {}) for fewer than 3 layers."""
    _check_square(dist)
    n = dist.shape[0]
    if n < 3:
        return 1, {}
    scores = {k: silhouette(dist, cluster_layers(dist, k, contiguous=contiguous))
              for k in range(2, min(max_groups, n - 1) + 1)}
    best = max(scores, key=lambda k: (scores[k], -k))
    return best, scores


def group_boundaries(labels: torch.Tensor) -> list[int]:
    """Layer indices l where a new group starts (labels[l] != labels[l-1]); for contiguous groups these are
    the cut points between sub-networks."""
    lab = labels.cpu()
    return (torch.nonzero(lab[1:] != lab[:-1]).flatten() + 1).tolist()


__all__ = ["cluster_layers", "choose_n_groups", "silhouette", "group_boundaries", "canonical_labels"]
