"""Corpus texts for causal-LM fine-tuning and a stateless, resumable batch order.

The batch order is a pure function of ``(seed, global sample index)``: epoch ``e`` visits the blocks in
``randperm(n, seed + e)`` order, and step ``s`` of process ``r`` takes a fixed slice of it. A resumed run
therefore sees exactly the data an uninterrupted run would, with no loader state to save, and DDP
processes never see the same block in one step.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..data import token_blocks  # noqa: F401  (the fine-tuning trainer imports it from here)
from ..errors import DataError
from ..resources import data_dir

BUNDLED = ("wiki", "chemistry")


def corpus_texts(name: str, split: str = "train") -> list[str]:
    """Texts of corpus ``name`` ("wiki", "chemistry", a local .jsonl/.txt, a hub dataset) and ``split``
    ("train" | "heldout"), via ``circuitclust.data.load_corpus``. Raises :class:`DataError` when empty."""
    try:
        from ..data import load_corpus
    except ImportError:  # the data module is not installed yet: read the bundled files directly
        texts = _bundled_fallback(name, split)
    else:
        texts = list(load_corpus(name, split=split)["text"])
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise DataError(f"corpus '{name}' has no '{split}' texts: pass wiki, chemistry or a .jsonl/.txt file")
    return texts


def _bundled_fallback(name: str, split: str) -> list[str]:
    path = data_dir() / name if name in BUNDLED else Path(name).expanduser()
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not all(f.is_file() for f in files) or not files:
        raise DataError(f"corpus '{name}' not found: pass wiki, chemistry or a .jsonl/.txt file")
    texts = []
    for f in files:
        if f.suffix == ".txt":
            texts += [p for p in f.read_text().split("\n\n")] if split == "train" else []
            continue
        for line in f.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("split", "train") == split:
                    texts.append(row["text"])
    return texts


def other_domain(name: str) -> list[str]:
    """Bundled domains to evaluate on besides the training corpus' own held-out split."""
    return [d for d in BUNDLED if d != name]


def batch_indices(n_blocks: int, seed: int, start: int, size: int) -> torch.Tensor:
    """Block indices of global samples ``start .. start + size - 1`` (``[size]`` int64), epoch by epoch
    through a fresh permutation seeded by ``seed + epoch``."""
    out = []
    i = start
    while i < start + size:
        epoch, pos = divmod(i, n_blocks)
        take = min(n_blocks - pos, start + size - i)
        perm = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed + epoch))
        out.append(perm[pos: pos + take])
        i += take
    return torch.cat(out)
