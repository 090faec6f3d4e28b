"""Indirect-object identification (IOI, Wang et al. 2022) prompts generated from templates.

A prompt names two people, the indirect object (IO) and the subject (S); S is named again and the model should
complete with IO: "Then, Mary and John went to the store. John gave a drink to" -> " Mary". Two orders:
``ABBA`` (IO named first: "Mary and John ... John") and ``BABA`` (S named first: "John and Mary ... John").
Names, places and objects are drawn at random (seeded) from the lists below.

Corrupted prompt (the counterfactual, documented here because the tests hold it to this): the same template,
place and object with the two names exchanged everywhere, so IO and S trade roles and the corrupted answer is
S. Clean and corrupted prompts have the same words in the same slots except that the clean one names IO once
and S twice and the corrupted one the reverse, so given a tokenizer, IO and S are drawn among names of the
same token count (every name follows a space, so it tokenizes alone under a word-level BPE) and the two
prompts have the same number of tokens; ``encode_task`` still drops any pair that does not. Metric: logit
difference IO - S.
"""
from __future__ import annotations

import random

NAMES = ("Mary", "John", "Tom", "James", "Anna", "Sarah", "David", "Paul", "Lisa", "Emma", "Kevin", "Laura",
         "Mark", "Alice", "Peter", "Rachel", "Daniel", "Susan", "Michael", "Karen")
PLACES = ("store", "garden", "restaurant", "school", "hospital", "office", "station", "park", "beach", "library")
OBJECTS = ("drink", "book", "ball", "letter", "key", "ring", "snack", "gift", "bag", "pen")
# {first} and {second} are the first two mentions; {s} is the repeated subject
TEMPLATES = (
    "Then, {first} and {second} went to the {place}. {s} gave a {obj} to",
    "When {first} and {second} got a {obj} at the {place}, {s} decided to give it to",
    "After {first} and {second} went to the {place}, {s} gave a {obj} to",
    "While {first} and {second} were working at the {place}, {s} gave a {obj} to",
    "Friends {first} and {second} found a {obj} at the {place}. {s} gave it to",
)
ORDERS = ("ABBA", "BABA")


def ioi_prompt(template: int, order: str, io: str, s: str, place: str, obj: str) -> str:
    """One IOI prompt: ``order`` ``ABBA`` names IO first, ``BABA`` names S first; S is repeated."""
    first, second = (io, s) if order == "ABBA" else (s, io)
    return TEMPLATES[template].format(first=first, second=second, s=s, place=place, obj=obj)


def ioi_rows(n: int, seed: int = 0, tokenizer=None) -> list[dict]:
    """``n`` IOI task rows (the ``TASK_FIELDS`` columns plus ``order``, ``template``, ``io``, ``s``), ABBA and
    BABA alternating, drawn with ``seed``; each corrupted prompt exchanges the two names (see the module
    docstring). With ``tokenizer``, the two names of a row have the same token count under it."""
    rng = random.Random(seed)
    groups = [list(NAMES)]
    if tokenizer is not None:
        by_len: dict[int, list[str]] = {}
        for name in NAMES:
            by_len.setdefault(len(tokenizer(f" {name}", add_special_tokens=False)["input_ids"]), []).append(name)
        groups = [g for g in by_len.values() if len(g) >= 2]
    # a group is drawn in proportion to its number of name pairs, so every valid pair is equally likely
    weights = [len(g) * (len(g) - 1) for g in groups]
    rows = []
    for i in range(n):
        io, s = rng.sample(rng.choices(groups, weights)[0], 2)
        t, place, obj, order = rng.randrange(len(TEMPLATES)), rng.choice(PLACES), rng.choice(OBJECTS), ORDERS[i % 2]
        rows.append({"prompt": ioi_prompt(t, order, io, s, place, obj), "answer": f" {io}",
                     "corrupted_prompt": ioi_prompt(t, order, s, io, place, obj), "corrupted_answer": f" {s}",
                     "order": order, "template": t, "io": io, "s": s})
    return rows
