"""Shared look and small helpers of the figures: no maths, only labels, colours and layout."""
from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go

from ..errors import OptionError

TEMPLATE = "plotly_white"
# one colour per run (before/after, base/clustered...) and per task, reused across figures
RUN_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
TASK_COLOURS = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#eeca3b", "#9d755d",
                "#ff9da6", "#bab0ac"]
RUN_DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]
WEIGHT_SCALE = "Viridis"
DIVERGING_SCALE = "RdBu_r"


def as_runs(data: Any) -> dict[str, Any]:
    """Accept one parsed run file (a dict with a ``schema`` string, or a metrics list) or a mapping
    ``{run label: parsed file}``; return the mapping (a single file gets the label ``""``)."""
    if isinstance(data, list) or (isinstance(data, Mapping) and "schema" in data):
        return {"": data}
    if not isinstance(data, Mapping) or not data:
        raise OptionError("expected a parsed run file or a non-empty {label: parsed file} mapping")
    return dict(data)


def run_name(label: str) -> str:
    return label or "run"


def colour(i: int, palette: list[str] = RUN_COLOURS) -> str:
    return palette[i % len(palette)]


def base_layout(fig: go.Figure, title: str, height: int = 450, **kw: Any) -> go.Figure:
    """Common layout: template, title, fixed height (the report stacks figures), compact margins."""
    fig.update_layout(template=TEMPLATE, title=dict(text=title, x=0.01, xanchor="left"), height=height,
                      margin=dict(l=70, r=30, t=80, b=60), hoverlabel=dict(namelength=-1), **kw)
    return fig


def fmt(v: Any, digits: int = 4) -> str:
    """A number for hover/summary text (``n/a`` for missing)."""
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _node_parts(node: Mapping[str, Any], layer: str, cluster: str) -> list[str]:
    """The layer, part and cluster of a node dict, each formatted by its template (missing keys skipped)."""
    parts = []
    if "layer" in node:
        parts.append(layer.format(node["layer"]))
    if "part" in node:
        parts.append(str(node["part"]))
    if "cluster" in node:
        parts.append(cluster.format(node["cluster"]))
    return parts


def node_label(node: Mapping[str, Any] | Any) -> str:
    """``L3 mlp c2`` for a ``{layer, part, cluster}`` node; other shapes are shown as given."""
    if isinstance(node, Mapping):
        return " ".join(_node_parts(node, "L{}", "c{}")) or str(dict(node))
    if isinstance(node, (list, tuple)):
        return " ".join(str(x) for x in node)
    return str(node)


def node_hover(node: Mapping[str, Any] | Any) -> str:
    """Long form of :func:`node_label` for hover text: ``layer 3, mlp, cluster 2 (64 units)``."""
    if isinstance(node, Mapping):
        s = ", ".join(_node_parts(node, "layer {}", "cluster {}")) or str(dict(node))
        if node.get("size") is not None:
            s += f" ({node['size']} units)"
        return s
    return node_label(node)
