"""The modular-addition analysis script (analyses/modular_addition.py) end to end on tiny settings."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "analyses" / "modular_addition.py"


@pytest.fixture(scope="module")
def modadd():
    spec = importlib.util.spec_from_file_location("modular_addition", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_data_split_is_seeded_and_complete(modadd):
    d = modadd.make_data(13, 0.4, data_seed=3)
    assert d["tokens"].shape == (169, 3)
    assert bool((d["tokens"][:, 2] == 13).all())
    assert torch.equal(d["answers"], (d["tokens"][:, 0] + d["tokens"][:, 1]) % 13)
    both = torch.cat([d["train"], d["test"]]).sort().values
    assert torch.equal(both, torch.arange(169)) and d["train"].numel() == 68
    assert torch.equal(modadd.make_data(13, 0.4, 3)["train"], d["train"])
    assert not torch.equal(modadd.make_data(13, 0.4, 4)["train"], d["train"])


def test_prompts_corrupt_a_with_a_different_answer(modadd):
    d = modadd.make_data(13, 0.5, 0)
    full, subs = modadd.task_prompts(d, "test", 40, 13, seed=0, n_subtasks=2)
    assert full.clean.shape == full.corrupted.shape == (40, 3)
    assert bool((full.corrupted[:, 1:] == full.clean[:, 1:]).all())
    assert bool((full.corrupted[:, 0] != full.clean[:, 0]).all())
    assert bool((full.answer != full.corrupted_answer).all())
    assert torch.equal(full.answer, (full.clean[:, 0] + full.clean[:, 1]) % 13)
    assert sum(len(s) for s in subs) == 40 and len(subs) == 2


def test_training_with_the_loss_raises_clusterability(modadd):
    d = modadd.make_data(13, 0.5, 0)
    finals = {}
    for lam in (0.0, 5.0):
        model = modadd.build_model(13, 1, 32, 64, 4, seed=0)
        r = modadd.train(model, d, steps=15, lr=1e-3, weight_decay=1.0, lam=lam, k=4, device=torch.device("cpu"),
                         eval_every=15, seed=0, log=lambda s: None)
        assert [h["step"] for h in r["history"]] == [0, 15] and r["history"][0]["task_loss"] is None
        assert r["partition"].provenance["method"] == "blocks"
        finals[lam] = r["history"][-1]
    assert finals[5.0]["mean_clusterability"] > finals[0.0]["mean_clusterability"] + 0.2
    assert abs(finals[0.0]["mean_clusterability"] - finals[0.0]["chance"]) < 0.1


def test_summary_table_shows_failed_steps_as_errors(modadd):
    run = {"lam": 0.0, "final": {"train_acc": 1.0, "test_acc": 0.5},
           "clusterability_train_partition": {"error": "RuntimeError: boom"}}
    table = modadd.summary_table({"runs": {"base": run}})
    assert "| C, training blocks (mean over MLP graphs) | error |" in table
    assert "| test acc | 0.500 |" in table


@pytest.mark.slow  # ~40 s of CPU: two trainings, bridges, shuffles and patching
def test_main_tiny_writes_well_formed_results(modadd, tmp_path):
    out = tmp_path / "run"
    argv = ["--p", "13", "--train-frac", "0.5", "--steps", "30", "--eval-every", "15", "--d-model", "32",
            "--d-mlp", "64", "--lam", "5", "--shuffles", "3", "--patch-prompts", "48", "--subtasks", "2",
            "--n-boot", "20", "--batch-size", "64", "--patch-partitions", "spectral", "--device", "cpu",
            "--out", str(out)]
    res = modadd.main(argv, log=lambda s: None)
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["schema"] == "circuitclust.modadd/1"
    assert on_disk["seeds"]["data_split"] == 0 and "--lam 5" in on_disk["command"]
    assert (out / "results.md").read_text().count("|") > 20
    assert set(res["runs"]) == {"base", "clustered"}
    for name, run in on_disk["runs"].items():
        assert "error" not in run, run.get("traceback")
        assert (out / name / "model" / "config.json").is_file()
        assert (out / name / "model" / "tokenizer.json").is_file()
        assert 0 <= run["final"]["train_acc"] <= 1 and 0 <= run["final"]["test_acc"] <= 1
        assert run["bridge_max_abs_diff"] < 1e-3  # the bridge computes what the trained HF model computes
        for key in ("clusterability_train_partition", "clusterability_spectral"):
            tab = run[key]
            assert "error" not in tab, tab.get("traceback")
            assert {g["kind"] for g in tab["graphs"]} == {"mlp_in", "mlp_out"}
            for g in tab["graphs"]:
                assert 0 <= g["clusterability"] <= 1 and 0 < g["chance"] < 1 and g["p"] is not None
        assert "patching_train_partition" not in run  # not asked for (same code path as spectral)
        for key in ("patching_spectral",):
            pr = run[key]
            assert "error" not in pr, pr.get("traceback")
            assert len(pr["effect"]) == len(pr["nodes"]) == 4  # 1 layer x k = 4 MLP clusters
            c = pr["circuit"]
            assert c["n_units_total"] == 64
            assert not c["defined"] or (len(c["curve"]) == 10 and all(len(pt) == 3 for pt in c["curve"]))
            if c["circuit_size"] is not None:
                assert 1 <= c["circuit_size"] <= 64 and math.isclose(c["fraction"], c["circuit_size"] / 64)
            assert len(pr["specialisation"]["tasks"]) == 2
    base, clus = on_disk["runs"]["base"], on_disk["runs"]["clustered"]
    # the loss must have done its job on the partition it was trained on; the unregularised run stays near chance
    assert clus["final"]["mean_clusterability"] > base["final"]["mean_clusterability"] + 0.2
    same = ("train_acc", "test_acc", "test_loss", "mean_clusterability")
    assert [base["history"][0][k] for k in same] == [clus["history"][0][k] for k in same]  # same seed, same start
