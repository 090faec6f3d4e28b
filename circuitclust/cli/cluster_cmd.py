"""``circuitclust cluster MODEL``: partition a model's weight graphs and score them against chance and shuffles.

Writes RUN_DIR/partition.json + partition.safetensors, clusterability.json (schema
``circuitclust.clusterability/1``) and clusterability.csv, and prints the table.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import typer

from .common import echo, format_table, one_line_errors
from .main import app

SCHEMA = "circuitclust.clusterability/1"
CSV_FIELDS = ["name", "layer", "kind", "shape", "k", "row_sizes", "col_sizes", "clusterability", "chance",
              "shuffle_mean", "shuffle_std", "z", "p"]


def write_clusterability(out: Path, model: str, k: int, seed: int, shuffles: int, rows: list[dict],
                         ncut: dict | None, extra: dict | None = None) -> Path:
    """Write clusterability.json and its CSV twin into ``out``; returns the JSON path."""
    out.mkdir(parents=True, exist_ok=True)
    doc = {"schema": SCHEMA, "model": model, "k": k, "seed": seed, "shuffles": shuffles, "graphs": rows,
           "ncut": ncut, **(extra or {})}
    path = out / "clusterability.json"
    path.write_text(json.dumps(doc, indent=1))
    with open(out / "clusterability.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        wr.writeheader()
        for r in rows:
            wr.writerow({key: (" ".join(map(str, r[key])) if isinstance(r[key], list) else r[key])
                         for key in CSV_FIELDS})
    return path


@app.command("cluster")
@one_line_errors
def cluster(
    model: str = typer.Argument(..., help="gemma-3-270m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    k: int = typer.Option(4, "--k", help="clusters per graph"),
    parts: str = typer.Option("mlp,attn", help="comma-separated: mlp, attn, or matrix kinds"),
    out: Path = typer.Option(..., "--out", help="run folder to write"),
    shuffles: int = typer.Option(0, help="entry-shuffled re-clusterings per graph for the null (0 = none)"),
    seed: int = typer.Option(0, help="seed of every random step"),
    device: str = typer.Option(None, help="cpu, cuda, cuda:1 ... (default: CUDA if available)"),
    method: str = typer.Option("spectral", help="spectral (co-clustering) or blocks (equal contiguous blocks)"),
    power: int = typer.Option(1, help="cluster |W| (1) or W^2 (2)"),
    ncut: bool = typer.Option(False, "--ncut/--no-ncut", help="also spectral-cluster the whole-network graph (all units, |w| edges) and report its n-cut (slow on big models)"),
    threads: int = typer.Option(None, help="CPU threads for torch (default: torch's choice; 1 is faster on an oversubscribed machine)"),
    ncut_shuffles: int = typer.Option(None, help="shuffles for the n-cut null (default: --shuffles)"),
) -> None:
    """Partition MODEL's weight graphs into K clusters (tied hidden units) and score clusterability vs chance
    and vs shuffled weights."""
    import torch

    from ..analysis.clustering import model_id, ncut_model, partition_model, score_model
    from ..errors import CircuitclustError
    from ..models import load_model

    if threads:
        torch.set_num_threads(threads)
    part_list = [p.strip() for p in parts.split(",") if p.strip()]
    if shuffles < 0:
        raise CircuitclustError("--shuffles must be >= 0")
    t0 = time.perf_counter()
    m = load_model(model, device=device)
    dev = device or str(next(m.parameters()).device)
    t_load = time.perf_counter() - t0
    with torch.no_grad():
        t1 = time.perf_counter()
        mp = partition_model(m, k=k, parts=part_list, method=method, seed=seed, device=dev, power=power,
                             progress=True)
        t_part = time.perf_counter() - t1
        mp.save(out / "partition")
        t2 = time.perf_counter()
        rows = score_model(m, mp, shuffles=shuffles, seed=seed, device=dev, progress=True)
        t_score = time.perf_counter() - t2
        t3 = time.perf_counter()
        nc_shuf = shuffles if ncut_shuffles is None else ncut_shuffles
        nc = ncut_model(m, k, parts=part_list, shuffles=nc_shuf, seed=seed, device=dev, progress=True) if ncut else None
        t_ncut = time.perf_counter() - t3
    timings = {"load_s": round(t_load, 2), "partition_s": round(t_part, 2), "score_s": round(t_score, 2),
               "ncut_s": round(t_ncut, 2)}
    path = write_clusterability(out, model_id(m), k, seed, shuffles, rows, nc,
                                {"method": method, "power": power, "parts": part_list, "timings": timings,
                                 "threads": torch.get_num_threads()})
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
