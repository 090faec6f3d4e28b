"""Factual-recall tasks: JSONL files of clean/corrupted prompt pairs for activation patching."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..resources import data_dir
from .jsonl import load_json_files

TASK_FIELDS = ("prompt", "answer", "corrupted_prompt", "corrupted_answer")


def tasks_dir() -> Path:
    return data_dir() / "tasks"


def list_tasks() -> list[str]:
    """Names of the bundled recall tasks (``data/tasks/<name>.jsonl``), sorted."""
    return sorted(p.stem for p in tasks_dir().glob("*.jsonl"))


def load_task(name: str):
    """A recall task as a ``datasets.Dataset`` with columns prompt, answer, corrupted_prompt,
    corrupted_answer (answers start with a space), plus subject/corrupted_subject when present.
    ``name``: a bundled task name or a path to a JSONL file of such rows."""
    path = Path(name).expanduser()
    if path.suffix != ".jsonl":
        path = tasks_dir() / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"unknown task '{name}': use one of {', '.join(list_tasks())} or a .jsonl path")
    return load_json_files([path], TASK_FIELDS)


def chained_task_rows(items: list[tuple[str, str]], template: str) -> list[dict]:
    """Task rows (the :data:`TASK_FIELDS` columns) from ``(subject, answer)`` pairs and a ``template`` with one
    ``{}`` for the subject: each item's corrupted prompt is the next item's (cyclically). For patching, pick
    subjects of equal token length so clean and corrupted prompts align."""
    rows = []
    for i, (subject, answer) in enumerate(items):
        other, other_answer = items[(i + 1) % len(items)]
        rows.append({"prompt": template.format(subject), "answer": answer,
                     "corrupted_prompt": template.format(other), "corrupted_answer": other_answer})
    return rows

