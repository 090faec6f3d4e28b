"""Tokenising and padding: answer tokens, padded batches, and a corpus packed into LM blocks."""
from __future__ import annotations

from typing import Any

import torch

from ..errors import DataError


def first_token_ids(tokenizer: Any, answers: list[str]) -> list[int | None]:
    """First token id of each answer tokenised alone without special tokens (None if it has none)."""
    ids = tokenizer(list(answers), add_special_tokens=False)["input_ids"]
    return [x[0] if x else None for x in ids]


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists to one length, so that a causal model's logits at the real positions do not see
    the padding. Returns (ids LongTensor [n, seq], attention_mask LongTensor [n, seq])."""
    width = max((len(s) for s in seqs), default=0)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):  # ragged input: one copy per row is unavoidable
        ids[i, :len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, :len(s)] = 1
    return ids, mask


def pad_id_of(tokenizer: Any) -> int:
    """The id to pad with: the tokenizer's pad token, else its EOS, else 0."""
    for tid in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


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
