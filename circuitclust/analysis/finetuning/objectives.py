"""The training objectives and the held-out measures of capability: next-token loss, KL to the frozen base
model, and their means over token blocks shared across processes."""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .processes import Dist


def lm_loss(logits: torch.Tensor, ids: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Next-token cross-entropy of ``logits [B, T, V]`` against ``ids [B, T]`` (fp32)."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten(), reduction=reduction)


def token_kl(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean per-token ``KL(teacher || student)`` from logits ``[B, T, V]`` (fp32)."""
    t = F.log_softmax(teacher.float(), dim=-1)
    s = F.log_softmax(student.float(), dim=-1)
    return F.kl_div(s.flatten(0, 1), t.flatten(0, 1), log_target=True, reduction="batchmean")


@torch.no_grad()
def mean_over_blocks(model, blocks: torch.Tensor, batch_size: int, d: Dist | None, autocast: Callable[[], Any],
                      score: Callable[[torch.Tensor], tuple[float, int]]) -> float:
    """``sum / count`` of ``score(x) -> (sum, count)`` over batches ``x`` of ``blocks [n, T]``, with ``model``
    in eval mode and every process scoring its own share (the sums are all-reduced; ``d=None``: one process on
    the CPU)."""
    d = d or Dist()
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    mine = blocks[d.rank:: d.world]
    for i in range(0, len(mine), batch_size):
        with autocast():
            t, c = score(mine[i: i + batch_size].to(d.device))
        total, count = total + t, count + c
    total, count = d.sum([total, float(count)])
    model.train(was_training)
    return total / max(count, 1.0)


def heldout_kl(model, teacher, blocks: torch.Tensor, batch_size: int, d: Dist | None = None,
               autocast: Callable[[], Any] = contextlib.nullcontext) -> float:
    """Mean per-token ``KL(teacher || model)`` on ``blocks [n, T]`` (nats), shared over processes."""
    def score(x: torch.Tensor) -> tuple[float, int]:
        kl = float(token_kl(model(input_ids=x).logits, teacher(input_ids=x).logits))
        return kl * x.numel(), x.numel()
    return mean_over_blocks(model, blocks, batch_size, d, autocast, score)


def heldout_perplexity(model, blocks: torch.Tensor, batch_size: int, d: Dist | None = None,
                       autocast: Callable[[], Any] = contextlib.nullcontext) -> float:
    """exp(mean next-token NLL) of ``model`` on ``blocks [n, T]``, shared over processes."""
    def score(x: torch.Tensor) -> tuple[float, int]:
        return float(lm_loss(model(input_ids=x).logits, x, reduction="sum")), x[:, 1:].numel()
    return math.exp(mean_over_blocks(model, blocks, batch_size, d, autocast, score))
