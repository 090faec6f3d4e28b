"""Figures of cluster patching: the effect matrix, specialisation, flips, faithfulness curves, circuit sizes
and where circuits sit by cluster (inputs: parsed ``effects.json``, ``specialisation.json`` and
``circuits.json``, see :mod:`circuitclust.runfiles`). Runs (base vs clustered) are overlaid or put side by
side with one colour scale."""
from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import (DIVERGING_SCALE, TASK_COLOURS, as_runs, base_layout, colour, fmt, node_hover,
                      node_label, run_name)

SCORE_KEYS = ("score", "specialisation", "specialization", "value")
COUNT_KEYS = ("n_units", "units", "count", "size")


def _run_cols(n: int, titles: list[str]):
    return make_subplots(rows=1, cols=n, subplot_titles=titles, horizontal_spacing=0.12 if n > 1 else 0.0)


def effect_heatmaps(data: Mapping[str, Any]) -> go.Figure:
    """Heatmap of the effect matrix, rows = (layer, part, cluster) nodes, columns = tasks, value = drop in the
    task metric when that cluster is ablated; hover gives the bootstrap CI, cluster size and the task's
    baseline. Several runs go side by side on one diverging colour scale centred on 0. One heatmap trace per
    run."""
    runs = as_runs(data)
    fig = _run_cols(len(runs), [run_name(k) for k in runs] if len(runs) > 1 else [""])
    vmax = 0.0
    for c, (label, d) in enumerate(runs.items()):
        nodes, tasks, eff = d["nodes"], d["tasks"], d["effect"]
        lo, hi = d.get("ci_low"), d.get("ci_high")
        base = d.get("baseline") or {}
        custom = [[[node_hover(nodes[i]), fmt(lo[i][j] if lo else None), fmt(hi[i][j] if hi else None),
                    fmt(base.get(t))] for j, t in enumerate(tasks)] for i in range(len(nodes))]
        vmax = max([vmax] + [abs(v) for row in eff for v in row if v is not None])
        fig.add_trace(go.Heatmap(
            z=eff, x=tasks, y=[node_label(n) for n in nodes], customdata=custom, coloraxis="coloraxis",
            name=run_name(label),
            hovertemplate=(f"<b>%{{customdata[0]}}</b> ({run_name(label)})<br>task: %{{x}}<br>effect of ablating: "
                           "%{z:.4g}<br>95% CI [%{customdata[1]}, %{customdata[2]}]<br>task baseline: "
                           "%{customdata[3]}<extra></extra>")), row=1, col=c + 1)
    metric = next((d.get("metric") for d in runs.values() if d.get("metric")), "task metric")
    n_nodes = max(len(d["nodes"]) for d in runs.values())
    base_layout(fig, f"Effect of ablating each cluster on each task (drop in {metric})",
                height=max(380, min(1400, 140 + 16 * n_nodes)),
                coloraxis=dict(colorscale=DIVERGING_SCALE, cmid=0.0, cmin=-vmax or -1, cmax=vmax or 1,
                               colorbar=dict(title="effect")))
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(title_text="layer, part, cluster", col=1)
    return fig


def _score(item: Any) -> float | None:
    if isinstance(item, Mapping):
        return next((item[k] for k in SCORE_KEYS if k in item), None)
    return item


