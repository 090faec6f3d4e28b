"""The main job end to end on a tiny model: every step's files and a report that names them."""
import json

from typer.testing import CliRunner

from circuitclust.cli.main import app


def test_demo_runs_every_step_and_writes_the_report(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(app, ["demo", "--model", "tiny-gpt2", "--out", str(out), "--steps", "6",
                                   "--max-prompts", "4", "--tasks", "country_capital,element_symbol",
                                   "--similarity-n", "32", "--shuffles", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output[-3000:]
    for f in ("cluster_base/clusterability.json", "finetune/metrics.jsonl", "finetune/final/config.json",
              "finetune/partition.json", "cluster_finetuned/clusterability.json", "patch/effects.json",
              "patch/circuits.json", "similarity/similarity.json", "report.html", "demo_log.json"):
        assert (out / f).is_file(), f
    log = json.loads((out / "demo_log.json").read_text())
    assert [s["step"] for s in log["steps"]] == ["cluster_base", "finetune", "cluster_finetuned", "patch",
                                                  "similarity", "report"]
    html = (out / "report.html").read_text()
    assert "cluster_base" in html and "finetune" in html and "<script src=\"http" not in html
    assert "report:" in res.output
    *evals, final = [json.loads(x) for x in (out / "finetune" / "metrics.jsonl").read_text().splitlines()]
    assert evals[-1]["step"] == 6 and "time_budget_hit" not in evals[-1]  # defined by steps; the cap did not bite
    # the budgeted recipe: its final model is an evaluated one inside the 10% budget on the control text
    assert final["final"] == {"selection": "in-budget", "last_step": 6} and final["budget"]["control_slack"] >= 0
    assert final["budget"]["max_ppl_increase"] == 0.10 and final["partition"] == "ready"
    config = json.loads((out / "finetune" / "run_config.json").read_text())["config"]
    assert config["balance"] == 0.5 and config["final"] == "in-budget" and config["partition"] == "spectral"


def test_demo_rejects_a_bad_budget(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--model", "tiny-gpt2", "--out", str(tmp_path), "--minutes", "0"])
    assert res.exit_code == 2 and "--minutes=0 is out of range: it must be > 0" in res.output
    res = CliRunner().invoke(app, ["demo", "--model", "tiny-gpt2", "--out", str(tmp_path), "--lam", "0"])
    assert res.exit_code == 2 and "error: a perplexity budget adapts lambda" in res.output
