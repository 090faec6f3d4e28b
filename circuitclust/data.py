"""Bundled corpora and factual-recall tasks, loaded through HF ``datasets``; tokenisation helpers.

Pure data handling: no model maths. Corpora are paragraph-per-row JSONL files with a fixed ``split`` column
("train" | "heldout"); tasks are JSONL files of clean/corrupted prompt pairs for activation patching.

- :func:`load_corpus` -> ``datasets.Dataset`` with a ``text`` column ("wiki", "chemistry", a local .jsonl/.txt,
  or a hub dataset name when the hub is reachable).
- :func:`list_tasks`, :func:`load_task` -> the bundled recall tasks.
- :func:`tokenize_task` -> aligned clean/corrupted token tensors and answer ids (:class:`TaskTokens`).
- :func:`lm_blocks` -> a corpus packed into fixed-length token blocks for LM training and evaluation.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .errors import DataError, OptionError
from .resources import data_dir, hub_reachable

SPLITS = ("train", "heldout")
BUNDLED_CORPORA = ("wiki", "chemistry")
TASK_FIELDS = ("prompt", "answer", "corrupted_prompt", "corrupted_answer")
# Local files without a split column get the same fixed rule as the bundled corpora: every 6th row held out.
HELDOUT_EVERY = 6
# Hub datasets name their held-out split differently; the first one present is used.
_HUB_HELDOUT = ("validation", "test")


# --------------------------------------------------------------------------------------------- validation
def _read_jsonl(path: Path, required: tuple[str, ...]) -> list[dict]:
    """Parse ``path`` line by line so that a bad row is reported by file and line (``datasets`` would only
    say that Arrow failed). Returns the rows; raises :class:`DataError` for an empty or malformed file."""
    if not path.is_file():
        raise DataError(f"{path} does not exist")
    rows = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or remove that line") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object per line, got {type(row).__name__}")
            missing = [k for k in required if not isinstance(row.get(k), str) or not row[k].strip()]
            if missing:
                raise DataError(f"{path}:{lineno}: missing or empty field(s) {', '.join(missing)}")
            if "split" in row and row["split"] not in SPLITS:
                raise DataError(f"{path}:{lineno}: split must be one of {SPLITS}, got {row['split']!r}")
            rows.append(row)
    if not rows:
        raise DataError(f"{path} is empty: it needs one JSON object per line with a 'text' field")
    return rows


@contextmanager
def _quiet_datasets():
    """Silence the per-load 'Generating train split' bars (restoring the caller's setting)."""
    from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was:
            enable_progress_bars()


def _load_json_files(files: list[Path], required: tuple[str, ...]):
    from datasets import load_dataset

    for f in files:
        _read_jsonl(f, required)
    with _quiet_datasets():
        return load_dataset("json", data_files=[str(f) for f in files], split="train")


def _select_split(ds, split: str, source: str):
    """Rows of ``ds`` in ``split``: by its ``split`` column, else every ``HELDOUT_EVERY``-th row held out."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r} for {source}: use 'train' or 'heldout'")
    if "split" in ds.column_names:
        idx = [i for i, s in enumerate(ds["split"]) if s == split]
    else:
        held = [(i + 1) % HELDOUT_EVERY == 0 for i in range(len(ds))]
        idx = [i for i, h in enumerate(held) if h == (split == "heldout")]
    if not idx:
        raise DataError(f"{source} has no {split!r} rows")
    return ds.select(idx)


# ------------------------------------------------------------------------------------------------ corpora
def corpus_files(name: str) -> list[Path]:
    """The JSONL files of bundled corpus ``name`` ("wiki" | "chemistry"), sorted."""
    folder = data_dir() / name
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise DataError(f"bundled corpus '{name}' has no .jsonl files in {folder}")
    return files


def _load_hub(name: str, split: str):
    """A hub dataset ``name`` or ``name:config`` (e.g. ``wikitext:wikitext-103-raw-v1``) with a ``text``
    column; ``heldout`` maps to its validation (or test) split. Empty lines are dropped."""
    from datasets import get_dataset_split_names, load_dataset

    if not hub_reachable("HF_DATASETS_OFFLINE"):
        raise DataError(
            f"dataset '{name}' is not a bundled corpus (wiki, chemistry) or a local file, and the Hugging Face hub "
            f"is unreachable: save it as JSONL (one {{\"text\": ...}} per line) or plain text and pass that path")
    repo, _, config = name.partition(":")
    try:
        names = get_dataset_split_names(repo, config or None)
        hub_split = "train" if split == "train" else next((s for s in _HUB_HELDOUT if s in names), None)
        if hub_split is None:
            raise DataError(f"hub dataset '{name}' has no validation/test split (splits: {names})")
        ds = load_dataset(repo, config or None, split=hub_split)
    except DataError:
        raise
    except Exception as e:  # the hub client raises many types
        raise DataError(f"cannot load hub dataset '{name}': {str(e).splitlines()[0]}") from e
    if "text" not in ds.column_names:
        raise DataError(f"hub dataset '{name}' has no 'text' column (columns: {ds.column_names})")
    return ds.filter(lambda t: bool(t.strip()), input_columns="text")


def load_corpus(name: str, split: str = "train"):
    """Load a text corpus as a ``datasets.Dataset`` with a ``text`` column (one paragraph per row).

    ``name``: "wiki" | "chemistry" (bundled, fixed split column), a local ``.jsonl`` (rows with ``text`` and
    optionally ``split``) or ``.txt`` (blank-line separated paragraphs), or a hub dataset name (``repo`` or
    ``repo:config``) when the hub is reachable. ``split``: "train" | "heldout"; files without a split column
    hold out every 6th paragraph. Raises :class:`DataError` for missing, empty or malformed data."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use 'train' or 'heldout'")
    if name in BUNDLED_CORPORA:
        ds = _load_json_files(corpus_files(name), ("text",))
        return _select_split(ds, split, f"corpus '{name}'")
    path = Path(name).expanduser()
    if path.suffix in (".jsonl", ".json") or path.exists():
        if not path.is_file():
            raise DataError(f"{path} does not exist or is not a file: pass a .jsonl or .txt corpus")
        if path.suffix == ".txt":
            return _select_split(_load_txt(path), split, str(path))
        return _select_split(_load_json_files([path], ("text",)), split, str(path))
    if name.startswith((".", "/", "~")) or path.suffix:
        raise DataError(f"corpus file {name} does not exist")
    return _load_hub(name, split)


