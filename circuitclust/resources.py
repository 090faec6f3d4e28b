"""Where the bundled files (corpora, recall tasks, the tiny models' tokenizer) are found."""
from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path


def data_dir() -> Path:
    """The bundled data folder: ``$CIRCUITCLUST_DATA``, the repository's ``data/`` in a source checkout or
    editable install, or the copy shipped in the wheel as ``circuitclust._bundled``."""
    env = os.environ.get("CIRCUITCLUST_DATA")
    if env:
        return Path(env)
    repo_data = Path(__file__).resolve().parent.parent / "data"
    if repo_data.is_dir():
        return repo_data
    # circuitclust._bundled has no __init__.py: a namespace package, whose one folder is its search location.
    return Path(next(iter(importlib.util.find_spec("circuitclust._bundled").submodule_search_locations)))


def hub_reachable(*offline_vars: str, timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` (or any of ``offline_vars``) is set, else whether huggingface.co answers
    within ``timeout`` seconds. Callers use it to fail at once with a one-line error instead of letting the
    hub clients retry for minutes."""
    for var in ("HF_HUB_OFFLINE", *offline_vars):
        if os.environ.get(var, "0").lower() in ("1", "true", "yes"):
            return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False
