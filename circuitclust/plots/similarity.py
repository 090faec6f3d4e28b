"""Layer-by-layer distance heatmaps (Gromov-Wasserstein distance and linear CKA) with the layer groups
outlined (input: parsed ``similarity.json``, see :func:`circuitclust.runfiles.load_similarity`)."""
from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ._common import as_runs, base_layout, fmt, run_name


def group_spans(groups: Mapping[str, Any] | None, n_layers: int) -> list[tuple[int, int]]:
    """Contiguous ``(first, last)`` layer index spans of the groups. Taken from ``labels`` (one group label per
    layer; a non-contiguous group gives one span per run of equal labels) or else from ``boundaries`` (layer
    indices where a new group starts; 0 and ``n_layers`` are optional)."""
    if not groups:
        return []
    labels = groups.get("labels")
    if labels and len(labels) == n_layers:
        starts = [0] + [i for i in range(1, n_layers) if labels[i] != labels[i - 1]]
    elif groups.get("boundaries"):
        starts = sorted({0, *(int(b) for b in groups["boundaries"] if 0 < int(b) < n_layers)})
    else:
        return []
    ends = starts[1:] + [n_layers]
    return [(s, e - 1) for s, e in zip(starts, ends)]


def _short(layer: str) -> str:
    """A hook name's short tick label (hover keeps the full name)."""
    from ..models.adapter import hook_label

    return hook_label(layer)


def layer_similarity_heatmaps(data: Mapping[str, Any]) -> go.Figure:
    """One row per run, two panels: GW distance (0 = same geometry) and linear CKA (1 = same
    representation) between every pair of layers, with the layer groups outlined on both. Colour scales are
    shared across runs (one for GW, one for CKA). Returns 2 heatmap traces per run (one if a matrix is
    missing)."""
    runs = as_runs(data)
    titles = []
    for label, d in runs.items():
        stab = (d.get("groups") or {}).get("stability")
        s = f" (groups stability {fmt(stab, 3)})" if stab is not None and not isinstance(stab, (list, dict)) else ""
        pre = f"{run_name(label)}: " if len(runs) > 1 else ""
        titles += [f"{pre}Gromov-Wasserstein distance{s}", f"{pre}linear CKA similarity"]
    fig = make_subplots(rows=len(runs), cols=2, subplot_titles=titles, horizontal_spacing=0.15,
                        vertical_spacing=0.12 if len(runs) > 1 else 0.0)
    gw_max = max((max((v for row in d.get("gw") or [] for v in row if v is not None), default=0.0)
                  for d in runs.values()), default=0.0)
    for r, (label, d) in enumerate(runs.items()):
        layers = list(d["layers"])
        ticks = [_short(x) for x in layers]
        if len(set(ticks)) < len(ticks):  # categories must be unique or cells would merge
            ticks = layers
        spans = group_spans(d.get("groups"), len(layers))
        for c, (key, axis, what) in enumerate((("gw", "coloraxis", "GW distance"),
                                                ("cka", "coloraxis2", "CKA"))):
            if d.get(key) is None:
                continue
            hover = [[f"{layers[i]} vs {layers[j]}" for j in range(len(layers))] for i in range(len(layers))]
            fig.add_trace(go.Heatmap(z=d[key], x=ticks, y=ticks, customdata=hover, coloraxis=axis,
                                     name=f"{what} ({run_name(label)})",
                                     hovertemplate=(f"<b>%{{customdata}}</b> ({run_name(label)})<br>{what}: "
                                                    "%{z:.4g}<extra></extra>")), row=r + 1, col=c + 1)
            for s, e in spans:
                fig.add_shape(type="rect", x0=s - 0.5, x1=e + 0.5, y0=s - 0.5, y1=e + 0.5,
                              line=dict(color="black", width=2), row=r + 1, col=c + 1)
    n = max(len(d["layers"]) for d in runs.values())
    base_layout(fig, "Layer similarity: representation geometry of every pair of layers (boxes = layer groups)",
                height=max(460, 120 + 420 * len(runs)) if n < 40 else 120 + 600 * len(runs),
                coloraxis=dict(colorscale="Viridis_r", cmin=0.0, cmax=gw_max or 1.0,
                               colorbar=dict(title="GW", x=0.43, len=1.0 / len(runs), y=1.0, yanchor="top")),
                coloraxis2=dict(colorscale="Viridis", cmin=0.0, cmax=1.0,
                                colorbar=dict(title="CKA", x=1.0, len=1.0 / len(runs), y=1.0, yanchor="top")))
    fig.update_yaxes(autorange="reversed")
    return fig
