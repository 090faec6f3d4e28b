"""One self-contained HTML report of a run folder: a summary table, then the figures of whatever the folder
holds (files are found recursively and labelled by the sub-folder, i.e. the pipeline step, that wrote them).
plotly.js is embedded once in the page head, so the file opens offline. No maths here beyond averaging a
file's per-graph values for the summary line.

Modules, one job each: :mod:`.collect` (the run files of each step), :mod:`.summary` (the summary table),
:mod:`.sections` (sections, figures and their HTML), :mod:`.weights` (the weights section),
:mod:`.page` (:func:`build_report`: the page; telling a report file apart).
"""
from .page import (DEFAULT_WEIGHT_CELLS, GENERATOR_META, build_report, check_report_path, is_report,
                   report_figure_count)

__all__ = ["build_report", "check_report_path", "is_report", "report_figure_count", "DEFAULT_WEIGHT_CELLS",
           "GENERATOR_META"]
