"""circuitclust.data: bundled corpora and tasks, fixed splits, error messages, encode_task, token_blocks."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from _helpers import corpus_stats

from circuitclust import data
from circuitclust.analysis.patching.prompts import encode_task
from circuitclust.errors import DataError


@pytest.fixture(scope="module")
def tiny_tok():
    from transformers import AutoTokenizer

    from circuitclust.resources import data_dir

    return AutoTokenizer.from_pretrained(str(data_dir() / "tokenizer"))


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ---------------------------------------------------------------------------------------- bundled corpora
@pytest.mark.parametrize("name,min_paragraphs,min_topics", [("wiki", 200, 8), ("chemistry", 100, 5)])
def test_bundled_corpus_sizes(name, min_paragraphs, min_topics):
    stats = corpus_stats(name)
    assert stats["paragraphs"]["total"] >= min_paragraphs
    assert len(stats["topics"]) >= min_topics
    assert stats["paragraphs"]["heldout"] >= stats["paragraphs"]["total"] // 10
    assert stats["words"] >= 60 * stats["paragraphs"]["total"]  # real paragraphs, not stubs


def test_wiki_is_large_enough_for_lm_eval():
    assert corpus_stats("wiki")["words"] >= 20_000  # ~30k Gemma tokens


@pytest.mark.parametrize("name", data.BUNDLED_CORPORA)
def test_splits_fixed_disjoint_and_complete(name):
    train, held = data.load_corpus(name, "train"), data.load_corpus(name, "heldout")
    assert "text" in train.column_names
    tr, he = set(train["id"]), set(held["id"])
    assert tr and he and not (tr & he)
    assert set(train["split"]) == {"train"} and set(held["split"]) == {"heldout"}
    assert list(data.load_corpus(name, "heldout")["id"]) == list(held["id"])  # same rows every time
    n_rows = sum(1 for f in data.corpus_files(name) for line in f.read_text().splitlines() if line.strip())
    assert len(tr) + len(he) == n_rows


def test_chemistry_split_rule_and_subtopics():
    held = data.load_corpus("chemistry", "heldout")
    assert all(int(i.rsplit("-", 1)[1]) % 6 == 0 for i in held["id"])
    train = data.load_corpus("chemistry", "train")
    assert all(int(i.rsplit("-", 1)[1]) % 6 != 0 for i in train["id"])
    assert set(train["subtopic"]) == {"elements", "bonding", "reactions", "organic", "lab"}
    words = [len(t.split()) for t in list(train["text"]) + list(held["text"])]
    assert min(words) >= 90 and max(words) <= 160


# -------------------------------------------------------------------------------------------------- tasks
def test_bundled_tasks_shape():
    names = data.list_tasks()
    assert len(names) >= 6
    chemistry = {"element_symbol", "symbol_element", "compound_formula", "molecule_functional_group"}
    assert len(chemistry & set(names)) >= 2
    for name in names:
        ds = data.load_task(name)
        assert len(ds) >= 50, name
        for col in data.TASK_FIELDS:
            assert col in ds.column_names
        for r in ds:
            assert r["answer"].startswith(" ") and r["corrupted_answer"].startswith(" ")
            assert r["prompt"] != r["corrupted_prompt"] and r["answer"] != r["corrupted_answer"]
            # same template: removing the (last) subject slot leaves the same text
            assert "".join(r["prompt"].rsplit(r["subject"], 1)) == \
                "".join(r["corrupted_prompt"].rsplit(r["corrupted_subject"], 1))


def test_load_task_unknown_name():
    with pytest.raises(DataError, match="unknown task 'nope'.*country_capital"):
        data.load_task("nope")


@pytest.mark.slow
def test_bundled_tasks_are_length_matched_for_gemma():
    from transformers import AutoTokenizer

    from circuitclust.models.embedded import ensure_embedded

    tok = AutoTokenizer.from_pretrained(str(ensure_embedded()))
    for name in data.list_tasks():
        tt = encode_task(SimpleNamespace(tokenizer=tok), data.load_task(name))
        assert tt.dropped == 0, name
        assert (tt.answer != tt.corrupted_answer).all(), name
        assert tt.clean.shape[1] < 40


# ------------------------------------------------------------------------------------ local files, errors
def test_malformed_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"text": "fine"}\n{"text": "also fine"}\n{"text": broken\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:3: not valid JSON"):
        data.load_corpus(str(f))


@pytest.mark.parametrize("content,match", [
    ("", "is empty"),
    ("\n\n", "is empty"),
    ('{"title": "no text"}\n', r":1: missing or empty field\(s\) text"),
    ('["a list"]\n', ":1: expected a JSON object"),
    ('{"text": "x", "split": "test"}\n', ":1: split must be one of"),
])
def test_bad_corpus_files(tmp_path, content, match):
    f = tmp_path / "c.jsonl"
    f.write_text(content)
    with pytest.raises(DataError, match=match):
        data.load_corpus(str(f))


def test_bad_task_file(tmp_path):
    f = _write(tmp_path / "t.jsonl", [{"prompt": "a", "answer": " b", "corrupted_prompt": "c"}])
    with pytest.raises(DataError, match=r"t\.jsonl:1: missing or empty field\(s\) corrupted_answer"):
        data.load_task(str(f))


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.load_corpus(str(tmp_path / "nothing.jsonl"))
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(DataError, match="empty"):
        data.load_corpus(str(tmp_path / "empty.txt"))
    with pytest.raises(DataError, match="unknown split"):
        data.load_corpus("wiki", "validation")


def test_local_jsonl_without_split_holds_out_every_sixth(tmp_path):
    f = _write(tmp_path / "c.jsonl", [{"text": f"paragraph {i}"} for i in range(1, 13)])
    held = data.load_corpus(str(f), "heldout")
    assert list(held["text"]) == ["paragraph 6", "paragraph 12"]
    assert len(data.load_corpus(str(f), "train")) == 10


def test_local_txt_paragraphs(tmp_path):
    f = tmp_path / "c.txt"
    f.write_text("\n\n".join(f"Paragraph number {i}.\nSecond line." for i in range(12)) + "\n")
    train = data.load_corpus(str(f), "train")
    assert len(train) == 10 and train[0]["text"].startswith("Paragraph number 0.")


def test_unknown_dataset_offline_says_how_to_provide_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="wikitext.*unreachable.*JSONL"):
        data.load_corpus("wikitext")


# ------------------------------------------------------------------------------------------ tokenisation
def test_encode_task_aligns_and_drops_unequal_pairs(tmp_path, tiny_tok):
    enc = lambda s: tiny_tok(s)["input_ids"]  # noqa: E731
    # the tiny BPE tokeniser splits these words differently, so some pairs differ in length
    words = ["water", "fire", "stone", "gold", "grass", "coal", "Constantinople", "sea"]
    rows = [{"prompt": f"The colour of {a} is", "answer": " red", "corrupted_prompt": f"The colour of {b} is",
             "corrupted_answer": " blue"} for a, b in zip(words, words[1:] + words[:1])]
    ds = data.load_task(str(_write(tmp_path / "t.jsonl", rows)))
    expect_kept = [i for i, r in enumerate(rows) if len(enc(r["prompt"])) == len(enc(r["corrupted_prompt"]))]
    assert 0 < len(expect_kept) < len(rows)  # the test exercises dropping
    tt = encode_task(SimpleNamespace(tokenizer=tiny_tok), ds)
    assert tt.dropped == len(rows) - len(expect_kept)
    assert tt.info["kept"] == expect_kept
    real_mask = tt.position_mask()
    assert tt.clean.shape == tt.corrupted.shape == real_mask.shape
    assert tt.clean.shape[0] == len(tt) == tt.answer.shape[0] == tt.corrupted_answer.shape[0]
    for row, i in enumerate(expect_kept):
        ids = enc(rows[i]["prompt"])
        real = tt.clean[row][real_mask[row]].tolist()
        assert real == ids
        assert tt.corrupted[row][real_mask[row]].tolist() == enc(rows[i]["corrupted_prompt"])
        assert int(tt.clean[row, tt.lengths[row] - 1]) == ids[-1]
    assert tt.answer.tolist() == [tiny_tok(" red", add_special_tokens=False)["input_ids"][0]] * len(tt)
    moved = tt.to("cpu")
    assert moved.corrupted.equal(tt.corrupted) and moved.dropped == tt.dropped


def test_encode_task_nothing_left(tmp_path, tiny_tok):
    rows = [{"prompt": "a b", "answer": " x", "corrupted_prompt": "a b c d e f", "corrupted_answer": " y"}]
    with pytest.raises(DataError, match="equal token lengths"):
        encode_task(SimpleNamespace(tokenizer=tiny_tok), data.load_task(str(_write(tmp_path / "t.jsonl", rows))))


def test_pad_batch_right_pads():
    ids, mask = data.pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]


@pytest.mark.parametrize("add_bos", [False, True])
def test_token_blocks(tiny_tok, add_bos):
    texts = data.load_corpus("chemistry", "heldout")
    n_tokens = sum(len(tiny_tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts["text"])
    blocks = data.token_blocks(texts, tiny_tok, 64, add_bos=add_bos)
    body = 63 if add_bos else 64
    assert blocks.dtype == torch.long and blocks.shape == (n_tokens // body, 64)
    if add_bos:
        assert (blocks[:, 0] == tiny_tok.bos_token_id).all()
    first = tiny_tok(texts[0]["text"], add_special_tokens=False)["input_ids"][:body]
    assert blocks[0, int(add_bos):].tolist() == first
    assert data.token_blocks(list(texts["text"]), tiny_tok, 64, add_bos=add_bos).equal(blocks)


def test_token_blocks_start_with_bos_whenever_the_tokenizer_has_one(tiny_tok):
    texts = data.load_corpus("chemistry", "heldout")
    assert tiny_tok.bos_token_id is not None and tiny_tok("a")["input_ids"][0] != tiny_tok.bos_token_id
    assert data.token_blocks(texts, tiny_tok, 64).equal(data.token_blocks(texts, tiny_tok, 64, add_bos=True))


def test_token_blocks_too_short(tiny_tok):
    with pytest.raises(DataError, match="fewer than one block"):
        data.token_blocks(["a few words"], tiny_tok, 512)


def test_chained_task_rows_corrupts_each_item_with_the_next():
    rows = data.chained_task_rows([("France", " Paris"), ("Italy", " Rome"), ("Spain", " Madrid")], "The capital of {} is")
    assert [r["corrupted_prompt"] for r in rows] == ["The capital of Italy is", "The capital of Spain is",
                                                    "The capital of France is"]
    assert [r["corrupted_answer"] for r in rows] == [" Rome", " Madrid", " Paris"]
    assert all(set(r) == set(data.TASK_FIELDS) for r in rows) and rows[0]["answer"] == " Paris"


def test_wheel_lists_every_package_and_ships_the_bundled_data():
    import tomllib
    from pathlib import Path

    from circuitclust.resources import data_dir

    repo = Path(__file__).resolve().parents[1]
    conf = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(repo).parts) for p in (repo / "circuitclust").rglob("__init__.py")}
    assert set(conf["packages"]) == on_disk | {"circuitclust._bundled"}
    assert conf["package-dir"]["circuitclust._bundled"] == "data" and data_dir() == repo / "data"
    assert "**/*" in conf["package-data"]["circuitclust._bundled"]
