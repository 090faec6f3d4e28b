"""One self-contained HTML report of a run folder: a summary table, then the figures of whatever the folder
holds (files are found recursively and labelled by the sub-folder, i.e. the pipeline step, that wrote them).
plotly.js is embedded once in the page head, so the file opens offline. No maths here beyond averaging a
file's per-graph values for the summary line.
"""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import plotly.graph_objects as go

from . import __version__, plots, runfiles
from .atomic import write_text
from .errors import CircuitclustError, DataError, RunFolderError
from .plots._common import fmt

# Marks a page as a circuitclust report in its first bytes (the figure count comes after plotly.js).
GENERATOR_META = '<meta name="generator" content="circuitclust report">'

# total heatmap cells across all weight panels: ~5.3 bytes each in the page (float32, base64)
DEFAULT_WEIGHT_CELLS = 1_200_000


@dataclass
class _Step:
    run: str  # run name ("" for the main run when there is no comparison)
    label: str  # sub-folder relative to its run folder
    files: runfiles.StepFiles

    @property
    def name(self) -> str:
        return f"{self.run}/{self.label}" if self.run else self.label


@dataclass
class _Section:
    title: str
    intro: str = ""
    figures: list[str] = field(default_factory=list)  # HTML of each figure
    notes: list[str] = field(default_factory=list)  # problems, shown in place of a figure


def _collect(run_dir: Path, compare: Path | None) -> tuple[list[_Step], list[str]]:
    runs = [(run_dir, "")] if compare is None else [(run_dir, run_dir.name or "run"), (compare, compare.name or "compare")]
    if compare is not None and runs[0][1] == runs[1][1]:
        runs = [(run_dir, "run"), (compare, "compare")]
    steps = [_Step(name, s.label, s) for path, name in runs for s in runfiles.discover(path)]
    return steps, [name for _, name in runs]


def _load_all(steps: list[_Step], fname: str, loader: Callable) -> tuple[dict[str, Any], list[str]]:
    """``{step name: parsed file}`` for every step holding ``fname``, plus error notes for unreadable ones."""
    out, notes = {}, []
    for s in steps:
        if s.files.has(fname):
            try:
                out[s.name] = loader(s.files.files[fname])
            except CircuitclustError as e:
                notes.append(str(e))
    return out, notes


def _figure_html(fig: go.Figure, idx: int) -> str:
    div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"cc-fig-{idx}",
                      config={"displaylogo": False, "responsive": True})
    return f'<div class="cc-figure">{div}</div>'


class _Builder:
    def __init__(self) -> None:
        self.n = 0

    def add(self, section: _Section, what: str, make: Callable[[], go.Figure]) -> None:
        """Draw one figure; a malformed file becomes a note in the report instead of a crash."""
        try:
            fig = make()
        except (KeyError, TypeError, ValueError, IndexError) as e:
            section.notes.append(f"{what}: could not be drawn ({type(e).__name__}: {e})")
            return
        section.figures.append(_figure_html(fig, self.n))
        self.n += 1


# ---------------------------------------------------------------- summary table

