"""``circuitclust tasks MODEL``: top-1 recall accuracy of a model on the bundled factual-recall tasks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import DEVICE_MAP_HELP, DTYPE_HELP, echo, format_table, one_line_errors
from .main import app


@app.command("tasks")
@one_line_errors
def tasks(
    model: str = typer.Argument(..., help="gemma-3-270m|smollm2-135m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name"),
    task: Optional[list[str]] = typer.Option(None, "--task", "-t", help="task name or .jsonl path (repeatable; default: all bundled tasks)"),
    batch_size: int = typer.Option(32, help="prompts per forward pass"),
    limit: Optional[int] = typer.Option(None, help="only the first N prompts of each task"),
    device: Optional[str] = typer.Option(None, help="cpu, cuda, ... (default: cuda if available)"),
    dtype: Optional[str] = typer.Option(None, "--dtype", help=DTYPE_HELP),
    device_map: Optional[str] = typer.Option(None, "--device-map", help=DEVICE_MAP_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results to this JSON file"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --json file"),
) -> None:
    """Print per-task n, correct, top-1 accuracy on the answer's first token and its Wilson 95% CI."""
    from ..analysis.patching.recall import task_accuracy
    from ..data import list_tasks, load_task
    from ..errors import RunFolderError, check_device_map, check_dtype, check_int, resolve_device
    from ..models import load_model
    from ..models.loading import check_spec
    from ..runfiles import write_recall

    check_int("--batch-size", batch_size, 1)
    if limit is not None:
        check_int("--limit", limit, 1)
    dtype = check_dtype(dtype)
    device_map = check_device_map(device_map, device)
    dev = None if device_map else str(resolve_device(device))
    check_spec(model)
    names = list(task) if task else list_tasks()
    for name in names:
        load_task(name)  # an unknown or malformed task fails before the model loads
    if json_out is not None:
        if json_out.is_dir():
            raise RunFolderError(f"--json {json_out} is a folder: give a file path such as {json_out / 'recall.json'}")
        if json_out.exists() and not overwrite:
            raise RunFolderError(f"--json {json_out} exists: pass --overwrite to replace it, or choose another file")
    bridge = load_model(model, device=dev, dtype=dtype, device_map=device_map)
    results = [task_accuracy(bridge, name, batch_size=batch_size, limit=limit) for name in names]
    rows = [(r.task, r.n, r.n_correct, r.accuracy, f"[{r.ci_low:.3f}, {r.ci_high:.3f}]") for r in results]
    echo(format_table(["task", "n", "correct", "accuracy", "95% CI (Wilson)"], rows))
    if json_out is not None:
        write_recall(json_out, model, [r.as_dict() for r in results])
        echo(f"wrote {json_out}")
