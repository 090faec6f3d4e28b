"""The report page: :func:`build_report` reads a run folder, draws its sections and writes one self-contained
HTML file (plotly.js embedded once in the head); also telling a report file apart and reading its figure count.
"""
from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, Callable

from .. import __version__, plots, runfiles
from ..atomic import write_text
from ..errors import DataError, RunFolderError
from .collect import _collect, _load_all
from .sections import _Builder, _Section, _section_html
from .summary import _summary_html, _summary_rows
from .weights import _plan_weights, _weights_section

# Marks a page as a circuitclust report in its first bytes (the figure count comes after plotly.js).
GENERATOR_META = '<meta name="generator" content="circuitclust report">'

# total heatmap cells across all weight panels: ~5.3 bytes each in the page (float32, base64)
DEFAULT_WEIGHT_CELLS = 1_200_000


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:16px 24px;color:#222}
h1{margin-bottom:4px} .meta{color:#666;font-size:90%}
table.summary{border-collapse:collapse;margin:12px 0 24px;font-size:92%}
table.summary th,table.summary td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
table.summary thead th{background:#f0f0f0} td.step{color:#555;font-family:monospace} td.notrun{color:#999;font-style:italic}
section{margin-top:28px;border-top:2px solid #eee} .cc-figure{margin:12px 0}
p.note{color:#a33} p.flag{color:#fff;background:#b22;padding:6px 10px;font-weight:bold} p.intro{color:#444;max-width:1100px} ul.files{font-family:monospace;font-size:85%;color:#444}
"""


def build_report(run_dir: str | Path, compare: str | Path | None = None, out: str | Path = "report.html", *,
                 weights: bool = True, weight_cells: int = DEFAULT_WEIGHT_CELLS,
                 on_note: Callable[[str], None] | None = None) -> Path:
    """Write one self-contained HTML report of ``run_dir`` (and, side by side, ``compare``) to ``out``.

    Files are discovered recursively (``clusterability.json``, ``metrics.jsonl``, ``effects.json``,
    ``specialisation.json``, ``circuits.json``, ``similarity.json``, ``partition.json``) and labelled by their
    sub-folder. ``weights``: draw weight heatmaps for folders with a partition (loads the model named in the
    folder; the fine-tuned model from a fine-tuning folder); ``weight_cells`` caps the heatmap cells of the
    whole page (the page size grows by ~5.3 bytes per cell). A file that cannot be read or drawn becomes a
    note in the page, also passed to ``on_note``. Returns the path written. Raises :class:`DataError` if a
    folder holds no run file, or if none of its run files can be read (nothing is written then).
    """
    run_dir = Path(run_dir)
    compare_dir = Path(compare) if compare is not None else None
    steps, run_names = _collect(run_dir, compare_dir)
    loaders = {"clusterability": ("clusterability.json", runfiles.load_clusterability),
               "metrics": ("metrics.jsonl", runfiles.load_metrics),
               "effects": ("effects.json", runfiles.load_effects),
               "specialisation": ("specialisation.json", runfiles.load_specialisation),
               "circuits": ("circuits.json", runfiles.load_circuits),
               "similarity": ("similarity.json", runfiles.load_similarity),
               "finetune_study": ("finetune_study.json", runfiles.load_finetune_study),
               "run_config": ("run_config.json", runfiles.load_run_config),
               "replicates": ("replicates.json", runfiles.load_replicates)}
    data: dict[str, dict[str, Any]] = {}
    load_notes: list[str] = []
    for kind, (fname, loader) in loaders.items():
        data[kind], notes = _load_all(steps, fname, loader)
        load_notes += notes
    if load_notes and not any(data.values()):
        raise DataError(f"no run file under {run_dir} can be read; the first: {load_notes[0]}")

    b = _Builder()
    sections: list[_Section] = []
    weight_notes: list[str] = []
    plans = _plan_weights(steps, data, weight_notes) if weights else []
    if plans or weight_notes:
        sections.append(_weights_section(plans, b, weight_cells, weight_notes))

    def files_of(kind: str) -> str:
        return ", ".join(f"{n}/{loaders[kind][0]}" for n in data[kind])

    if data["clusterability"]:
        sec = _Section("Clusterability", "Clusterability C(W) = share of |W|² inside the clusters, beside the "
                       "chance level of the same cluster sizes and the null of shuffled weights re-clustered "
                       f"with the same k. From: {files_of('clusterability')}.")
        b.add(sec, "clusterability bars", lambda: plots.clusterability_bars(data["clusterability"]))
        if any(d.get("ncut") for d in data["clusterability"].values()):
            b.add(sec, "n-cut", lambda: plots.ncut_figure(data["clusterability"]))
        sections.append(sec)
    if data["metrics"]:
        sec = _Section("Fine-tuning", f"Evaluations logged during fine-tuning. From: {files_of('metrics')}.")
        b.add(sec, "training curves", lambda: plots.training_curves(data["metrics"]))
        sections.append(sec)
    if data["finetune_study"]:
        sec = _Section("Fine-tuning recipes (Pareto study)", "Each point is one held-out evaluation of one run "
                       "(recipe x seed) after a fixed number of optimizer steps: the rise of held-out perplexity "
                       "over the base model (wiki and chemistry, left and right) against the normalised "
                       "clusterability (C - chance) / (1 - chance) of the regularised matrices. Up and to the left "
                       f"is better. From: {files_of('finetune_study')}.")
        b.add(sec, "pareto front", lambda: plots.pareto_front(data["finetune_study"]))
        sections.append(sec)
    if data["effects"] or data["specialisation"] or data["circuits"]:
        sec = _Section("Cluster patching", "Ablating one cluster at a time (effects with 95% bootstrap CIs over "
                       "prompts, Benjamini-Hochberg across the matrix), specialisation beside its nulls, and "
                       "circuits of MLP neurons and attention heads ranked by attribution patching and confirmed by "
                       "ablation: MIB faithfulness f = (m(C) − m(empty)) / (m(full) − m(empty)) on a fixed grid of "
                       "circuit sizes, CPR (area under f) and CMD (area under |1 − f|), beside a random ranking and "
                       "a nonsense version of each task (answers shuffled across prompts). From: "
                       + ", ".join(x for x in (files_of("effects"), files_of("specialisation"),
                                               files_of("circuits")) if x) + ".")
        for cname, d in data["circuits"].items():
            flags = d.get("red_flags") or [t for t, i in (d.get("tasks") or {}).items()
                                           if (i.get("nonsense") or {}).get("red_flag")]
            if flags:
                sec.flags.append(f"RED FLAG ({cname}): the nonsense control found a faithful circuit as small as the "
                                 f"real task's for {', '.join(flags)}: these circuit sizes do not show a mechanism.")
        if data["effects"]:
            b.add(sec, "effect matrix", lambda: plots.effect_heatmaps(data["effects"]))
        if data["specialisation"]:
            b.add(sec, "specialisation", lambda: plots.specialisation_bars(data["specialisation"],
                                                                           data["effects"] or None))
            if any(d.get("flips_histogram") for d in data["specialisation"].values()):
                b.add(sec, "flips histogram", lambda: plots.flips_histogram(data["specialisation"]))
        if data["circuits"]:
            b.add(sec, "faithfulness curves", lambda: plots.faithfulness_curves(data["circuits"]))
            b.add(sec, "circuit sizes", lambda: plots.circuit_sizes(data["circuits"]))
            if any(t.get("cluster_circuit") for d in data["circuits"].values() for t in (d.get("tasks") or {}).values()):
                b.add(sec, "circuit locations", lambda: plots.circuit_locations(data["circuits"],
                                                                                data["effects"] or None))
        sections.append(sec)
    if data["similarity"]:
        inputs = "; ".join(f"{name}: {(d.get('provenance') or {}).get('prompts', 'unknown')} "
                           f"(corpus:split), n = {d.get('n')} positions"
                           for name, d in data["similarity"].items())
        sec = _Section("Layer similarity", "Gromov-Wasserstein distances between the representations of every "
                       "pair of layers, with linear CKA on the same inputs as a baseline; boxes mark the layer "
                       f"groups. Inputs: {inputs}. From: {files_of('similarity')}.")
        b.add(sec, "layer similarity", lambda: plots.layer_similarity_heatmaps(data["similarity"]))
        sections.append(sec)

    files = "".join(f"<li>{html.escape(s.name)}: {html.escape(', '.join(sorted(s.files.files)))}</li>" for s in steps)
    title = f"circuitclust report: {run_dir.name}" + (f" vs {compare_dir.name}" if compare_dir else "")
    from plotly.offline import get_plotlyjs

    page = [
        "<!DOCTYPE html>", f'<html lang="en"><head><meta charset="utf-8">{GENERATOR_META}',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>",
        f'<script type="text/javascript">{get_plotlyjs()}</script>', "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">{html.escape(str(run_dir.resolve()))}'
        + (f" compared with {html.escape(str(compare_dir.resolve()))}" if compare_dir else "")
        + f" · circuitclust {__version__} · written {time.strftime('%Y-%m-%d %H:%M')} · "
          f'<span id="cc-n-figures">{b.n}</span> figures</p>',
        "<h2>Summary</h2>", _summary_html(_summary_rows(data, steps), run_names),
        *[f'<p class="note">{html.escape(n)}</p>' for n in load_notes],
        *[_section_html(s) for s in sections],
        "<section><h2>Files</h2><ul class='files'>" + files + "</ul></section>",
        "</body></html>",
    ]
    if on_note is not None:
        for note in [*load_notes, *(n for sec in sections for n in sec.notes)]:
            on_note(note)
    return write_text(out, "\n".join(page))


def is_report(path: str | Path) -> bool:
    """True if ``path`` is an HTML file that :func:`build_report` wrote."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return GENERATOR_META in f.read(4096)
    except OSError:
        return False


def check_report_path(out: str | Path, overwrite: bool = False) -> Path:
    """``out`` if a report may be written there: a new file, an older circuitclust report, or (with
    ``overwrite``) any file. Raises :class:`RunFolderError` otherwise."""
    out = Path(out)
    if out.is_dir():
        raise RunFolderError(f"-o {out} is a folder: give the report's file name, e.g. {out / 'report.html'}")
    if out.exists() and not overwrite and not is_report(out):
        raise RunFolderError(f"-o {out} exists and is not a circuitclust report: pass --overwrite to replace it, "
                             "or choose another file")
    return out


def report_figure_count(path: str | Path) -> int:
    """The number of figures a report written by :func:`build_report` says it holds."""
    text = Path(path).read_text(encoding="utf-8")
    marker = '<span id="cc-n-figures">'
    i = text.find(marker)
    if i < 0:
        raise DataError(f"{path} is not a circuitclust report")
    return int(text[i + len(marker):text.index("<", i + len(marker))])


__all__ = ["build_report", "check_report_path", "is_report", "report_figure_count", "DEFAULT_WEIGHT_CELLS",
           "GENERATOR_META"]
