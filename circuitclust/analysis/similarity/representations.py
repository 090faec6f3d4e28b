"""Which token positions a layer similarity compares, and the layers' activations there: hooks, prompts,
tokenization, position sampling, and the forward passes that collect ``[n, d]`` representations per hook.

Token positions: every prompt is tokenized by the model's tokenizer (truncated to ``max_tokens``); position 0
(BOS, or for tokenizers without BOS the first token, which acts as the attention sink with outlier norms) and
special tokens are excluded; ``n`` of the remaining (prompt, position) pairs are drawn without replacement
with ``torch.Generator().manual_seed(seed)``. Right padding is harmless: causal attention never looks ahead.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ...core.distances import MIN_POINTS
from ...errors import CircuitclustError, DataError, OptionError, check_int
from ...models import EXAMPLE_HOOK, LAYER_HOOKS, adapter_for, model_device, model_shapes
from ..patching.interventions import cache_activations

#: the layer shortcuts a hook list may use (each expands to every block; the model adapter names the hooks)
HOOK_SHORTCUTS = tuple(LAYER_HOOKS)


def resolve_hooks(model, hooks: str | Sequence[str] | None = None) -> list[str]:
    """Hook names to compare, in order. ``None`` = the residual stream after every block (``resid_post``); a
    shortcut (``resid_post``, ``resid_pre``, ``mlp_out``, ``attn_out``) expands to every block; other strings
    are explicit hook names. Raises :class:`CircuitclustError` for a hook the model does not have."""
    if hooks is None:
        hooks = ["resid_post"]
    elif isinstance(hooks, str):
        hooks = [h.strip() for h in hooks.split(",") if h.strip()]
    if not hooks:
        raise OptionError(f"hooks is empty: give {', '.join(HOOK_SHORTCUTS)} or hook names such as "
                          f"{EXAMPLE_HOOK}", option="hooks")
    names: list[str] = []
    adapter = adapter_for(model)
    for h in hooks:
        if h in HOOK_SHORTCUTS:
            names += [adapter.layer_hook(h, l) for l in range(model_shapes(model).n_layers)]
        else:
            names.append(h)
    available = set(model.hook_dict)
    missing = [h for h in names if h not in available]
    if missing:
        raise CircuitclustError(
            f"hook '{missing[0]}' does not exist in this model: use {', '.join(HOOK_SHORTCUTS)} or a name such "
            f"as {EXAMPLE_HOOK} (the model has {len(available)} hooks; see model.hook_dict)")
    if len(set(names)) != len(names):
        raise CircuitclustError("the same hook is listed twice")
    return names


def load_prompts(prompts: str | Sequence[str], split: str = "train") -> tuple[list[str], str]:
    """Texts and a source label: a list of strings as given, or a corpus name / path through
    :func:`circuitclust.data.load_corpus` (``"wiki"``, ``"chemistry"``, a .jsonl/.txt path)."""
    if isinstance(prompts, str):
        from ...data import load_corpus

        texts = [t for t in load_corpus(prompts, split=split)["text"] if t and t.strip()]
        source = f"{prompts}:{split}"
    else:
        texts = [str(t) for t in prompts if str(t).strip()]
        source = f"list[{len(texts)}]"
    if not texts:
        raise DataError(f"no non-empty prompts in {source}")
    return texts, source


def tokenize_prompts(tokenizer, texts: Sequence[str], max_tokens: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids ``[P, T]`` and the mask ``[P, T]`` of positions that may be sampled (inside the
    text, not position 0, not a special token)."""
    ids = [tokenizer(t, truncation=True, max_length=max_tokens)["input_ids"] for t in texts]
    width = max(len(i) for i in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = torch.full((len(ids), width), pad, dtype=torch.long)
    lengths = torch.tensor([len(i) for i in ids])
    for p, row in enumerate(ids):  # one copy per prompt; the texts are variable-length Python lists
        tokens[p, :len(row)] = torch.tensor(row, dtype=torch.long)
    pos = torch.arange(width)
    valid = (pos[None, :] < lengths[:, None]) & (pos[None, :] >= 1)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=torch.long)
    if special.numel():
        valid &= ~torch.isin(tokens, special)
    return tokens, valid


def _check_n(name: str, n: int) -> int:
    n = check_int(name, n)
    if n < MIN_POINTS:
        raise OptionError(f"{name}={n} is too small: GW and CKA need at least {MIN_POINTS} token positions "
                          "(use n >= 64 for stable distances)", option=name)
    return n


def sample_positions(valid: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` distinct (prompt, position) pairs drawn uniformly from ``valid[P, T]`` with ``seed`` ->
    ``[n, 2]`` int64 sorted by prompt then position."""
    _check_n("n", n)
    flat = torch.nonzero(valid)
    if flat.shape[0] < n:
        raise DataError(f"only {flat.shape[0]} usable token positions in the prompts but n={n}: lower n or "
                        "give more/longer prompts")
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(flat.shape[0], generator=g)[:n]
    chosen = flat[pick]
    order = torch.argsort(chosen[:, 0] * valid.shape[1] + chosen[:, 1])
    return chosen[order]


@torch.no_grad()
def collect_representations(model, tokens: torch.Tensor, positions: torch.Tensor, hooks: Sequence[str], *,
                            batch_size: int = 8, progress: bool = False) -> list[torch.Tensor]:
    """Activations at ``hooks`` for the sampled ``positions[n, 2]`` (prompt, position) of ``tokens[P, T]``
    -> one ``[n, d_hook]`` float32 tensor per hook, on the model's device. Only prompts holding a sampled
    position are run, ``batch_size`` at a time, each cut after its last sampled position.

    Only the sampled positions are kept, and the forward pass stops as soon as every requested hook has fired
    (:func:`~.interventions.cache_activations` with ``logits=False``): the unembedding of Gemma's 262k-token
    vocabulary is otherwise most of the cost, and ``stop_at_layer`` cannot skip it when the last block is
    hooked.
    """
    from tqdm.auto import tqdm

    device = model_device(model)
    prompts = torch.unique(positions[:, 0])
    out: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    for s in tqdm(range(0, len(prompts), batch_size), desc="activations", disable=not progress, leave=False):
        batch = prompts[s:s + batch_size]
        sel = torch.isin(positions[:, 0], batch)
        rows = torch.searchsorted(batch, positions[sel, 0]).to(device)
        cols = positions[sel, 1].to(device)
        width = int(positions[sel, 1].max()) + 1  # nothing after the last sampled position is needed (causal)
        _, got = cache_activations(model, tokens[batch, :width].to(device), hooks, logits=False,
                                   keep=lambda act: act[rows, cols].float())
        for h in hooks:
            out[h].append(got[h])
    # positions are sorted by prompt, so concatenating batch by batch keeps their order
    return [torch.cat(out[h]) for h in hooks]


__all__ = ["resolve_hooks", "load_prompts", "tokenize_prompts", "sample_positions", "collect_representations",
           "HOOK_SHORTCUTS"]
