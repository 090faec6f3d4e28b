"""circuitclust.analysis.patching.recall: padding-exact last-token predictions, accuracy, Wilson CI, CLI."""
from __future__ import annotations

import json

import pytest
import torch

from circuitclust.analysis.patching.recall import last_token_logits, task_accuracy, wilson_interval
from circuitclust.data import first_token_ids, load_task
from circuitclust.errors import DataError

PROMPTS = ["The capital of France is", "Water", "Iron is a metal and copper is a metal and gold",
           "The chemical symbol of sodium is", "A"]


def _write_task(path, prompts, answers):
    rows = [{"prompt": p, "answer": a, "corrupted_prompt": p + " x", "corrupted_answer": " zz"}
            for p, a in zip(prompts, answers)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_batched_right_padding_matches_one_by_one(tiny_bridge):
    tok = tiny_bridge.tokenizer
    batched = last_token_logits(tiny_bridge, tok, PROMPTS, batch_size=3)
    assert batched.shape == (len(PROMPTS), tiny_bridge.cfg.d_vocab)
    with torch.no_grad():
        for i, p in enumerate(PROMPTS):
            ids = torch.tensor([tok(p)["input_ids"]])
            single = tiny_bridge(ids)[0, -1]
            torch.testing.assert_close(batched[i], single.float(), rtol=1e-4, atol=1e-4)


def test_accuracy_is_one_on_own_predictions_and_zero_on_others(tiny_bridge, tmp_path):
    tok = tiny_bridge.tokenizer
    top = last_token_logits(tiny_bridge, tok, PROMPTS).argmax(-1).tolist()
    answers = [tok.decode([t]) for t in top]
    # keep prompts whose decoded prediction re-tokenises to the same first token
    keep = [i for i, a in enumerate(answers) if a.strip() and first_token_ids(tok, [a])[0] == top[i]]
    assert keep
    path = _write_task(tmp_path / "own.jsonl", [PROMPTS[i] for i in keep], [answers[i] for i in keep])
    res = task_accuracy(tiny_bridge, path, batch_size=2)
    assert res.n == len(keep) and res.n_correct == res.n and res.accuracy == 1.0
    assert res.correct.all() and res.predicted.tolist() == [top[i] for i in keep]
    # shift answers by one prompt: any prompt whose prediction differs from its neighbour's must miss
    shifted = [answers[keep[(j + 1) % len(keep)]] for j in range(len(keep))]
    res2 = task_accuracy(tiny_bridge, _write_task(tmp_path / "other.jsonl", [PROMPTS[i] for i in keep], shifted))
    expect = sum(top[keep[j]] == top[keep[(j + 1) % len(keep)]] for j in range(len(keep)))
    assert res2.n_correct == expect


def test_bundled_task_accuracy_in_unit_interval_and_hf_equals_bridge(tiny_name):
    from circuitclust.models import load_model
    from circuitclust.models.loading import load_hf

    hf, tok, _ = load_hf(tiny_name)
    hf.eval()
    res_hf = task_accuracy(hf, "country_capital", tokenizer=tok, limit=12)
    res = task_accuracy(load_model(tiny_name, device="cpu"), "country_capital", limit=12, batch_size=5)
    assert res.n == 12 and 0.0 <= res.accuracy <= 1.0
    assert res.ci_low <= res.accuracy <= res.ci_high
    assert res.predicted.tolist() == res_hf.predicted.tolist()


def test_task_dataset_input_and_missing_tokenizer(tiny_bridge):
    ds = load_task("element_symbol").select(range(4))
    assert task_accuracy(tiny_bridge, ds).n == 4
    with pytest.raises(DataError, match="tokenizer"):
        task_accuracy(tiny_bridge.original_model, ds)


def test_wilson_interval_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-3) and hi == pytest.approx(0.7634, abs=1e-3)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_cli_tasks(tmp_path):
    from typer.testing import CliRunner

    from circuitclust.cli.main import app

    out = tmp_path / "acc.json"
    r = CliRunner().invoke(app, ["tasks", "tiny-gemma", "--task", "city_country", "--limit", "6",
                                 "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "city_country" in r.output and "95% CI" in r.output
    saved = json.loads(out.read_text())
    assert saved["schema"] == "circuitclust.recall/1" and saved["tasks"][0]["n"] == 6
    bad = CliRunner().invoke(app, ["tasks", "tiny-gemma", "--task", "no_such_task"])
    assert bad.exit_code == 2 and "unknown task" in bad.output


# Measured on the embedded model (first 30 prompts per task, CPU, float32): country_capital 29/30,
# city_country 28/30, element_symbol 30/30, symbol_element 25/30, compound_formula 28/30,
# molecule_functional_group 20/30 (all prompts: 70/79, 60/65, 61/63, 43/63, 49/52, 32/53). Floors sit about
# 15 points lower: they catch a broken prompt format, tokenizer or padding, not small numeric drift.
EMBEDDED_FLOORS = {"country_capital": 0.80, "city_country": 0.75, "element_symbol": 0.85,
                   "symbol_element": 0.65, "compound_formula": 0.75, "molecule_functional_group": 0.50}


@pytest.mark.slow
def test_embedded_gemma_recall_floors(embedded_bridge):
    for task, floor in EMBEDDED_FLOORS.items():
        res = task_accuracy(embedded_bridge, task, batch_size=30, limit=30)
        assert res.accuracy >= floor, (task, res.accuracy)
