"""Task prompts as padded token tensors for patching: clean/corrupted pairs with their answers, or plain texts.

Prompts are right-padded, so a causal model's logits at real positions are unaffected by the padding and the
prediction is read at ``lengths - 1``. Clean and corrupted prompts of a pair must have the same number of
tokens (patching swaps activations position by position); pairs that do not are dropped and counted.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ..data import TASK_FIELDS, first_token_ids, load_task, pad_batch, pad_id_of
from ..errors import DataError


@dataclass
class TaskPrompts:
    """One task, tokenized.

    ``clean`` ``[n, T]`` int64 (right-padded); ``corrupted`` ``[n, T]`` or ``None`` (plain texts);
    ``lengths`` ``[n]`` real tokens per prompt; ``answer`` / ``corrupted_answer`` ``[n]`` first-token ids or
    ``None`` (plain texts: the metric is the per-token loss). ``dropped`` counts pairs skipped for unequal
    token counts.
    """

    name: str
    clean: torch.Tensor
    lengths: torch.Tensor
    corrupted: torch.Tensor | None = None
    answer: torch.Tensor | None = None
    corrupted_answer: torch.Tensor | None = None
    dropped: int = 0
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def is_text(self) -> bool:
        return self.answer is None

    def subset(self, idx: torch.Tensor | slice) -> "TaskPrompts":
        """The prompts at ``idx`` (trimmed to their longest length)."""
        lengths = self.lengths[idx]
        t = int(lengths.max()) if lengths.numel() else 0
        pick = lambda x: None if x is None else x[idx]  # noqa: E731
        clean = self.clean[idx][:, :t]
        corrupted = None if self.corrupted is None else self.corrupted[idx][:, :t]
        return TaskPrompts(self.name, clean, lengths, corrupted, pick(self.answer), pick(self.corrupted_answer),
                           self.dropped, self.info)

    def batches(self, batch_size: int) -> Iterator["TaskPrompts"]:
        """Consecutive batches of at most ``batch_size`` prompts."""
        for i in range(0, len(self), batch_size):
            yield self.subset(slice(i, i + batch_size))

    def to(self, device: torch.device | str) -> "TaskPrompts":
        mv = lambda x: None if x is None else x.to(device)  # noqa: E731
        return TaskPrompts(self.name, self.clean.to(device), self.lengths.to(device), mv(self.corrupted),
                           mv(self.answer), mv(self.corrupted_answer), self.dropped, self.info)

    def repeat(self, r: int) -> "TaskPrompts":
        """The batch stacked ``r`` times along the batch axis (row ``s * n + i`` is prompt ``i``): one
        forward evaluates ``r`` interventions, one per copy."""
        rep = lambda x: None if x is None else x.repeat(r, *([1] * (x.dim() - 1)))  # noqa: E731
        return TaskPrompts(self.name, rep(self.clean), rep(self.lengths), rep(self.corrupted), rep(self.answer),
                           rep(self.corrupted_answer), self.dropped, self.info)

    def position_mask(self) -> torch.Tensor:
        """``[n, T]`` bool: True at real (non-padding) positions."""
        return torch.arange(self.clean.shape[1], device=self.lengths.device)[None, :] < self.lengths[:, None]


def encode_task(model, rows: Any, name: str | None = None, max_prompts: int | None = None) -> TaskPrompts:
    """Tokenize a task for patching with the model's tokenizer.

    ``rows``: a task name (see ``circuitclust.data.list_tasks``) or .jsonl path, a ``datasets.Dataset`` or a
    list of dicts with ``prompt``, ``answer``, ``corrupted_prompt``, ``corrupted_answer`` (answers start with
    a space; only their first token counts). Prompts get the tokenizer's usual special tokens (e.g. Gemma's
    BOS). Pairs whose clean and corrupted prompts differ in length under this tokenizer, or whose answers
    tokenise to nothing, are dropped (counted in ``dropped``; ``info["kept"]`` lists the row indices kept).
    ``max_prompts`` keeps the first n usable pairs. Returns :class:`TaskPrompts` on CPU. Raises
    :class:`DataError` for an unknown task, missing columns or no usable pair.
    """
    if isinstance(rows, str):
        name = name or Path(rows).stem
        rows = load_task(rows)
    name = name or "task"
    if len(rows) == 0:
        raise DataError(f"task '{name}' has no prompts: give at least one prompt pair")
    columns = rows[0].keys() if isinstance(rows, (list, tuple)) else rows.column_names
    missing = [c for c in TASK_FIELDS if c not in columns]
    if missing:
        raise DataError(f"task '{name}' lacks columns {', '.join(missing)} (needs {', '.join(TASK_FIELDS)})")
    if isinstance(rows, (list, tuple)):
        rows = {c: [r[c] for r in rows] for c in TASK_FIELDS}
    tok = model.tokenizer
    clean = tok(list(rows["prompt"]))["input_ids"]
    corrupt = tok(list(rows["corrupted_prompt"]))["input_ids"]
    ans = first_token_ids(tok, rows["answer"])
    cans = first_token_ids(tok, rows["corrupted_answer"])
    kept = [i for i in range(len(clean))
            if len(clean[i]) == len(corrupt[i]) and ans[i] is not None and cans[i] is not None]
    if not kept:
        raise DataError(f"task '{name}': no clean/corrupted pair of this task has equal token lengths under "
                        f"this tokenizer")
    dropped = len(clean) - len(kept)
    kept = kept[:max_prompts]
    pad = pad_id_of(tok)
    clean_ids, mask = pad_batch([clean[i] for i in kept], pad)
    corrupt_ids, _ = pad_batch([corrupt[i] for i in kept], pad)
    return TaskPrompts(name, clean_ids, mask.sum(1), corrupt_ids, torch.tensor([ans[i] for i in kept]),
                       torch.tensor([cans[i] for i in kept]), dropped, {"kept": kept})


def encode_texts(model, texts: Sequence[str], name: str = "text", max_tokens: int = 128,
                 max_texts: int | None = None) -> TaskPrompts:
    """Tokenize plain texts (truncated to ``max_tokens``) for the per-token-loss metric. Returns
    :class:`TaskPrompts` without corrupted prompts or answers. Raises :class:`DataError` if empty."""
    texts = [t for t in texts if t and t.strip()][:max_texts]
    if not texts:
        raise DataError(f"'{name}' has no non-empty texts")
    toks = [model.tokenizer(t)["input_ids"][:max_tokens] for t in texts]  # the tokenizer's own special tokens
    ids, mask = pad_batch(toks, pad_id_of(model.tokenizer))
    return TaskPrompts(name, ids, mask.sum(1))
