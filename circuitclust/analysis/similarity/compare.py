"""Comparison of two layer similarities on the same inputs (e.g. base vs fine-tuned model): how the GW and CKA
matrices, the layer groups and each layer's own representation moved.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ...core.gw import EXACT_STARTS, gw_paired
from ...errors import CircuitclustError
from .layers import LayerSimilarity

COMPARE_SCHEMA = "circuitclust.similarity-compare/1"


def compare_similarity(base: LayerSimilarity, other: LayerSimilarity, *, solver: str | None = None,
                       epsilon: float = 1e-2, starts: Sequence[str] | None = None) -> dict:
    """How ``other`` (e.g. the fine-tuned model) differs from ``base`` on the same inputs.

    Returns {"schema", "layers", "gw_delta" ([L, L] other - base), "gw_spearman"/"cka_spearman" (rank
    correlation of the off-diagonal entries), "groups_ari" (adjusted Rand index of the two groupings),
    "boundaries" (both), and, when both carry ``layer_dists`` on the same positions, "per_layer_gw"
    ([L] GW distance between layer l of base and layer l of other: how far fine-tuning moved it)}.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import adjusted_rand_score

    if base.layers != other.layers:
        raise CircuitclustError("the two similarity results compare different hooks: run both with the same hooks")
    n_layers = len(base.layers)
    iu = torch.triu_indices(n_layers, n_layers, offset=1)

    def rho(a: torch.Tensor, b: torch.Tensor) -> float | None:
        if iu.shape[1] < 3:
            return None
        return float(spearmanr(a[iu[0], iu[1]].cpu().numpy(), b[iu[0], iu[1]].cpu().numpy()).statistic)

    out: dict[str, Any] = {
        "schema": COMPARE_SCHEMA, "layers": base.layers, "base": base.provenance.get("model"),
        "other": other.provenance.get("model"),
        "gw_delta": (other.distances.cpu() - base.distances.cpu()).tolist(),
        "gw_spearman": rho(base.distances, other.distances), "cka_spearman": rho(base.cka, other.cka),
        "groups_ari": None, "boundaries": {"base": None, "other": None}, "per_layer_gw": None,
    }
    if base.groups is not None and other.groups is not None:
        out["groups_ari"] = float(adjusted_rand_score(base.groups.labels, other.groups.labels))
        out["boundaries"] = {"base": base.groups.boundaries, "other": other.groups.boundaries}
    same_points = base.positions.shape == other.positions.shape and torch.equal(base.positions, other.positions)
    if base.layer_dists is not None and other.layer_dists is not None and same_points:
        vals = gw_paired(list(base.layer_dists), list(other.layer_dists.to(base.layer_dists)),
                         solver=solver or base.provenance.get("solver", "exact"), epsilon=epsilon,
                         starts=starts or base.provenance.get("exact_starts") or EXACT_STARTS)
        out["per_layer_gw"] = vals.cpu().tolist()
    return out


__all__ = ["compare_similarity", "COMPARE_SCHEMA"]
