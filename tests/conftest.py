"""Shared fixtures: tiny models of all three families, the embedded model (slow), offline hub."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TINY = ["tiny-gpt2", "tiny-pythia", "tiny-gemma"]


@pytest.fixture(params=TINY)
def tiny_name(request) -> str:
    return request.param


@pytest.fixture
def tiny_bridge(tiny_name):
    from circuitclust.models import load_model

    return load_model(tiny_name, device="cpu")


@pytest.fixture(scope="session")
def embedded_bridge():
    """The real Gemma 3 270M (built into the cache on first use, ~2 min; later ~5 s)."""
    from circuitclust.models import load_model

    return load_model("gemma-3-270m", device="cpu")
