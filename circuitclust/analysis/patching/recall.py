"""Factual-recall accuracy: does the model put the answer's first token on top after the clean prompt?

Works on a TransformerLens ``TransformerBridge`` (its forward is used, so hooks that are active at call time,
e.g. an ablation, are applied) or on a plain HF causal LM with its tokenizer. Prompts are right-padded and
the prediction is read at each row's last real token, which is exact for absolute and rotary positions alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ...data import first_token_ids, load_task, pad_batch, pad_id_of
from ...errors import DataError
from ...models import is_bridge, model_device
from .metrics import logits_at


@dataclass
class TaskAccuracy:
    """Top-1 recall accuracy on one task. ``correct``: BoolTensor [n]; ``predicted``: LongTensor [n] (top-1
    token ids); ``ci_low``/``ci_high``: Wilson 95% interval of the accuracy."""

    task: str
    n: int
    n_correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    correct: torch.Tensor = field(repr=False)
    predicted: torch.Tensor = field(repr=False)

    def as_dict(self) -> dict:
        return {"task": self.task, "n": self.n, "n_correct": self.n_correct, "accuracy": self.accuracy,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "ci_method": "wilson", "confidence": 0.95}


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes out of n (scipy); (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def _last_logits(model: Any, ids: torch.Tensor, mask: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Logits at position ``last[i]`` of each row: FloatTensor [batch, vocab] (only the distinct last
    positions are unembedded, see :func:`~.metrics.logits_at`)."""
    def run(**kw):
        return model(ids, attention_mask=mask, **kw) if is_bridge(model) else \
            model(input_ids=ids, attention_mask=mask, **kw).logits
    return logits_at(run, last)


@torch.no_grad()
def last_token_logits(model: Any, tokenizer: Any, prompts: list[str], batch_size: int = 32) -> torch.Tensor:
    """Next-token logits after each prompt (tokenised with the tokenizer's usual special tokens).
    Returns FloatTensor [n, vocab] on the model's device."""
    device = model_device(model)
    ids = tokenizer(list(prompts))["input_ids"]
    pad = pad_id_of(tokenizer)
    out = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        x, mask = pad_batch(chunk, pad)
        x, mask = x.to(device), mask.to(device)
        out.append(_last_logits(model, x, mask, mask.sum(1) - 1).float())
    return torch.cat(out)


def task_accuracy(model: Any, task: Any, *, tokenizer: Any = None, batch_size: int = 32,
                  limit: int | None = None) -> TaskAccuracy:
    """Top-1 next-token accuracy on the first token of each answer, clean prompts only.

    ``model``: a TransformerBridge (its ``tokenizer`` is used) or an HF causal LM plus ``tokenizer``.
    ``task``: a bundled task name, a .jsonl path, or a task ``datasets.Dataset``; ``limit``: first n rows.
    Returns :class:`TaskAccuracy` with a Wilson 95% CI."""
    name = Path(task).stem if isinstance(task, str) else "task"
    ds = load_task(task) if isinstance(task, str) else task
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    if len(ds) == 0:
        raise DataError(f"task {name} has no rows")
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise DataError("task_accuracy needs a tokenizer for a plain HF model: pass tokenizer=")
    answers = first_token_ids(tokenizer, ds["answer"])
    if any(a is None for a in answers):
        raise DataError(f"task {name}: an answer tokenises to nothing")
    logits = last_token_logits(model, tokenizer, ds["prompt"], batch_size)
    predicted = logits.argmax(-1).cpu()
    correct = predicted == torch.tensor(answers)
    k, n = int(correct.sum()), int(correct.numel())
    lo, hi = wilson_interval(k, n)
    return TaskAccuracy(task=str(name), n=n, n_correct=k, accuracy=k / n, ci_low=lo, ci_high=hi,
                        correct=correct, predicted=predicted)
