"""Layer similarity (Gao et al. 2024): representations of every pair of layers compared with
Gromov-Wasserstein distances and linear CKA, layer groups (sub-networks) with bootstrap stability, and
base vs fine-tuned comparison. Run folder files: similarity.json, similarity.safetensors, gw.csv, cka.csv.

Token positions: every prompt is tokenized by the model's tokenizer (truncated to ``max_tokens``); position 0
(BOS, or for tokenizers without BOS the first token, which acts as the attention sink with outlier norms) and
special tokens are excluded; ``n`` of the remaining (prompt, position) pairs are drawn without replacement
with ``torch.Generator().manual_seed(seed)``. Right padding is harmless: causal attention never looks ahead.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from ..atomic import atomic_path, write_csv, write_json
from ..core.layer_groups import choose_n_groups, cluster_layers, group_boundaries, silhouette
from ..core.similarity import (
    EXACT_STARTS,
    MIN_POINTS,
    NORMALIZE,
    SOLVERS,
    START_KINDS,
    cka_matrix,
    gw_matrix,
    gw_paired,
    pairwise_distances,
)
from ..errors import CircuitclustError, DataError, OptionError, check_choice, check_choices, check_float, check_int
from ..models.graphs import model_device
from .interventions import cache_activations

SCHEMA = "circuitclust.similarity/1"
COMPARE_SCHEMA = "circuitclust.similarity-compare/1"
GW_DEFINITION = ("0.5*sqrt(GW), GW = min_T sum (D1_ik - D2_jl)^2 T_ij T_kl over couplings with uniform "
                 "marginals; D = pairwise distances divided by their mean off-diagonal entry")
HOOK_SHORTCUTS = {
    "resid_post": "blocks.{l}.hook_resid_post",
    "resid_pre": "blocks.{l}.hook_resid_pre",
    "mlp_out": "blocks.{l}.hook_mlp_out",
    "attn_out": "blocks.{l}.hook_attn_out",
}


# ----------------------------------------------------------------------------------------------- inputs
def resolve_hooks(model, hooks: str | Sequence[str] | None = None) -> list[str]:
    """Hook names to compare, in order. ``None`` = ``blocks.{l}.hook_resid_post`` for every block; a
    shortcut (``resid_post``, ``resid_pre``, ``mlp_out``, ``attn_out``) expands to every block; other strings
    are explicit hook names. Raises :class:`CircuitclustError` for a hook the model does not have."""
    if hooks is None:
        hooks = ["resid_post"]
    elif isinstance(hooks, str):
        hooks = [h.strip() for h in hooks.split(",") if h.strip()]
    names: list[str] = []
    for h in hooks:
        if h in HOOK_SHORTCUTS:
            names += [HOOK_SHORTCUTS[h].format(l=l) for l in range(model.cfg.n_layers)]
        else:
            names.append(h)
    available = set(model.hook_dict)
    missing = [h for h in names if h not in available]
    if missing:
        raise CircuitclustError(
            f"hook '{missing[0]}' does not exist in this model: use {', '.join(HOOK_SHORTCUTS)} or a name such "
            f"as blocks.0.hook_resid_post (the model has {len(available)} hooks; see model.hook_dict)")
    if len(set(names)) != len(names):
        raise CircuitclustError("the same hook is listed twice")
    return names


def load_prompts(prompts: str | Sequence[str], split: str = "train") -> tuple[list[str], str]:
    """Texts and a source label: a list of strings as given, or a corpus name / path through
    :func:`circuitclust.data.load_corpus` (``"wiki"``, ``"chemistry"``, a .jsonl/.txt path)."""
    if isinstance(prompts, str):
        from ..data import load_corpus

        texts = [t for t in load_corpus(prompts, split=split)["text"] if t and t.strip()]
        source = f"{prompts}:{split}"
    else:
        texts = [str(t) for t in prompts if str(t).strip()]
        source = f"list[{len(texts)}]"
    if not texts:
        raise DataError(f"no non-empty prompts in {source}")
    return texts, source


def tokenize_prompts(tokenizer, texts: Sequence[str], max_tokens: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids ``[P, T]`` and the mask ``[P, T]`` of positions that may be sampled (inside the
    text, not position 0, not a special token)."""
    ids = [tokenizer(t, truncation=True, max_length=max_tokens)["input_ids"] for t in texts]
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(ids), width), pad, dtype=torch.long)
    lengths = torch.tensor([len(i) for i in ids])
    for p, row in enumerate(ids):  # one copy per prompt; the texts are variable-length Python lists
        tokens[p, :len(row)] = torch.tensor(row, dtype=torch.long)
    pos = torch.arange(width)
    valid = (pos[None, :] < lengths[:, None]) & (pos[None, :] >= 1)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    if special.numel():
        valid &= ~torch.isin(tokens, special)
    return tokens, valid


