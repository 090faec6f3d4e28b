"""Text sampled from the base model as a fine-tuning stream: seeded, cached, regenerated when damaged, and used
by the trainer with ``data="generated"`` (held-out evaluation then on both bundled domains)."""
import json

import pytest
import torch

from circuitclust.analysis.finetuning import FinetuneConfig, finetune
from circuitclust.analysis.finetuning.generated_text import (GenerationOptions, cache_path, generate_texts,
                                                             generated_texts)
from circuitclust.errors import CircuitclustError
from circuitclust.models.loading import load_hf

SMALL = GenerationOptions(n_texts=6, new_tokens=12, batch_size=4)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_samples_are_seeded_and_as_long_as_asked():
    hf, tok, _ = load_hf("tiny-gpt2")
    a, b = generate_texts(hf, tok, SMALL), generate_texts(hf, tok, SMALL)
    assert a == b and len(a) == 6
    assert generate_texts(hf, tok, GenerationOptions(n_texts=6, new_tokens=12, batch_size=4, seed=1)) != a
    # every sample has new_tokens tokens (decoding and re-encoding may merge a few pieces)
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) >= 6 for t in a)


def test_cache_is_written_once_reused_and_rebuilt_when_damaged(cache):
    hf, tok, _ = load_hf("tiny-gpt2")
    rng = torch.get_rng_state()
    texts = generated_texts(hf, tok, SMALL, progress=False)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left as it was
    path = cache_path(hf, SMALL)
    assert path.is_file() and [json.loads(x)["text"] for x in path.read_text().splitlines()] == texts
    path.write_text('{"text": "edited by hand"}\n')
    assert generated_texts(hf, tok, SMALL, progress=False) == ["edited by hand"]  # a valid cache is read
    path.write_text("not json\n")
    assert generated_texts(hf, tok, SMALL, progress=False) == texts  # a damaged one is regenerated
    assert cache_path(hf, GenerationOptions(n_texts=7, new_tokens=12, batch_size=4)) != path


def test_trainer_runs_on_generated_text_and_evaluates_both_domains(cache, tmp_path):
    cfg = FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "r"), data="generated", gen_texts=16,
                         gen_tokens=40, steps=2, eval_every=2, batch_size=2, seq_len=32, eval_blocks=2,
                         max_ppl_increase=0.5, budget_blocks=2, budget_every=1, regulariser="decay", lam=10.0)
    last = finetune(cfg, progress=False)
    assert set(last["heldout_ppl"]) == {"wiki", "chemistry"}
    config = json.loads((tmp_path / "r" / "run_config.json").read_text())
    assert config["control_blocks"] == {"generated": 2, "wiki": 2, "chemistry": 2}
    assert list((cache / "generated").glob("*.jsonl"))
    with pytest.raises(CircuitclustError, match="gen_tokens"):
        FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "s"), data="generated", gen_tokens=2)
