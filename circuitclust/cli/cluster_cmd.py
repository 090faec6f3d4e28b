"""``circuitclust cluster MODEL``: partition a model's weight graphs and score them against chance and shuffles.

Writes RUN_DIR/partition.json + partition.safetensors, clusterability.json (schema
``circuitclust.clusterability/1``) and clusterability.csv, and prints the table.
"""
from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import echo, format_table, one_line_errors
from .main import app


@app.command("cluster")
@one_line_errors
def cluster(
    model: str = typer.Argument(..., help="gemma-3-270m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    k: int = typer.Option(4, "--k", help="clusters per graph"),
    parts: str = typer.Option("mlp,attn", help="comma-separated: mlp, attn, or matrix kinds"),
    out: Path = typer.Option(..., "--out", help="run folder to write (new or empty; see --overwrite)"),
    shuffles: int = typer.Option(0, help="entry-shuffled re-clusterings per graph for the null (0 = none)"),
    seed: int = typer.Option(0, help="seed of every random step"),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)"),
    method: str = typer.Option("spectral", help="spectral (co-clustering) or blocks (equal contiguous blocks)"),
    power: int = typer.Option(1, help="cluster |W| (1) or W^2 (2)"),
    ncut: bool = typer.Option(False, "--ncut/--no-ncut", help="also spectral-cluster the whole-network graph (all units, |w| edges) and report its n-cut (slow on big models)"),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice; 1 is faster on an oversubscribed machine)"),
    ncut_shuffles: int = typer.Option(None, help="shuffles for the n-cut null (default: --shuffles)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the run already in --out"),
) -> None:
    """Partition MODEL's weight graphs into K clusters (tied hidden units) and score clusterability vs chance
    and vs shuffled weights."""
    import torch

    from ..analysis.clustering import METHODS, model_id, ncut_model, partition_model, score_model
    from ..errors import check_choice, check_int, resolve_device
    from ..models import load_model, matrix_kinds
    from ..models.loading import check_spec
    from ..runfiles import new_run_folder, write_clusterability

    # Every option is checked before the model loads and before any progress bar starts.
    part_list = [p.strip() for p in parts.split(",") if p.strip()]
    matrix_kinds(part_list)
    check_int("--k", k, 2)
    check_int("--shuffles", shuffles, 0)
    check_choice("--method", method, METHODS)
    check_choice("--power", power, (1, 2))
    if threads is not None:
        check_int("--threads", threads, 1)
    nc_shuf = shuffles if ncut_shuffles is None else check_int("--ncut-shuffles", ncut_shuffles, 0)
    dev = str(resolve_device(device))
    check_spec(model)
    if threads:
        torch.set_num_threads(threads)
    with new_run_folder(out, overwrite=overwrite) as staging:
        t0 = time.perf_counter()
        m = load_model(model, device=dev)
        t_load = time.perf_counter() - t0
        with torch.no_grad():
            t1 = time.perf_counter()
            mp = partition_model(m, k=k, parts=part_list, method=method, seed=seed, device=dev, power=power,
                                 progress=True)
            t_part = time.perf_counter() - t1
            mp.save(staging / "partition")
            t2 = time.perf_counter()
            rows = score_model(m, mp, shuffles=shuffles, seed=seed, device=dev, progress=True)
            t_score = time.perf_counter() - t2
            t3 = time.perf_counter()
            nc = (ncut_model(m, k, parts=part_list, shuffles=nc_shuf, seed=seed, device=dev, progress=True)
                  if ncut else None)
            t_ncut = time.perf_counter() - t3
        timings = {"load_s": round(t_load, 2), "partition_s": round(t_part, 2), "score_s": round(t_score, 2),
                   "ncut_s": round(t_ncut, 2)}
        write_clusterability(staging, {
            "model": model_id(m), "k": k, "seed": seed, "shuffles": shuffles, "graphs": rows, "ncut": nc,
            "method": method, "power": power, "parts": part_list, "timings": timings,
            "threads": torch.get_num_threads()})
    path = out / "clusterability.json"
    table = [(r["name"], f"{r['shape'][0]}x{r['shape'][1]}", r["k"], "/".join(map(str, r["col_sizes"])),
              r["clusterability"], r["chance"],
              "-" if r["shuffle_mean"] is None else r["shuffle_mean"],
              "-" if r["z"] is None else r["z"], "-" if r["p"] is None else r["p"]) for r in rows]
    echo(format_table(["graph", "shape", "k", "col sizes", "clusterability", "chance", "shuffle mean", "z", "p"],
                      table))
    mean_c = sum(r["clusterability"] for r in rows) / len(rows)
    mean_ch = sum(r["chance"] for r in rows) / len(rows)
    echo(f"mean clusterability {mean_c:.4f} vs chance {mean_ch:.4f} over {len(rows)} graphs")
    if nc is not None:
        extra = "" if nc["shuffle_mean"] is None else f" vs shuffles {nc['shuffle_mean']:.4f} (z {nc['z']:.2f}, p {nc['p']:.3f})"
        echo(f"whole-network n-cut (k={k}, {nc['n_nodes']} units) {nc['value']:.4f}{extra}")
    echo(f"timings: {timings}")
    echo(f"wrote {path} and {out / 'partition.json'}")
