"""Helpers only the tests use: reference implementations the package's fast paths are checked against, and
small conveniences (corpus sizes, a render check of a report, one ablated forward)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from circuitclust.analysis.patching.interventions import ablation_hooks
from circuitclust.analysis.patching.prompts import TaskPrompts
from circuitclust.analysis.patching.units import UnitLayout
from circuitclust.browser import headless_chromium, load_page
from circuitclust.core.cka import cka_matrix
from circuitclust.core.cocluster import cocluster_labels
from circuitclust.core.loss import _HALF, clusterability_from_masses
from circuitclust.core.measures import NullStats, clusterability, null_stats
from circuitclust.data import SPLITS, load_corpus
from circuitclust.errors import OptionError
from circuitclust.models.graphs import WeightGraph


# ------------------------------------------------------------------------------------------------- data
def corpus_stats(name: str, tokenizer: Any = None) -> dict:
    """Size of a corpus: ``{"name", "paragraphs": {"train", "heldout", "total"}, "topics": {topic: n},
    "words", "chars"}`` plus ``"tokens"`` when a tokenizer is given (no special tokens)."""
    parts = {s: load_corpus(name, s) for s in SPLITS}
    texts = [t for s in SPLITS for t in parts[s]["text"]]
    topics: dict[str, int] = {}
    for s in SPLITS:
        if "topic" in parts[s].column_names:
            key = "subtopic" if "subtopic" in parts[s].column_names else "topic"
            for t in parts[s][key]:
                topics[t] = topics.get(t, 0) + 1
    stats = {"name": name,
             "paragraphs": {"train": len(parts["train"]), "heldout": len(parts["heldout"]), "total": len(texts)},
             "topics": dict(sorted(topics.items())),
             "words": sum(len(t.split()) for t in texts),
             "chars": sum(len(t) for t in texts)}
    if tokenizer is not None:
        stats["tokens"] = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return stats


# -------------------------------------------------------------------------------------- weight graphs
def head_view(graph: WeightGraph) -> torch.Tensor:
    """Head-level graph of an attention ``graph``: units on the head side are heads, edge = L2 norm of the head's block.

    Returns ``[n_in, n_heads]`` for Q/K/V and ``[n_heads, n_out]`` for O. Raises for MLP graphs.
    """
    w = graph.weight
    if graph.kind in ("attn_q", "attn_k", "attn_v"):
        return w.reshape(w.shape[0], graph.n_heads, graph._d_head).norm(dim=-1)
    if graph.kind == "attn_o":
        return w.reshape(graph.n_heads, graph._d_head, w.shape[1]).norm(dim=1)
    raise OptionError(f"{graph.name} is an MLP matrix; head_view is only defined for attention")


# -------------------------------------------------------------------------------------- interventions
def run_ablated(model, batch: TaskPrompts, layout: UnitLayout, dims: torch.Tensor, method: str,
                reference: dict[str, torch.Tensor] | None = None,
                corrupted: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Logits ``[b, T, V]`` of the clean prompts of ``batch`` with the dims where ``dims`` (``[n_dims]``
    bool) is True ablated by ``method``. ``batch`` must be on the model's device."""
    masks = layout.split_dims(dims)
    hooks = ablation_hooks(masks, method, reference, corrupted)
    return model.run_with_hooks(batch.clean, fwd_hooks=hooks)


# ----------------------------------------------------------------------------------- clusterability
def cluster_masses(weight: torch.Tensor, row_onehot: torch.Tensor,
                   col_onehot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In-cluster and total squared mass of a batch of matrices.

    Inputs: ``weight [..., n_in, n_out]`` (any float dtype), ``row_onehot [..., n_in, k]`` and
    ``col_onehot [..., n_out, k]`` (0/1 memberships, broadcastable over the batch dims).
    Returns ``(inside [...], total [...])`` in float32 (float64 stays float64). Kept separate from the ratio
    so that callers holding shards of a matrix can sum both over processes before dividing.
    """
    w = weight.float() if weight.dtype in _HALF else weight
    # Autocast would run the product below in bf16 and undo the fp32 accumulation.
    with torch.autocast(device_type=w.device.type, enabled=False):
        sq = w * w
        rows = row_onehot.to(sq.dtype)
        cols = col_onehot.to(sq.dtype)
        inside = ((sq @ cols) * rows).sum(dim=(-2, -1))
        total = sq.sum(dim=(-2, -1))
    return inside, total


def clusterability_masks(weight: torch.Tensor, row_onehot: torch.Tensor,
                         col_onehot: torch.Tensor) -> torch.Tensor:
    """Differentiable clusterability ``C(W)`` of a batch of matrices: ``[...]`` in ``[0, 1]``.

    Shapes as in :func:`cluster_masses`. Gradient w.r.t. ``W_uv`` is ``2 W_uv (M_uv - C) / ||W||^2`` with
    ``M`` the in-cluster indicator: in-cluster entries grow, off-cluster entries shrink under descent on
    ``1 - C``, and the update is orthogonal to ``W`` (C is scale invariant).
    """
    return clusterability_from_masses(*cluster_masses(weight, row_onehot, col_onehot))


def shuffle_entries(weight: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` copies of ``weight`` ``[n_in, n_out]``, each with its entries randomly permuted within the
    matrix: ``[n, n_in, n_out]``. Keeps the entry distribution, destroys any structure."""
    flat = weight.reshape(-1)
    perms = torch.stack([torch.randperm(flat.numel(), generator=generator, device=weight.device)
                         for _ in range(n)])
    return flat[perms].view(n, *weight.shape)


def shuffle_test(
    weight: torch.Tensor,
    k: int,
    n: int = 20,
    *,
    seed: int = 0,
    cluster: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]] | None = None,
    labels: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> NullStats:
    """Clusterability of ``weight`` ``[n_in, n_out]`` against ``n`` entry-shuffled copies, all re-clustered.

    ``cluster(weights [B, n_in, n_out], k) -> (row_labels [B, n_in], col_labels [B, n_out])`` is the
    procedure (default: spectral co-clustering with this ``seed``); it runs once on the real matrix (unless
    ``labels`` are given) and once, batched, on the ``n`` shuffles (on ``weight``'s device). Returns
    :class:`NullStats` (``p`` is at its minimum ``1 / (n + 1)`` when no shuffle scores as high).
    """
    if cluster is None:
        def cluster(w: torch.Tensor, kk: int) -> tuple[torch.Tensor, torch.Tensor]:
            return cocluster_labels(w, kk, seed=seed)
    w = weight.detach().float()
    if labels is None:
        r, c = cluster(w[None], k)
        labels = (r[0], c[0])
    value = float(clusterability(w, labels[0].to(w.device), labels[1].to(w.device)))
    g = torch.Generator(device=w.device).manual_seed(int(seed) + 1)
    shuffled = shuffle_entries(w, n, g)
    r, c = cluster(shuffled, k)
    null = clusterability(shuffled, r.to(w.device), c.to(w.device))
    return null_stats(value, null)


