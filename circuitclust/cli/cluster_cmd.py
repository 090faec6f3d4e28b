"""``circuitclust cluster MODEL``: partition a model's weight graphs and score them against chance and shuffles.

Writes RUN_DIR/partition.json + partition.safetensors, clusterability.json (schema
``circuitclust.clusterability/1``) and clusterability.csv, and prints the table. With ``--seeds 0,1,2`` each
seed's run goes into RUN_DIR/seed{S}/ and the across-seed summary into RUN_DIR/replicates.json (+ .csv).
"""
from __future__ import annotations

from pathlib import Path

import typer

from ..pipeline import ClusterOptions
from .common import DEVICE_MAP_HELP, DTYPE_HELP, echo, format_table, one_line_errors
from .main import app

_D = ClusterOptions()  # the defaults live in the options object


@app.command("cluster")
@one_line_errors
def cluster(
    model: str = typer.Argument(..., help="gemma-3-270m|smollm2-135m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    k: int = typer.Option(_D.k, "--k", help="clusters per graph"),
    parts: str = typer.Option(",".join(_D.parts), help="comma-separated: mlp, attn, or matrix kinds"),
    out: Path = typer.Option(..., "--out", help="run folder to write (new or empty; see --overwrite)"),
    shuffles: int = typer.Option(_D.shuffles, help="entry-shuffled re-clusterings per graph for the null (0 = none; "
                                 "99 lets p reach 0.01; about 105 s of CPU per 100 on Gemma 3 270M's 54 MLP graphs, "
                                 "shared by --threads workers)"),
    seed: int = typer.Option(_D.seed, help="seed of every random step"),
    seeds: str = typer.Option(None, help="replicates: comma-separated seeds (e.g. 0,1,2), one run each, aggregated "
                                         "as mean and t interval across seeds (replaces --seed)"),
    device: str = typer.Option(_D.device, help="cpu, cuda, cuda:1 ... (default: CUDA if available)"),
    dtype: str = typer.Option(_D.dtype, "--dtype", help=DTYPE_HELP),
    device_map: str = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    method: str = typer.Option(_D.method, help="spectral (co-clustering) or blocks (equal contiguous blocks)"),
    power: int = typer.Option(_D.power, help="cluster |W| (1) or W^2 (2)"),
    balance: float = typer.Option(_D.balance, help="spectral: every cluster keeps at least this share of n/k units "
                                                   "on each side of each graph (0 = k-means as it is; 0.5 = half)"),
    ncut: bool = typer.Option(_D.ncut, "--ncut/--no-ncut", help="also spectral-cluster the whole-network graph (all units, |w| edges) and report its n-cut (slow on big models)"),
    threads: int = typer.Option(None, help="CPU threads for torch and the shuffle null's workers (default: torch's "
                                           "choice; 1 is faster on an oversubscribed machine)"),
    ncut_shuffles: int = typer.Option(_D.ncut_shuffles, help="shuffles for the n-cut null (default: --shuffles)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run already in --out"),
) -> None:
    """Partition MODEL's weight graphs into K clusters (tied hidden units) and score clusterability vs chance
    and vs shuffled weights."""
    import torch

    from ..errors import check_threads
    from ..models.loading import check_spec
    from ..pipeline import cluster as run
    from ..pipeline import cluster_seeds, parse_seeds
    from ..runfiles import new_run_folder

    # Every option is checked before the model loads and before any progress bar starts.
    options = ClusterOptions(k=k, parts=tuple(p.strip() for p in parts.split(",") if p.strip()), method=method,
                             power=power, balance=balance, shuffles=shuffles, seed=seed, ncut=ncut,
                             ncut_shuffles=ncut_shuffles,
                             device=device, dtype=dtype, device_map=device_map)
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if threads is not None:
        torch.set_num_threads(check_threads(threads))
    check_spec(model)
    if seed_list is not None:
        with new_run_folder(out, overwrite=overwrite, kind="cluster") as staging:
            reps = cluster_seeds(model, seed_list, options, progress=True)
            reps.save(staging)
        _print_replicates(reps.summary, options)
        echo(f"wrote {out / 'replicates.json'} and one run per seed in {out}/seed{{S}}/")
        return
    with new_run_folder(out, overwrite=overwrite, kind="cluster") as staging:
        res = run(model, options, progress=True)
        res.timings["threads"] = torch.get_num_threads()
        res.save(staging)
    def cell(v):
        return "-" if v is None else v

    table = [(r["name"], f"{r['shape'][0]}x{r['shape'][1]}", r["k"], "/".join(map(str, r["col_sizes"])),
              r["clusterability"], r["chance"], cell(r["clusterability_norm"]), cell(r["shuffle_mean"]),
              cell(r["z"]), cell(r["p"]), cell(r["p_floor"]), cell(r["q"])) for r in res.graphs]
    echo(format_table(["graph", "shape", "k", "col sizes", "C", "chance", "C norm", "shuffle mean", "z", "p",
                       "p floor", "q (BH)"], table))
    echo(f"mean clusterability {res.mean_clusterability:.4f} vs chance {res.mean_chance:.4f} "
         f"(normalised {res.mean_normalised:.4f}) over {len(res.graphs)} graphs")
    if options.shuffles:
        significant = sum(1 for r in res.graphs if r["q"] is not None and r["q"] <= 0.05)
        echo(f"shuffle null: {options.shuffles} shuffles per graph, so the smallest possible p is "
             f"{1 / (options.shuffles + 1):.3g}; {significant} of {len(res.graphs)} graphs at q <= 0.05 "
             "(Benjamini-Hochberg across graphs)")
    nc = res.ncut
    if nc is not None:
        extra = "" if nc["shuffle_mean"] is None else f" vs shuffles {nc['shuffle_mean']:.4f} (z {nc['z']:.2f}, p {nc['p']:.3f})"
        echo(f"whole-network n-cut (k={options.k}, {nc['n_nodes']} units) {nc['value']:.4f}{extra}")
    echo(f"timings: {res.timings}")
    echo(f"wrote {out / 'clusterability.json'} and {out / 'partition.json'}")


def _print_replicates(summary: dict, options: ClusterOptions) -> None:
    """The across-seed table: per graph, mean [lo, hi] of C and normalised C, mean chance, z and the largest
    p and q over seeds; then the model-level line."""
    from .common import fmt_interval

    iv = summary["interval"]
    rows = []
    for g in summary["graphs"]:
        def worst(key):
            v = g.get(key)
            return "-" if not isinstance(v, dict) or v.get("max") is None else v["max"]

        rows.append((g["name"], fmt_interval(g["clusterability"]), g["chance"]["mean"],
                     fmt_interval(g["clusterability_norm"]), "-" if g["z"] is None or not isinstance(g["z"], dict)
                     or g["z"]["mean"] is None else g["z"]["mean"], worst("p"), worst("q")))
    echo(format_table(["graph", "C mean [95% over seeds]", "chance", "C norm mean [95%]", "z mean", "p max",
                       "q max (BH)"], rows))
    ml = summary["model_level"]
    seeds = ",".join(map(str, iv["seeds"]))
    echo(f"mean clusterability {fmt_interval(ml['mean_clusterability'])} vs chance "
         f"{fmt_interval(ml['mean_chance'])}, normalised {fmt_interval(ml['mean_normalised'])} over seeds {seeds} "
         f"({iv['method']}, level {iv['level']})")
    if options.shuffles:
        sig = ml["significant_q05"]["values"]
        echo(f"shuffle null: {options.shuffles} shuffles per graph and seed (p floor {1 / (options.shuffles + 1):.3g});"
             f" graphs at q <= 0.05 per seed: {', '.join(str(int(v)) for v in sig)} of {len(summary['graphs'])}")
