"""Patching tasks: the bundled factual-recall tasks (JSONL files of clean/corrupted prompt pairs), IOI prompts
generated from templates (:mod:`.ioi`), and per-token loss on the held-out paragraphs of the bundled corpora
(``wiki``, ``chemistry``)."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..resources import data_dir
from .corpora import BUNDLED_CORPORA
from .jsonl import load_json_files

TASK_FIELDS = ("prompt", "answer", "corrupted_prompt", "corrupted_answer")
TEXT_TASKS = BUNDLED_CORPORA  # per-token loss on held-out paragraphs
GENERATED_TASKS = ("ioi",)


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
            raise DataError(f"unknown task '{name}': use one of {', '.join(list_tasks())}, "
                            f"{', '.join(GENERATED_TASKS + TEXT_TASKS)} or a .jsonl path")
    return load_json_files([path], TASK_FIELDS)


def task_kind(name: str) -> str:
    """``"ioi"`` (generated), ``"text"`` (per-token loss on a bundled corpus) or ``"prompts"`` (a recall task
    or .jsonl file, read here to check it). Raises :class:`DataError` for an unknown or malformed task."""
    if name in GENERATED_TASKS:
        return "ioi"
    if name in TEXT_TASKS:
        return "text"
    load_task(name)
    return "prompts"


def expand_tasks(spec: str | None) -> list[str]:
    """Task names from a comma-separated ``spec``: names and paths as given; ``recall`` (also the default,
    ``None``) stands for the six bundled recall tasks, ``all`` for those plus ``ioi``, ``wiki`` and ``chemistry``."""
    names = [t.strip() for t in (spec or "recall").split(",") if t.strip()]
    out: list[str] = []
    for n in names:
        out += list_tasks() if n == "recall" else [*list_tasks(), *GENERATED_TASKS, *TEXT_TASKS] if n == "all" else [n]
    return out


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

