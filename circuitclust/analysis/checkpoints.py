"""Fine-tuning checkpoints: an HF ``save_pretrained`` folder plus ``trainer_state.pt``, written atomically.

A checkpoint is assembled in ``checkpoints/.tmp-step-N`` and renamed to ``checkpoints/step-N`` only when
complete, so a run killed while saving leaves the previous checkpoint as the newest valid one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

STATE_FILE = "trainer_state.pt"


def save_model_folder(dest: Path, hf_model, tokenizer, extra: dict[str, Any] | None = None) -> Path:
    """Write ``hf_model`` (+ tokenizer, + ``extra`` as ``trainer_state.pt``) to ``dest`` atomically."""
    dest = Path(dest)
    tmp = dest.parent / f".tmp-{dest.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    hf_model.save_pretrained(str(tmp))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(tmp))
    if extra is not None:
        torch.save(extra, tmp / STATE_FILE)
    if dest.exists():
        old = dest.parent / f".old-{dest.name}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old)
    else:
        os.replace(tmp, dest)
    return dest


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete checkpoints in ``run_dir/checkpoints`` (ascending)."""
    steps = []
    for p in (Path(run_dir) / "checkpoints").glob("step-*"):
        if (p / STATE_FILE).is_file() and (p / "config.json").is_file():
            steps.append(int(p.name.split("-")[-1]))
    return sorted(steps)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` checkpoints (``keep <= 0`` keeps all)."""
    if keep <= 0:
        return
    for step in checkpoint_steps(run_dir)[:-keep]:
        shutil.rmtree(Path(run_dir) / "checkpoints" / f"step-{step}", ignore_errors=True)


def load_state(folder: Path) -> dict[str, Any]:
    return torch.load(Path(folder) / STATE_FILE, map_location="cpu", weights_only=False)