def specialisation_bars(data: Mapping[str, Any], effects: Mapping[str, Any] | None = None) -> go.Figure:
    """Specialisation score per cluster (how concentrated its effect is on one task), one bar trace per run,
    the model-level score in the legend. ``per_cluster`` items are ``{layer, part, cluster, score, ...}`` dicts
    (``specialisation`` is accepted for ``score``; other keys go into the hover) or bare numbers, which are
    named by the matching run's ``effects`` nodes when given (``effects``: one parsed file or ``{label:
    file}``)."""
    runs = as_runs(data)
    eff_runs = as_runs(effects) if effects is not None else {}
    fig = go.Figure()
    for r, (label, d) in enumerate(runs.items()):
        items = d.get("per_cluster") or []
        nodes = (eff_runs.get(label) or (next(iter(eff_runs.values())) if len(eff_runs) == 1 else {})).get("nodes")
        names, hover = [], []
        for i, it in enumerate(items):
            if isinstance(it, Mapping):
                names.append(node_label(it))
                extra = "<br>".join(f"{k}: {fmt(v)}" for k, v in it.items()
                                    if k not in ("layer", "part", "cluster", *SCORE_KEYS)
                                    and not isinstance(v, (list, dict)))
                hover.append(node_hover(it) + ("<br>" + extra if extra else ""))
            else:
                node = nodes[i] if nodes and i < len(nodes) else f"cluster #{i}"
                names.append(node_label(node))
                hover.append(node_hover(node))
        who = run_name(label)
        fig.add_trace(go.Bar(x=names, y=[_score(it) for it in items], customdata=hover, marker_color=colour(r),
                             name=f"{who} (model score {fmt(d.get('model_score'), 3)})",
                             hovertemplate=f"<b>%{{customdata}}</b> ({who})<br>specialisation: %{{y:.4g}}"
                                           "<extra></extra>"))
    base_layout(fig, "Task specialisation per cluster (1 = all of its effect on one task)", height=420,
                barmode="group", legend=dict(orientation="h", y=-0.3))
    fig.update_xaxes(tickangle=-45)
    fig.update_yaxes(title_text="specialisation score", rangemode="tozero")
    return fig


def flips_histogram(data: Mapping[str, Any]) -> go.Figure:
    """For correctly answered prompts: how many clusters' ablation flips the answer, one bar per count and
    task, one panel per run. Returns one bar trace per (run, task)."""
    runs = as_runs(data)
    fig = _run_cols(len(runs), [run_name(k) for k in runs] if len(runs) > 1 else [""])
    tasks: list[str] = []
    for d in runs.values():
        for t in d.get("flips_histogram") or {}:
            if t not in tasks:
                tasks.append(t)
    for c, (label, d) in enumerate(runs.items()):
        for t, counts in (d.get("flips_histogram") or {}).items():
            i = tasks.index(t)
            fig.add_trace(go.Bar(x=list(range(len(counts))), y=counts, name=t, legendgroup=t, showlegend=c == 0,
                                 marker_color=TASK_COLOURS[i % len(TASK_COLOURS)],
                                 hovertemplate=(f"{run_name(label)}, task {t}<br>%{{y}} prompts flipped by "
                                                "%{x} clusters<extra></extra>")), row=1, col=c + 1)
    base_layout(fig, "Per-prompt view: number of clusters whose ablation flips a correct answer", height=400,
                barmode="group")
    fig.update_xaxes(title_text="clusters that flip the answer", dtick=1)
    fig.update_yaxes(title_text="prompts", col=1)
    return fig


def _curve_points(info: Mapping[str, Any]) -> list[tuple[float, int, float]]:
    """``(fraction, n_units, f)`` points of a task's attribution curve (``curve``, or an older file's
    ``faithfulness_curve`` [[n_units, f]] read against ``n_units_total``)."""
    if info.get("curve"):
        return [(p[0], p[1], p[2]) for p in info["curve"]]
    n = info.get("n_units_total") or 1
    return [(p[0] / n, p[0], p[1]) for p in info.get("faithfulness_curve") or []]


