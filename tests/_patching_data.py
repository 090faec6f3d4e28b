"""Small inline recall tasks for the patching tests (no bundled data needed)."""
from __future__ import annotations

# Subjects are two tokens each in the tiny models' tokenizer, so clean and corrupted prompts align.
CITIES = [("water", " sea"), ("fire", " sun"), ("stone", " war"), ("gold", " king"), ("grass", " city"),
          ("coal", " star")]
COLOURS = [("grass", " green"), ("sea", " blue"), ("star", " white"), ("coal", " black"), ("fire", " red"),
           ("sun", " yellow")]


def pairs(items, template):
    """Rows pairing each item with the next one as its corruption."""
    rows = []
    for i, (x, a) in enumerate(items):
        y, b = items[(i + 1) % len(items)]
        rows.append({"prompt": template.format(x), "answer": a, "corrupted_prompt": template.format(y),
                     "corrupted_answer": b})
    return rows


def capital_rows():
    return pairs(CITIES, "The capital city of {} is")


def colour_rows():
    return pairs(COLOURS, "The colour of the {} is")
