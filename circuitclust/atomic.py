"""Atomic writes: a file or a folder appears whole or not at all.

Each writer writes a temporary sibling (same folder, so the final ``os.replace`` is a rename on one file
system) and renames it over the target only when it is complete; a process killed at any moment leaves the
old file or the new one, never a truncated one. Temporary names start with ``.`` and end with
``.partial-<pid>``; :func:`remove_stale_partials` deletes those that a killed process left behind.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

PARTIAL = ".partial-"


def _partial_name(path: Path) -> Path:
    return path.parent / f".{path.name}{PARTIAL}{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(path: str | Path) -> None:
    """Delete the temporary siblings of ``path`` left by processes that no longer run; an old folder that a
    killed :func:`atomic_folder` had moved aside before its new one landed is put back first."""
    path = Path(path)
    if not path.parent.is_dir():
        return
    for p in path.parent.glob(f".{path.name}.old{PARTIAL}*"):
        pid = p.name.rsplit(PARTIAL, 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)) and not path.exists():
            os.replace(p, path)  # killed between moving the old folder aside and moving the new one in
    leftovers = [*path.parent.glob(f".{path.name}{PARTIAL}*"), *path.parent.glob(f".{path.name}.old{PARTIAL}*")]
    for p in leftovers:
        pid = p.name.rsplit(PARTIAL, 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for a library that writes a file itself (safetensors, plotly); on a clean exit
    it replaces ``path``, on an exception it is deleted and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial_name(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, doc: Any, *, indent: int | None = 1) -> Path:
    """Write ``doc`` as JSON atomically (non-JSON numbers such as tensors' floats go through ``float``)."""
    return write_text(path, json.dumps(doc, indent=indent, default=float))


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV file with ``header`` and ``rows`` atomically."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return write_text(path, buf.getvalue())


def append_jsonl(path: str | Path, record: dict) -> Path:
    """Append one JSON line to ``path`` by rewriting it atomically (the files are small: one line per
    evaluation), so that a kill never leaves half a line."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    return write_text(path, old + json.dumps(record) + "\n")


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder; on a clean exit it replaces the folder ``path`` (the old one, if any,
    is removed only once the new one is in place), on an exception it is deleted. A kill between the two
    renames leaves the old folder aside under a hidden name, and the next call puts it back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(path)
    tmp = _partial_name(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.parent / f".{path.name}.old{PARTIAL}{os.getpid()}"
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