def _mean(values: list) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def _summary_rows(data: dict[str, dict[str, Any]], steps: list[_Step]) -> list[tuple[str, str, dict[str, str]]]:
    """Rows ``(quantity, step label, {run: text})``; quantities a folder lacks are filled in as "not run"."""
    rows: list[tuple[str, str, dict[str, str]]] = []

    def add(quantity: str, step: _Step, text: str) -> None:
        for q, lab, cells in rows:
            if q == quantity and lab == step.label:
                cells[step.run] = text
                return
        rows.append((quantity, step.label, {step.run: text}))

    by_name = {s.name: s for s in steps}
    models, ks = {}, {}
    for kind in ("clusterability", "run_config", "effects", "similarity"):
        for name, d in data[kind].items():
            run = by_name[name].run
            if d.get("model") is not None:
                models.setdefault(run, str(d["model"]))
            if d.get("k") is not None:
                ks.setdefault(run, str(d["k"]))
    # model and k: one row each, per run (first file that names them)
    rows.append(("model", "", dict(models)))
    rows.append(("k (clusters)", "", dict(ks)))
    for name, d in data["clusterability"].items():
        g = d["graphs"]
        c, ch = _mean([x.get("clusterability") for x in g]), _mean([x.get("chance") for x in g])
        sm, ss = _mean([x.get("shuffle_mean") for x in g]), _mean([x.get("shuffle_std") for x in g])
        text = f"mean {fmt(c, 3)} over {len(g)} graphs (chance {fmt(ch, 3)}"
        text += f", shuffled {fmt(sm, 3)} ± {fmt(ss, 2)})" if sm is not None else ", no shuffle null)"
        add("clusterability", by_name[name], text)
        if d.get("ncut"):
            n = d["ncut"]
            add("n-cut (lower = more clusterable)", by_name[name],
                f"{fmt(n.get('value'), 4)} (shuffled {fmt(n.get('shuffle_mean'), 4)} ± {fmt(n.get('shuffle_std'), 2)}, "
                f"p = {fmt(n.get('p'), 2)})")
    for name, rows_m in data["metrics"].items():
        first, last = rows_m[0], rows_m[-1]
        add("fine-tuning clusterability", by_name[name],
            f"{fmt(first.get('mean_clusterability'), 3)} → {fmt(last.get('mean_clusterability'), 3)} "
            f"(chance {fmt(last.get('chance'), 3)}; step {first.get('step')} → {last.get('step')}, "
            f"lambda {fmt(last.get('lam'), 3)})")
        doms = list((last.get("heldout_ppl") or {}).keys())
        if doms:
            add("held-out perplexity", by_name[name], "; ".join(
                f"{d} {fmt((first.get('heldout_ppl') or {}).get(d), 4)} → {fmt(last['heldout_ppl'][d], 4)}"
                for d in doms))
    for name, d in data["circuits"].items():
        parts = [f"{t} {info.get('circuit_size')} units ({fmt(100 * info['fraction'], 3)}%)"
                 if info.get("fraction") is not None else f"{t} {info.get('circuit_size')} units"
                 for t, info in (d.get("tasks") or {}).items()]
        add(f"circuit size (keeps ≥ {fmt(d.get('threshold'))} of the metric)", by_name[name], "; ".join(parts))
        if d.get("attribution_spearman") is not None:
            add("attribution vs exact patching (Spearman)", by_name[name], fmt(d["attribution_spearman"], 3))
    for name, d in data["specialisation"].items():
        add("specialisation (model score)", by_name[name], fmt(d.get("model_score"), 3))
    for name, d in data["similarity"].items():
        spans = plots.group_spans(d.get("groups"), len(d.get("layers", [])))
        stab = (d.get("groups") or {}).get("stability")
        text = ", ".join(f"[{a}–{b}]" for a, b in spans) or "no groups"
        if isinstance(stab, (int, float)):
            text += f" (stability {fmt(stab, 3)})"
        add("layer groups (GW)", by_name[name], text)
    for quantity in ("clusterability", "held-out perplexity", "circuit size", "specialisation (model score)",
                     "layer groups (GW)"):
        if not any(r[0].startswith(quantity) for r in rows):
            rows.append((quantity, "", {}))
    return rows


