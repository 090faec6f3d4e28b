"""Train the byte-level BPE tokenizer of the tiny models on the bundled corpora (run once by the project;
the result is shipped in ``data/tokenizer``): ``python -m circuitclust.models.tokenizer``."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from ..resources import data_dir

SPECIAL = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], out_dir: str | Path, vocab_size: int = 2048) -> Path:
    """Train a GPT-2-style byte-level BPE on ``texts`` and save it as an HF tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[SPECIAL], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(texts, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL,
                                  unk_token=SPECIAL, model_max_length=256)
    out = Path(out_dir)
    tok.save_pretrained(out)
    return out


def bundled_texts() -> list[str]:
    """Every paragraph of the bundled corpora (all ``*.jsonl`` files with a ``text`` field under data/)."""
    texts = []
    for f in sorted(data_dir().rglob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                texts.extend(str(row[k]) for k in ("text", "prompt", "answer") if k in row)
    return texts


if __name__ == "__main__":
    path = train_tokenizer(bundled_texts(), data_dir() / "tokenizer")
    print(f"wrote {path}")
