"""The hub path, exercised offline: a local Hugging Face cache laid out the way huggingface_hub writes it
(``hub/models--ORG--NAME/{blobs,snapshots/REV,refs/main}``, snapshot files linking to content-addressed blobs)
holding random weights of the real GPT-2 small and Pythia-70m configs and a tokenizer, loaded by hub name
(``gpt2``, ``EleutherAI/pythia-70m``) with ``HF_HUB_OFFLINE=1`` and ``HF_HOME`` pointing at it, in a fresh
process (huggingface_hub and transformers read ``HF_HOME`` when imported): graphs, cluster and patch end to
end through the command line.

The configs are the real ones except ``n_layer``/``num_hidden_layers`` cut from 12 and 6 to 2, which keeps
the test to seconds (every width, the 50k vocabularies, the head counts, Pythia's partial rotary and parallel
residual are as released).
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REV = "0123456789abcdef0123456789abcdef01234567"
GPT2_SMALL = dict(model_type="gpt2", vocab_size=50257, n_positions=1024, n_embd=768, n_layer=12, n_head=12,
                  activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256,
                  architectures=["GPT2LMHeadModel"])
PYTHIA_70M = dict(model_type="gpt_neox", vocab_size=50304, hidden_size=512, num_hidden_layers=6,
                  num_attention_heads=8, intermediate_size=2048, hidden_act="gelu", rotary_pct=0.25,
                  rotary_emb_base=10000, max_position_embeddings=2048, use_parallel_residual=True,
                  tie_word_embeddings=False, bos_token_id=0, eos_token_id=0, layer_norm_eps=1e-5,
                  architectures=["GPTNeoXForCausalLM"])
LAYERS = 2


def write_hub_repo(hub: Path, repo_id: str, files: Path) -> Path:
    """Lay out ``files`` (a save_pretrained folder) as huggingface_hub caches a download of ``repo_id``: each
    file's bytes in ``blobs/<sha256>``, ``snapshots/<REV>/<name>`` a relative symlink to it, ``refs/main``
    holding ``REV``. Returns the snapshot folder."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / REV
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REV)
    for f in sorted(files.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return snap


def _save_random(config: dict, folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from circuitclust.models.loading import tiny_tokenizer_dir

    kwargs = dict(config)
    layers_key = "n_layer" if kwargs["model_type"] == "gpt2" else "num_hidden_layers"
    kwargs[layers_key] = LAYERS
    cfg = AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg)
    model.save_pretrained(folder)
    # The released tokenizers cannot be downloaded here; the tiny models' BPE (ids < 2048) stands in.
    AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir())).save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("hf_home")
    for repo_id, config in (("gpt2", GPT2_SMALL), ("EleutherAI/pythia-70m", PYTHIA_70M)):
        files = tmp_path_factory.mktemp(repo_id.replace("/", "_"))
        _save_random(config, files)
        write_hub_repo(home / "hub", repo_id, files)
    return home


DRIVER = textwrap.dedent('''
    import json, sys
    import torch
    from typer.testing import CliRunner
    from huggingface_hub import snapshot_download
    from transformers import AutoModelForCausalLM
    sys.path.insert(0, sys.argv[2])
    from _families import expected
    from circuitclust.cli.main import app
    from circuitclust.models import load_model, weight_graphs

    out, report = sys.argv[1], {}
    for name in ("gpt2", "EleutherAI/pythia-70m"):
        key = name.split("/")[-1]
        model = load_model(name, device="cpu")  # by hub name, from the cache only
        ref = AutoModelForCausalLM.from_pretrained(snapshot_download(name))
        graphs = weight_graphs(model)
        equal = all(torch.equal(g.weight, expected(ref, g.layer)[g.kind]) for g in graphs)
        runs = {}
        for cmd in (["graphs", name],
                    ["cluster", name, "--k", "4", "--parts", "mlp", "--out", f"{out}/{key}-c", "--device", "cpu"],
                    ["patch", name, "--partition", f"{out}/{key}-c/partition.json", "--tasks", "country_capital",
                     "--max-prompts", "4", "--n-boot", "10", "--out", f"{out}/{key}-p", "--device", "cpu"]):
            res = CliRunner().invoke(app, cmd)
            runs[cmd[0]] = [res.exit_code, res.output[-3000:]]
        report[name] = {"n_graphs": len(graphs), "equal": equal, "shapes": sorted({g.shape for g in graphs}),
                        "spec": model.circuitclust_spec, "runs": runs}
    print(json.dumps(report))
''')


@pytest.mark.slow
def test_gpt2_and_pythia_load_by_hub_name_offline(hf_home, tmp_path):
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    env.pop("HF_HUB_CACHE", None)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    done = subprocess.run([sys.executable, str(driver), str(tmp_path), str(Path(__file__).parent)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    gpt2, pythia = report["gpt2"], report["EleutherAI/pythia-70m"]
    assert gpt2["equal"] and pythia["equal"]
    assert gpt2["n_graphs"] == pythia["n_graphs"] == LAYERS * 6
    assert [768, 3072] in gpt2["shapes"] and [768, 768] in gpt2["shapes"]
    assert [512, 2048] in pythia["shapes"] and [512, 512] in pythia["shapes"]
    for r in (gpt2, pythia):
        for cmd, (code, output) in r["runs"].items():
            assert code == 0, f"{cmd}: {output}"
    assert "blocks.1.mlp.out" in gpt2["runs"]["graphs"][1]
    for key in ("gpt2", "pythia-70m"):
        doc = json.loads((tmp_path / f"{key}-c" / "clusterability.json").read_text())
        assert len(doc["graphs"]) == LAYERS * 2
        assert (tmp_path / f"{key}-p" / "effects.json").is_file()
    assert json.loads((tmp_path / "gpt2-c" / "clusterability.json").read_text())["model"] == "gpt2"
