"""The patching run: files and schemas written, comparison of a model with itself, and the CLI."""
from __future__ import annotations

import json

import pytest
from _patching_data import capital_rows, colour_rows
from _planted import planted_model, planted_prompts
from typer.testing import CliRunner

from circuitclust.analysis.patching.run import analyse_model, compare
from circuitclust.cli.main import app
from circuitclust.core.partition import ModelPartition
from circuitclust.data import ioi_rows
from circuitclust.models import weight_graphs
from circuitclust.runfiles import (
    load_circuits,
    load_effects,
    load_specialisation,
    save_partition,
    write_comparison,
    write_patch_results,
)


@pytest.mark.slow  # ~15 s idle, ~50 s on the shared 2-core machine
def test_files_schemas_and_self_comparison(tmp_path):
    m = planted_model()
    mp = ModelPartition.blocks(weight_graphs(m, parts=("mlp",)), 4)  # MLP only: 16 nodes keep it fast
    tasks = [planted_prompts(1, n=4), planted_prompts(2, n=4)]
    refs = [planted_prompts(1, n=4, seed=1), planted_prompts(2, n=4, seed=1)]
    res = analyse_model(m, mp, tasks, references=refs, n_boot=100, n_null=100, model_name="planted", parts=("mlp",))
    written = write_patch_results(tmp_path, res)
    assert all(p.is_file() for p in written)
    eff, spec, circ = load_effects(tmp_path), load_specialisation(tmp_path), load_circuits(tmp_path)
    assert len(eff["effect"]) == len(eff["nodes"]) == 16 and len(eff["effect"][0]) == 2
    assert set(eff["baseline"]) == {"planted1", "planted2"}
    assert len(spec["per_cluster"]) == 16 and spec["model_score"] > 0.9
    assert set(circ["tasks"]) == {"planted1", "planted2"} and circ["attribution_spearman"] is not None
    assert all(c["circuit_size"] is not None for c in circ["tasks"].values())
    assert circ["ablation"] == "counterfactual" and circ["units"]["per_part"] == {"mlp": 4 * 256}
    for c in circ["tasks"].values():  # both controls and the attribution check beside every circuit
        assert c["random"]["cpr"] < c["cpr"] and not c["nonsense"]["red_flag"]
        assert c["attribution_check"]["n_sample"] == 32 and c["attribution_check"]["top_k_overlap"] == 1.0
        assert c["prompts"]["n"] == 4 and c["prompts"]["reference_n"] == 4
    assert circ["red_flags"] == [] and eff["n_significant_bh"] <= eff["n_cells"] == 32
    assert len(eff["q"]) == 16 and all(q >= p for qs, ps in zip(eff["q"], eff["p"]) for q, p in zip(qs, ps))
    nulls = spec["nulls"]
    assert set(nulls) == {"label_shuffle", "random_partition"} and nulls["label_shuffle"]["n_null"] == 100
    assert nulls["label_shuffle"]["observed"] == pytest.approx(spec["model_score"])
    assert (tmp_path / "effects.csv").read_text().count("\n") == 1 + 16 * 2
    assert "random" in (tmp_path / "faithfulness.csv").read_text()
    comp = compare(res, res, n_boot=100)
    assert all(abs(v) < 1e-9 for row in comp["effect_diff"] for v in row)
    assert comp["specialisation"]["diff"] == 0 and comp["specialisation"]["diff_ci"] == [0.0, 0.0]
    write_comparison(tmp_path, comp)
    assert json.loads((tmp_path / "comparison.json").read_text())["schema"] == "circuitclust.comparison/1"
    # one set per forward gives the same analysis as sets stacked into shared passes
    one = analyse_model(m, mp, tasks, references=refs, n_boot=100, n_null=100, model_name="planted", max_rows=1,
                        parts=("mlp",))
    for key in ("effect", "ci_low", "ci_high"):
        flat = lambda rows: [v for row in rows for v in row]  # noqa: E731
        assert flat(one.effects[key]) == pytest.approx(flat(res.effects[key]), abs=1e-4)
    for t, c in res.circuits["tasks"].items():
        assert one.circuits["tasks"][t]["circuit_size"] == c["circuit_size"]


def _task_files(tmp_path, rows_of=None):
    paths = []
    pairs = rows_of or (("capital", capital_rows()), ("colour", colour_rows()))
    for name, rows in pairs:
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(str(p))
    return ",".join(paths)


def test_cli_errors(tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["patch", "tiny-gpt2", "--tasks", "no-such-task", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown task" in r.output
    other = ModelPartition.blocks(weight_graphs(planted_model()), 4)
    other.space_labels["mlp.1"] = other.space_labels["mlp.1"][:100]
    save_partition(other, tmp_path / "bad.json")
    r = runner.invoke(app, ["patch", "tiny-gpt2", "--tasks", "country_capital", "--partition",
                            str(tmp_path / "bad.json"), "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "labels" in r.output


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    out = tmp_path / "run"
    from circuitclust.models import load_hf

    tok = load_hf("tiny-gpt2")[1]
    files = _task_files(tmp_path, (("capital", ioi_rows(12, seed=5, tokenizer=tok)), ("colour", ioi_rows(12, seed=6, tokenizer=tok))))
    r = CliRunner().invoke(app, ["patch", "tiny-gpt2", "--tasks", files + ",ioi,wiki", "--n-boot", "50",
                                 "--batch-size", "6", "--max-prompts", "4", "--n-reference", "2", "--seeds", "0,1",
                                 "--check-units", "8", "--n-null", "50", "--text-tokens", "24", "--loss-tokens", "8",
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    for name in ("effects.json", "specialisation.json", "circuits.json", "partition.json", "run_config.json"):
        assert (out / name).is_file()
    assert load_effects(out)["tasks"] == ["capital", "colour", "ioi", "wiki"]
    circ = load_circuits(out)
    # units are MLP neurons and attention (co-clustered here), circuits use counterfactual ablation
    assert set(circ["units"]["per_part"]) == {"mlp", "attn"} and circ["ablation"] == "counterfactual"
    assert "nonsense" in circ["tasks"]["ioi"] and "nonsense" not in circ["tasks"]["wiki"]  # texts have no answers
    rep = circ["replicates"]
    assert rep["seeds"] == [0, 1] and set(rep["per_seed"]) == {"0", "1"}
    assert rep["aggregate"]["capital"]["attribution_spearman"]["n"] in (0, 1, 2)
    assert "task ioi: 4 prompts drawn with seed 0" in r.output and "CPR" in r.output
