"""``circuitclust similarity MODEL_OR_RUN``: GW / CKA layer similarity, layer groups, optional comparison."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..core.gw import EXACT_STARTS
from .common import DEVICE_MAP_HELP, DTYPE_HELP, echo, format_table, one_line_errors
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
    split: str = typer.Option("heldout", help="corpus split: heldout (text no fine-tuning saw) or train"),
    n: int = typer.Option(256, help="number of token positions sampled"),
    solver: str = typer.Option("exact", help="exact (POT conditional gradient) | entropic (batched proximal) | entropic-pgd"),
    metric: str = typer.Option("euclidean", help="euclidean | cosine"),
    hooks: Optional[str] = typer.Option(None, help="resid_post (default), mlp_out, attn_out, or comma-separated hook names"),
    seed: int = typer.Option(0, help="seed for the token positions and the bootstrap"),
    seeds: Optional[str] = typer.Option(None, help="replicates: comma-separated seeds (e.g. 0,1,2), one run each "
                                                   "(new token positions), aggregated as mean and t interval across "
                                                   "seeds (replaces --seed)"),
    groups: Optional[int] = typer.Option(None, "--n-groups", "--groups", help="number of layer groups (default: best silhouette)"),
    free: bool = typer.Option(False, "--free", help="allow non-contiguous layer groups"),
    boot: int = typer.Option(0, "--n-boot", "--boot", help="bootstrap resamples for group stability and GW intervals "
                             "(0 = none; each resample re-solves every layer pair, so 1000, what a 95% CI needs, is "
                             "a GPU job for a real model; fewer give an indicative 2.5-97.5% range, labelled so; "
                             "--seeds gives across-seed intervals instead)"),
    starts: str = typer.Option(",".join(EXACT_STARTS),
                               help="exact solver: comma-separated CG starts (product, identity, profile, random, "
                                    "and opt-in entropic = the entropic solver's plan, ~1 s CPU more per pair at "
                                    "n=256, e.g. "
                                    "product,identity,profile,random,random,entropic); the lowest GW cost is kept"),
    batch_size: int = typer.Option(8, help="prompts per forward pass"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda when available)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    compare: Optional[str] = typer.Option(None, help="a second model / RUN_DIR to compare on the same inputs"),
    out: Path = typer.Option(..., help="output folder (similarity.json, similarity.safetensors, gw.csv, cka.csv); "
                                       "new or empty, see --overwrite"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the result already in --out"),
) -> None:
    """GW distances and linear CKA between the representations of every pair of layers, and the layer groups."""
    from ..data import load_corpus
    from ..models.loading import check_spec
    from ..pipeline import SimilarityOptions
    from ..pipeline import parse_seeds, similarity_seeds
    from ..pipeline import similarity as run
    from ..runfiles import new_run_folder

    options = SimilarityOptions(n=n, metric=metric, solver=solver, seed=seed, split=split, hooks=hooks,
                                n_groups=groups, contiguous=not free, n_boot=boot, batch_size=batch_size,
                                starts=tuple(s.strip() for s in starts.split(",") if s.strip()), device=device,
                                dtype=dtype, device_map=device_map)
    seed_list = parse_seeds(seeds) if seeds is not None else None
    for spec in (model, compare) if compare else (model,):
        check_spec(spec)
    load_corpus(data, split)  # a missing or malformed corpus fails before a model loads
    if seed_list is not None:
        with new_run_folder(out, overwrite=overwrite, kind="similarity") as staging:
            reps = similarity_seeds(model, seed_list, data, options, compare=compare, progress=True)
            reps.save(staging)
        _print_replicates(reps.summary, model, compare)
        echo(f"wrote {out / 'replicates.json'} and one run per seed in {out}/seed{{S}}/")
        return
    with new_run_folder(out, overwrite=overwrite, kind="similarity") as staging:
        result = run(model, data, options, compare=compare, progress=True)
        result.save(staging)
    sim, cmp = result.base, result.comparison
    echo(_summary(sim))
    if sim.groups is not None:
        g = sim.groups
        echo(f"groups: {g.n_groups} (boundaries at layers {g.boundaries}), silhouette {g.silhouette:.3f}")
        if g.stability:
            lo, hi = g.stability["ari_ci"]
            note = g.stability["interval"].get("note")
            if note:
                echo(f"note: {note}")
            kind = "95% CI" if g.stability["interval"].get("level") else "2.5-97.5% range, indicative"
            echo(f"bootstrap ({g.stability['n_boot']}): ARI to full-sample groups {g.stability['ari_mean']:.3f} "
                 f"[{lo:.3f}, {hi:.3f}] ({kind})")
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


def _print_replicates(summary: dict, model: str, compare: str | None) -> None:
    """Per layer the GW and CKA distance to the next layer as mean [lo, hi] across seeds; group boundaries per
    seed; with a comparison, its rank correlations and group ARI across seeds."""
    from .common import fmt_interval

    base = summary["base"]
    layers = summary["layers"]
    rows = [(name, fmt_interval(base["gw_to_next"][i]) if i < len(layers) - 1 else "-",
             fmt_interval(base["cka_to_next"][i]) if i < len(layers) - 1 else "-") for i, name in enumerate(layers)]
    iv = summary["interval"]
    echo(format_table(["layer", "GW to next [95% over seeds]", "CKA to next [95%]"], rows))
    echo(f"median off-diagonal GW {fmt_interval(base['gw_offdiag_median'])}; group boundaries per seed: "
         + "; ".join(f"seed {s}: {b}" for s, b in zip(iv["seeds"], summary["boundaries_per_seed"]))
         + f" ({iv['method']}, level {iv['level']})")
    cmp = summary.get("comparison")
    if cmp:
        echo(f"{model} vs {compare}: GW-matrix rank correlation {fmt_interval(cmp['gw_spearman'])}, CKA "
             f"{fmt_interval(cmp['cka_spearman'])}, group ARI {fmt_interval(cmp['groups_ari'])}")
