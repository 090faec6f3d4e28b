"""analyses/pretrained.py: one demo run per seed and model, figures aggregated across seeds, missing models
recorded as such."""
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pretrained():
    spec = importlib.util.spec_from_file_location("pretrained", ROOT / "analyses" / "pretrained.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pretrained"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_pretrained_runs_each_seed_and_aggregates_across_seeds(tmp_path):
    mod = _pretrained()
    doc = mod.main(["--models", "tiny-gpt2", "nobody/no-such-model", "--seeds", "0,1", "--steps", "2",
                    "--out", str(tmp_path), "--set", "max_prompts=3", "tasks=country_capital", "similarity_n=16",
                    "shuffles=1", "device=cpu"])
    r = doc["results"]["tiny-gpt2"]
    assert r["seeds"] == [0, 1] and len(r["per_seed"]) == 2
    for seed in (0, 1):
        log = json.loads((tmp_path / "tiny-gpt2" / f"seed{seed}" / "demo_log.json").read_text())
        assert log["options"]["seed"] == seed
    c = r["summary"]["spectral_base"]["mean_C"]
    assert c["n"] == 2 and c["values"] == [s["spectral_base"]["mean_C"] for s in r["per_seed"]]
    assert c["values"][0] != c["values"][1]  # another seed, another partition
    assert "error" in doc["results"]["nobody/no-such-model"]
    table = (tmp_path / "summary.md").read_text()
    assert "| tiny-gpt2 | 0,1 |" in table and " [" in table and "not run" in table
    assert json.loads((tmp_path / "summary.json").read_text())["results"]["tiny-gpt2"]["seeds"] == [0, 1]
