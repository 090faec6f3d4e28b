"""How clusterable weight graphs are: clusterability, its chance level, n-cut, and shuffle nulls.

- :func:`clusterability`: fraction of the squared-weight mass inside co-clusters,
  differentiable in the weights (the fine-tuning loss uses it) and batched.
- :func:`chance_level`: the expected clusterability of unstructured weights for the given cluster sizes,
  ``sum_i |R_i| |C_i| / (n_in n_out)`` (``1/k`` for equal blocks).
- :func:`ncut`: normalised cut of an undirected graph (Filan et al. 2021), on a
  :class:`~circuitclust.core.network.NetworkGraph`.
- :func:`normalised_clusterability`: ``(C - chance) / (1 - chance)``, 0 at chance and 1 when block-diagonal,
  so partitions with different cluster sizes (different chance levels) can be compared.
- :func:`null_stats`: a value against the values of a null distribution (e.g. the clusterability of
  entry-shuffled, re-clustered matrices): z-score and ``p = (r + 1) / (n + 1)``, whose floor is
  ``1 / (n + 1)``.
- :func:`benjamini_hochberg`: false-discovery-rate adjusted p-values (q-values) across several tests.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .network import NetworkGraph


def clusterability(weight: torch.Tensor, row_labels: torch.Tensor, col_labels: torch.Tensor) -> torch.Tensor:
    """``sum_{i, u in R_i, v in C_i} W_uv^2 / sum_{u, v} W_uv^2``.

    ``weight`` ``[..., n_in, n_out]``, ``row_labels`` ``[..., n_in]``, ``col_labels`` ``[..., n_out]`` (any
    integer cluster ids; leading dimensions broadcast). Returns a tensor of the leading shape (a 0-d tensor
    for one matrix), differentiable in ``weight``. An all-zero matrix scores 0 with a zero gradient: it has no
    mass inside clusters (the fine-tuning loss in :mod:`.loss` uses the same value).
    """
    w2 = weight.square()
    inside = row_labels[..., :, None] == col_labels[..., None, :]
    total = w2.sum((-2, -1))
    return (w2 * inside).sum((-2, -1)) / total.clamp_min(torch.finfo(w2.dtype).tiny)


def chance_level(row_labels: torch.Tensor, col_labels: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """``sum_i |R_i| |C_i| / (n_in n_out)`` for labels ``[..., n_in]`` and ``[..., n_out]`` in ``[0, k)``:
    the expected clusterability when every entry carries the same expected squared weight. Returns a float
    tensor of the leading shape."""
    k = int(max(int(row_labels.max()), int(col_labels.max())) + 1) if k is None else k
    r = torch.nn.functional.one_hot(row_labels, k).sum(-2).double()
    c = torch.nn.functional.one_hot(col_labels, k).sum(-2).double()
    return (r * c).sum(-1) / (row_labels.shape[-1] * col_labels.shape[-1])


def normalised_clusterability(value: torch.Tensor | float, chance: torch.Tensor | float) -> torch.Tensor:
    """``(C - chance) / (1 - chance)`` elementwise: 0 at the chance level of the partition's cluster sizes,
    1 when every weight lies inside a cluster, negative below chance. NaN where ``chance`` is 1 (one
    cluster holds every entry: nothing can be off-cluster, so C says nothing)."""
    value = torch.as_tensor(value, dtype=torch.float64)
    chance = torch.as_tensor(chance, dtype=torch.float64)
    room = 1.0 - chance
    return torch.where(room > 0, (value - chance) / room.clamp_min(torch.finfo(room.dtype).tiny),
                       torch.full_like(room, float("nan")))


def benjamini_hochberg(p_values: torch.Tensor | list[float]) -> torch.Tensor:
    """Benjamini-Hochberg adjusted p-values (q-values) ``[m]`` of ``m`` p-values, in the input order: reject
    every test with ``q <= alpha`` to control the false discovery rate at ``alpha``. NaN p-values are left
    out of ``m`` and stay NaN."""
    p = torch.as_tensor(p_values, dtype=torch.float64).flatten()
    q = torch.full_like(p, float("nan"))
    ok = ~torch.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return q
    vals = p[ok]
    order = torch.argsort(vals)
    scaled = vals[order] * m / torch.arange(1, m + 1, dtype=torch.float64)
    # the running minimum from the largest p down makes the q-values monotone in p
    adjusted = torch.flip(torch.cummin(torch.flip(scaled, [0]), 0).values, [0]).clamp(max=1.0)
    out = torch.empty_like(vals)
    out[order] = adjusted
    q[ok] = out
    return q


def ncut(graph: NetworkGraph, labels: torch.Tensor, k: int | None = None) -> float:
    """Normalised cut ``sum_i cut(X_i, not X_i) / vol(X_i)`` of ``graph`` under node ``labels`` ``[n_nodes]``
    (``-1`` = dropped node, e.g. zero degree). In ``[0, k]``; lower = more clusterable. Empty clusters
    contribute 0."""
    k = int(labels.max()) + 1 if k is None else k
    keep = labels >= 0
    onehot = torch.nn.functional.one_hot(labels.clamp_min(0), k).to(graph.dtype) * keep[:, None]
    deg = graph.degrees()
    vol = onehot.T @ deg  # [k]
    within = (onehot * graph.matmul(onehot)).sum(0)  # [k] = sum_{u,v in X_i} A_uv
    cut = vol - within
    return float(torch.where(vol > 0, cut / vol.clamp_min(torch.finfo(vol.dtype).tiny), torch.zeros_like(vol)).sum())


@dataclass
class NullStats:
    """A statistic against its shuffle null: ``value``, ``null`` ``[n]``, ``mean``, ``std``, ``z`` and
    ``p = (r + 1) / (n + 1)`` where ``r`` counts shuffles at least as clusterable as ``value``."""

    value: float
    null: list[float]
    mean: float
    std: float
    z: float
    p: float

    def as_dict(self) -> dict:
        return {"value": self.value, "shuffle_mean": self.mean, "shuffle_std": self.std, "z": self.z,
                "p": self.p}


def null_stats(value: float, null: torch.Tensor | list[float], higher_is_better: bool = True) -> NullStats:
    """Compare ``value`` with a null sample. ``higher_is_better`` says which direction counts as more
    clusterable (True for clusterability, False for n-cut). ``z`` is ``(value - mean) / std`` (``nan`` if
    the null has no spread)."""
    null = torch.as_tensor(null, dtype=torch.float64).flatten().cpu()
    n = null.numel()
    mean = float(null.mean()) if n else float("nan")
    std = float(null.std()) if n > 1 else float("nan")
    z = (value - mean) / std if n > 1 and std > 0 else float("nan")
    r = int((null >= value).sum()) if higher_is_better else int((null <= value).sum())
    return NullStats(float(value), null.tolist(), mean, std, z, (r + 1) / (n + 1))


def interval_method(n_boot: int, over: str = "prompts") -> dict:
    """How the intervals of a result were made, stored beside them. With at least 1000 resamples: a 95%
    percentile bootstrap over ``over`` (``level`` 0.95). With fewer, the same 2.5-97.5 percentiles are only an
    indicative range, and say so: ``level`` is None and ``note`` explains (they are never called a 95% CI)."""
    if n_boot >= 1000:
        return {"level": 0.95, "method": f"percentile bootstrap over {over}", "n_boot": int(n_boot)}
    return {"level": None, "method": f"2.5-97.5 percentile range of {int(n_boot)} bootstrap resamples over {over}",
            "n_boot": int(n_boot),
            "note": f"only {n_boot} resamples (< 1000): an indicative range, not a reliable 95% CI"}
