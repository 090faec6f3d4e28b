"""IOI prompts generated from templates: valid clean/counterfactual pairs with the names swapped as documented."""
from __future__ import annotations

import pytest

from circuitclust.analysis.patching.prompts import encode_task, load_task_prompts
from circuitclust.data import TASK_FIELDS, ioi_rows
from circuitclust.data.ioi import NAMES, ORDERS


def test_rows_follow_the_documented_swap():
    rows = ioi_rows(40, seed=3)
    assert rows == ioi_rows(40, seed=3) and rows != ioi_rows(40, seed=4)  # seeded
    assert {r["order"] for r in rows} == set(ORDERS)
    for r in rows:
        assert set(TASK_FIELDS) <= set(r) and r["io"] != r["s"] and {r["io"], r["s"]} <= set(NAMES)
        assert r["answer"] == f" {r['io']}" and r["corrupted_answer"] == f" {r['s']}"
        # the counterfactual is the clean prompt with the two names exchanged everywhere
        swapped = r["prompt"].replace(r["io"], "\0").replace(r["s"], r["io"]).replace("\0", r["s"])
        assert r["corrupted_prompt"] == swapped
        first, second = r["prompt"].split(" and ")[0].split()[-1], r["prompt"].split(" and ")[1].split()[0]
        assert (first, second) == ((r["io"], r["s"]) if r["order"] == "ABBA" else (r["s"], r["io"]))
        assert r["prompt"].count(r["s"]) == 2 and r["prompt"].count(r["io"]) == 1


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-gemma"])
def test_pairs_have_equal_token_lengths(name):
    from circuitclust.models import load_model

    m = load_model(name, device="cpu")
    tok = m.tokenizer
    rows = ioi_rows(64, seed=0, tokenizer=tok)
    assert {r["order"] for r in rows} == set(ORDERS) and len({(r["io"], r["s"]) for r in rows}) > 10
    for r in rows:
        assert len(tok(r["prompt"])["input_ids"]) == len(tok(r["corrupted_prompt"])["input_ids"])
    p = encode_task(m, rows, name="ioi")
    assert p.dropped == 0 and len(p) == 64 and (p.clean != p.corrupted).any(1).all()
    pool, ref = load_task_prompts(m, "ioi", seed=0, ioi_pool=32)
    assert ref is None and len(pool) == 32 and pool.info["generator"] == {"rows": 32, "seed": 0}
