"""Layer groups (sub-networks) in a GW matrix: average-linkage grouping of the layers, and its stability
under bootstrap resampling of the token positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ...core.gw import EXACT_STARTS, gw_matrix
from ...core.layer_groups import choose_n_groups, cluster_layers, group_boundaries, silhouette
from ...core.measures import interval_method


@dataclass
class LayerGroups:
    """Layer groups found in a GW matrix: ``labels[L]`` (0.. in order of first layer), ``boundaries`` (first
    layer of each group after the first), silhouettes per tried k, and the bootstrap stability if run."""
    labels: list[int]
    boundaries: list[int]
    n_groups: int
    contiguous: bool
    silhouette: float
    silhouettes: dict[int, float] = field(default_factory=dict)
    stability: dict[str, Any] | None = None
    labels_by_k: dict[int, list[int]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"boundaries": self.boundaries, "labels": self.labels, "stability": self.stability,
                "labels_by_k": {str(k): v for k, v in self.labels_by_k.items()},
                "n_groups": self.n_groups, "contiguous": self.contiguous, "linkage": "average",
                "silhouette": self.silhouette, "silhouettes": {str(k): v for k, v in self.silhouettes.items()}}

    @classmethod
    def from_json(cls, d: dict) -> "LayerGroups":
        return cls(labels=list(d["labels"]), boundaries=list(d["boundaries"]), n_groups=int(d["n_groups"]),
                   contiguous=bool(d["contiguous"]), silhouette=float(d["silhouette"]),
                   silhouettes={int(k): float(v) for k, v in d.get("silhouettes", {}).items()},
                   stability=d.get("stability"),
                   labels_by_k={int(k): list(v) for k, v in d.get("labels_by_k", {}).items()})


def find_groups(distances: torch.Tensor, *, n_groups: int | None = None, contiguous: bool = True,
                max_groups: int = 8) -> LayerGroups:
    """Hierarchical (average-linkage) grouping of the layers of ``distances[L, L]``; ``n_groups=None`` picks
    the k in 2..max_groups with the best silhouette. ``labels_by_k`` holds the grouping for every k tried."""
    scores: dict[int, float] = {}
    if n_groups is None:
        n_groups, scores = choose_n_groups(distances, contiguous=contiguous, max_groups=max_groups)
    labels = cluster_layers(distances, n_groups, contiguous=contiguous)
    sil = silhouette(distances, labels) if 1 < n_groups < distances.shape[0] else 0.0
    # every k's grouping is kept so readers can compare coarser and finer splits without re-solving GW
    by_k = {k: cluster_layers(distances, k, contiguous=contiguous).tolist()
            for k in range(2, min(max_groups, distances.shape[0] - 1) + 1)}
    return LayerGroups(labels=labels.tolist(), boundaries=group_boundaries(labels), n_groups=n_groups,
                       contiguous=contiguous, silhouette=sil, silhouettes=scores, labels_by_k=by_k)


def _renormalise(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    # Resampled points change each layer's mean distance; rescale so the bootstrap measure is normalised
    # the same way as the full sample.
    ww = w[:, None] * w[None, :]
    ww.fill_diagonal_(0.0)
    scale = (d * ww).sum(dim=(-1, -2)) / ww.sum()
    return d / scale[:, None, None]


def bootstrap_groups(layer_dists: torch.Tensor, groups: LayerGroups, *, n_boot: int = 20, seed: int = 0,
                     solver: str = "exact", epsilon: float = 1e-2, starts: Sequence[str] = EXACT_STARTS,
                     progress: bool = False) -> tuple[dict, tuple]:
    """Stability of ``groups`` under resampling the n token positions with replacement (each bootstrap is
    the empirical measure: distinct points weighted by their counts). Re-solves the GW matrix and regroups
    with the same k and mode ``n_boot`` times (``solver``, ``epsilon`` and the exact solver's ``starts`` as for
    the full sample; bootstrap b's random starts are seeded with ``seed + 1000 * (b + 1)``).

    Returns ``(stability, (gw_ci_low[L, L], gw_ci_high[L, L]))``; stability = {"n_boot", "seed", "ari_mean",
    "ari_ci" (2.5/97.5 percentiles of the adjusted Rand index to the full-sample labels), "boundary_freq"
    (per gap l|l+1, fraction of bootstraps that cut there), "coassign" ([L, L] fraction grouped together)}.
    """
    from sklearn.metrics import adjusted_rand_score
    from tqdm.auto import tqdm

    n_layers, n = layer_dists.shape[0], layer_dists.shape[1]
    ref = torch.tensor(groups.labels)
    g = torch.Generator().manual_seed(seed)
    aris, gws = [], []
    cuts = torch.zeros(max(n_layers - 1, 0))
    coassign = torch.zeros(n_layers, n_layers)
    for rep in tqdm(range(n_boot), desc="bootstrap", disable=not progress, leave=False):
        counts = torch.bincount(torch.randint(n, (n,), generator=g), minlength=n)
        keep = torch.nonzero(counts).flatten().to(layer_dists.device)
        w = (counts[counts > 0].double() / n).to(layer_dists)
        d = _renormalise(layer_dists[:, keep][:, :, keep], w)
        gw = gw_matrix(d, solver=solver, weights=w, epsilon=epsilon, starts=starts, seed=seed + 1000 * (rep + 1))
        labels = cluster_layers(gw, groups.n_groups, contiguous=groups.contiguous)
        aris.append(adjusted_rand_score(ref.numpy(), labels.numpy()))
        gws.append(gw.cpu())
        cuts += (labels[1:] != labels[:-1]).float()
        coassign += (labels[:, None] == labels[None, :]).float()
    a = torch.tensor(aris, dtype=torch.float64)
    stack = torch.stack(gws)
    q = torch.tensor([0.025, 0.975], dtype=stack.dtype)
    lo, hi = torch.quantile(stack, q, dim=0)
    stability = {"n_boot": n_boot, "seed": seed, "solver": solver, "interval": interval_method(n_boot, "token positions"),
                 "ari_mean": float(a.mean()),
                 "ari_ci": torch.quantile(a, q.double()).tolist(), "boundary_freq": (cuts / n_boot).tolist(),
                 "coassign": (coassign / n_boot).tolist()}
    return stability, (lo, hi)


__all__ = ["LayerGroups", "find_groups", "bootstrap_groups"]
