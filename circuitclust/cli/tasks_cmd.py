"""``circuitclust tasks MODEL``: top-1 recall accuracy of a model on the bundled factual-recall tasks."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import echo, format_table, one_line_errors
from .main import app


@app.command("tasks")
@one_line_errors
def tasks(
    model: str = typer.Argument(..., help="gemma-3-270m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    task: Optional[list[str]] = typer.Option(None, "--task", "-t", help="task name or .jsonl path (repeatable; default: all bundled tasks)"),
    batch_size: int = typer.Option(32, help="prompts per forward pass"),
    limit: Optional[int] = typer.Option(None, help="only the first N prompts of each task"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results to this JSON file"),
) -> None:
    """Print per-task n, correct, top-1 accuracy on the answer's first token and its Wilson 95% CI."""
    from ..analysis.recall import task_accuracy
    from ..data import list_tasks
    from ..models import load_model

    names = list(task) if task else list_tasks()
    bridge = load_model(model, device=device)
    results = [task_accuracy(bridge, name, batch_size=batch_size, limit=limit) for name in names]
    rows = [(r.task, r.n, r.n_correct, r.accuracy, f"[{r.ci_low:.3f}, {r.ci_high:.3f}]") for r in results]
    echo(format_table(["task", "n", "correct", "accuracy", "95% CI (Wilson)"], rows))
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps({"schema": "circuitclust.recall/1", "model": model,
                                        "tasks": [r.as_dict() for r in results]}, indent=2))
        echo(f"wrote {json_out}")