def faithfulness_curves(data: Mapping[str, Any]) -> go.Figure:
    """MIB faithfulness f = (m(C) - m(empty)) / (m(full) - m(empty)) against the fraction of units kept (log
    axis), one panel per task: per run (colour) the attribution-ranked circuits (solid), the random-ranking
    baseline (dotted) and the nonsense control (dashed), CPR in the legend, a star at the smallest faithful
    circuit and the threshold as a line; a panel title says "RED FLAG" when the nonsense control found a
    circuit as small as the real one. Returns one trace per (run, task, curve) plus the stars."""
    runs = as_runs(data)
    tasks: list[str] = []
    for d in runs.values():
        for t in d.get("tasks") or {}:
            if t not in tasks:
                tasks.append(t)
    cols = min(3, max(1, len(tasks)))
    rows = max(1, -(-len(tasks) // cols))
    titles = []
    for t in tasks:
        flags = [run_name(lab) for lab, d in runs.items()
                 if ((d.get("tasks") or {}).get(t, {}).get("nonsense") or {}).get("red_flag")]
        titles.append(t + (f" — RED FLAG: small faithful nonsense circuit ({', '.join(flags)})" if flags else ""))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or [""], horizontal_spacing=0.06,
                        vertical_spacing=0.12 if rows > 1 else 0.0)
    thresholds = set()
    for r, (label, d) in enumerate(runs.items()):
        who, c = run_name(label), colour(r)
        if d.get("threshold") is not None:
            thresholds.add(d["threshold"])
        for ti, t in enumerate(tasks):
            info = (d.get("tasks") or {}).get(t)
            if not info:
                continue
            row, col = ti // cols + 1, ti % cols + 1
            lines = [("attribution", _curve_points(info), "solid", info.get("cpr"))]
            for key, dash in (("random", "dot"), ("nonsense", "dash")):
                sub = info.get(key) or {}
                if sub.get("curve"):
                    lines.append((key, [(p[0], p[1], p[2]) for p in sub["curve"]], dash, sub.get("cpr")))
            for name, pts, dash, cpr in lines:
                pts = [p for p in pts if p[0] > 0]
                fig.add_trace(go.Scatter(
                    x=[p[0] for p in pts], y=[p[2] for p in pts], customdata=[p[1] for p in pts],
                    mode="lines+markers", name=f"{who}: {name} (CPR {fmt(cpr, 3)})", legendgroup=f"{who}-{name}",
                    showlegend=ti == 0, line=dict(color=c, dash=dash), marker=dict(size=4),
                    hovertemplate=(f"{t} ({who}, {name} ranking)<br>%{{x:.3%}} of units (%{{customdata}})<br>"
                                   "faithfulness: %{y:.3f}<extra></extra>")), row=row, col=col)
            if info.get("circuit_size") is not None:
                fig.add_trace(go.Scatter(
                    x=[info["fraction"]], y=[info.get("circuit_faithfulness", d.get("threshold"))], mode="markers",
                    name=f"{who}: smallest faithful circuit", legendgroup=f"{who}-star", showlegend=ti == 0,
                    marker=dict(symbol="star", size=12, color=c, line=dict(width=1)),
                    text=[f"{t}: {info['circuit_size']} units ({fmt(100 * info['fraction'], 3)}% of "
                          f"{info.get('n_units_total', '?')}), f = {fmt(info.get('circuit_faithfulness'), 3)}"],
                    hovertemplate=f"%{{text}} ({who})<extra></extra>"), row=row, col=col)
    for th in thresholds:
        fig.add_hline(y=th, line=dict(color="grey", dash="dot"))
    base_layout(fig, "Faithfulness (MIB): attribution-ranked circuits vs a random ranking (dotted) and the "
                     "nonsense task (dashed)", height=max(460, 320 * rows))
    fig.update_xaxes(type="log", title_text="fraction of units kept")
    fig.update_yaxes(title_text="faithfulness f", col=1)
    return fig


def circuit_sizes(data: Mapping[str, Any]) -> go.Figure:
    """Per task and run: circuit size (units), the share of the circuit's units in its largest cluster, and
    the number of clusters it touches (three panels, grouped bars, one colour per run). Returns 3 bar traces
    per run."""
    runs = as_runs(data)
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.08,
                        subplot_titles=["circuit size (units)", "share of units in the largest cluster",
                                        "clusters touched"])
    for r, (label, d) in enumerate(runs.items()):
        who = run_name(label)
        tasks = list((d.get("tasks") or {}).keys())
        infos = [d["tasks"][t] for t in tasks]
        custom = [[fmt(i.get("fraction"), 3), i.get("n_units_total", "?")] for i in infos]
        for col, key in enumerate(("circuit_size", "share_largest_cluster", "clusters_touched")):
            fig.add_trace(go.Bar(
                x=tasks, y=[i.get(key) for i in infos], name=who, legendgroup=who, showlegend=col == 0,
                marker_color=colour(r), customdata=custom,
                hovertemplate=(f"<b>%{{x}}</b> ({who})<br>{key.replace('_', ' ')}: %{{y}}<br>circuit = "
                               "%{customdata[0]} of %{customdata[1]} units<extra></extra>")), row=1, col=col + 1)
    th = sorted({d.get("threshold") for d in runs.values()} - {None})
    base_layout(fig, "Circuit sizes" + (f" (smallest unit set keeping >= {th[0]:g} of the metric)" if len(th) == 1
                                        else ""), height=420, barmode="group")
    return fig


