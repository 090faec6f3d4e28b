"""Fine-tuning curves from ``metrics.jsonl``: task loss, held-out perplexity per domain, clusterability vs
chance, and the loss weight lambda (input: :func:`circuitclust.runfiles.load_metrics`)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..runfiles import evaluations
from ._common import RUN_DASHES, as_runs, base_layout, colour, run_name, TASK_COLOURS


def training_curves(data: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Mapping[str, Any]]]) -> go.Figure:
    """A 2x2 grid over training steps: (1) task loss (and KL to the base model when distilling), (2) held-out
    perplexity per domain (log scale), (3) mean clusterability with its chance level, per-graph values hidden
    in the legend, (4) lambda. ``data`` is one parsed metrics list or ``{run label: metrics list}``; runs are
    told apart by line dash. Hover shows step and tokens seen."""
    runs = as_runs(data)
    fig = make_subplots(rows=2, cols=2, shared_xaxes=True, vertical_spacing=0.12, horizontal_spacing=0.1,
                        subplot_titles=["task loss", "held-out perplexity (log scale)",
                                        "clusterability (mean over regularised graphs) vs chance", "lambda"])
    for r, (label, rows) in enumerate(runs.items()):
        rows = evaluations(rows)  # without the closing record, which repeats an evaluation
        who = run_name(label)
        dash = RUN_DASHES[r % len(RUN_DASHES)]
        pre = f"{who}: " if len(runs) > 1 else ""
        steps = [m.get("step") for m in rows]
        tokens = [m.get("tokens") for m in rows]

        def line(y, name, row, col, c, hover_name=None, **kw):
            hover = f"step %{{x}}<br>tokens %{{customdata}}<br>{hover_name or pre + name}: %{{y:.4g}}<extra></extra>"
            fig.add_trace(go.Scatter(x=steps, y=y, customdata=tokens, mode="lines+markers", name=pre + name,
                                     line=dict(color=c, dash=dash, **kw.pop("line", {})), hovertemplate=hover,
                                     marker=dict(size=4), **kw), row=row, col=col)

        line([m.get("task_loss") for m in rows], "task loss", 1, 1, colour(0))
        if any("kl" in m for m in rows):
            line([m.get("kl") for m in rows], "KL to base", 1, 1, colour(4))
        domains: list[str] = []
        for m in rows:
            for d in (m.get("heldout_ppl") or {}):
                if d not in domains:
                    domains.append(d)
        for i, d in enumerate(domains):
            line([(m.get("heldout_ppl") or {}).get(d) for m in rows], f"held-out ppl {d}", 1, 2,
                 TASK_COLOURS[i % len(TASK_COLOURS)])
        graphs: list[str] = []
        for m in rows:
            for g in (m.get("clusterability") or {}):
                if g not in graphs:
                    graphs.append(g)
        for i, g in enumerate(graphs):
            # one legend entry toggles all per-graph lines (hidden at first: there can be dozens)
            line([(m.get("clusterability") or {}).get(g) for m in rows], "per-graph clusterability", 2, 1,
                 "rgba(120,120,120,0.5)", hover_name=f"{pre}{g}", legendgroup=f"{who}-per-graph",
                 showlegend=i == 0, visible="legendonly", line=dict(width=1))
        line([m.get("mean_clusterability") for m in rows], "mean clusterability", 2, 1, colour(1))
        line([m.get("chance") for m in rows], "chance", 2, 1, "orange")
        line([m.get("lam") for m in rows], "lambda", 2, 2, colour(2))
    base_layout(fig, "Fine-tuning with the clusterability loss", height=640, legend=dict(orientation="h", y=-0.12))
    fig.update_yaxes(type="log", row=1, col=2)
    fig.update_xaxes(title_text="step", row=2)
    return fig


_SYMBOLS = ("circle", "diamond", "square", "triangle-up", "x", "star")


def pareto_front(data: Mapping[str, Any] | Mapping[str, Mapping[str, Any]]) -> go.Figure:
    """Capability cost against clusterability for the runs of a fine-tuning study
    (:func:`circuitclust.runfiles.load_finetune_study`; one parsed file or ``{label: parsed file}``).

    Two panels share the y axis, the normalised clusterability of the regularised matrices; their x axes are
    the held-out perplexity rise (in %) over the base model on each domain. One colour per recipe, one marker
    per seed; a line joins a run's evaluations in step order, so each point is a step budget; a run's budget
    (``max_ppl_increase``) is drawn as a dotted vertical line. Hover shows step, tokens, C and chance.
    """
    docs = data if "runs" not in data else {"": data}
    domains: list[str] = []
    for doc in docs.values():
        for run in doc["runs"].values():
            for e in run["evaluations"]:
                domains += [d for d in e["ppl_increase"] if d not in domains]
    domains = domains[:2] or ["wiki"]
    fig = make_subplots(rows=1, cols=len(domains), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"held-out perplexity rise on {d} (%)" for d in domains])
    recipes: list[str] = []
    budgets: set[float] = set()
    for label, doc in docs.items():
        for name, run in doc["runs"].items():
            recipe = f"{label}: {run['recipe']}" if label else run["recipe"]
            if recipe not in recipes:
                recipes.append(recipe)
            c = colour(recipes.index(recipe))
            seed = int(run.get("seed", 0))
            budget = (run.get("config") or {}).get("max_ppl_increase") or 0
            if budget:
                budgets.add(float(budget))
            ev = run["evaluations"]
            for col, d in enumerate(domains, start=1):
                x = [100 * e["ppl_increase"].get(d, float("nan")) for e in ev]
                y = [e.get("C_norm") for e in ev]
                custom = [[e["step"], e["tokens"], e["C"], e["chance"]] for e in ev]
                fig.add_trace(go.Scatter(
                    x=x, y=y, customdata=custom, mode="lines+markers", legendgroup=recipe,
                    name=f"{recipe} (seed {seed})", showlegend=col == 1,
                    line=dict(color=c, width=1), marker=dict(color=c, size=7, symbol=_SYMBOLS[seed % len(_SYMBOLS)]),
                    hovertemplate=(f"{recipe}, seed {seed}<br>step %{{customdata[0]}} (%{{customdata[1]}} tokens)"
                                   f"<br>{d} ppl %{{x:+.1f}}%<br>normalised C %{{y:.3f}}<br>C %{{customdata[2]:.3f}}, "
                                   "chance %{customdata[3]:.3f}<extra></extra>")), row=1, col=col)
    for b in sorted(budgets):
        for col in range(1, len(domains) + 1):
            fig.add_vline(x=100 * b, line=dict(color="grey", dash="dot", width=1), row=1, col=col)
    base_layout(fig, "Fine-tuning recipes: capability cost vs clusterability", height=520,
                legend=dict(orientation="h", y=-0.2))
    fig.update_yaxes(title_text="normalised clusterability (C - chance) / (1 - chance)", row=1, col=1)
    return fig
