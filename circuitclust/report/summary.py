"""The report's summary table: one row per quantity (model, k, clusterability, fine-tuning, circuits,
specialisation, layer groups), one column per run, "not run" where a folder lacks it. No maths here beyond
averaging a file's per-graph values for the summary line.
"""
from __future__ import annotations

import html
import math
from typing import Any

from .. import plots
from ..plots._common import fmt
from .collect import _Step


def _mean(values: list) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def _interval(summary: Any, digits: int = 3) -> str:
    """``mean [lo, hi]`` of an across-seed summary (see ``circuitclust.core.replicates``)."""
    if not isinstance(summary, dict) or summary.get("mean") is None:
        return "n/a"
    text = fmt(summary["mean"], digits)
    if summary.get("lo") is not None:
        text += f" [{fmt(summary['lo'], digits)}, {fmt(summary['hi'], digits)}]"
    return text


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
    # seeds per step, so a reader sees which figures are one run (their intervals, where shown, are over prompts,
    # shuffles or bootstrap resamples) and which are replicated across seeds
    for kind in ("clusterability", "run_config", "similarity", "replicates"):
        for name, d in data[kind].items():
            seeds = d.get("seeds") or ([d["seed"]] if d.get("seed") is not None else [])
            if seeds:
                add("seeds", by_name[name], ", ".join(map(str, seeds)) + (
                    f" ({len(seeds)} replicates)" if len(seeds) > 1 else " (one run: no interval across seeds)"))
    for name, d in data["clusterability"].items():
        g = d["graphs"]
        c, ch = _mean([x.get("clusterability") for x in g]), _mean([x.get("chance") for x in g])
        sm, ss = _mean([x.get("shuffle_mean") for x in g]), _mean([x.get("shuffle_std") for x in g])
        norm = _mean([x.get("clusterability_norm") for x in g])
        text = f"mean {fmt(c, 3)} over {len(g)} graphs (chance {fmt(ch, 3)}"
        text += f", normalised {fmt(norm, 3)}" if norm is not None else ""
        text += f", shuffled {fmt(sm, 3)} ± {fmt(ss, 2)}" if sm is not None else ", no shuffle null"
        qs = [x.get("q") for x in g if x.get("q") is not None]
        if qs:
            floor = _mean([x.get("p_floor") for x in g])
            text += f"; {sum(q <= 0.05 for q in qs)}/{len(qs)} graphs at BH q ≤ 0.05, p floor {fmt(floor, 2)}"
        text += ")"
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
            f"(chance {fmt(last.get('chance'), 3)}"
            + (f", normalised {fmt(first.get('mean_clusterability_norm'), 3)} → "
               f"{fmt(last.get('mean_clusterability_norm'), 3)}" if "mean_clusterability_norm" in last else "")
            + f"; step {first.get('step')} → {last.get('step')}, lambda {fmt(last.get('lam'), 3)}"
            + ("; stopped by the time cap" if last.get("time_budget_hit") else "") + ")")
        if last.get("final"):
            add("final model", by_name[name],
                f"step {last.get('step')} of {last['final'].get('last_step')}: the most clusterable evaluation "
                "inside the capability budget on the control text (final/ holds it; the figures above are its)")
        if last.get("budget"):
            add("capability budget", by_name[name], "held" if last["budget"].get("held") else
                "NOT held at the end (see 'budget' in metrics.jsonl)")
        doms = list((last.get("heldout_ppl") or {}).keys())
        if doms:
            add("held-out perplexity", by_name[name], "; ".join(
                f"{d} {fmt((first.get('heldout_ppl') or {}).get(d), 4)} → {fmt(last['heldout_ppl'][d], 4)}"
                for d in doms))
    for name, d in data["circuits"].items():
        parts = []
        for t, info in (d.get("tasks") or {}).items():
            text = f"{t} {info.get('circuit_size')} units"
            if info.get("fraction") is not None:
                text += f" ({fmt(100 * info['fraction'], 3)}%)"
            if info.get("cpr") is not None:
                text += f", CPR {fmt(info['cpr'], 3)} (random {fmt((info.get('random') or {}).get('cpr'), 3)})"
            parts.append(text)
        ablation = f", {d['ablation']} ablation" if d.get("ablation") else ""
        add(f"circuit size (f ≥ {fmt(d.get('threshold'))}{ablation})", by_name[name], "; ".join(parts))
        nz = {t: info["nonsense"] for t, info in (d.get("tasks") or {}).items() if info.get("nonsense")}
        if nz:
            flags = d.get("red_flags") or [t for t, n in nz.items() if n.get("red_flag")]
            add("nonsense control (answers shuffled)", by_name[name],
                (f"RED FLAG for {', '.join(flags)}: small faithful nonsense circuit; " if flags else "no red flag; ")
                + "; ".join(f"{t} {'undefined' if not n.get('defined') else n.get('circuit_size')}"
                            for t, n in nz.items()))
        if d.get("attribution_spearman") is not None:
            add("attribution vs exact patching (Spearman, clusters)", by_name[name], fmt(d["attribution_spearman"], 3))
        chk = d.get("attribution_check") or {}
        if chk:
            add("attribution vs exact (single units: Spearman, top-k overlap)", by_name[name],
                "; ".join(f"{t} {fmt(c.get('spearman'), 3)}, {fmt(c.get('top_k_overlap'), 2)}" for t, c in chk.items()))
    for name, d in data["effects"].items():
        if d.get("n_significant_bh") is not None:
            add("effects at BH q ≤ 0.05", by_name[name], f"{d['n_significant_bh']} of {d.get('n_cells')} cells")
    for name, d in data["specialisation"].items():
        add("specialisation (model score)", by_name[name], fmt(d.get("model_score"), 3))
        for key, label in (("label_shuffle", "shuffled task labels"), ("random_partition", "random partitions")):
            n = (d.get("nulls") or {}).get(key)
            if n:
                add(f"specialisation vs null ({label})", by_name[name],
                    f"observed {fmt(n['observed'], 3)}, null {fmt(n['null_mean'], 3)} "
                    f"[{fmt(n['null_range_95'][0], 3)}, {fmt(n['null_range_95'][1], 3)}], p = {fmt(n['p'], 2)}")
    for name, d in data["similarity"].items():
        spans = plots.group_spans(d.get("groups"), len(d.get("layers", [])))
        stab = (d.get("groups") or {}).get("stability")
        text = ", ".join(f"[{a}–{b}]" for a, b in spans) or "no groups"
        if isinstance(stab, (int, float)):
            text += f" (stability {fmt(stab, 3)})"
        add("layer groups (GW)", by_name[name], text)
    for name, d in data.get("replicates", {}).items():
        iv = d.get("interval") or {}
        how = (f"seeds {','.join(map(str, d.get('seeds', [])))}; {iv.get('method', '')}"
               + (f", {fmt(100 * iv['level'], 2)}%" if iv.get("level") else ""))
        if d.get("kind") == "cluster":
            ml = d.get("model_level") or {}
            text = (f"mean C {_interval(ml.get('mean_clusterability'))} (chance {_interval(ml.get('mean_chance'))}, "
                    f"normalised {_interval(ml.get('mean_normalised'))}")
            sig = ml.get("significant_q05")
            sig = sig.get("values") if isinstance(sig, dict) else None
            if sig:
                text += f"; graphs at BH q ≤ 0.05 per seed: {', '.join(str(int(v)) for v in sig if v is not None)}"
            add("clusterability over seeds", by_name[name], f"{text}) [{how}]")
        elif d.get("kind") == "similarity":
            base = d.get("base") or {}
            text = (f"median off-diagonal GW {_interval(base.get('gw_offdiag_median'))}; group boundaries per seed: "
                    + "; ".join(str(b) for b in d.get("boundaries_per_seed") or []))
            cmp = d.get("comparison")
            if cmp:
                text += (f"; vs {d.get('other_model')}: GW rank correlation {_interval(cmp.get('gw_spearman'))}, "
                         f"group ARI {_interval(cmp.get('groups_ari'))}")
            add("layer similarity over seeds", by_name[name], f"{text} [{how}]")
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
