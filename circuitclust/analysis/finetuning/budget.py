"""The capability budget: which text it is judged on, how far inside it a model is, how lambda follows it, and
which evaluation the final model is.

The trainer measures (perplexity and KL of the current model on the control text) and calls these functions,
which only compute. The controller's state is one plain dict, saved with every checkpoint so a resumed run
retraces an uninterrupted one:

- ``scale``: lambda's multiplier (the schedule's lambda times ``scale`` is applied);
- ``base_control`` / ``control``: the base model's and the latest control estimate, each
  ``{"ppl": {domain: perplexity}, "kl": {domain: KL}}`` (``kl`` only with a KL budget), and ``control_step``;
- ``base_heldout``: the base model's held-out perplexity per domain (step 0), the figure increases are stated in;
- ``best``: with ``--final in-budget``, ``{"step": N, "record": metrics record}`` of the chosen evaluation.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ...data import BUNDLED_CORPORA, corpus_texts, other_domain, token_blocks
from ...errors import OptionError
from .generated_text import GENERATED
from .options import FinetuneConfig

Estimate = dict[str, dict[str, float]]

#: lambda's multiplier stays within [SCALE_FLOOR, 1] x --lam
SCALE_FLOOR = 1e-3
#: overspending lowers lambda this many times faster than slack raises it
BACKOFF = 4.0


def new_state(cfg: FinetuneConfig) -> dict[str, Any]:
    """The controller's state before the first step (see the module docstring)."""
    return {"scale": cfg.budget_start if cfg.budgeted else 1.0, "base_control": None, "base_heldout": None,
            "control": None}


def control_split(cfg: FinetuneConfig, tok, train_blocks: torch.Tensor,
                  own_corpus: bool) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The budget's control text, kept apart from both training and the reported held-out split (so the
    reported figures are not the ones lambda was tuned on): the last ``budget_blocks`` training blocks, which
    then leave training, and (bundled corpora, ``own_corpus``) the other domains' train splits, which training
    never sees. ``train_blocks``: ``[n, seq_len]`` token ids. Returns the remaining training blocks and
    ``{domain: [budget_blocks, seq_len]}``; without a budget, ``train_blocks`` unchanged and no control text."""
    if not cfg.budgeted:
        return train_blocks, {}
    n = cfg.budget_blocks
    if len(train_blocks) < 2 * n:
        raise OptionError(f"--budget-blocks {n} leaves too little training text ({len(train_blocks)} blocks): "
                          "lower --budget-blocks or --seq-len, or give more text")
    own = cfg.data if cfg.data in (*BUNDLED_CORPORA, GENERATED) else "train tail"
    control = {own: train_blocks[-n:]}
    if own_corpus:
        control.update({dom: token_blocks(corpus_texts(dom, "train"), tok, cfg.seq_len)[:n]
                        for dom in other_domain(cfg.data)})
    return train_blocks[:-n], control


def budget_slack(cfg: FinetuneConfig, est: Estimate, base: Estimate) -> float:
    """How far inside the budget an estimate is, as a fraction of the budget: ``(limit - used) / limit`` for the
    tightest active limit (perplexity rise over the worst domain, KL over the worst domain); < 0 = outside."""
    slack = []
    if cfg.max_ppl_increase > 0:
        rise = max(est["ppl"][k] / base["ppl"][k] - 1.0 for k in est["ppl"])
        slack.append((cfg.max_ppl_increase - rise) / cfg.max_ppl_increase)
    if cfg.max_kl > 0:
        slack.append((cfg.max_kl - max(est["kl"].values())) / cfg.max_kl)
    return min(slack)


def next_scale(cfg: FinetuneConfig, scale: float, slack: float) -> float:
    """One step of dual ascent on log(lambda). The constraint "capability cost <= ``budget_target`` of the
    budget" has multiplier 1/lambda, so slack beyond the target raises lambda and overspending lowers it,
    geometrically: ``scale * exp(dual_lr * s)`` with ``s = slack - (1 - budget_target)``, clipped to [-2, 1]
    and ``BACKOFF`` times steeper below 0, since a strong regulariser's cost shows only some steps later and
    rising slowly while backing off fast keeps the overshoot small. Stays within [``SCALE_FLOOR``, 1]."""
    s = slack - (1.0 - cfg.budget_target)
    move = cfg.dual_lr * (min(s, 1.0) if s >= 0 else BACKOFF * max(s, -2.0))
    return float(min(max(scale * math.exp(move), SCALE_FLOOR), 1.0))


def budget_record(cfg: FinetuneConfig, state: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """Whether the budget holds at the evaluation ``rec`` (a metrics record, with ``heldout_ppl_increase`` once
    the base model is known): on the control text (what lambda is steered by) and on the reported held-out text
    (what the user is promised), for every limit given."""
    base = state["base_control"]
    control = state["control"] or base
    out: dict[str, Any] = {"max_ppl_increase": cfg.max_ppl_increase or None, "max_kl": cfg.max_kl or None,
                           "lam_scale": state["scale"]}
    out["control_slack"] = budget_slack(cfg, control, base)
    out["control_ppl_increase"] = {k: v / base["ppl"][k] - 1.0 for k, v in control["ppl"].items()}
    if "kl" in control:
        out["control_kl"] = control["kl"]
    held = out["control_slack"] >= 0
    if cfg.max_ppl_increase > 0 and "heldout_ppl_increase" in rec:
        held = held and max(rec["heldout_ppl_increase"].values()) <= cfg.max_ppl_increase
    out["held"] = bool(held)
    return out


def consider_for_final(cfg: FinetuneConfig, state: dict[str, Any], rec: dict[str, Any]) -> None:
    """With ``--final in-budget``: keep the evaluation ``rec`` (with its ``budget`` record) in ``state["best"]``
    if its control estimate keeps the budget and its normalised clusterability beats the best so far (ties keep
    the earlier, less trained model). The choice rests on the control text alone, so the reported held-out
    figures of the chosen model are not selected on."""
    if cfg.final != "in-budget" or rec["partition"] != "ready" or rec["budget"]["control_slack"] < 0:
        return
    best = state.get("best")
    if best is None or rec["mean_clusterability_norm"] > best["record"]["mean_clusterability_norm"]:
        state["best"] = {"step": rec["step"], "record": dict(rec)}


def best_step(state: dict[str, Any]) -> int | None:
    """The step of the evaluation chosen for ``final/`` so far (None: none yet, or not ``--final in-budget``)."""
    best = state.get("best")
    return best["step"] if best else None


__all__ = ["budget_record", "budget_slack", "best_step", "consider_for_final", "control_split", "new_state",
           "next_scale"]