# ---------------------------------------------------------------------------------------- SVD and CKA
def reference_shuffle_null(graphs, weights: dict[str, torch.Tensor], partition, n: int, seed: int
                           ) -> dict[str, torch.Tensor]:
    """The shuffle null drawn the plain way (the path before batching): for each tied stack and each shuffle,
    every member's signed entries permuted with a fresh ``randperm`` (:func:`shuffle_entries`), the stack
    re-co-clustered with the partition's options (``cocluster_labels`` takes ``|W|`` itself), each member
    scored with :func:`clusterability`. Returns ``{name: [n] float64}``, to compare in distribution with
    ``circuitclust.analysis.clustering.null.shuffle_null``."""
    from circuitclust.analysis.clustering.stacks import _oriented, _resid_sizes, _split_cols, _tied_side, tied_groups

    opts = partition.provenance["cocluster"]
    out: dict[str, torch.Tensor] = {}
    for i, members in enumerate(tied_groups(graphs).values()):
        g0 = torch.Generator(device=weights[members[0].name].device).manual_seed(seed * 1009 + i)
        shuffled = {g.name: shuffle_entries(weights[g.name], n, g0) for g in members}
        stack = torch.cat([_oriented(g, shuffled[g.name]) for g in members], 2)
        rows, cols = cocluster_labels(stack, partition.k, seed=seed * 1009 + i, col_groups=_resid_sizes(members),
                                      **opts)
        res = _split_cols(members, cols)
        for g in members:
            r, c = (res[g.name], rows) if _tied_side(g) == "out" else (rows, res[g.name])
            out[g.name] = clusterability(shuffled[g.name], r, c).double()
    return out


def dense_gram(a: torch.Tensor):
    """``gram`` for :func:`~circuitclust.core.svd.block_lanczos_svd` from a materialised ``a`` ``[B, m, n]``."""
    def gram(vt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.bmm(a, vt.transpose(1, 2))
        return y, torch.bmm(y.transpose(1, 2), a)
    return gram


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA of two representations ``x[n, d1]``, ``y[n, d2]`` of the same n points (0-d tensor)."""
    return cka_matrix([x, y])[0, 1]


# -------------------------------------------------------------------------------------------- browser
@dataclass
class PageCheck:
    """What the browser saw: figure divs on the page, how many plotly drew, the count the report announces,
    ``.main-svg`` elements, and JavaScript errors (uncaught errors and console errors)."""

    n_divs: int
    n_rendered: int
    expected: int | None
    n_main_svg: int
    errors: list[str]

    @property
    def ok(self) -> bool:
        want = self.expected if self.expected is not None else self.n_divs
        return not self.errors and self.n_rendered == self.n_divs == want


def check_page(html_path: str | Path, timeout: float = 60.0) -> PageCheck:
    """Open ``html_path`` in headless Chromium, wait until every plotly div is drawn (or ``timeout`` s) and
    report what rendered and any JavaScript errors."""
    html_path = Path(html_path)
    with headless_chromium() as driver:
        state = load_page(driver, html_path, timeout)
        errors = list(state["errors"])
        for entry in driver.get_log("browser"):
            if entry.get("level") == "SEVERE":
                errors.append(entry.get("message", str(entry)))
    return PageCheck(state["n_divs"], state["n_rendered"], state["expected"], state["n_main_svg"], errors)


def regularised_parameters(loss) -> list[torch.nn.Parameter]:
    """The distinct HF parameters the loss reads (a fused QKV parameter appears once)."""
    seen: dict[int, torch.nn.Parameter] = {}
    for g in loss.graphs:
        seen.setdefault(id(g.parameter), g.parameter)
    return list(seen.values())
