"""Tokenising and padding: task prompts for patching, answer tokens, and a corpus packed into LM blocks."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DataError, OptionError
from .tasks import load_task


@dataclass
class TaskTokens:
    """A task tokenised for patching. Row i of ``clean`` and ``corrupted`` have the same length and are
    padded identically (``padding_side``), so positions align between the two runs.

    clean, corrupted: LongTensor [n, seq]; attention_mask: LongTensor [n, seq] (1 = real token, shared by
    both); last_pos: LongTensor [n], index of the last real token (where the answer is predicted);
    answer, corrupted_answer: LongTensor [n], first token id of each answer; kept: LongTensor [n], row
    indices into the task dataset; n_dropped: pairs dropped because their lengths differ (or either answer
    tokenises to nothing) under this tokenizer."""

    clean: torch.Tensor
    corrupted: torch.Tensor
    attention_mask: torch.Tensor
    last_pos: torch.Tensor
    answer: torch.Tensor
    corrupted_answer: torch.Tensor
    kept: torch.Tensor
    n_dropped: int
    padding_side: str = "right"

    def __len__(self) -> int:
        return int(self.clean.shape[0])

    def to(self, device: str | torch.device) -> "TaskTokens":
        """A copy with every tensor on ``device``."""
        moved = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in vars(self).items()}
        return TaskTokens(**moved)


def first_token_ids(tokenizer: Any, answers: list[str]) -> list[int | None]:
    """First token id of each answer tokenised alone without special tokens (None if it has none)."""
    ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return [x[0] if x else None for x in ids]


def pad_batch(seqs: list[list[int]], pad_id: int, padding_side: str = "right") -> tuple[torch.Tensor, torch.Tensor]:
    """Pad token lists to one length. Returns (ids LongTensor [n, seq], attention_mask LongTensor [n, seq])."""
    if padding_side not in ("left", "right"):
        raise OptionError("padding_side must be 'left' or 'right'")
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):  # ragged input: one copy per row is unavoidable
        sl = slice(0, len(s)) if padding_side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
    return ids, mask


def pad_id_of(tokenizer: Any) -> int:
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


def tokenize_task(task_dataset, tokenizer: Any, padding_side: str = "right") -> TaskTokens:
    """Tokenise a task's clean and corrupted prompts (with the tokenizer's usual special tokens, e.g. Gemma's
    BOS) and the first token of each answer. Pairs whose clean and corrupted prompts differ in length under
    THIS tokenizer are dropped (counted in ``n_dropped``). Returns :class:`TaskTokens`; raises
    :class:`DataError` if no pair survives."""
    if isinstance(task_dataset, str):
        task_dataset = load_task(task_dataset)
    clean = tokenizer(list(task_dataset["prompt"]))["input_ids"]
    corrupt = tokenizer(list(task_dataset["corrupted_prompt"]))["input_ids"]
    ans = first_token_ids(tokenizer, task_dataset["answer"])
    cans = first_token_ids(tokenizer, task_dataset["corrupted_answer"])
    kept = [i for i in range(len(clean))
            if len(clean[i]) == len(corrupt[i]) and ans[i] is not None and cans[i] is not None]
    if not kept:
        raise DataError("no clean/corrupted pair of this task has equal token lengths under this tokenizer")
    pad = pad_id_of(tokenizer)
    clean_ids, mask = pad_batch([clean[i] for i in kept], pad, padding_side)
    corrupt_ids, _ = pad_batch([corrupt[i] for i in kept], pad, padding_side)
    lengths = torch.tensor([len(clean[i]) for i in kept])
    last = lengths - 1 if padding_side == "right" else torch.full_like(lengths, clean_ids.shape[1] - 1)
    return TaskTokens(clean=clean_ids, corrupted=corrupt_ids, attention_mask=mask, last_pos=last,
                      answer=torch.tensor([ans[i] for i in kept]),
                      corrupted_answer=torch.tensor([cans[i] for i in kept]),
                      kept=torch.tensor(kept), n_dropped=len(clean) - len(kept), padding_side=padding_side)


# ---------------------------------------------------------------------------------------------- LM blocks
def token_blocks(texts, tokenizer: Any, seq_len: int, add_bos: bool | None = None) -> torch.Tensor:
    """Pack texts into consecutive LM blocks: LongTensor ``[n_blocks, seq_len]``.

    ``texts``: a sequence of strings, or a dataset with a ``text`` column. Each text is tokenised without
    special tokens and followed by EOS (when the tokenizer has one); the stream is cut into blocks and the
    ragged tail dropped.

    BOS: by default (``add_bos=None``) every block starts with BOS whenever the tokenizer has a BOS token,
    whether or not the tokenizer prepends one itself: Gemma's loss is far off without it, and for GPT-2-style
    tokenizers, whose BOS is their EOS, it marks a text boundary as EOS does between texts. A block is then
    ``[BOS] + seq_len - 1`` text tokens. ``add_bos=False`` fills blocks with text only; ``add_bos=True``
    requires a BOS token. Raises :class:`DataError` when not one block fits.
    """
    if seq_len < 2:
        raise DataError(f"seq_len must be >= 2, got {seq_len}")
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if add_bos is None:
        add_bos = bos is not None
    elif add_bos and bos is None:
        raise DataError("add_bos=True but the tokenizer has no BOS token")
    texts = list(texts["text"]) if hasattr(texts, "column_names") else list(texts)
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    stream = torch.tensor([t for para in ids for t in (para + ([eos] if eos is not None else []))],
                          dtype=torch.long)
    body = seq_len - 1 if add_bos else seq_len
    n = stream.numel() // body
    if n == 0:
        raise DataError(f"the corpus has {stream.numel()} tokens, fewer than one block of {body}: lower --seq-len")
    blocks = stream[: n * body].view(n, body)
    if add_bos:
        blocks = torch.cat([torch.full((n, 1), bos, dtype=torch.long), blocks], dim=1)
    return blocks
