"""Task prompts: random samples with a disjoint reference set, wiki/chemistry text tasks with a counterfactual,
the nonsense control, and the per-token loss on the last tokens."""
from __future__ import annotations

import pytest
import torch

from circuitclust.analysis.patching.interventions import metric_logits
from circuitclust.analysis.patching.metrics import task_metric
from circuitclust.analysis.patching.prompts import (encode_task, encode_text_task, load_task_prompts, nonsense_task,
                                                    sample_task)
from circuitclust.data import ioi_rows
from circuitclust.errors import DataError
from circuitclust.models import load_model


@pytest.fixture(scope="module")
def gpt2():
    return load_model("tiny-gpt2", device="cpu")


def test_sample_is_random_seeded_and_disjoint(gpt2):
    pool = encode_task(gpt2, ioi_rows(24, tokenizer=gpt2.tokenizer), name="ioi")
    ev, ref = sample_task(pool, 10, 6, seed=1)
    s = ev.info["sample"]
    assert len(ev) == 10 and len(ref) == 6 and s["seed"] == 1
    assert not set(s["indices"]) & set(s["reference_indices"])  # the reference set is never evaluated
    assert s["indices"] != list(range(10))  # a random draw, not the first rows
    assert sample_task(pool, 10, 6, seed=1)[0].info["sample"] == s
    assert sample_task(pool, 10, 6, seed=2)[0].info["sample"]["indices"] != s["indices"]
    ev, ref = sample_task(pool, None, 16, seed=0)
    assert len(ref) == 6 and len(ev) == 18  # n None: a quarter of the pool at most for the reference
    with pytest.raises(DataError, match="too few"):
        sample_task(pool.subset(slice(0, 1)), None, seed=0)


def test_text_tasks_with_other_domain_counterfactual(gpt2):
    pool, ref = load_task_prompts(gpt2, "chemistry", text_tokens=24, loss_tokens=8)
    assert pool.is_text and pool.loss_tokens == 8 and pool.clean.shape[1] == 24
    assert pool.corrupted.shape == pool.clean.shape and "wiki" in pool.info["counterfactual"]
    assert len(pool) >= 32 and len(ref) > len(pool)  # windows of the held-out split; the train split as reference
    ev, r = sample_task(pool, 8, 4, seed=0, reference_pool=ref)
    assert len(ev) == 8 and len(r) == 4 and r.name == "chemistry (reference)"
    # the loss on the last tokens: logits of those positions only equal the full logits' slice
    with torch.no_grad():
        part = task_metric("neg_loss", metric_logits(gpt2, ev), ev)
        full = task_metric("neg_loss", metric_logits(gpt2, ev, full_logits=True), ev)
    torch.testing.assert_close(part, full, atol=1e-5, rtol=1e-5)
    shuffled = encode_text_task(gpt2, "s", ["alpha beta gamma delta " * 10], text_tokens=12, loss_tokens=4,
                                counterfactual="shuffled")
    assert torch.equal(shuffled.clean.sort(1).values, shuffled.corrupted.sort(1).values)
    with pytest.raises(DataError, match="lower text_tokens"):
        encode_text_task(gpt2, "x", ["short"], ["short"], text_tokens=40, loss_tokens=4)


def test_nonsense_task_shuffles_answers_across_prompts(gpt2):
    p = encode_task(gpt2, ioi_rows(7, tokenizer=gpt2.tokenizer), name="ioi")
    nz = nonsense_task(p, seed=0)
    perm = torch.tensor(nz.info["nonsense_permutation"])
    assert (perm != torch.arange(len(p))).all() and sorted(perm.tolist()) == list(range(len(p)))
    assert torch.equal(nz.answer, p.answer[perm]) and torch.equal(nz.corrupted_answer, p.corrupted_answer[perm])
    assert torch.equal(nz.clean, p.clean) and torch.equal(nz.corrupted, p.corrupted)
