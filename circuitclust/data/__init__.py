"""Bundled corpora and factual-recall tasks, loaded through HF ``datasets``; tokenisation helpers.

Pure data handling: no model maths. Corpora are paragraph-per-row JSONL files with a fixed ``split`` column
("train" | "heldout"); tasks are JSONL files of clean/corrupted prompt pairs for activation patching.

- :mod:`.corpora`: :func:`load_corpus` -> ``datasets.Dataset`` with a ``text`` column ("wiki", "chemistry", a
  local .jsonl/.txt, or a hub dataset name when the hub is reachable); :func:`corpus_texts` -> its texts.
- :mod:`.tasks`: :func:`list_tasks`, :func:`load_task` -> the bundled recall tasks; :func:`task_kind`,
  :func:`expand_tasks` (recall tasks, ``ioi``, ``wiki`` and ``chemistry`` as patching tasks).
- :mod:`.ioi`: :func:`ioi_rows`, IOI prompt pairs generated from templates.
- :mod:`.tokens`: :func:`pad_batch`, :func:`first_token_ids` (tasks are tokenised for patching by
  ``circuitclust.analysis.patching.prompts.encode_task``); :func:`token_blocks` -> a corpus packed into fixed-length
  token blocks for LM training and evaluation.
- :mod:`.jsonl`: reading and validating the JSONL files.
"""
from .corpora import BUNDLED_CORPORA, HELDOUT_EVERY, corpus_files, corpus_texts, load_corpus, other_domain
from .jsonl import SPLITS
from .ioi import ioi_rows
from .tasks import (GENERATED_TASKS, TASK_FIELDS, TEXT_TASKS, chained_task_rows, expand_tasks, list_tasks, load_task,
                    task_kind, tasks_dir)
from .tokens import first_token_ids, pad_batch, pad_id_of, token_blocks

__all__ = ["BUNDLED_CORPORA", "GENERATED_TASKS", "HELDOUT_EVERY", "SPLITS", "TASK_FIELDS", "TEXT_TASKS",
           "chained_task_rows", "corpus_files", "corpus_texts", "expand_tasks", "first_token_ids", "ioi_rows",
           "list_tasks", "load_corpus", "load_task", "other_domain", "pad_batch", "pad_id_of", "task_kind",
           "tasks_dir", "token_blocks"]