def _cluster_entries(circuit: Any, nodes: list | None) -> list[tuple[str, str, float]]:
    """(label, hover, value) per entry of a ``cluster_circuit`` list: node dicts (value = their unit count
    when given, else 1), ``[layer, (part,) cluster]`` lists, or indices into the effects nodes."""
    out = []
    if isinstance(circuit, Mapping):  # {node label: count}
        return [(str(k), str(k), float(v)) for k, v in circuit.items()]
    for e in circuit or []:
        if isinstance(e, Mapping):
            v = next((e[k] for k in COUNT_KEYS if isinstance(e.get(k), (int, float))), 1)
            out.append((node_label(e), node_hover(e), float(v)))
        elif isinstance(e, int) and nodes and 0 <= e < len(nodes):
            out.append((node_label(nodes[e]), node_hover(nodes[e]), 1.0))
        else:
            out.append((node_label(e), node_label(e), 1.0))
    return out


def circuit_locations(data: Mapping[str, Any], effects: Mapping[str, Any] | None = None) -> go.Figure:
    """Where each task's circuit sits: rows = (layer, part, cluster) nodes, columns = tasks, a cell is filled
    when the node belongs to the cluster-level circuit (``cluster_circuit``; its value is the node's unit
    count when the file gives one). One panel per run, one heatmap trace per run. ``effects`` names bare node
    indices."""
    runs = as_runs(data)
    eff_runs = as_runs(effects) if effects is not None else {}
    fig = _run_cols(len(runs), [run_name(k) for k in runs] if len(runs) > 1 else [""])
    rows_all: list[str] = []
    n_max = 0.0
    per_run = []
    for label, d in runs.items():
        nodes = (eff_runs.get(label) or (next(iter(eff_runs.values())) if len(eff_runs) == 1 else {})).get("nodes")
        if nodes:
            for n in nodes:
                if node_label(n) not in rows_all:
                    rows_all.append(node_label(n))
        tasks = list((d.get("tasks") or {}).keys())
        cells = {}
        for j, t in enumerate(tasks):
            for lab, hov, v in _cluster_entries(d["tasks"][t].get("cluster_circuit"), nodes):
                if lab not in rows_all:
                    rows_all.append(lab)
                cells[(lab, j)] = (v, hov)
                n_max = max(n_max, v)
        per_run.append((label, tasks, cells))
    for c, (label, tasks, cells) in enumerate(per_run):
        z = [[cells.get((r, j), (None, ""))[0] for j in range(len(tasks))] for r in rows_all]
        hov = [[cells.get((r, j), (None, r))[1] for j in range(len(tasks))] for r in rows_all]
        fig.add_trace(go.Heatmap(z=z, x=tasks, y=rows_all, customdata=hov, coloraxis="coloraxis",
                                 name=run_name(label), xgap=1, ygap=1,
                                 hovertemplate=(f"<b>%{{customdata}}</b> ({run_name(label)})<br>task: %{{x}}<br>"
                                                "in the cluster-level circuit (value %{z})<extra></extra>")),
                      row=1, col=c + 1)
    base_layout(fig, "Where the circuits sit: clusters in each task's cluster-level circuit",
                height=max(360, min(1400, 140 + 16 * len(rows_all))),
                coloraxis=dict(colorscale="Blues", cmin=0, cmax=n_max or 1, colorbar=dict(title="units")))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=rows_all)
    return fig