def _load_txt(path: Path):
    from datasets import load_dataset

    if not path.read_text(encoding="utf-8").strip():
        raise DataError(f"{path} is empty: it needs paragraphs of text separated by blank lines")
    with _quiet_datasets():
        ds = load_dataset("text", data_files=str(path), sample_by="paragraph", split="train")
        return ds.filter(lambda t: bool(t.strip()), input_columns="text")


def corpus_stats(name: str, tokenizer: Any = None) -> dict:
    """Size of a corpus: ``{"name", "paragraphs": {"train", "heldout", "total"}, "topics": {topic: n},
    "words", "chars"}`` plus ``"tokens"`` when a tokenizer is given (no special tokens)."""
    parts = {s: load_corpus(name, s) for s in SPLITS}
    texts = [t for s in SPLITS for t in parts[s]["text"]]
    topics: dict[str, int] = {}
    for s in SPLITS:
        if "topic" in parts[s].column_names:
            key = "subtopic" if "subtopic" in parts[s].column_names else "topic"
            for t in parts[s][key]:
                topics[t] = topics.get(t, 0) + 1
    stats = {"name": name,
             "paragraphs": {"train": len(parts["train"]), "heldout": len(parts["heldout"]), "total": len(texts)},
             "topics": dict(sorted(topics.items())),
             "words": sum(len(t.split()) for t in texts),
             "chars": sum(len(t) for t in texts)}
    if tokenizer is not None:
        stats["tokens"] = sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])
    return stats


# -------------------------------------------------------------------------------------------------- tasks
def tasks_dir() -> Path:
    return data_dir() / "tasks"


def list_tasks() -> list[str]:
    """Names of the bundled recall tasks (``data/tasks/<name>.jsonl``), sorted."""
    return sorted(p.stem for p in tasks_dir().glob("*.jsonl"))


def load_task(name: str):
    """A recall task as a ``datasets.Dataset`` with columns prompt, answer, corrupted_prompt,
    corrupted_answer (answers start with a space), plus subject/corrupted_subject when present.
    ``name``: a bundled task name or a path to a JSONL file of such rows."""
    path = Path(name).expanduser()
    if path.suffix != ".jsonl":
        path = tasks_dir() / f"{name}.jsonl"
        if not path.is_file():
            raise DataError(f"unknown task '{name}': use one of {', '.join(list_tasks())} or a .jsonl path")
    return _load_json_files([path], TASK_FIELDS)


def chained_task_rows(items: list[tuple[str, str]], template: str) -> list[dict]:
    """Task rows (the :data:`TASK_FIELDS` columns) from ``(subject, answer)`` pairs and a ``template`` with one
    ``{}`` for the subject: each item's corrupted prompt is the next item's (cyclically). For patching, pick
    subjects of equal token length so clean and corrupted prompts align."""
    rows = []
    for i, (subject, answer) in enumerate(items):
        other, other_answer = items[(i + 1) % len(items)]
        rows.append({"prompt": template.format(subject), "answer": answer,
                     "corrupted_prompt": template.format(other), "corrupted_answer": other_answer})
    return rows


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
def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a")["input_ids"]
    return bool(ids) and ids[0] == bos


def lm_blocks(dataset, tokenizer: Any, block_size: int, add_bos: bool | None = None) -> torch.Tensor:
    """Pack a text dataset (``text`` column, or a list of strings) into LM blocks.

    Paragraphs are tokenised without special tokens, joined with the EOS token (when the tokenizer has one)
    and cut into consecutive blocks; the ragged tail is dropped. With ``add_bos`` (default: when the
    tokenizer itself prepends BOS, as Gemma's does, since such models degrade badly without it) each block
    starts with BOS followed by ``block_size - 1`` text tokens. Returns LongTensor [n_blocks, block_size];
    raises :class:`DataError` when the text is shorter than one block."""
    if block_size < 2:
        raise DataError(f"block_size must be >= 2, got {block_size}")
    texts = list(dataset) if isinstance(dataset, (list, tuple)) else list(dataset["text"])
    if add_bos is None:
        add_bos = _adds_bos(tokenizer)
    ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    eos = tokenizer.eos_token_id
    stream = torch.tensor([t for para in ids for t in (para + ([eos] if eos is not None else []))],
                          dtype=torch.long)
    body = block_size - 1 if add_bos else block_size
    n = stream.numel() // body
    if n == 0:
        raise DataError(f"corpus has {stream.numel()} tokens, fewer than one block of {block_size}")
    blocks = stream[: n * body].view(n, body)
    if add_bos:
        blocks = torch.cat([torch.full((n, 1), tokenizer.bos_token_id, dtype=torch.long), blocks], dim=1)
    return blocks
