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


# ------------------------------------------------------------------------------ dtype and device placement
def test_half_precision_loads_keep_graphs_as_views(tmp_path):
    from circuitclust.models import weight_graphs

    for dtype in ("bfloat16", "float16"):
        m = load_model("tiny-gemma", device="cpu", dtype=dtype)
        for g in weight_graphs(m, layers=[0]):
            assert g.weight.dtype == getattr(torch, dtype)
            assert g.weight.untyped_storage().data_ptr() == g.parameter.untyped_storage().data_ptr()
    full = load_model("tiny-pythia", device="cpu")
    half = load_model("tiny-pythia", device="cpu", dtype="bf16")
    ids = torch.tensor([[5, 17, 301, 42, 7]])
    with torch.no_grad():
        torch.testing.assert_close(half(ids).float(), full(ids), atol=0.1, rtol=0.05)
    with pytest.raises(ValueError, match="float32, bfloat16, float16, float64"):
        load_model("tiny-gpt2", dtype="int8")


def test_device_map_places_the_model_and_changes_nothing(tmp_path):
    from circuitclust.models import hf_model_of

    hf, tok = build_tiny("tiny-gpt2")
    hf.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    ids = torch.tensor([[5, 17, 301, 42, 7]])
    ref = load_model(str(tmp_path), device="cpu")
    explicit = {"transformer.wte": "cpu", "transformer.wpe": "cpu", "transformer.h": "cpu",
                "transformer.ln_f": "cpu", "lm_head": "cpu"}
    for device_map in ("auto", explicit, '{"": "cpu"}'):
        for spec in (str(tmp_path), "tiny-gpt2"):
            m = load_model(spec, device_map=device_map)
            assert {p.device.type for p in hf_model_of(m).parameters()} == {"cpu"}  # the only device here
            with torch.no_grad():
                torch.testing.assert_close(m(ids), ref(ids))
    with pytest.raises(ValueError, match="not both"):
        load_model("tiny-gpt2", device="cpu", device_map="auto")
    with pytest.raises(ValueError, match="placement strategy"):
        load_model("tiny-gpt2", device_map="everywhere")


def test_dtype_and_device_map_on_every_inference_command(tmp_path):
    import json

    from typer.testing import CliRunner

    from circuitclust.cli.main import app

    run = CliRunner().invoke
    res = run(app, ["graphs", "tiny-gemma", "--dtype", "bfloat16", "--parts", "mlp"])
    assert res.exit_code == 0 and "blocks.3.mlp.out" in res.output, res.output
    res = run(app, ["tasks", "tiny-gpt2", "--dtype", "bfloat16", "--device-map", "auto", "--limit", "3",
                    "-t", "country_capital"])
    assert res.exit_code == 0 and "country_capital" in res.output, res.output
    res = run(app, ["cluster", "tiny-pythia", "--dtype", "float16", "--device-map", "auto", "--parts", "mlp",
                    "--out", str(tmp_path / "c")])
    assert res.exit_code == 0 and "mean clusterability" in res.output, res.output
    assert json.loads((tmp_path / "c" / "clusterability.json").read_text())["options"]["dtype"] == "float16"
    res = run(app, ["patch", "tiny-gemma", "--dtype", "bfloat16", "--tasks", "country_capital", "--max-prompts", "4",
                    "--n-boot", "10", "--no-circuits", "--device", "cpu", "--out", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    corpus = tmp_path / "t.txt"
    corpus.write_text("The river flows past the mill to the sea.\nCopper conducts electricity in wires.\n")
    res = run(app, ["similarity", "tiny-gpt2", "--dtype", "bfloat16", "--device-map", "auto", "--data", str(corpus),
                    "--split", "train", "--n", "8", "--solver", "entropic", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    for cmd in (["cluster", "tiny-gpt2", "--dtype", "int4", "--out", str(tmp_path / "x")],
                ["tasks", "tiny-gpt2", "--device-map", "{oops"],
                ["similarity", "tiny-gpt2", "--device", "cpu", "--device-map", "auto", "--out", str(tmp_path / "y")]):
        res = run(app, cmd)
        assert res.exit_code == 2 and res.output.startswith("error: --") and res.output.count("\n") == 1, res.output
