"""Reading the bundled JSONL files (corpora and tasks) with per-line error messages, then through HF ``datasets``."""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from ..errors import DataError

SPLITS = ("train", "heldout")


def read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Parse ``path`` line by line so that a bad row is reported by file and line (``datasets`` would only
    say that Arrow failed). Returns the rows; raises :class:`DataError` for an empty or malformed file."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
            missing = [k for k in required if not isinstance(row.get(k), str) or not row[k].strip()]
            if missing:
                raise DataError(f"{path}:{lineno}: missing or empty field(s) {', '.join(missing)}")
            if "split" in row and row["split"] not in SPLITS:
                raise DataError(f"{path}:{lineno}: split must be one of {SPLITS}, got {row['split']!r}")
            rows.append(row)
    if not rows:
        raise DataError(f"{path} is empty: it needs one JSON object per line with a 'text' field")
    return rows


@contextmanager
def quiet_datasets():
    """Silence the per-load 'Generating train split' bars (restoring the caller's setting)."""
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def load_json_files(files: list[Path], required: tuple[str, ...]):
    from datasets import load_dataset

    for f in files:
        read_jsonl(f, required)
    with quiet_datasets():
        return load_dataset("json", data_files=[str(f) for f in files], split="train")


