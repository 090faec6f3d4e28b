"""Task prompts as padded token tensors for patching: clean/corrupted pairs with their answers, or plain texts.

Prompts are right-padded, so a causal model's logits at real positions are unaffected by the padding and the
prediction is read at ``lengths - 1``. Clean and corrupted prompts of a pair must have the same number of
tokens (patching swaps activations position by position); pairs that do not are dropped and counted.

Tasks by name (:func:`load_task_prompts`): a bundled recall task or .jsonl file, ``ioi`` (generated from
templates, :mod:`circuitclust.data.ioi`), or ``wiki`` / ``chemistry``: windows of ``text_tokens`` tokens cut
from the corpus' held-out paragraphs, scored by the loss on their last ``loss_tokens`` tokens, each paired
with a window of the other corpus as its counterfactual (:func:`encode_text_task`). :func:`sample_task`
draws the evaluated prompts at random with a recorded seed, and a disjoint reference set for mean ablation
(for texts: windows of the corpus' training split). :func:`nonsense_task` is the control with answers
shuffled across prompts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from ...data import TASK_FIELDS, first_token_ids, load_task, pad_batch, pad_id_of
from ...errors import DataError


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
    loss_tokens: int | None = None  # plain texts of equal length: the loss covers only their last n tokens

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
                           self.dropped, self.info, self.loss_tokens)

    def batches(self, batch_size: int) -> Iterator["TaskPrompts"]:
        """Consecutive batches of at most ``batch_size`` prompts."""
        for i in range(0, len(self), batch_size):
            yield self.subset(slice(i, i + batch_size))

    def to(self, device: torch.device | str) -> "TaskPrompts":
        mv = lambda x: None if x is None else x.to(device)  # noqa: E731
        return TaskPrompts(self.name, self.clean.to(device), self.lengths.to(device), mv(self.corrupted),
                           mv(self.answer), mv(self.corrupted_answer), self.dropped, self.info, self.loss_tokens)

    def repeat(self, r: int) -> "TaskPrompts":
        """The batch stacked ``r`` times along the batch axis (row ``s * n + i`` is prompt ``i``): one
        forward evaluates ``r`` interventions, one per copy."""
        rep = lambda x: None if x is None else x.repeat(r, *([1] * (x.dim() - 1)))  # noqa: E731
        return TaskPrompts(self.name, rep(self.clean), rep(self.lengths), rep(self.corrupted), rep(self.answer),
                           rep(self.corrupted_answer), self.dropped, self.info, self.loss_tokens)

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


def _windows(tok, texts: Sequence[str], n_tokens: int) -> list[list[int]]:
    """Non-overlapping windows of exactly ``n_tokens`` tokens cut from each text, each starting with the
    tokenizer's own leading special tokens (e.g. Gemma's BOS); a text's short tail is dropped."""
    out = []
    for t in texts:
        ids, plain = tok(t)["input_ids"], tok(t, add_special_tokens=False)["input_ids"]
        prefix = ids[:len(ids) - len(plain)] if ids[len(ids) - len(plain):] == plain else []
        w = n_tokens - len(prefix)
        out += [prefix + plain[j:j + w] for j in range(0, len(plain) - w + 1, w)]
    return out


def encode_text_task(model, name: str, texts: Sequence[str], counter_texts: Sequence[str] | None = None,
                     text_tokens: int = 48, loss_tokens: int = 16, seed: int = 0,
                     counterfactual: str = "other") -> TaskPrompts:
    """Plain texts as a patching task: windows of ``text_tokens`` tokens (:func:`_windows`), metric = minus the
    mean loss on each window's last ``loss_tokens`` tokens. Counterfactual (``corrupted``) per window:
    ``"other"`` = a window of ``counter_texts`` drawn at random with ``seed`` (e.g. the other corpus),
    ``"shuffled"`` = the same window with its tokens after the leading special tokens shuffled. Returns
    :class:`TaskPrompts` (``info["counterfactual"]`` says which). Raises :class:`DataError` when no window fits."""
    from ...errors import check_choice, check_int

    check_int("text_tokens", text_tokens, 4, 4096)
    check_int("loss_tokens", loss_tokens, 1, text_tokens - 2)
    check_choice("counterfactual", counterfactual, ("other", "shuffled"))
    tok = model.tokenizer
    wins = _windows(tok, texts, text_tokens)
    if not wins:
        raise DataError(f"'{name}': no text has {text_tokens} tokens; lower text_tokens")
    clean = torch.tensor(wins)
    g = torch.Generator().manual_seed(seed)
    if counterfactual == "other":
        pool = _windows(tok, counter_texts or [], text_tokens)
        if not pool:
            raise DataError(f"'{name}': the counterfactual texts have no window of {text_tokens} tokens")
        corrupted = torch.tensor(pool)[torch.randint(len(pool), (len(wins),), generator=g)]
    else:
        n_prefix = len(tok("x")["input_ids"]) - len(tok("x", add_special_tokens=False)["input_ids"])
        keys = torch.rand(clean.shape, generator=g)
        keys[:, :n_prefix] = -1.0  # leading special tokens stay first
        corrupted = clean.gather(1, keys.argsort(1))
    return TaskPrompts(name, clean, torch.full((len(wins),), text_tokens), corrupted, loss_tokens=loss_tokens,
                       info={"counterfactual": counterfactual, "text_tokens": text_tokens, "loss_tokens": loss_tokens})


