"""Text the base model writes itself, as a fine-tuning stream that does not pull the model towards any domain.

Training on a small bundled corpus for hundreds of steps adapts the model to that corpus (and repeats it); text
sampled from the base model at temperature 1 has the base model's own distribution, so the task loss and the
distillation term on it ask only "stay what you were" while the clusterability regulariser acts. Samples
start from BOS alone (no prompt steers the topic), are seeded per batch, and are cached on disk by a key of the
model's identity and the options, so every run (and every process) with the same base model and options
trains on the same texts.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from ...atomic import write_text
from ...errors import check_float, check_int
from ...models.loading import model_fingerprint

GENERATED = "generated"


@dataclass(frozen=True)
class GenerationOptions:
    """How the texts are sampled: ``n_texts`` samples of ``new_tokens`` tokens each, at ``temperature`` from
    the full distribution (no top-k or top-p, which would narrow it), ``batch_size`` at a time, batch ``i``
    seeded with ``seed + i``."""

    n_texts: int = 512
    new_tokens: int = 128
    temperature: float = 1.0
    batch_size: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_texts", self.n_texts, 1)
        check_int("new_tokens", self.new_tokens, 8)
        check_int("batch_size", self.batch_size, 1)
        check_float("temperature", self.temperature, 0.0, open_min=True)


@torch.no_grad()
def generate_texts(hf: Any, tok: Any, options: GenerationOptions, progress: bool = False) -> list[str]:
    """``options.n_texts`` texts sampled from ``hf`` (an HF causal LM on its device) starting from BOS.

    Returns decoded strings (special tokens dropped). Deterministic for a given model, options and device.
    """
    from tqdm.auto import tqdm

    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    device = next(hf.parameters()).device
    was_training = hf.training
    hf.eval()
    texts: list[str] = []
    batches = range(0, options.n_texts, options.batch_size)
    # generate() samples from the global generator: seed it per batch, and leave the caller's RNG as it was
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for i, start in enumerate(tqdm(batches, desc="generating text", disable=not progress)):
            n = min(options.batch_size, options.n_texts - start)
            torch.manual_seed(options.seed + i)
            ids = torch.full((n, 1), bos, dtype=torch.long, device=device)
            out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True,
                              temperature=options.temperature, top_k=0, top_p=1.0, max_new_tokens=options.new_tokens,
                              min_new_tokens=options.new_tokens, pad_token_id=tok.eos_token_id)
            texts += tok.batch_decode(out[:, 1:], skip_special_tokens=True)
    hf.train(was_training)
    return [t for t in texts if t.strip()]


def cache_path(hf: Any, options: GenerationOptions) -> Path:
    """Where the texts of this model and these options are cached (``$CIRCUITCLUST_CACHE/generated/``)."""
    from ...models.embedded import cache_root

    key = hashlib.sha256(json.dumps({"model": model_fingerprint(hf), **asdict(options)}, sort_keys=True)
                         .encode()).hexdigest()[:20]
    return cache_root() / "generated" / f"{key}.jsonl"


def generated_texts(hf: Any, tok: Any, options: GenerationOptions = GenerationOptions(),
                    progress: bool = True) -> list[str]:
    """The cached texts of the base model ``hf`` (an HF causal LM, on the device to generate on) with tokenizer
    ``tok``, generating and caching them on first use; the caller's RNG state is left as it was.

    A damaged cache file is regenerated; the file is written atomically, so a killed run leaves none.
    """
    path = cache_path(hf, options)
    try:
        texts = [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
        if texts:
            return texts
    except (OSError, ValueError, KeyError, TypeError):
        pass
    texts = generate_texts(hf, tok, options, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps({"text": t}) + "\n" for t in texts))
    return texts


__all__ = ["GENERATED", "GenerationOptions", "cache_path", "generate_texts", "generated_texts"]