def _summary_html(rows, run_names: list[str]) -> str:
    head = "".join(f"<th>{html.escape(r or 'value')}</th>" for r in run_names)
    body = []
    for quantity, label, cells in rows:
        tds = "".join(
            f"<td>{html.escape(cells[r])}</td>" if r in cells else '<td class="notrun">not run</td>'
            for r in run_names)
        body.append(f"<tr><th>{html.escape(quantity)}</th><td class='step'>{html.escape(label)}</td>{tds}</tr>")
    return (f'<table class="summary"><thead><tr><th>quantity</th><th>step (sub-folder)</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


# ---------------------------------------------------------------- weights

@dataclass
class _WeightPlan:
    step: _Step
    partition: Any
    before_spec: str
    after_spec: str | None
    names: list[str]


def _model_spec(step: _Step, data: dict[str, dict[str, Any]], partition) -> str | None:
    for kind in ("run_config", "clusterability"):
        d = data[kind].get(step.name)
        if d and d.get("model"):
            return str(d["model"])
    return partition.provenance.get("model")


def _plan_weights(steps, data, notes: list[str]) -> list[_WeightPlan]:
    plans = []
    for s in steps:
        if not s.files.has("partition.json"):
            continue
        try:
            part = runfiles.load_partition(s.files.files["partition.json"])
        except CircuitclustError as e:
            notes.append(f"{s.name}: {e}")
            continue
        spec = _model_spec(s, data, part)
        if spec is None:
            notes.append(f"{s.name}: the partition does not say which model it belongs to; weights not shown")
            continue
        after = None
        if s.files.has("run_config.json") and ((s.files.folder / "final").is_dir()
                                               or (s.files.folder / "checkpoints").is_dir()):
            after = str(s.files.folder)
        plans.append(_WeightPlan(s, part, spec, after, list(part.graphs)))
    return plans


def _load_weights(spec: str, names: list[str], cache: dict) -> dict[str, Any]:
    if spec not in cache:
        import torch

        from .models import load_hf, weight_graphs

        hf, _, _ = load_hf(spec)
        with torch.no_grad():
            cache[spec] = {g.name: g.weight.detach().float().cpu().clone() for g in weight_graphs(hf, ("mlp", "attn"))}
        del hf
    return {n: cache[spec][n] for n in names if n in cache[spec]}


def _weights_section(plans: list[_WeightPlan], builder: _Builder, budget: int, notes: list[str]) -> _Section:
    sec = _Section("Weights reordered by cluster",
                   "Rows (input units) and columns (output units) sorted by cluster label, so a clusterable matrix "
                   "is block-diagonal; white lines mark cluster boundaries. Pick the weight graph in the menu. "
                   "Fine-tuning folders show the base model and the fine-tuned model on one colour scale, both "
                   "ordered by the fixed fine-tuning partition.")
    sec.notes += notes
    n_panels = sum(len(p.names) * (2 if p.after_spec else 1) for p in plans)
    if not n_panels:
        return sec
    side = int(max(48, min(256, math.sqrt(budget / n_panels))))
    cache: dict = {}
    for p in plans:
        try:
            before = _load_weights(p.before_spec, p.names, cache)
            after = _load_weights(p.after_spec, p.names, cache) if p.after_spec else None
        except (CircuitclustError, OSError, ValueError) as e:
            sec.notes.append(f"{p.step.name}: weights of {p.before_spec} not available ({e}); heatmap omitted")
            continue
        labels = (f"base ({p.before_spec})", f"fine-tuned ({p.step.name})") if after else (p.before_spec, "")
        builder.add(sec, f"weights of {p.step.name}", lambda: plots.weight_heatmaps(
            before, p.partition, after=after, labels=labels, max_cells=side,
            title=f"{p.step.name}: |W| by cluster"))
    cache.clear()
    return sec


# ---------------------------------------------------------------- page

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:16px 24px;color:#222}
h1{margin-bottom:4px} .meta{color:#666;font-size:90%}
table.summary{border-collapse:collapse;margin:12px 0 24px;font-size:92%}
table.summary th,table.summary td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
table.summary thead th{background:#f0f0f0} td.step{color:#555;font-family:monospace} td.notrun{color:#999;font-style:italic}
section{margin-top:28px;border-top:2px solid #eee} .cc-figure{margin:12px 0}
p.note{color:#a33} p.intro{color:#444;max-width:1100px} ul.files{font-family:monospace;font-size:85%;color:#444}
"""


def _section_html(sec: _Section) -> str:
    parts = [f"<section><h2>{html.escape(sec.title)}</h2>"]
    if sec.intro:
        parts.append(f'<p class="intro">{html.escape(sec.intro)}</p>')
    parts += [f'<p class="note">{html.escape(n)}</p>' for n in sec.notes]
    parts += sec.figures
    parts.append("</section>")
    return "\n".join(parts)


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
               "run_config": ("run_config.json", runfiles.load_run_config)}
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
    if data["effects"] or data["specialisation"] or data["circuits"]:
        sec = _Section("Cluster patching", "Ablating one cluster at a time (effects with bootstrap CIs over "
                       "prompts), specialisation, and circuits found by attribution patching and confirmed by "
                       "ablation. From: " + ", ".join(x for x in (files_of("effects"), files_of("specialisation"),
                                                                 files_of("circuits")) if x) + ".")
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
        sec = _Section("Layer similarity", "Gromov-Wasserstein distances between the representations of every "
                       "pair of layers, with linear CKA on the same inputs as a baseline; boxes mark the layer "
                       f"groups. From: {files_of('similarity')}.")
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


__all__ = ["build_report", "check_report_path", "is_report", "report_figure_count", "DEFAULT_WEIGHT_CELLS"]
