"""Text corpora: the bundled ones ("wiki", "chemistry"), local .jsonl/.txt files and hub datasets, each with a
fixed train/heldout split."""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from ..resources import data_dir, hub_reachable
from .jsonl import SPLITS, load_json_files, quiet_datasets

BUNDLED_CORPORA = ("wiki", "chemistry")
# Local files without a split column get the same fixed rule as the bundled corpora: every 6th row held out.
HELDOUT_EVERY = 6
# Hub datasets name their held-out split differently; the first one present is used.
_HUB_HELDOUT = ("validation", "test")


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
        ds = load_json_files(corpus_files(name), ("text",))
        return _select_split(ds, split, f"corpus '{name}'")
    path = Path(name).expanduser()
    if path.suffix in (".jsonl", ".json") or path.exists():
        if not path.is_file():
            raise DataError(f"{path} does not exist or is not a file: pass a .jsonl or .txt corpus")
        if path.suffix == ".txt":
            return _select_split(_load_txt(path), split, str(path))
        return _select_split(load_json_files([path], ("text",)), split, str(path))
    if name.startswith((".", "/", "~")) or path.suffix:
        raise DataError(f"corpus file {name} does not exist")
    return _load_hub(name, split)


def corpus_texts(name: str, split: str = "train") -> list[str]:
    """The non-empty texts of corpus ``name`` (as :func:`load_corpus` takes it) and ``split``
    ("train" | "heldout"). Raises :class:`DataError` when there are none."""
    texts = [t for t in load_corpus(name, split=split)["text"] if t and t.strip()]
    if not texts:
        raise DataError(f"corpus '{name}' has no '{split}' texts: pass wiki, chemistry or a .jsonl/.txt file")
    return texts


def other_domain(name: str) -> list[str]:
    """Bundled corpora to evaluate on besides the training corpus' own held-out split."""
    return [d for d in BUNDLED_CORPORA if d != name]


def _load_txt(path: Path):
    from datasets import load_dataset

    if not path.read_text(encoding="utf-8").strip():
        raise DataError(f"{path} is empty: it needs paragraphs of text separated by blank lines")
    with quiet_datasets():
        ds = load_dataset("text", data_files=str(path), sample_by="paragraph", split="train")
        return ds.filter(lambda t: bool(t.strip()), input_columns="text")


