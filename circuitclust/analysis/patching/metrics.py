"""Task metrics on a batch of logits, per prompt, all "higher is better" so that an effect is a drop.

- ``logprob``: log-probability of the correct answer's first token at the last prompt position.
- ``logit_diff``: logit(correct answer) - logit(corrupted answer) at the last position.
- ``neg_loss``: minus the mean next-token cross-entropy over a text's real tokens (plain texts).
- ``correct`` (accuracy, used for flips): the top-1 prediction at the last position is the answer.

Prompt-task metrics read only each prompt's last real position, so they accept either full logits
``[b, T, V]`` or logits already taken at the last positions ``[b, V]`` (what
:func:`~.interventions.metric_logits` returns: Gemma's 262k-token unembedding of every other position is
skipped). Plain-text ``neg_loss`` needs every position.
"""
from __future__ import annotations

from typing import Callable

import torch

from ...errors import CircuitclustError
from .prompts import TaskPrompts

METRICS = ("logit_diff", "logprob", "neg_loss")


def last_logits(logits: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """``[b, T, V]`` logits, ``[b]`` lengths -> ``[b, V]`` logits at each prompt's last real position.
    ``[b, V]`` logits are taken to be at the last positions already and returned as they are."""
    if logits.dim() == 2:
        return logits
    idx = (lengths.to(logits.device) - 1).view(-1, 1, 1).expand(-1, 1, logits.shape[-1])
    return logits.gather(1, idx).squeeze(1)


def logits_at(run: Callable[..., torch.Tensor], last: torch.Tensor) -> torch.Tensor:
    """Logits ``[b, V]`` at position ``last[i]`` of each row, unembedding only the distinct positions.

    ``run(**kwargs)`` runs the model on the batch and returns its logits ``[b, T', V]``; it is called with
    ``logits_to_keep=<sorted distinct positions>`` (HF's option: Gemma's 262k-token unembedding of every other
    position is most of a forward's cost). A model that rejects the option (TypeError) or ignores it (every
    position comes back) is read at all positions instead: same values.
    """
    keep = torch.unique(last)  # sorted, so searchsorted finds each row's column
    try:
        logits = run(logits_to_keep=keep)
    except TypeError:
        logits = run()
    if logits.shape[1] != keep.numel():
        keep = torch.arange(logits.shape[1], device=last.device)
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, torch.searchsorted(keep, last).to(logits.device)]


def answer_logprob(logits: torch.Tensor, batch: TaskPrompts) -> torch.Tensor:
    """``[b]`` log p(answer | prompt)."""
    last = last_logits(logits, batch.lengths).float()
    return last.log_softmax(-1).gather(1, batch.answer.to(last.device)[:, None]).squeeze(1)


def logit_diff(logits: torch.Tensor, batch: TaskPrompts) -> torch.Tensor:
    """``[b]`` logit(answer) - logit(corrupted answer)."""
    last = last_logits(logits, batch.lengths).float()
    dev = last.device
    return (last.gather(1, batch.answer.to(dev)[:, None]) - last.gather(1, batch.corrupted_answer.to(dev)[:, None])).squeeze(1)


def token_loss(logits: torch.Tensor, batch: TaskPrompts) -> torch.Tensor:
    """``[b]`` mean next-token cross-entropy over each text's real tokens (``logits`` ``[b, T, V]``), or over
    its last ``batch.loss_tokens`` tokens when set (equal-length texts; ``logits`` ``[b, T, V]`` or the
    ``[b, loss_tokens, V]`` logits at the positions that predict them)."""
    if logits.dim() != 3:
        raise CircuitclustError("the per-token loss needs the logits of every position, not the last only")
    tokens = batch.clean.to(logits.device)
    if batch.loss_tokens is not None:
        k, t = batch.loss_tokens, tokens.shape[1]
        if logits.shape[1] == t:
            logits = logits[:, t - k - 1:t - 1]
        elif logits.shape[1] != k:
            raise CircuitclustError(f"the loss covers the last {k} tokens but {logits.shape[1]} positions of "
                                    "logits were given")
        return torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), tokens[:, t - k:],
                                                 reduction="none").mean(1)
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].float().transpose(1, 2), tokens[:, 1:], reduction="none")
    mask = batch.position_mask().to(logits.device)[:, 1:]
    return (nll * mask).sum(1) / mask.sum(1).clamp_min(1)


def top1_correct(logits: torch.Tensor, batch: TaskPrompts) -> torch.Tensor:
    """``[b]`` bool: the arg-max next token is the answer (plain texts: all False)."""
    if batch.answer is None:
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    return last_logits(logits, batch.lengths).argmax(-1) == batch.answer.to(logits.device)


def task_metric(name: str, logits: torch.Tensor, batch: TaskPrompts) -> torch.Tensor:
    """``[b]`` metric ``name`` (one of :data:`METRICS`) of ``logits`` ``[b, T, V]`` (or ``[b, V]`` at the
    last positions, prompt tasks only) on ``batch``."""
    if name not in METRICS:
        raise CircuitclustError(f"unknown metric '{name}': use one of {', '.join(METRICS)}")
    if batch.is_text:
        if name != "neg_loss":
            raise CircuitclustError(f"'{batch.name}' is plain text: only the neg_loss metric applies")
        return -token_loss(logits, batch)
    if name == "logprob":
        return answer_logprob(logits, batch)
    if name == "logit_diff":
        return logit_diff(logits, batch)
    raise CircuitclustError(f"neg_loss is the metric of plain texts; '{batch.name}' is a prompt task")


def check_metric(name: str, prompts: TaskPrompts) -> str:
    """The metric to use on ``prompts``: ``name``, or ``neg_loss`` for plain texts."""
    if prompts.is_text:
        return "neg_loss"
    if name not in METRICS or name == "neg_loss":
        raise CircuitclustError(f"unknown metric '{name}' for a prompt task: use logit_diff or logprob")
    return name
