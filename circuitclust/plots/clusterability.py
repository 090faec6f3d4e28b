"""Clusterability per graph beside its chance level and shuffle null, and the whole-model n-cut vs shuffles
(inputs: parsed ``clusterability.json`` files, see :func:`circuitclust.runfiles.load_clusterability`)."""
from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go

from ..errors import OptionError
from ._common import as_runs, base_layout, colour, fmt, run_name


def clusterability_bars(data: Mapping[str, Any]) -> go.Figure:
    """Bars of clusterability per graph, one bar group per run (e.g. ``{"base": ..., "fine-tuned": ...}`` or a
    single parsed file), with the chance level (dash marker) and the shuffle null (diamond, error bar = shuffle
    std) of that run's partition beside each bar. Returns a figure with 3 traces per run (bars, shuffle null,
    chance), x = graph names in file order."""
    runs = as_runs(data)
    fig = go.Figure()
    names: list[str] = []
    for r, (label, d) in enumerate(runs.items()):
        graphs = d["graphs"]
        for g in graphs:
            if g["name"] not in names:
                names.append(g["name"])
        x = [g["name"] for g in graphs]
        custom = [[g.get("layer"), g.get("kind"), "x".join(str(s) for s in g.get("shape", [])), fmt(g.get("chance")),
                   fmt(g.get("shuffle_mean")), fmt(g.get("shuffle_std")), fmt(g.get("z"), 3), fmt(g.get("p"), 3),
                   ",".join(str(s) for s in g.get("row_sizes", [])), ",".join(str(s) for s in g.get("col_sizes", [])),
                   fmt(g.get("p_floor"), 3), fmt(g.get("q"), 3)]
                  for g in graphs]
        who = run_name(label)
        c = colour(r)
        fig.add_trace(go.Bar(
            x=x, y=[g["clusterability"] for g in graphs], name=f"{who}: clusterability", marker_color=c,
            offsetgroup=str(r), customdata=custom,
            hovertemplate=(f"<b>%{{x}}</b> ({who})<br>layer %{{customdata[0]}}, %{{customdata[1]}}, "
                           "[%{customdata[2]}]<br>clusterability: %{y:.4f}<br>chance: %{customdata[3]}"
                           "<br>shuffle null: %{customdata[4]} ± %{customdata[5]}<br>z = %{customdata[6]}, "
                           "p = %{customdata[7]} (floor %{customdata[10]}), BH q = %{customdata[11]}<br>cluster sizes rows [%{customdata[8]}], cols [%{customdata[9]}]"
                           "<extra></extra>")))
        has_null = any(g.get("shuffle_mean") is not None for g in graphs)
        fig.add_trace(go.Scatter(
            x=x, y=[g.get("shuffle_mean") for g in graphs], mode="markers", offsetgroup=str(r),
            name=f"{who}: shuffle null (± std)" + ("" if has_null else " — not run"),
            marker=dict(symbol="diamond", color="black", size=7),
            error_y=dict(type="data", array=[g.get("shuffle_std") or 0.0 for g in graphs], color="black"),
            hovertemplate=f"%{{x}} ({who})<br>shuffle mean: %{{y:.4f}}<extra></extra>"))
        fig.add_trace(go.Scatter(
            x=x, y=[g.get("chance") for g in graphs], mode="markers", offsetgroup=str(r),
            name=f"{who}: chance", marker=dict(symbol="line-ew-open", color="orange", size=18, line=dict(width=3)),
            hovertemplate=f"%{{x}} ({who})<br>chance: %{{y:.4f}}<extra></extra>"))
    ks = sorted({d.get("k") for d in runs.values()} - {None})
    title = "Clusterability per weight graph vs chance and shuffled weights" + (
        f" (k = {', '.join(map(str, ks))})" if ks else "")
    base_layout(fig, title, height=480, barmode="group", scattermode="group",
                legend=dict(orientation="h", y=-0.35))
    fig.update_xaxes(categoryorder="array", categoryarray=names, tickangle=-45)
    fig.update_yaxes(title_text="clusterability C(W)", rangemode="tozero")
    return fig


def ncut_figure(data: Mapping[str, Any]) -> go.Figure:
    """n-cut of the whole model per run (bar) beside its shuffle null (diamond ± std); lower = more
    clusterable. Runs whose file has ``"ncut": null`` are left out; raises ``ValueError`` if none has it.
    Returns a figure with 2 traces (n-cut bars, shuffle null)."""
    runs = {k: v for k, v in as_runs(data).items() if v.get("ncut")}
    if not runs:
        raise OptionError("no run has an n-cut (run `circuitclust cluster` with n-cut enabled)")
    labels = [run_name(k) for k in runs]
    nc = [v["ncut"] for v in runs.values()]
    custom = [[fmt(n.get("z"), 3), fmt(n.get("p"), 3), fmt(n.get("shuffle_mean")), fmt(n.get("shuffle_std"))]
              for n in nc]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=labels, y=[n["value"] for n in nc], name="n-cut", customdata=custom,
                         marker_color=[colour(i) for i in range(len(nc))],
                         hovertemplate=("<b>%{x}</b><br>n-cut: %{y:.4f}<br>shuffle null: %{customdata[2]} ± "
                                        "%{customdata[3]}<br>z = %{customdata[0]}, p = %{customdata[1]}<extra></extra>")))
    fig.add_trace(go.Scatter(x=labels, y=[n.get("shuffle_mean") for n in nc], mode="markers",
                             name="shuffle null (± std)", marker=dict(symbol="diamond", color="black", size=9),
                             error_y=dict(type="data", array=[n.get("shuffle_std") or 0.0 for n in nc]),
                             hovertemplate="%{x}<br>shuffle mean: %{y:.4f}<extra></extra>"))
    ks = sorted({v.get("k") for v in runs.values()} - {None})
    base_layout(fig, "n-cut over all layers vs shuffled weights (lower = more clusterable"
                + (f"; maximum k = {ks[0]})" if len(ks) == 1 else ")"), height=380)
    fig.update_yaxes(title_text="n-cut", rangemode="tozero")
    return fig
