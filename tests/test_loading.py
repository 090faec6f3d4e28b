import pytest
import torch

from circuitclust.errors import ModelNotAvailableError
from circuitclust.models import TINY_CONFIGS, build_tiny, load_model
from circuitclust.models.loading import bridge, load_hf


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_bridge_logits_equal_hf(name):
    hf, tok, bridge_name = load_hf(name)
    ids = tok(["The river flows into the sea", "Carbon forms four bonds"], return_tensors="pt",
              padding=True).input_ids
    with torch.no_grad():
        ref = hf(ids).logits  # before bridging: the bridge rewires the HF model in place
    b = bridge(hf, tok, bridge_name, device="cpu")
    with torch.no_grad():
        out = b(ids)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    assert b.original_model is hf


@pytest.mark.parametrize("name", list(TINY_CONFIGS))
def test_tiny_models_are_seeded(name):
    a, tok = build_tiny(name)
    b, _ = build_tiny(name)
    c, _ = build_tiny(name, seed=1)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)
    assert a.config.vocab_size == len(tok)


def test_tiny_architectures_are_the_real_ones():
    gemma, _ = build_tiny("tiny-gemma")
    assert gemma.config.num_key_value_heads < gemma.config.num_attention_heads  # grouped-query attention
    assert hasattr(gemma.model.layers[0].mlp, "gate_proj")  # gated MLP
    pythia, _ = build_tiny("tiny-pythia")
    assert pythia.config.use_parallel_residual
    assert pythia.gpt_neox.layers[0].attention.query_key_value.weight.shape[0] == 3 * pythia.config.hidden_size


def test_hooks_work(tiny_bridge):
    _, cache = tiny_bridge.run_with_cache("Water is made of hydrogen and")
    n_layers = tiny_bridge.cfg.n_layers
    assert f"blocks.{n_layers - 1}.mlp.hook_post" in cache
    assert cache["blocks.0.attn.hook_z"].shape[-2:] == (tiny_bridge.cfg.n_heads, tiny_bridge.cfg.d_head)


@pytest.mark.timeout(120)  # a hang guard (no network retries), not a speed claim
def test_unknown_hub_model_offline_fails_fast(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="not in the local Hugging Face cache") as e:
        load_model("EleutherAI/pythia-70m")
    assert "\n" not in str(e.value)


def test_missing_folder_and_bad_gguf(tmp_path):
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    with pytest.raises(ModelNotAvailableError, match="holds no HF model"):
        load_model(str(tmp_path))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ModelNotAvailableError, match="cannot read"):
        load_model(str(bad))


def test_saved_folder_round_trip(tmp_path):
    hf, tok, _ = load_hf("tiny-pythia")
    hf.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        ref = hf(ids).logits
    b = load_model(str(tmp_path / "m"), device="cpu")
    with torch.no_grad():
        torch.testing.assert_close(b(ids), ref)
    # A fine-tuning run folder resolves to its final model.
    hf.save_pretrained(tmp_path / "run" / "final")
    tok.save_pretrained(tmp_path / "run" / "final")
    assert load_model(str(tmp_path / "run"), device="cpu").cfg.n_layers == hf.config.num_hidden_layers


@pytest.mark.slow
def test_embedded_model_is_sane(embedded_bridge):
    tok = embedded_bridge.tokenizer
    ids = tok("Water is made of hydrogen and", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = embedded_bridge(ids)
    assert tok.decode(logits[0, -1].argmax()).strip() == "oxygen"
    cfg = embedded_bridge.original_model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size) == (18, 640, 2048)
    assert (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.vocab_size) == (4, 1, 262144)
