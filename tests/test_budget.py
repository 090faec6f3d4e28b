"""The capability budget's decisions (circuitclust.analysis.finetuning.budget), on hand-made estimates; the
trainer's use of them on tiny models is in test_finetune.py."""
import math

import pytest
import torch

from circuitclust.analysis.finetuning import FinetuneConfig
from circuitclust.analysis.finetuning.budget import (
    SCALE_FLOOR,
    best_step,
    budget_record,
    budget_slack,
    consider_for_final,
    control_split,
    new_state,
    next_scale,
)
from circuitclust.errors import OptionError


def _cfg(**kw) -> FinetuneConfig:
    base = dict(model="tiny-gemma", out="unused", lam=1e-3, max_ppl_increase=0.1)
    return FinetuneConfig(**{**base, **kw})


def _est(**ppl: float) -> dict:
    return {"ppl": dict(ppl)}


def test_slack_is_the_worst_domains_share_of_the_budget_left():
    cfg, base = _cfg(), _est(wiki=20.0, chemistry=30.0)
    # wiki +5% (half the budget left), chemistry +8% (a fifth left): the tighter one counts
    assert budget_slack(cfg, _est(wiki=21.0, chemistry=32.4), base) == pytest.approx(0.2)
    assert budget_slack(cfg, _est(wiki=20.0, chemistry=30.0), base) == pytest.approx(1.0)
    assert budget_slack(cfg, _est(wiki=24.0, chemistry=30.0), base) == pytest.approx(-1.0)  # +20%: outside


def test_slack_takes_the_tighter_of_a_perplexity_and_a_kl_limit():
    cfg = _cfg(max_kl=0.2)
    base = {"ppl": {"wiki": 10.0}, "kl": {"wiki": 0.0}}
    est = {"ppl": {"wiki": 10.5}, "kl": {"wiki": 0.15, "chemistry": 0.05}}  # ppl: 0.5 left; KL: 0.25 left
    assert budget_slack(cfg, est, base) == pytest.approx(0.25)
    assert budget_slack(_cfg(max_ppl_increase=0.0, max_kl=0.2), est, base) == pytest.approx(0.25)


@pytest.mark.parametrize("slack, expected_move", [
    (0.25, 0.0),                  # exactly the target share (0.75) spent: lambda stays
    (0.75, 0.5 * 0.5),            # slack beyond the target raises lambda at dual_lr (0.5) per unit
    (5.0, 0.5 * 1.0),             # ... by at most dual_lr
    (0.0, -0.5 * 4.0 * 0.25),     # overspending lowers it four times as steeply
    (-10.0, -0.5 * 4.0 * 2.0),    # ... by at most 4 x 2 x dual_lr
])
def test_dual_ascent_moves_log_lambda_by_the_slack_beyond_the_target(slack, expected_move):
    cfg = _cfg(dual_lr=0.5, budget_target=0.75)
    assert next_scale(cfg, 0.5, slack) == pytest.approx(0.5 * math.exp(expected_move))


def test_dual_ascent_keeps_lambda_between_its_floor_and_its_ceiling():
    cfg = _cfg(dual_lr=3.0)
    assert next_scale(cfg, 0.9, 1.0) == 1.0
    assert next_scale(cfg, 2 * SCALE_FLOOR, -1.0) == SCALE_FLOOR
    s = 1.0
    for _ in range(50):  # a run that overspends at every estimate ends at the floor, not at zero
        s = next_scale(cfg, s, -0.5)
    assert s == SCALE_FLOOR


def test_new_state_starts_at_the_budget_start_share_only_with_a_budget():
    assert new_state(_cfg(budget_start=0.25))["scale"] == 0.25
    assert new_state(_cfg(max_ppl_increase=0.0))["scale"] == 1.0


def test_control_text_is_the_training_tail_and_leaves_training():
    cfg = _cfg(budget_blocks=3, data="wiki")
    blocks = torch.arange(40).reshape(10, 4)
    train, control = control_split(cfg, None, blocks, own_corpus=False)
    assert torch.equal(train, blocks[:7]) and list(control) == ["wiki"] and torch.equal(control["wiki"], blocks[7:])
    with pytest.raises(OptionError, match="--budget-blocks"):
        control_split(cfg, None, blocks[:5], own_corpus=False)
    same, none = control_split(_cfg(max_ppl_increase=0.0), None, blocks, own_corpus=False)
    assert same is blocks and none == {}


def _state(control: dict) -> dict:
    return {**new_state(_cfg()), "base_control": _est(wiki=20.0, chemistry=30.0), "control": control}


def test_the_budget_holds_only_if_both_the_control_and_the_heldout_text_keep_it():
    cfg = _cfg()
    inside = _state(_est(wiki=21.0, chemistry=30.0))
    rec = {"heldout_ppl_increase": {"wiki": 0.05, "chemistry": 0.02}}
    out = budget_record(cfg, inside, rec)
    assert out["held"] and out["control_slack"] == pytest.approx(0.5)
    assert out["control_ppl_increase"] == pytest.approx({"wiki": 0.05, "chemistry": 0.0})
    assert not budget_record(cfg, inside, {"heldout_ppl_increase": {"wiki": 0.05, "chemistry": 0.12}})["held"]
    assert not budget_record(cfg, _state(_est(wiki=23.0, chemistry=30.0)), rec)["held"]
    # before any control estimate the base model's stands in: fully inside
    assert budget_record(cfg, _state(None), {})["control_slack"] == 1.0


def _rec(step: int, norm: float, slack: float, partition: str = "ready") -> dict:
    return {"step": step, "mean_clusterability_norm": norm, "partition": partition,
            "budget": {"control_slack": slack}}


def test_the_final_model_is_the_most_clusterable_evaluation_inside_the_budget():
    cfg, state = _cfg(final="in-budget"), new_state(_cfg())
    for rec in [_rec(0, 0.0, 1.0, partition="warm-up"), _rec(10, 0.2, 0.5), _rec(20, 0.3, 0.1),
                _rec(30, 0.5, -0.1),   # more clusterable, but outside on the control text
                _rec(40, 0.3, 0.2)]:   # a tie keeps the earlier, less trained model
        consider_for_final(cfg, state, rec)
    assert best_step(state) == 20 and state["best"]["record"]["mean_clusterability_norm"] == 0.3
    last = new_state(_cfg())
    consider_for_final(_cfg(final="last"), last, _rec(10, 0.2, 0.5))
    assert best_step(last) is None
