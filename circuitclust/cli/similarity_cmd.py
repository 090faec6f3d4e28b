"""``circuitclust similarity MODEL_OR_RUN``: GW / CKA layer similarity, layer groups, optional comparison."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core.gw import EXACT_STARTS
from .common import echo, format_table, one_line_errors
from .main import app


def _summary(sim) -> str:
    rows = []
    labels = sim.groups.labels if sim.groups is not None else [0] * len(sim.layers)
    n_layers = len(sim.layers)
    for i, name in enumerate(sim.layers):
        nxt = float(sim.distances[i, i + 1]) if i + 1 < n_layers else "-"
        cka = float(sim.cka[i, i + 1]) if i + 1 < n_layers else "-"
        rows.append((name, labels[i], nxt, cka))
    return format_table(["layer", "group", "GW to next", "CKA to next"], rows)


@app.command("similarity")
@one_line_errors
def similarity(
    model: str = typer.Argument(..., help="model spec or fine-tuning RUN_DIR (gemma-3-270m, tiny-gpt2, an HF folder, ...)"),
    data: str = typer.Option("wiki", help="corpus name (wiki, chemistry) or a .jsonl/.txt path"),
    split: str = typer.Option("train", help="corpus split: train or heldout"),
    n: int = typer.Option(256, help="number of token positions sampled"),
    solver: str = typer.Option("exact", help="exact (POT conditional gradient) | entropic (batched proximal) | entropic-pgd"),
    metric: str = typer.Option("euclidean", help="euclidean | cosine"),
    hooks: Optional[str] = typer.Option(None, help="resid_post (default), mlp_out, attn_out, or comma-separated hook names"),
    seed: int = typer.Option(0, help="seed for the token positions and the bootstrap"),
    groups: Optional[int] = typer.Option(None, help="number of layer groups (default: best silhouette)"),
    free: bool = typer.Option(False, "--free", help="allow non-contiguous layer groups"),
    boot: int = typer.Option(0, help="bootstrap resamples for group stability and GW intervals (0 = none)"),
    starts: str = typer.Option(",".join(EXACT_STARTS),
                               help="exact solver: comma-separated CG starts (product, identity, profile, random, "
                                    "and opt-in entropic = the entropic solver's plan, ~1 s CPU more per pair at "
                                    "n=256, e.g. "
                                    "product,identity,profile,random,random,entropic); the lowest GW cost is kept"),
    batch_size: int = typer.Option(8, help="prompts per forward pass"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda when available)"),
    compare: Optional[str] = typer.Option(None, help="a second model / RUN_DIR to compare on the same inputs"),
    out: Path = typer.Option(..., help="output folder (similarity.json, similarity.safetensors, gw.csv, cka.csv); "
                                       "new or empty, see --overwrite"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the result already in --out"),
) -> None:
    """GW distances and linear CKA between the representations of every pair of layers, and the layer groups."""
    from ..analysis.similarity import check_similarity_options, compare_similarity, layer_similarity
    from ..data import load_corpus
    from ..errors import check_int, resolve_device
    from ..models import load_model
    from ..models.loading import check_spec
    from ..runfiles import new_run_folder, write_similarity_compare

    exact_starts = [s.strip() for s in starts.split(",") if s.strip()]
    check_similarity_options(n=n, metric=metric, solver=solver, batch_size=batch_size, split=split, n_boot=boot,
                             starts=exact_starts, prefix="--")
    if groups is not None:
        check_int("--groups", groups, 2)
    dev = str(resolve_device(device))
    for spec in (model, compare) if compare else (model,):
        check_spec(spec)
    load_corpus(data, split)  # a missing or malformed corpus fails before a model loads
    kwargs = dict(hooks=hooks, n=n, metric=metric, solver=solver, seed=seed, batch_size=batch_size, split=split,
                  n_groups=groups, contiguous=not free, n_boot=boot, progress=True, exact_starts=exact_starts)
    with new_run_folder(out, overwrite=overwrite) as staging:
        sim = layer_similarity(load_model(model, device=dev), data, model_name=model, **kwargs)
        sim.save(staging)
        if compare:
            other = layer_similarity(load_model(compare, device=dev), data, model_name=compare, **kwargs)
            other.save(staging / "compare")
            cmp = compare_similarity(sim, other)
            write_similarity_compare(staging, cmp)
    echo(_summary(sim))
    if sim.groups is not None:
        g = sim.groups
        echo(f"groups: {g.n_groups} (boundaries at layers {g.boundaries}), silhouette {g.silhouette:.3f}")
        if g.stability:
            lo, hi = g.stability["ari_ci"]
            echo(f"bootstrap ({g.stability['n_boot']}): ARI to full-sample groups {g.stability['ari_mean']:.3f} "
                 f"[{lo:.3f}, {hi:.3f}]")
            freq = g.stability["boundary_freq"]
            echo("bootstrap cut frequency per gap l|l+1: " + " ".join(f"{l}|{l + 1}:{f:.2f}" for l, f in enumerate(freq)))
    summary = sim.provenance.get("exact_start_summary")
    if summary:
        echo("exact-solver starts that reached the lowest GW (pairs): "
             + ", ".join(f"{k} {v}" for k, v in summary["wins"].items()))
    if compare:
        rows = [(name, v) for name, v in zip(cmp["layers"], cmp["per_layer_gw"] or [float("nan")] * len(cmp["layers"]))]
        echo(format_table(["layer", f"GW {model} vs {compare}"], rows))
        echo(f"GW-matrix rank correlation {cmp['gw_spearman']}, CKA {cmp['cka_spearman']}, "
             f"group ARI {cmp['groups_ari']}")
    echo(f"wrote {out}")