def load_task_prompts(model, name: str, *, seed: int = 0, text_tokens: int = 48, loss_tokens: int = 16,
                      ioi_pool: int = 256) -> tuple[TaskPrompts, TaskPrompts | None]:
    """Every usable prompt of task ``name`` (see the module docstring), and for texts a separate reference
    pool (windows of the corpus' training split, counterfactuals from the other corpus' training split);
    ``None`` for prompt tasks, whose reference set :func:`sample_task` takes from the unused prompts.
    ``ioi``: ``ioi_pool`` pairs generated with ``seed``. Raises :class:`DataError` for an unknown task."""
    from ...data import corpus_texts, ioi_rows, other_domain, task_kind

    kind = task_kind(name)
    if kind == "ioi":
        p = encode_task(model, ioi_rows(ioi_pool, seed, model.tokenizer), name="ioi")
        p.info["generator"] = {"rows": ioi_pool, "seed": seed}
        return p, None
    if kind == "text":
        other = other_domain(name)[0]
        kw = dict(text_tokens=text_tokens, loss_tokens=loss_tokens, seed=seed)
        held = encode_text_task(model, name, corpus_texts(name, "heldout"), corpus_texts(other, "heldout"), **kw)
        ref = encode_text_task(model, f"{name} (train)", corpus_texts(name, "train"), corpus_texts(other, "train"), **kw)
        held.info["counterfactual"] = ref.info["counterfactual"] = f"a window of {other}"
        return held, ref
    return encode_task(model, name), None


def sample_task(pool: TaskPrompts, n: int | None, n_reference: int = 16, seed: int = 0,
                reference_pool: TaskPrompts | None = None) -> tuple[TaskPrompts, TaskPrompts]:
    """Draw the evaluated prompts and a disjoint reference set (for mean ablation) at random with ``seed``.

    ``n`` prompts (None: all the pool leaves after the reference set) from ``pool``; ``n_reference``
    reference prompts from ``reference_pool`` when given, else from the prompts of ``pool`` not drawn (when
    the pool cannot give ``n + n_reference``, the reference set shrinks to a quarter of the pool, at least
    one prompt, and the evaluated set to the rest). Both keep
    ``info["sample"] = {"seed", "indices", "reference_indices"}``. Raises :class:`DataError` when the pool
    cannot give both sets."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(pool), generator=g)
    if reference_pool is None:
        want = len(pool) if n is None else n
        # a pool too small for both sets gives the reference at most a quarter of it (at least one prompt)
        n_ref = n_reference if want + n_reference <= len(pool) else min(n_reference, max(1, len(pool) // 4))
        n_eval = min(want, len(pool) - n_ref)
        if n_eval < 1 or n_ref < 1:
            raise DataError(f"task '{pool.name}' has {len(pool)} usable prompts: too few for {n or 1} evaluated "
                            f"and {n_ref} reference prompts (lower max_prompts or n_reference)")
        idx, ref_idx = perm[:n_eval], perm[n_eval:n_eval + n_ref]
        ref_src = pool
    else:
        idx = perm[:len(pool) if n is None else min(n, len(pool))]
        ref_idx = torch.randperm(len(reference_pool), generator=g)[:n_reference]
        ref_src = reference_pool
    info = {"seed": seed, "indices": idx.tolist(), "reference_indices": ref_idx.tolist()}
    ev, ref = pool.subset(idx), ref_src.subset(ref_idx)
    ev.info = {**pool.info, "sample": info}
    ref.info = {**ref_src.info, "sample": info}
    ref.name = f"{pool.name} (reference)"
    return ev, ref


def nonsense_task(prompts: TaskPrompts, seed: int = 0) -> TaskPrompts:
    """The control against fake circuits: the same prompts (and counterfactuals) with their answer pairs
    shuffled across prompts (a random permutation without fixed points, drawn with ``seed``), so that no
    mechanism of the model should compute them. Named ``<task>~nonsense``. Raises :class:`DataError` for
    plain texts or fewer than two prompts."""
    if prompts.is_text or len(prompts) < 2:
        raise DataError(f"'{prompts.name}': the nonsense control needs a prompt task with at least two prompts")
    g = torch.Generator().manual_seed(seed)
    n = len(prompts)
    # a random cyclic shift of a random order has no fixed point
    order = torch.randperm(n, generator=g)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(int(torch.randint(1, n, (1,), generator=g)))
    return TaskPrompts(f"{prompts.name}~nonsense", prompts.clean, prompts.lengths, prompts.corrupted,
                       prompts.answer[perm], prompts.corrupted_answer[perm], prompts.dropped,
                       {**prompts.info, "nonsense_permutation": perm.tolist()}, prompts.loss_tokens)
