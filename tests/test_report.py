"""The HTML report: sections for whatever a run folder holds, a summary table with "not run" gaps, one
embedded plotly.js, no network references, a bounded size, and the CLI."""
from __future__ import annotations

import json
import re
import shutil

import pytest
from plotly.offline import get_plotlyjs
from typer.testing import CliRunner

import runfolder_fixtures as F
from circuitclust.cli.main import app
from circuitclust.errors import DataError
from circuitclust.report import build_report, report_figure_count

SECTIONS = ["Summary", "Weights reordered by cluster", "Clusterability", "Fine-tuning", "Cluster patching",
            "Layer similarity", "Files"]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    return F.make_run(tmp_path_factory.mktemp("run"), finetuned_model=True)


@pytest.fixture(scope="module")
def full_report(full_run, tmp_path_factory):
    out = build_report(full_run, out=tmp_path_factory.mktemp("out") / "report.html")
    return out, out.read_text(encoding="utf-8")


def test_report_has_every_section_and_figure(full_report):
    path, text = full_report
    for s in SECTIONS:
        assert f"<h2>{s}</h2>" in text
    # weights: cluster_base (1 panel) + finetune (before/after); clusterability + n-cut; training;
    # effects, specialisation, flips, faithfulness, sizes, locations; similarity
    assert report_figure_count(path) == 12
    assert text.count('<div class="cc-figure">') == 12
    assert text.count("Plotly.newPlot(") == 12
    assert "class=\"note\"" not in text  # nothing failed to draw
    for label in ("cluster_base", "cluster_finetuned", "finetune", "patch_base", "patch_finetuned", "similarity"):
        assert f"<td class='step'>{label}</td>" in text


def test_report_is_self_contained_and_small(full_report):
    path, text = full_report
    assert text.count(get_plotlyjs()[:200]) == 1  # plotly.js embedded once, not per figure
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']https?:", text, re.I)
    assert "cdn.plot.ly" not in text.replace(get_plotlyjs(), "")
    size = path.stat().st_size
    assert len(get_plotlyjs()) < size < len(get_plotlyjs()) + 4_000_000, size


def test_summary_values(full_report):
    _, text = full_report
    assert "tiny-gpt2" in text
    assert "mean 0.452 over 8 graphs (chance 0.25, shuffled 0.251 ± 0.004)" in text
    assert "wiki 20 → 25; chemistry 30 → 40" in text
    assert "capitals 120 units (11.5%), CPR 0.6 (random 0.2)" in text and "capitals 60 units (5.77%)" in text
    assert "RED FLAG for capitals: small faithful nonsense circuit" in text and "no red flag; capitals undefined" in text
    assert '<p class="flag">RED FLAG (patch_finetuned)' in text and "effects at BH" not in text
    assert "[0–1], [2–3] (stability 0.9)" in text
    assert "<th>seeds</th>" in text and "0 (one run: no interval across seeds)" in text
    assert "not run" not in text


def test_finetune_study_folder_gets_its_pareto_section(tmp_path):
    from circuitclust.runfiles import load_finetune_study, write_finetune_study

    doc = F.finetune_study()
    doc.pop("schema")
    write_finetune_study(tmp_path / "study" / "tiny-gpt2", doc)
    assert load_finetune_study(tmp_path / "study" / "tiny-gpt2")["runs"].keys() == doc["runs"].keys()
    html = build_report(tmp_path / "study", out=tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Fine-tuning recipes (Pareto study)" in html and "budget-10" in html


def test_a_run_that_chose_its_final_model_is_summarised_by_that_model(tmp_path):
    rows = F.metrics()
    for r in rows:
        r["budget"] = {"held": r["step"] <= 20, "control_slack": 0.5 if r["step"] <= 20 else -0.3}
    rows.append({**rows[2], "final": {"selection": "in-budget", "last_step": 50}})
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in rows) + "\n")
    text = build_report(tmp_path, out=tmp_path / "r.html").read_text()
    assert "wiki 20 → 22; chemistry 30 → 34" in text  # the chosen step-20 model's figures, not step 50's
    assert "step 20 of 50: the most clusterable evaluation inside the capability budget" in text
    assert "<th>capability budget</th><td class='step'>.</td><td>held</td>" in text


def test_partial_folder_says_not_run(tmp_path):
    (tmp_path / "clusterability.json").write_text(json.dumps(F.clusterability()))
    text = build_report(tmp_path, out=tmp_path / "r.html").read_text()
    assert "<h2>Clusterability</h2>" in text and "<h2>Cluster patching</h2>" not in text
    for q in ("held-out perplexity", "circuit size", "specialisation (model score)", "layer groups (GW)"):
        assert re.search(rf"<th>{re.escape(q)}</th><td class='step'></td><td class=\"notrun\">not run</td>", text), q
    assert report_figure_count(tmp_path / "r.html") == 2


def test_broken_file_becomes_a_note_not_a_crash(tmp_path):
    F.make_run(tmp_path, partitions=False)
    (tmp_path / "patch_base" / "effects.json").write_text(json.dumps({"schema": "circuitclust.effects/1"}))
    (tmp_path / "similarity" / "similarity.json").write_text(json.dumps({"schema": "other/1"}))
    notes: list[str] = []
    text = build_report(tmp_path, out=tmp_path / "r.html", weights=False, on_note=notes.append).read_text()
    assert "effects.json lacks tasks, nodes, effect, ci_low, ci_high, baseline: it is incomplete" in text
    assert "expected &#x27;circuitclust.similarity/N&#x27;" in text
    assert "<h2>Weights reordered by cluster</h2>" not in text
    # the same notes reach the caller (the CLI prints them as warnings)
    assert any("effects.json lacks tasks" in n for n in notes) and any("circuitclust.similarity/N" in n for n in notes)


def test_unreadable_run_is_an_error_and_writes_nothing(tmp_path):
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "clusterability.json").write_text('{"schema": "circuitclust.clusterability/1", "gra')
    with pytest.raises(DataError, match="no run file .* can be read"):
        build_report(tmp_path, out=tmp_path / "r.html", weights=False)
    assert not (tmp_path / "r.html").exists()


def test_missing_model_weights_are_reported(tmp_path):
    F.make_run(tmp_path, partitions=True)
    cfg = tmp_path / "finetune" / "run_config.json"
    cfg.write_text(json.dumps({"model": str(tmp_path / "no-such-model"), "k": 4}))
    text = build_report(tmp_path, out=tmp_path / "r.html", weight_cells=20_000).read_text()
    assert "weights of " in text and "not available" in text
    assert report_figure_count(tmp_path / "r.html") == 11  # cluster_base heatmap still drawn


def test_compare_puts_runs_side_by_side(full_run, tmp_path):
    other = F.make_run(tmp_path / "other", partitions=False)
    shutil.rmtree(other / "similarity")
    out = build_report(full_run, compare=other, out=tmp_path / "cmp.html", weights=False)
    text = out.read_text()
    assert f"<th>{full_run.name}</th><th>other</th>" in text
    assert f"{full_run.name}/patch_base" in text and "other/patch_finetuned" in text
    row = re.search(r"<th>layer groups \(GW\)</th>.*?</tr>", text).group(0)
    assert "not run" in row and "[0–1], [2–3]" in row


def test_cli_report(full_run, tmp_path):
    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(full_run), "-o", str(out), "--no-weights"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "10 figures" in res.output and out.is_file()
    res = CliRunner().invoke(app, ["report", str(tmp_path / "nothing"), "-o", str(out)])
    assert res.exit_code == 2 and "not a folder" in res.output
