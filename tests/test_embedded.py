"""The embedded-model cache: a half-written or corrupt cache is detected and rebuilt, never loaded."""
import json

import pytest

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


def test_invalid_cache_triggers_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path))
    folder = _fake_cache(tmp_path / embedded.EMBEDDED_NAME)
    (folder / "model.safetensors").write_bytes(b"half")
    calls = []
    monkeypatch.setattr(embedded, "build_embedded", lambda target: calls.append(target) or target)
    assert embedded.ensure_embedded() == folder
    assert calls == [folder]
    calls.clear()
    _fake_cache(tmp_path / "other")  # a valid cache is used as it is
    monkeypatch.setenv("CIRCUITCLUST_CACHE", str(tmp_path / "x"))
    monkeypatch.setattr(embedded, "embedded_dir", lambda: tmp_path / "other")
    assert embedded.ensure_embedded() == tmp_path / "other" and calls == []
