"""Weight heatmaps reordered by cluster: rows and columns sorted by cluster label so that a clustered matrix
shows its block-diagonal structure; before/after panels share one colour scale; a dropdown picks the graph.

Large matrices are downsampled for display by averaging ``|W|`` over blocks of consecutive (sorted) units.
Bins never straddle two clusters (each cluster gets bins in proportion to its size, at least one), so the
block structure survives the downsampling; the title says when it happened.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from ..errors import PartitionMismatchError
from ._common import WEIGHT_SCALE, base_layout

UNIT_NAMES = {"resid": "resid dim", "mlp": "neuron", "attn": "head dim", "attn_qk": "qk dim",
              "attn_k": "k dim", "attn_v": "v dim"}


def _unit_name(space: str | None, default: str) -> str:
    if not space:
        return default
    return UNIT_NAMES.get(space.split(".")[0], space)


@dataclass
class AxisBins:
    """Display bins of one side of a matrix.

    ``order`` ``[n]``: original unit indices sorted by cluster (stable); ``bin_of`` ``[n]``: the bin of each
    sorted position; ``n_bins``; ``labels``: one unique hover label per bin; ``cluster_starts``: bin indices
    where a new cluster begins (for the boundary lines)."""

    order: torch.Tensor
    bin_of: torch.Tensor
    n_bins: int
    labels: list[str]
    cluster_starts: list[int]


def axis_bins(labels: torch.Tensor, k: int, max_bins: int, unit: str = "unit") -> AxisBins:
    """Sort ``labels`` ``[n]`` (int64 in ``[0, k)``) by cluster and group the sorted units into at most about
    ``max_bins`` bins (one unit per bin when ``n <= max_bins``; else ``max(1, round(size * max_bins / n))``
    bins per cluster, so the total may exceed ``max_bins`` by at most ``k``)."""
    labels = labels.long()
    n = labels.numel()
    order = torch.argsort(labels, stable=True)
    sorted_lab = labels[order]
    sizes = torch.bincount(labels, minlength=k)
    if n <= max_bins:
        bin_of = torch.arange(n, device=labels.device)
        per_cluster = sizes
    else:
        per_cluster = torch.where(sizes > 0, torch.clamp(torch.round(sizes * max_bins / n), min=1),
                                  torch.zeros_like(sizes)).long()
        start = torch.cumsum(sizes, 0) - sizes
        pos = torch.arange(n, device=labels.device) - start[sorted_lab]
        offset = torch.cumsum(per_cluster, 0) - per_cluster
        bin_of = offset[sorted_lab] + torch.div(pos * per_cluster[sorted_lab], sizes[sorted_lab],
                                                rounding_mode="floor")
    n_bins = int(per_cluster.sum())
    counts = torch.bincount(bin_of, minlength=n_bins).tolist()
    first = (torch.cumsum(torch.bincount(bin_of, minlength=n_bins), 0) - torch.bincount(bin_of, minlength=n_bins)).tolist()
    lab_list, order_list = sorted_lab.tolist(), order.tolist()
    names, starts, prev = [], [], None
    for b, (f, c) in enumerate(zip(first, counts)):  # one iteration per display bin, not per unit
        cl = lab_list[f]
        if prev is not None and cl != prev:
            starts.append(b)
        prev = cl
        if c == 1:
            names.append(f"{unit} {order_list[f]} · cluster {cl}")
        else:
            names.append(f"cluster {cl} · {c} {unit}s (sorted #{f}-{f + c - 1})")
    return AxisBins(order, bin_of, n_bins, names, starts)


def _mean_matrix(bins: AxisBins, device: torch.device) -> torch.Tensor:
    """``[n_bins, n]``: row ``b`` averages the original units that fall in display bin ``b``."""
    n = bins.order.numel()
    bin_of_unit = torch.empty(n, dtype=torch.long, device=device)
    bin_of_unit[bins.order.to(device)] = bins.bin_of.to(device)
    m = torch.zeros(bins.n_bins, n, device=device)
    m[bin_of_unit, torch.arange(n, device=device)] = 1.0
    return m / m.sum(1, keepdim=True)


def block_average(weight: torch.Tensor, rows: AxisBins, cols: AxisBins) -> np.ndarray:
    """``|W|`` reordered by cluster and averaged over the display bins: ``[rows.n_bins, cols.n_bins]``
    float32 numpy (computed on the weight's device as two matrix products with bin-averaging matrices)."""
    a = weight.detach().abs().float()
    out = _mean_matrix(rows, a.device) @ a @ _mean_matrix(cols, a.device).T
    return out.cpu().numpy()


def _graph_layer(name: str) -> str:
    parts = name.split(".")
    return f"layer {parts[1]}" if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else ""


def weight_heatmaps(
    weights: Mapping[str, torch.Tensor],
    partition,
    *,
    after: Mapping[str, torch.Tensor] | None = None,
    after_partition=None,
    labels: Sequence[str] = ("before", "after"),
    max_cells: int = 256,
    title: str = "|W| reordered by cluster",
) -> go.Figure:
    """Heatmaps of ``|W|`` with rows and columns sorted by cluster, one graph at a time (dropdown).

    ``weights``: graph name -> ``[n_in, n_out]`` tensor; ``partition``: a ``ModelPartition`` (or a mapping
    name -> ``Partition``) for those graphs. ``after`` (optional): the same graphs after fine-tuning, drawn in
    a second panel with the same colour scale, reordered by ``after_partition`` (default: ``partition``, the
    fixed fine-tuning partition). Matrices larger than ``max_cells`` per side are block-averaged. Returns a
    figure with one heatmap trace per graph and panel, the first graph visible.
    """
    after_partition = after_partition if after_partition is not None else partition
    names = [n for n in weights if n in partition and (after is None or (n in after and n in after_partition))]
    if not names:
        raise PartitionMismatchError("no graph is in both the weights and the partition")
    spaces = getattr(partition, "spaces", {})
    panels = [(labels[0], weights, partition)] + ([(labels[1], after, after_partition)] if after is not None else [])
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels], horizontal_spacing=0.08)
    per_graph = []  # (cmax, shapes, downsampled?)
    for gi, name in enumerate(names):
        in_space, out_space = spaces.get(name, (None, None))
        shapes, zs, down = [], [], False
        for pi, (_, ws, part) in enumerate(panels):
            p = part[name]
            w = ws[name]
            if tuple(w.shape) != tuple(p.shape):
                raise PartitionMismatchError(f"{name}: weight {tuple(w.shape)} does not match partition {tuple(p.shape)}")
            rows = axis_bins(p.row_labels, p.k, max_cells, _unit_name(in_space, "row"))
            cols = axis_bins(p.col_labels, p.k, max_cells, _unit_name(out_space, "col"))
            down |= rows.n_bins < w.shape[0] or cols.n_bins < w.shape[1]
            z = block_average(w, rows, cols)
            zs.append(z)
            layer = _graph_layer(name)
            fig.add_trace(go.Heatmap(
                z=z, x=cols.labels, y=rows.labels, coloraxis="coloraxis", visible=gi == 0,
                name=f"{name} ({panels[pi][0]})",
                hovertemplate=(f"<b>{name}</b> {layer} ({panels[pi][0]})<br>row: %{{y}}<br>col: %{{x}}"
                               "<br>mean |W|: %{z:.4g}<extra></extra>")), row=1, col=pi + 1)
            ax = "" if pi == 0 else str(pi + 1)
            for b in rows.cluster_starts:
                shapes.append(dict(type="line", xref=f"x{ax} domain", yref=f"y{ax}", x0=0, x1=1, y0=b - 0.5,
                                   y1=b - 0.5, line=dict(color="white", width=1)))
            for b in cols.cluster_starts:
                shapes.append(dict(type="line", xref=f"x{ax}", yref=f"y{ax} domain", x0=b - 0.5, x1=b - 0.5,
                                   y0=0, y1=1, line=dict(color="white", width=1)))
        # one colour scale per graph, shared by its panels; the 99.5th percentile keeps a few large
        # entries from washing out the rest
        cmax = float(np.quantile(np.concatenate([z.ravel() for z in zs]), 0.995)) or 1.0
        per_graph.append((cmax, shapes, down))

    def graph_title(i: int) -> str:
        name = names[i]
        shape = tuple(weights[name].shape)
        note = f", block-averaged to <= ~{max_cells}x{max_cells} cells for display" if per_graph[i][2] else ""
        return f"{title}: {name} [{shape[0]}x{shape[1]}]{note}"

    n_panels = len(panels)
    buttons = []
    for i, name in enumerate(names):
        visible = [j // n_panels == i for j in range(len(names) * n_panels)]
        buttons.append(dict(label=name, method="update",
                            args=[{"visible": visible},
                                  {"title.text": graph_title(i), "shapes": per_graph[i][1],
                                   "coloraxis.cmax": per_graph[i][0]}]))
    base_layout(fig, graph_title(0), height=560)
    fig.update_layout(
        shapes=per_graph[0][1],
        coloraxis=dict(colorscale=WEIGHT_SCALE, cmin=0.0, cmax=per_graph[0][0], colorbar=dict(title="mean |W|")),
        updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.13, yanchor="top",
                          showactive=True)] if len(names) > 1 else [],
        margin=dict(t=110),
    )
    fig.update_xaxes(showticklabels=False, title_text="output units (sorted by cluster)")
    fig.update_yaxes(showticklabels=False, autorange="reversed", title_text="input units (sorted by cluster)")
    return fig
