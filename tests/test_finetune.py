"""Clusterability fine-tuning on the tiny models: the run folder contract, clusterability rising, exact
resume after a kill, checkpoints loadable by transformers and circuitclust, and DDP with 2 gloo processes."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from circuitclust.analysis.finetuning import FinetuneConfig, finetune
from circuitclust.errors import CircuitclustError

TEXTS = [
    f"The {a} of the {b} river was measured in {y} by surveyors who walked along its {c} banks."
    for a, b, c, y in zip(["length", "depth", "width", "flow"] * 6, ["northern", "old", "great", "quiet"] * 6,
                          ["muddy", "rocky", "green", "steep", "sandy", "long"] * 4, range(1800, 1824))
]
EVAL = {"wiki": ["Rivers carry water from hills to the sea, and towns grow where they can be crossed."] * 4,
        "chemistry": ["Water is made of hydrogen and oxygen; salt dissolves in it and splits into ions."] * 4}
SMALL = dict(batch_size=2, seq_len=32, eval_blocks=2, lr=2e-3, lam=20.0)


def run(out, model="tiny-gpt2", **kw):
    cfg = FinetuneConfig(model=model, out=str(out), **{**SMALL, **kw})
    return finetune(cfg, progress=False, train_texts=TEXTS, eval_texts=EVAL)


def metrics(out):
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def params(folder):
    from safetensors.torch import load_file
    return load_file(str(Path(folder) / "model.safetensors"))


@pytest.mark.parametrize("family,extra", [
    ("tiny-gpt2", {}),
    ("tiny-pythia", {"distill": 1.0}),
    ("tiny-gemma", {"graphs": ("mlp_in", "mlp_gate", "mlp_out"), "train": "regularised",
                    "partition": "spectral", "partition_warmup": 2}),
])
def test_clusterability_rises_and_run_folder_is_complete(tmp_path, family, extra):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "run"
    finetune(FinetuneConfig(model=family, out=str(out), steps=6, eval_every=3, **SMALL, **extra),
             progress=False, train_texts=TEXTS, eval_texts=EVAL)
    m = metrics(out)
    assert [r["step"] for r in m] == [0, 3, 6]
    assert m[0]["task_loss"] is None and m[-1]["task_loss"] > 0
    assert m[-1]["mean_clusterability"] > m[0]["mean_clusterability"] + 0.1
    assert m[0]["chance"] == pytest.approx(0.25, abs=0.05)
    assert set(m[-1]["heldout_ppl"]) == {"wiki", "chemistry"} and all(v > 1 for v in m[-1]["heldout_ppl"].values())
    assert ("kl" in m[-1]) == ("distill" in extra)
    cfg = json.loads((out / "run_config.json").read_text())
    assert cfg["schema"].startswith("circuitclust.") and cfg["config"]["seed"] == 0 and cfg["model"] == family
    assert (out / "partition.json").is_file() and (out / "partition.safetensors").is_file()
    assert (out / "checkpoints" / "step-6" / "trainer_state.pt").is_file()
    hf = AutoModelForCausalLM.from_pretrained(str(out / "final"))
    with torch.no_grad():
        assert torch.isfinite(hf(torch.tensor([[1, 2, 3, 4]])).logits).all()
    saved = params(out / "final")
    assert any(not torch.equal(saved[k], v) for k, v in params(out / "checkpoints" / "step-3").items())
    if extra.get("train") == "regularised":  # frozen parameters did not move
        from circuitclust.models import build_tiny
        base = build_tiny(family)[0].state_dict()
        assert torch.equal(hf.state_dict()["model.embed_tokens.weight"], base["model.embed_tokens.weight"])
        assert json.loads((out / "partition.json").read_text())["provenance"].get("after_steps") == 2


def test_checkpoint_loads_with_circuitclust(tmp_path):
    from circuitclust.models import load_model, weight_graphs
    from circuitclust.analysis.finetuning import ClusterabilityLoss
    from circuitclust.runfiles import load_partition

    out = tmp_path / "run"
    last = run(out, model="tiny-gemma", steps=2, eval_every=2)
    bridge = load_model(str(out), device="cpu")
    part = load_partition(out / "partition.json")
    c = ClusterabilityLoss(bridge, part).clusterability()
    assert c == pytest.approx(last["clusterability"], abs=1e-6)
    assert len(weight_graphs(bridge, parts=("mlp",))) == 12


def test_resume_after_kill_is_exact(tmp_path):
    kw = dict(steps=6, eval_every=2, distill=0.5)  # dropout on and a teacher: RNG and base reload matter
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run(straight, **kw)
    cfg = FinetuneConfig(model="tiny-gpt2", out=str(killed), **SMALL, **kw)
    finetune(cfg, progress=False, train_texts=TEXTS, eval_texts=EVAL, stop_at=3)  # dies after step 3
    assert (killed / "checkpoints" / "step-2" / "trainer_state.pt").is_file()
    assert not (killed / "final").exists()
    with pytest.raises(CircuitclustError, match="--resume"):
        finetune(cfg, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    finetune(cfg, resume=True, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    a, b = params(straight / "final"), params(killed / "final")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ma, mb = metrics(straight), metrics(killed)
    assert [r["step"] for r in mb] == [0, 2, 4, 6]
    for ra, rb in zip(ma, mb):
        for key in ("task_loss", "kl", "mean_clusterability", "heldout_ppl", "clusterability"):
            assert ra[key] == rb[key], (ra["step"], key)


DRIVER = textwrap.dedent('''
    import json, sys
    sys.path.insert(0, {root!r})
    from tests.test_finetune import TEXTS, EVAL, SMALL
    from circuitclust.analysis.finetuning import FinetuneConfig, finetune
    cfg = FinetuneConfig(model="tiny-gpt2", out={out!r}, steps=3, eval_every=3, dropout=False,
                         **{{**SMALL, "batch_size": {bs}}})
    last = finetune(cfg, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    import torch.distributed as dist, os
    rank = dist.get_rank() if dist.is_initialized() else 0
    open({out!r} + f"/rank{{rank}}.json", "w").write(json.dumps(last))
''')


def test_ddp_two_gloo_processes_match_one_process(tmp_path):
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
    one, two = tmp_path / "one", tmp_path / "two"
    (tmp_path / "d2.py").write_text(DRIVER.format(root=root, out=str(two), bs=2))
    # reference: one process with the same global batch (2 x 2), in this process
    ref = run(one, steps=3, eval_every=3, dropout=False, batch_size=4)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(tmp_path / "d2.py")], env=env, timeout=300, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    r0, r1 = (json.loads((two / f"rank{i}.json").read_text()) for i in (0, 1))
    assert json.loads((two / "run_config.json").read_text())["world_size"] == 2
    for rec in (r0, r1):  # every process logs the global values, equal to the 1-process run with the same batch
        assert rec["mean_clusterability"] == pytest.approx(ref["mean_clusterability"], abs=1e-5)
        assert rec["task_loss"] == pytest.approx(ref["task_loss"], rel=1e-5)
        assert rec["heldout_ppl"] == pytest.approx(ref["heldout_ppl"], rel=1e-5)
    a, b = params(one / "final"), params(two / "final")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


def test_entries_reduction_raises_clusterability_and_is_recorded(tmp_path):
    out = tmp_path / "run"
    run(out, model="tiny-gemma", steps=3, eval_every=3, **{"lam": 1e-3, "loss_reduction": "entries"})
    m = metrics(out)
    assert m[-1]["mean_clusterability"] > m[0]["mean_clusterability"] + 0.05
    assert json.loads((out / "run_config.json").read_text())["config"]["loss_reduction"] == "entries"
    with pytest.raises(CircuitclustError, match="loss_reduction"):
        run(tmp_path / "bad", steps=1, loss_reduction="median")


def test_time_cap_stops_early_and_says_so(tmp_path, capsys):
    # a cap far shorter than the run: it stops after the first step, evaluates, checkpoints and records why
    last = run(tmp_path / "r", steps=500, eval_every=100, max_minutes=1e-6)
    assert last["step"] < 500 and last["time_budget_hit"] is True
    assert metrics(tmp_path / "r")[-1]["time_budget_hit"] is True
    assert (tmp_path / "r" / "final" / "config.json").is_file()
    # a run that ends at --steps carries no such flag
    full = run(tmp_path / "s", steps=2, eval_every=1)
    assert "time_budget_hit" not in full and all("time_budget_hit" not in m for m in metrics(tmp_path / "s"))


def test_new_run_refuses_an_existing_run_and_overwrite_replaces_it(tmp_path):
    run(tmp_path / "r", steps=2, eval_every=1)
    with pytest.raises(CircuitclustError, match="already holds a run"):
        run(tmp_path / "r", steps=2, eval_every=1)
    (tmp_path / "r" / "stale.txt").write_text("left by hand")
    cfg = FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "r"), steps=1, eval_every=1, **SMALL)
    finetune(cfg, overwrite=True, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    assert not (tmp_path / "r" / "stale.txt").exists() and [m["step"] for m in metrics(tmp_path / "r")] == [0, 1]


def test_a_fixed_step_run_is_bit_identical_across_invocations(tmp_path):
    # what the demo relies on: steps, not wall time, define the run, so two runs give the same numbers
    a = run(tmp_path / "a", steps=5, eval_every=5, distill=0.5, partition="spectral")
    b = run(tmp_path / "b", steps=5, eval_every=5, distill=0.5, partition="spectral")
    pa, pb = params(tmp_path / "a" / "final"), params(tmp_path / "b" / "final")
    assert pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)
    for ra, rb in zip(metrics(tmp_path / "a"), metrics(tmp_path / "b")):
        ra.pop("tokens_per_s"), rb.pop("tokens_per_s")  # a wall-time rate, the only field that may differ
        assert ra == rb
    assert a["mean_clusterability"] == b["mean_clusterability"]


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """tiny-gpt2 trained on TEXTS (task loss only), so that perplexity on them means something to lose."""
    root = tmp_path_factory.mktemp("trained")
    finetune(FinetuneConfig(model="tiny-gpt2", out=str(root / "base"), lam=0.0, lr=3e-3, steps=60, eval_every=60,
                            batch_size=2, seq_len=32, eval_blocks=2, dropout=False),
             progress=False, train_texts=TEXTS, eval_texts={"wiki": TEXTS})
    return root / "base" / "final"


def test_budget_controller_keeps_a_run_inside_a_budget_that_plain_training_exceeds(tmp_path, trained_tiny):
    # the same strong off-cluster decay with and without a 20% perplexity budget; held-out = the last texts
    kw = dict(lr=1e-3, lam=300.0, steps=30, eval_every=10, train="regularised", regulariser="decay",
              batch_size=2, seq_len=32, eval_blocks=2, dropout=False)
    evals = {"wiki": TEXTS[-6:]}
    finetune(FinetuneConfig(model=str(trained_tiny), out=str(tmp_path / "plain"), **kw), progress=False,
             train_texts=TEXTS, eval_texts=evals)
    finetune(FinetuneConfig(model=str(trained_tiny), out=str(tmp_path / "budget"), max_ppl_increase=0.2,
                            budget_every=2, budget_blocks=2, dual_lr=1.0, **kw),
             progress=False, train_texts=TEXTS, eval_texts=evals)
    plain, budget = metrics(tmp_path / "plain")[1:], metrics(tmp_path / "budget")[1:]
    assert all(r["heldout_ppl_increase"]["wiki"] > 0.2 for r in plain)  # plain training is over budget throughout
    assert all(r["heldout_ppl_increase"]["wiki"] <= 0.2 and r["budget"]["held"] for r in budget)
    assert all(r["budget"]["control_ppl_increase"]["wiki"] <= 0.2 for r in budget)
    # inside the budget, yet lambda was not simply switched off: clusterability still rose far above chance
    assert budget[-1]["mean_clusterability"] > 0.25 + 0.3  # chance is 0.25
    assert budget[-1]["lam"] != kw["lam"] and budget[-1]["budget"]["max_ppl_increase"] == 0.2


def test_budget_is_recorded_and_resumes_exactly(tmp_path, trained_tiny):
    kw = dict(lr=1e-3, lam=50.0, steps=6, eval_every=2, train="regularised", regulariser="decay", batch_size=2,
              seq_len=32, eval_blocks=2, max_ppl_increase=0.1, budget_every=2, budget_blocks=2, distill=0.5)
    cfg = FinetuneConfig(model=str(trained_tiny), out=str(tmp_path / "straight"), **kw)
    finetune(cfg, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    killed = FinetuneConfig(model=str(trained_tiny), out=str(tmp_path / "killed"), **kw)
    finetune(killed, progress=False, train_texts=TEXTS, eval_texts=EVAL, stop_at=3)
    finetune(killed, resume=True, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    a, b = params(tmp_path / "straight" / "final"), params(tmp_path / "killed" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for ra, rb in zip(metrics(tmp_path / "straight"), metrics(tmp_path / "killed")):
        assert ra["lam"] == rb["lam"] and ra.get("budget") == rb.get("budget"), ra["step"]
    config = json.loads((tmp_path / "straight" / "run_config.json").read_text())
    assert config["control_blocks"] == {"wiki": 2}  # the tail of the training text, named by --data


def test_final_in_budget_keeps_the_most_clusterable_model_inside_the_budget(tmp_path, trained_tiny):
    # a controller too slow to follow a strong decay (dual_lr 0.01): the run leaves its 10% budget early
    kw = dict(lr=1e-3, lam=100.0, steps=30, eval_every=3, train="regularised", regulariser="decay", batch_size=2,
              seq_len=32, eval_blocks=2, dropout=False, max_ppl_increase=0.1, budget_every=3, budget_blocks=2,
              dual_lr=0.01, budget_start=1.0, final="in-budget")
    out = tmp_path / "r"
    last = finetune(FinetuneConfig(model=str(trained_tiny), out=str(out), **kw), progress=False,
                    train_texts=TEXTS, eval_texts={"wiki": TEXTS[-6:]})
    *evals, final = metrics(out)
    inside = [r for r in evals if r["budget"]["control_slack"] >= 0]
    assert evals[-1]["budget"]["control_slack"] < 0 and len(inside) >= 2  # it did leave the budget
    best = max(inside, key=lambda r: r["mean_clusterability_norm"])
    assert 0 < best["step"] < 30 and best["mean_clusterability"] > evals[0]["mean_clusterability"] + 0.05
    assert final["final"] == {"selection": "in-budget", "last_step": 30}
    assert {k: v for k, v in final.items() if k != "final"} == best
    assert last == {k: v for k, v in final.items() if k != "schema"}  # what finetune() returns: the final model's
    # final/ is that step's model (its checkpoint is kept beside the newest ones), not the last one
    chosen = params(out / "checkpoints" / f"step-{best['step']}")
    f, end = params(out / "final"), params(out / "checkpoints" / "step-30")
    assert all(torch.equal(f[k], chosen[k]) for k in f) and not all(torch.equal(f[k], end[k]) for k in f)
    assert not (out / "final" / "trainer_state.pt").exists()
    # resuming for more steps drops the closing record and writes a new one after the new evaluations
    finetune(FinetuneConfig(model=str(trained_tiny), out=str(out), **{**kw, "steps": 33}), resume=True,
             progress=False, train_texts=TEXTS, eval_texts={"wiki": TEXTS[-6:]})
    again = metrics(out)
    assert [r["step"] for r in again if "final" not in r] == [r["step"] for r in evals] + [33]
    assert again[-1]["final"]["last_step"] == 33 and again[-1]["step"] == best["step"]


def test_a_run_killed_during_its_set_up_resumes(tmp_path, monkeypatch):
    # killed after the partition was written but before run_config.json: the folder is still a run to resume
    import circuitclust.analysis.finetuning.trainer as ft

    def killed(*a, **kw):
        raise KeyboardInterrupt

    out = tmp_path / "r"
    with monkeypatch.context() as m:
        m.setattr(ft, "ClusterabilityLoss", killed)
        with pytest.raises(KeyboardInterrupt):
            run(out, steps=2, eval_every=2, partition="spectral")
    assert (out / "partition.json").is_file() and not (out / "run_config.json").exists()
    with pytest.raises(CircuitclustError, match="already holds a run: pass --resume"):
        run(out, steps=2, eval_every=2, partition="spectral")
    cfg = FinetuneConfig(model="tiny-gpt2", out=str(out), steps=2, eval_every=2, partition="spectral", **SMALL)
    last = finetune(cfg, resume=True, progress=False, train_texts=TEXTS, eval_texts=EVAL)
    assert last["step"] == 2 and (out / "final" / "config.json").is_file()


def test_decay_regulariser_shrinks_only_off_cluster_weights(tmp_path):
    out = tmp_path / "r"
    run(out, steps=2, eval_every=2, lam=100.0, lr=1e-3, regulariser="decay", train="regularised",
        graphs=("mlp_in", "mlp_out"))
    m = metrics(out)
    assert m[-1]["mean_clusterability"] > m[0]["mean_clusterability"] + 0.05


@pytest.mark.parametrize("bad,match", [
    (dict(max_ppl_increase=0.1, lam=0.0), "lam > 0"),
    (dict(regulariser="prox"), "regulariser"),
    (dict(balance=1.5), "balance"),
    (dict(max_kl=-1.0), "max_kl"),
    (dict(budget_every=0), "budget_every"),
    (dict(final="in-budget"), "needs|budget"),
    (dict(final="best"), "final"),
])
def test_budget_options_are_validated(tmp_path, bad, match):
    with pytest.raises(CircuitclustError, match=match):
        FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "r"), **bad)


def test_bfloat16_compute_keeps_float32_weights_and_a_bfloat16_teacher(tmp_path, monkeypatch):
    import circuitclust.analysis.finetuning.trainer as ft

    seen = {}
    real_setup = ft._setup

    def spy(*a, **kw):
        r = real_setup(*a, **kw)
        seen["teacher"] = {p.dtype for p in r.teacher.parameters()}
        seen["trained"] = {p.dtype for p in r.params}
        return r

    monkeypatch.setattr(ft, "_setup", spy)
    out = tmp_path / "bf16"
    last = run(out, steps=2, eval_every=2, distill=1.0, dtype="bf16")
    assert seen == {"teacher": {torch.bfloat16}, "trained": {torch.float32}}
    assert json.loads((out / "run_config.json").read_text())["config"]["dtype"] == "bfloat16"
    # the forward passes really ran in bfloat16: the held-out perplexity differs from a float32 run's
    full = run(tmp_path / "fp32", steps=2, eval_every=2, distill=1.0)
    assert all(v > 1 for v in last["heldout_ppl"].values())
    assert last["heldout_ppl"] != full["heldout_ppl"]
    assert {p.dtype for p in params(out / "final").values()} == {torch.float32}


def test_float16_fine_tuning_is_refused_in_one_line(tmp_path):
    with pytest.raises(CircuitclustError, match="float32 or bfloat16"):
        FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "r"), dtype="float16")
    with pytest.raises(CircuitclustError, match="dtype"):
        FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "r"), dtype="int8")


def test_seeds_run_one_fine_tuning_each_and_aggregate_their_last_evaluations(tmp_path):
    from circuitclust.pipeline import finetune_seeds

    cfg = FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "reps"), steps=2, eval_every=2, **SMALL)
    reps = finetune_seeds(cfg, "0,1", progress=False)
    reps.save(cfg.out)
    doc = json.loads((tmp_path / "reps" / "replicates.json").read_text())
    assert doc["kind"] == "finetune" and doc["seeds"] == [0, 1] and doc["interval"]["n"] == 2
    finals = [metrics(tmp_path / "reps" / f"seed{s}")[-1] for s in (0, 1)]
    c = doc["model_level"]["mean_clusterability"]
    assert c["values"] == pytest.approx([f["mean_clusterability"] for f in finals])
    assert c["values"][0] != c["values"][1]  # the seed changes the data order, so the run
    assert c["lo"] < c["mean"] < c["hi"]
    assert set(doc["model_level"]["heldout_ppl_increase"]) == {"wiki", "chemistry"}
    assert json.loads((tmp_path / "reps" / "seed1" / "run_config.json").read_text())["config"]["seed"] == 1
    assert "mean_clusterability" in (tmp_path / "reps" / "replicates.csv").read_text()


def test_seeds_refuse_a_folder_holding_something_else(tmp_path):
    from circuitclust.errors import RunFolderError
    from circuitclust.pipeline import finetune_seeds

    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    cfg = FinetuneConfig(model="tiny-gpt2", out=str(tmp_path / "mixed"), steps=1, **SMALL)
    with pytest.raises(RunFolderError, match="notes.txt"):
        finetune_seeds(cfg, [0, 1], progress=False)
    assert sorted(p.name for p in (tmp_path / "mixed").iterdir()) == ["notes.txt"]
