"""``circuitclust graphs MODEL`` and (for now) ``circuitclust demo``: weight-graph summaries."""
from __future__ import annotations

import typer

from .common import DTYPE_HELP, echo, format_table, one_line_errors
from .main import app


def graph_table(spec: str, parts: str = "mlp,attn", dtype: str | None = None) -> str:
    """Load ``spec`` (in ``dtype``, default float32) and return the per-layer table of its weight graphs (name,
    kind, shape, spaces, norm)."""
    import torch

    from ..models import load_model, matrix_kinds, weight_graphs
    from ..errors import check_dtype
    from ..models.loading import check_spec

    dtype = check_dtype(dtype)
    matrix_kinds(parts)
    check_spec(spec)
    model = load_model(spec, device="cpu", dtype=dtype)
    rows = []
    with torch.no_grad():
        for g in weight_graphs(model, parts=[p.strip() for p in parts.split(",") if p.strip()]):
            w = g.weight
            rows.append((g.name, g.kind, f"{g.shape[0]}x{g.shape[1]}", f"{g.in_space}->{g.out_space}",
                         float(w.float().norm())))
    return format_table(["graph", "kind", "shape", "units", "frobenius"], rows)


@app.command("graphs")
@one_line_errors
def graphs(
    model: str = typer.Argument(..., help="gemma-3-270m|smollm2-135m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    parts: str = typer.Option("mlp,attn", help="comma-separated: mlp, attn, or matrix kinds (mlp_in, attn_q, ...)"),
    dtype: str = typer.Option(None, "--dtype", help=DTYPE_HELP),
) -> None:
    """Print every weight graph of MODEL: name, kind, [n_in x n_out] shape, unit spaces, Frobenius norm."""
    echo(graph_table(model, parts, dtype))
