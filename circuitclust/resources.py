"""Where the bundled files (corpora, recall tasks, the tiny models' tokenizer) are found."""
from __future__ import annotations

import os
from importlib import resources
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
    return Path(str(resources.files("circuitclust._bundled")))
