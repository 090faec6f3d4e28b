"""Small inline recall tasks for the patching tests (no bundled data needed)."""
from __future__ import annotations

from circuitclust.data import chained_task_rows

# Subjects are two tokens each in the tiny models' tokenizer, so clean and corrupted prompts align.
CITIES = [("water", " sea"), ("fire", " sun"), ("stone", " war"), ("gold", " king"), ("grass", " city"),
          ("coal", " star")]
COLOURS = [("grass", " green"), ("sea", " blue"), ("star", " white"), ("coal", " black"), ("fire", " red"),
           ("sun", " yellow")]


def capital_rows():
    return chained_task_rows(CITIES, "The capital city of {} is")


def colour_rows():
    return chained_task_rows(COLOURS, "The colour of the {} is")
