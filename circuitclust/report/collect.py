"""Which run files a report shows: the steps (sub-folders) of one run folder, or of two side by side, and
their parsed files, unreadable ones turned into notes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import runfiles
from ..errors import CircuitclustError


@dataclass
class _Step:
    run: str  # run name ("" for the main run when there is no comparison)
    label: str  # sub-folder relative to its run folder
    files: runfiles.StepFiles

    @property
    def name(self) -> str:
        return f"{self.run}/{self.label}" if self.run else self.label


def _collect(run_dir: Path, compare: Path | None) -> tuple[list[_Step], list[str]]:
    runs = [(run_dir, "")] if compare is None else [(run_dir, run_dir.name or "run"), (compare, compare.name or "compare")]
    if compare is not None and runs[0][1] == runs[1][1]:
        runs = [(run_dir, "run"), (compare, "compare")]
    steps = [_Step(name, s.label, s) for path, name in runs for s in runfiles.discover(path)]
    return steps, [name for _, name in runs]


def _load_all(steps: list[_Step], fname: str, loader: Callable) -> tuple[dict[str, Any], list[str]]:
    """``{step name: parsed file}`` for every step holding ``fname``, plus error notes for unreadable ones."""
    out, notes = {}, []
    for s in steps:
        if s.files.has(fname):
            try:
                out[s.name] = loader(s.files.files[fname])
            except CircuitclustError as e:
                notes.append(str(e))
    return out, notes