def _check_n(name: str, n: int) -> int:
    n = check_int(name, n)
    if n < MIN_POINTS:
        raise OptionError(f"{name}={n} is too small: GW and CKA need at least {MIN_POINTS} token positions "
                          "(use n >= 64 for stable distances)")
    return n


def sample_positions(valid: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` distinct (prompt, position) pairs drawn uniformly from ``valid[P, T]`` with ``seed`` ->
    ``[n, 2]`` int64 sorted by prompt then position."""
    _check_n("n", n)
    flat = torch.nonzero(valid)
    if flat.shape[0] < n:
        raise DataError(f"only {flat.shape[0]} usable token positions in the prompts but n={n}: lower n or "
                        "give more/longer prompts")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(flat.shape[0], generator=g)[:n]
    chosen = flat[pick]
    order = torch.argsort(chosen[:, 0] * valid.shape[1] + chosen[:, 1])
    return chosen[order]


@torch.no_grad()
def collect_representations(model, tokens: torch.Tensor, positions: torch.Tensor, hooks: Sequence[str], *,
                            batch_size: int = 8, progress: bool = False) -> list[torch.Tensor]:
    """Activations at ``hooks`` for the sampled ``positions[n, 2]`` (prompt, position) of ``tokens[P, T]``
    -> one ``[n, d_hook]`` float32 tensor per hook, on the model's device. Only prompts holding a sampled
    position are run, ``batch_size`` at a time, each cut after its last sampled position.

    Only the sampled positions are kept, and the forward pass stops as soon as every requested hook has fired
    (:func:`~.interventions.cache_activations` with ``logits=False``): the unembedding of Gemma's 262k-token
    vocabulary is otherwise most of the cost, and ``stop_at_layer`` cannot skip it when the last block is
    hooked.
    """
    from tqdm.auto import tqdm

    device = model_device(model)
    prompts = torch.unique(positions[:, 0])
    out: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    for s in tqdm(range(0, len(prompts), batch_size), desc="activations", disable=not progress, leave=False):
        batch = prompts[s:s + batch_size]
        sel = torch.isin(positions[:, 0], batch)
        rows = torch.searchsorted(batch, positions[sel, 0]).to(device)
        cols = positions[sel, 1].to(device)
        width = int(positions[sel, 1].max()) + 1  # nothing after the last sampled position is needed (causal)
        _, got = cache_activations(model, tokens[batch, :width].to(device), hooks, logits=False,
                                   keep=lambda act: act[rows, cols].float())
        for h in hooks:
            out[h].append(got[h])
    # positions are sorted by prompt, so concatenating batch by batch keeps their order
    return [torch.cat(out[h]) for h in hooks]


# ----------------------------------------------------------------------------------------------- results
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


@dataclass
class LayerSimilarity:
    """Layer-by-layer similarity of one model on one set of token positions.

    ``distances[L, L]``: GW distances (see ``GW_DEFINITION``); ``cka[L, L]``: linear CKA; ``layers``: hook
    names; ``positions[n, 2]``: the sampled (prompt, position) pairs; ``layer_dists[L, n, n]``: the
    normalised per-layer distance matrices (kept in memory for bootstrap and comparison, not saved);
    ``groups``: :class:`LayerGroups`; ``provenance``: model, n, seed, solver, metric, normalisation, prompts.
    """
    distances: torch.Tensor
    cka: torch.Tensor
    layers: list[str]
    positions: torch.Tensor
    provenance: dict[str, Any]
    groups: LayerGroups | None = None
    layer_dists: torch.Tensor | None = None
    gw_ci: tuple[torch.Tensor, torch.Tensor] | None = None

    def save(self, out_dir: str | Path) -> Path:
        """Write similarity.json, similarity.safetensors, gw.csv and cka.csv into ``out_dir``."""
        from safetensors.torch import save_file

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        prov = self.provenance
        doc = {"schema": SCHEMA, "model": prov.get("model"), "layers": self.layers, "n": prov.get("n"),
               "seed": prov.get("seed"), "gw": self.distances.double().cpu().tolist(),
               "cka": self.cka.double().cpu().tolist(),
               "groups": None if self.groups is None else self.groups.to_json(),
               "solver": prov.get("solver"), "metric": prov.get("metric"), "normalize": prov.get("normalize"),
               "gw_definition": GW_DEFINITION, "provenance": prov}
        tensors = {"gw": self.distances.double().cpu().contiguous(), "cka": self.cka.double().cpu().contiguous(),
                   "positions": self.positions.cpu().contiguous()}
        if self.gw_ci is not None:
            doc["gw_ci_low"] = self.gw_ci[0].double().cpu().tolist()
            doc["gw_ci_high"] = self.gw_ci[1].double().cpu().tolist()
            tensors["gw_ci_low"] = self.gw_ci[0].double().cpu().contiguous()
            tensors["gw_ci_high"] = self.gw_ci[1].double().cpu().contiguous()
        with atomic_path(out / "similarity.safetensors") as tmp:
            save_file(tensors, str(tmp), metadata={"schema": SCHEMA})
        for name, mat in (("gw.csv", self.distances), ("cka.csv", self.cka)):
            write_csv(out / name, ["layer", *self.layers],
                      [[n, *(f"{v:.6g}" for v in row)] for n, row in zip(self.layers, mat.double().cpu().tolist())])
        write_json(out / "similarity.json", doc)  # last: its presence means the folder is complete
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> "LayerSimilarity":
        """Read what :meth:`save` wrote (``layer_dists`` is not saved and comes back as None)."""
        from safetensors.torch import load_file

        folder = Path(out_dir)
        path = folder / "similarity.json"
        if not path.is_file():
            raise DataError(f"{folder} has no similarity.json: run `circuitclust similarity MODEL --out {folder}`")
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
                raise DataError(f"{path} has schema {doc.get('schema') if isinstance(doc, dict) else None!r}, "
                                f"expected {SCHEMA!r}: it was not written by `circuitclust similarity`")
            t = load_file(str(folder / "similarity.safetensors"))
            ci = (t["gw_ci_low"], t["gw_ci_high"]) if "gw_ci_low" in t else None
            groups = None if doc.get("groups") is None else LayerGroups.from_json(doc["groups"])
            return cls(distances=t["gw"], cka=t["cka"], layers=list(doc["layers"]), positions=t["positions"],
                       provenance=doc["provenance"], groups=groups, gw_ci=ci)
        except DataError:
            raise
        except Exception as e:  # JSON, safetensors and key errors of a damaged folder
            raise DataError(f"{folder} holds a damaged similarity result ({type(e).__name__}): re-run "
                            "`circuitclust similarity`") from None


# ----------------------------------------------------------------------------------------------- groups
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
    stability = {"n_boot": n_boot, "seed": seed, "solver": solver, "ari_mean": float(a.mean()),
                 "ari_ci": torch.quantile(a, q.double()).tolist(), "boundary_freq": (cuts / n_boot).tolist(),
                 "coassign": (coassign / n_boot).tolist()}
    return stability, (lo, hi)


# ----------------------------------------------------------------------------------------------- main entry
def _prepare(model, prompts, *, hooks, n, seed, split, max_tokens):
    names = resolve_hooks(model, hooks)
    texts, source = load_prompts(prompts, split=split)
    tokens, valid = tokenize_prompts(model.tokenizer, texts, max_tokens=max_tokens)
    positions = sample_positions(valid, n, seed)
    return names, texts, source, tokens, positions


def _similarity_from_reps(reps: list[torch.Tensor], names: list[str], positions: torch.Tensor, prov: dict, *,
                          metric: str, normalize: str, solver: str, epsilon: float, n_groups: int | None,
                          contiguous: bool, n_boot: int, seed: int, progress: bool,
                          starts: Sequence[str] = EXACT_STARTS) -> LayerSimilarity:
    dists = torch.stack([pairwise_distances(r, metric=metric, normalize=normalize) for r in reps])
    gw, info = gw_matrix(dists, solver=solver, epsilon=epsilon, starts=starts, seed=seed, progress=progress,
                         return_info=True)
    if info:
        prov["exact_start_summary"] = info
    cka = cka_matrix(reps)
    groups = find_groups(gw, n_groups=n_groups, contiguous=contiguous) if len(names) > 1 else None
    ci = None
    if n_boot > 0 and groups is not None:
        groups.stability, ci = bootstrap_groups(dists, groups, n_boot=n_boot, seed=seed, solver=solver,
                                                epsilon=epsilon, starts=starts, progress=progress)
    return LayerSimilarity(distances=gw, cka=cka, layers=names, positions=positions, provenance=prov,
                           groups=groups, layer_dists=dists, gw_ci=ci)


def _provenance(model, model_name, *, n, seed, solver, metric, normalize, epsilon, source, max_tokens,
                n_prompts, starts=EXACT_STARTS) -> dict:
    uses_eps = solver != "exact" or "entropic" in starts
    return {"model": model_name or getattr(model.cfg, "model_name", type(model).__name__), "n": n, "seed": seed,
            "solver": solver, "epsilon": epsilon if uses_eps else None,
            "exact_starts": list(starts) if solver == "exact" else None, "metric": metric,
            "normalize": normalize, "prompts": source, "n_prompts": n_prompts, "max_tokens": max_tokens,
            "positions": "uniform over (prompt, position) pairs, excluding position 0 and special tokens"}


def check_similarity_options(*, n: int = 256, metric: str = "euclidean", solver: str = "exact", batch_size: int = 8,
                             max_tokens: int = 128, normalize: str = "mean", epsilon: float = 1e-2,
                             split: str = "train", n_boot: int = 0, starts: Sequence[str] = EXACT_STARTS,
                             prefix: str = "") -> None:
    """Validate :func:`layer_similarity`'s options (``prefix="--"`` names them as CLI options)."""
    def opt(name: str) -> str:
        return prefix + (name.replace("_", "-") if prefix else name)

    _check_n(opt("n"), n)
    check_choice(opt("metric"), metric, ("euclidean", "cosine"))
    check_choice(opt("solver"), solver, SOLVERS)
    check_int(opt("batch_size"), batch_size, 1)
    check_int(opt("max_tokens"), max_tokens, 2)
    check_choice(opt("normalize"), normalize, NORMALIZE)
    check_float(opt("epsilon"), epsilon, 0.0, open_min=True)
    check_choice(opt("split"), split, ("train", "heldout"))
    check_int(opt("n_boot") if not prefix else "--boot", n_boot, 0)
    check_choices(opt("starts"), list(starts), START_KINDS)


def layer_similarity(model, prompts: str | Sequence[str], *, hooks: str | Sequence[str] | None = None,
                     n: int = 256, metric: str = "euclidean", solver: str = "exact", seed: int = 0,
                     batch_size: int = 8, max_tokens: int = 128, normalize: str = "mean", epsilon: float = 1e-2,
                     split: str = "train", n_groups: int | None = None, contiguous: bool = True, n_boot: int = 0,
                     model_name: str | None = None, exact_starts: Sequence[str] = EXACT_STARTS,
                     progress: bool = False) -> LayerSimilarity:
    """GW (and linear CKA) similarity between the representations of every pair of hooked layers.

    ``model``: a TransformerBridge (``circuitclust.models.load_model``); ``prompts``: list of strings or a corpus
    name (``"wiki"``, ``"chemistry"``, a path) read with ``split``; ``hooks``: see :func:`resolve_hooks`;
    ``n`` token positions sampled with ``seed``; ``metric``: euclidean | cosine; ``normalize``: see
    :func:`circuitclust.core.similarity.pairwise_distances`; ``solver``: exact | entropic | entropic-pgd;
    ``exact_starts``: the exact solver's starts (:data:`circuitclust.core.similarity.EXACT_STARTS`; the lowest
    GW cost is kept and which start won is recorded in ``provenance["exact_start_summary"]``).
    Groups: average-linkage clustering of the GW matrix (``contiguous`` runs of layers or free; ``n_groups``
    or chosen by silhouette); ``n_boot > 0`` adds bootstrap stability and per-entry 95% intervals.
    Returns a :class:`LayerSimilarity` with ``distances[L, L]``, ``cka[L, L]``, ``layers`` and provenance.
    """
    check_similarity_options(n=n, metric=metric, solver=solver, batch_size=batch_size, max_tokens=max_tokens,
                             normalize=normalize, epsilon=epsilon, split=split, n_boot=n_boot, starts=exact_starts)
    names, texts, source, tokens, positions = _prepare(model, prompts, hooks=hooks, n=n, seed=seed, split=split,
                                                       max_tokens=max_tokens)
    if n_groups is not None:
        check_int("n_groups", n_groups, 2, max(2, len(names)))
    reps = collect_representations(model, tokens, positions, names, batch_size=batch_size, progress=progress)
    prov = _provenance(model, model_name, n=n, seed=seed, solver=solver, metric=metric, normalize=normalize,
                       epsilon=epsilon, source=source, max_tokens=max_tokens, n_prompts=len(texts),
                       starts=exact_starts)
    return _similarity_from_reps(reps, names, positions, prov, metric=metric, normalize=normalize, solver=solver,
                                 epsilon=epsilon, n_groups=n_groups, contiguous=contiguous, n_boot=n_boot,
                                 seed=seed, progress=progress, starts=exact_starts)


# ----------------------------------------------------------------------------------------------- comparison
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


__all__ = ["LayerSimilarity", "LayerGroups", "layer_similarity", "compare_similarity",
           "find_groups", "bootstrap_groups", "resolve_hooks", "load_prompts", "tokenize_prompts",
           "sample_positions", "collect_representations", "HOOK_SHORTCUTS", "SCHEMA", "COMPARE_SCHEMA"]
