"""Regenerate the tables of analyses/RESULTS.md from the files under results/.

Every result kind is registered with :func:`register`: its folder ``results/<name>/`` (written by
``scripts/make_results.py`` or another producer, with a ``manifest.json``: commands, git commit, seeds,
machine), a ``load(folder) -> data`` function and a ``table(data) -> markdown`` function. In RESULTS.md the
table of kind ``name`` sits between the lines ``<!-- results:name -->`` and ``<!-- /results:name -->``; this
script rewrites what lies between them (the table plus a provenance line from the manifest) and leaves the
rest of the file alone. A kind whose folder does not exist yet renders as "not generated".

To add a kind (e.g. ``finetune_study``): write its files into results/finetune_study/ with a manifest.json,
then in this file ``register("finetune_study", load_fn, table_fn)`` and put the two marker lines where the
table belongs in RESULTS.md.

    python scripts/results_tables.py            # rewrite RESULTS.md's tables from results/
    python scripts/results_tables.py --check    # exit 1 if RESULTS.md is not what results/ gives
    python scripts/results_tables.py --print enmeshment_gemma
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
RESULTS_MD = ROOT / "analyses" / "RESULTS.md"


@dataclass(frozen=True)
class ResultKind:
    name: str
    load: Callable[[Path], Any]
    table: Callable[[Any], str]


KINDS: dict[str, ResultKind] = {}


def register(name: str, load: Callable[[Path], Any], table: Callable[[Any], str]) -> None:
    """Register result kind ``name`` (folder ``results/<name>/``, markers ``<!-- results:name -->``)."""
    KINDS[name] = ResultKind(name, load, table)


# ------------------------------------------------------------------------------------------ formatting
def num(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return str(v)
    return f"{0.0 if abs(v) < 0.5 * 10 ** -digits else v:.{digits}f}"  # no "-0.000"


def interval(s: dict | None, digits: int = 3, unit: str = "", signed: bool = False) -> str:
    """``mean [lo, hi]`` of an across-seed summary (circuitclust.core.replicates.summarise); ``unit`` follows the
    mean, ``signed`` puts "+" before a positive mean."""
    if not isinstance(s, dict) or s.get("mean") is None:
        return "-"
    text = ("+" if signed and s["mean"] > 0 else "") + num(s["mean"], digits) + unit
    return text + (f" [{num(s['lo'], digits)}, {num(s['hi'], digits)}]" if s.get("lo") is not None else "")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def provenance(folder: Path) -> str:
    """One line from ``manifest.json``: commands, commit, seeds, machine, load, date."""
    try:
        m = read_json(folder / "manifest.json")
    except (OSError, json.JSONDecodeError):
        return f"*results/{folder.name}: no manifest.json*"
    mach = m.get("machine", {})
    load = (f"load average {m['load_average_before'][0]} -> {m['load_average_after'][0]}"
            if m.get("load_average_before") and m.get("load_average_after") else "load not recorded")
    seeds = ",".join(map(str, m.get("seeds") or [])) or "none (deterministic)"
    cmds = "; ".join(f"`{c}`" for c in m.get("commands", []))
    sha = str(m.get("git_commit", "?"))
    commit = sha[:12] + (" (with uncommitted changes)" if sha.endswith("+dirty") else "")
    return (f"*From `results/{folder.name}/` ({cmds}); commit {commit}, seeds {seeds}, "
            f"{mach.get('cpu', '?')} ({mach.get('cores', '?')} cores, torch {mach.get('torch', '?')}, "
            f"{mach.get('torch_threads', '?')} thread(s)), {load}, {m.get('date', '?')}, "
            + (f"{m['wall_s']} s wall" if m.get("wall_s") is not None else "wall time not recorded")
            + (f"; {m['note']}" if m.get("note") else "") + ".*")


# ------------------------------------------------------------------------------------- enmeshment_gemma
def load_enmeshment(folder: Path) -> dict:
    out = {}
    for name in ("blocks", "spectral", "spectral_balanced"):
        sub = folder / name
        if (sub / "replicates.json").is_file():
            reps = read_json(sub / "replicates.json")
            seeds = [read_json(sub / f"seed{s}" / "clusterability.json") for s in reps["seeds"]]
            out[name] = {"replicates": reps, "seeds": seeds}
        elif (sub / "clusterability.json").is_file():
            out[name] = {"replicates": None, "seeds": [read_json(sub / "clusterability.json")]}
    return out


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def table_enmeshment(data: dict) -> str:
    labels = {"blocks": "equal contiguous blocks", "spectral": "spectral co-clustering",
              "spectral_balanced": "spectral, balanced (each cluster >= 0.5 n/k units per side)"}
    n_graphs = len(next(iter(data.values()))["seeds"][0]["graphs"]) if data else 0
    lines = [f"| partition (k = 4, {n_graphs} MLP graphs) | mean C | chance | normalised C "
             "| shuffled (mean C of the null) | graphs at BH q <= 0.05 (per seed) | p floor "
             "| graphs with an empty cluster (per seed) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, d in data.items():
        runs = d["seeds"]
        empty = [sum(1 for g in r["graphs"] if min(g["row_sizes"]) == 0 or min(g["col_sizes"]) == 0) for r in runs]
        has_null = any(g.get("q") is not None for g in runs[0]["graphs"])
        sig = (", ".join(str(sum(1 for g in r["graphs"] if g["q"] <= 0.05)) for r in runs) + f" of {n_graphs}"
               if has_null else "no null run")
        floor = _mean([g.get("p_floor") for g in runs[0]["graphs"]])
        if d["replicates"] is not None:
            ml = d["replicates"]["model_level"]
            c, ch, nm, sh = (interval(ml[k]) for k in ("mean_clusterability", "mean_chance", "mean_normalised",
                                                         "mean_shuffle"))
        else:
            g = runs[0]["graphs"]
            c, ch, nm, sh = (num(_mean([x.get(k) for x in g])) for k in ("clusterability", "chance",
                                                                          "clusterability_norm", "shuffle_mean"))
        lines.append(f"| {labels.get(name, name)} | {c} | {ch} | {nm} | {sh} | {sig} | {num(floor, 2)} "
                     f"| {', '.join(map(str, empty))} |")
    lines.append("")
    lines.append(f"Means over the {n_graphs} graphs; with several seeds, mean [95% interval] across seeds "
                 "(Student t; each "
                 "seed re-runs the partitioner and its shuffle null). Blocks are deterministic (one run).")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------ attribution_gemma
def load_attribution(folder: Path) -> dict:
    return read_json(folder / "attribution.json")


def table_attribution(d: dict) -> str:
    s = d["settings"]
    runs = d["runs"]
    lines = ["| task | prompts | partition | nodes | Spearman attribution vs exact (mean [95% over seeds]) "
             "| per seed |", "|---|---|---|---|---|---|",
             f"| {s['task']} | {runs[0]['n_prompts']} | spectral {'+'.join(s['parts'])}, k {s['k']}, balance "
             f"{s['balance']} | {len(runs[0]['exact'])} | {interval(d['spearman'])} | "
             + ", ".join(f"{r['seed']}: {r['spearman']:.3f}" for r in runs) + " |"]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------- recall_gemma
def load_recall(folder: Path) -> dict:
    return read_json(folder / "recall.json")


def table_recall(d: dict) -> str:
    lines = ["| task | n | correct | top-1 accuracy | Wilson 95% CI |", "|---|---|---|---|---|"]
    for t in d["tasks"]:
        lines.append(f"| {t['task']} | {t['n']} | {t['n_correct']} | {num(t['accuracy'])} | "
                     f"[{num(t['ci_low'])}, {num(t['ci_high'])}] |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- shuffle_null
def load_shuffle_null(folder: Path) -> dict:
    return read_json(folder / "benchmark.json")


def table_shuffle_null(d: dict) -> str:
    lines = ["| path | shuffles | wall | CPU | per shuffle (wall) | speedup (wall / CPU) | load average |",
             "|---|---|---|---|---|---|---|",
             f"| per-shuffle (before) | {d['reference']['shuffles']} | {num(d['reference']['wall_s'], 1)} s | "
             f"{num(d['reference']['cpu_s'], 1)} s | {num(d['reference']['per_shuffle_wall_s'], 2)} s | 1 | "
             f"{d['reference']['load']} |"]
    for b in d["batched"]:
        lines.append(f"| batched, {b['workers']} worker(s) | {d['shuffles']} | {num(b['wall_s'], 1)} s | "
                     f"{num(b['cpu_s'], 1)} s | {num(b['wall_s'] / d['shuffles'], 3)} s | "
                     f"x{num(b['speedup_wall'], 1)} / x{num(b['speedup_cpu'], 1)} | {b['load']} |")
    ks = d.get("ks")
    if ks:
        lines.append("")
        lines.append(f"Same null: two-sample Kolmogorov-Smirnov per graph (batched vs per-shuffle samples), smallest "
                     f"p {ks['smallest']:.3g}, median {ks['median']:.3g}, {ks['below_0.01']} of {ks['graphs']} "
                     "below 0.01.")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ circuits_*
def _csv_rows(path: Path) -> list[dict]:
    import csv

    with path.open() as f:
        return list(csv.DictReader(f))


def _load_patch_run(folder: Path) -> dict:
    """One base-vs-clustered patch run (one prompt seed): circuits per task of both models, the comparison and
    both specialisation files."""
    return {"seed": read_json(folder / "run_config.json").get("seed", 0),
            "base": _csv_rows(folder / "circuits.csv"), "clustered": _csv_rows(folder / "compare" / "circuits.csv"),
            "comparison": read_json(folder / "comparison.json"),
            "spec": {"base": read_json(folder / "specialisation.json"),
                     "clustered": read_json(folder / "compare" / "specialisation.json")}}


def load_circuits(folder: Path) -> dict:
    """Base-vs-clustered patch runs, one per prompt seed (``seed<S>/``), and the fine-tuning's evaluations (the
    clustered model's capability cost)."""
    runs = [_load_patch_run(p) for p in sorted(folder.glob("seed*"), key=lambda p: int(p.name[4:])) if p.is_dir()]
    return {"runs": runs, "finetune": read_json(folder / "finetune_metrics.json")}


def _f(row: dict, key: str, digits: int = 3, pct: bool = False) -> str:
    v = row.get(key)
    if v in (None, ""):
        return "-"
    v = float(v)
    return f"{100 * v:.1f}%" if pct else num(v, digits)


def _value(row: dict, key: str) -> float | None:
    v = row.get(key)
    return None if v in (None, "") else float(v)


def _across(values: list[float | None], digits: int = 3, scale: float = 1.0, unit: str = "",
            signed: bool = False) -> str:
    """One number per seed -> ``mean [lo, hi]`` (95% Student-t across seeds), or the value itself for one seed."""
    from circuitclust.core.replicates import summarise

    return interval(summarise([None if v is None else scale * v for v in values]), digits, unit, signed)


def _nonsense(r: dict) -> str:
    if r.get("task") in ("wiki", "chemistry"):
        return "n/a (text)"
    if r.get("nonsense_fraction") not in (None, ""):
        return _f(r, "nonsense_fraction", pct=True) + (" RED FLAG" if r.get("red_flag") == "True" else "")
    if r.get("nonsense_cpr") not in (None, ""):
        return f"no faithful circuit (CPR {_f(r, 'nonsense_cpr')})"
    return "undefined (no effect)"


def table_circuits(d: dict) -> str:
    runs = d["runs"]
    ft0, ft = d["finetune"][0], d["finetune"][-1]
    ppl0, ppl = ft0["heldout_ppl"], ft["heldout_ppl"]
    cost = ", ".join(f"{dom} {ppl0[dom]:.2f} -> {ppl[dom]:.2f} ({100 * (ppl[dom] / ppl0[dom] - 1):+.1f}%)"
                     for dom in ppl)
    seeds = ", ".join(str(r["seed"]) for r in runs)
    many = len(runs) > 1
    lines = [f"Clustered model: the fine-tuning of the demo run collected here, {ft['step']} steps; "
             f"mean C {ft0['mean_clusterability']:.3f} -> "
             f"{ft['mean_clusterability']:.3f} (chance {ft['chance']:.3f}); held-out perplexity {cost}. Prompt "
             f"sample seed{'s' if many else ''} {seeds}"
             + (f": each cell is the mean over the {len(runs)} samples with a 95% Student-t interval across them."
                if many else " (one sample: no interval across samples)."), "",
             "| task | circuit base (% of units, f >= 0.8) | circuit clustered | clustered - base (points) | CPR base "
             "/ clustered | random-ranking CPR base / clustered | nonsense control base / clustered | attribution "
             "vs exact (Spearman, units) base / clustered |", "|---|---|---|---|---|---|---|---|"]
    per_task: dict[str, list[tuple[dict, dict]]] = {}
    for r in runs:
        clustered = {c["task"]: c for c in r["clustered"]}
        for b in r["base"]:
            per_task.setdefault(b["task"], []).append((b, clustered.get(b["task"], {})))
    smaller = []
    for task, pairs in per_task.items():
        fb = [_value(b, "fraction") for b, _ in pairs]
        fc = [_value(c, "fraction") for _, c in pairs]
        diff = [None if x is None or y is None else y - x for x, y in zip(fb, fc)]
        smaller.append(sum(v < 0 for v in diff if v is not None))

        def cell(key: str, side: int) -> str:
            return _across([_value(p[side], key) for p in pairs])

        def size(side: int) -> str:
            if many:
                return _across([_value(p[side], "fraction") for p in pairs], 1, 100, "%")
            row = pairs[0][side]
            return f"{row.get('circuit_size') or '-'} ({_f(row, 'fraction', pct=True)})"

        nonsense = [" / ".join(dict.fromkeys(_nonsense(p[side]) if p[side] else "-" for p in pairs))
                    for side in (0, 1)]
        lines.append(f"| {task} | {size(0)} | {size(1)} | {_across(diff, 1, 100, signed=True)} | {cell('cpr', 0)} / "
                     f"{cell('cpr', 1)} | {cell('random_cpr', 0)} / {cell('random_cpr', 1)} | {nonsense[0]} / "
                     f"{nonsense[1]} | {cell('attribution_spearman_units', 0)} / "
                     f"{cell('attribution_spearman_units', 1)} |")
    spec = [r["comparison"]["specialisation"] for r in runs]
    per_seed = "; ".join(f"seed {r['seed']}: {num(sp['base'])} -> {num(sp['other'])}, {num(sp['diff'])} "
                         f"[{num(sp['diff_ci'][0])}, {num(sp['diff_ci'][1])}]" for r, sp in zip(runs, spec))
    nulls = [(r["spec"]["base"]["nulls"], r["spec"]["clustered"]["nulls"]) for r in runs]

    def null(kind: str) -> str:
        means = [n[kind]["null_mean"] for pair in nulls for n in pair]
        return (f"mean {num(min(means))} to {num(max(means))}, p <= "
                f"{max(n[kind]['p'] for pair in nulls for n in pair):.3g}")
    n_pairs = sum(len(p) for p in per_task.values())
    lines += ["", f"Clustered circuit smaller than the base one in {sum(smaller)} of {n_pairs} (task, sample) pairs. "
              f"Specialisation (model score; per sample the difference has a 95% paired bootstrap interval over "
              f"prompts, {runs[0]['spec']['base']['interval']['method']}): {per_seed}"
              + (f"; mean difference over the samples {_across([sp['diff'] for sp in spec], signed=True)} (Student t)."
                 if many else ".")
              + f" Nulls (base and clustered, every sample): shuffled task labels {null('label_shuffle')}; random "
              f"partitions of the same cluster sizes {null('random_partition')}."]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- similarity_*
def load_similarity(folder: Path) -> dict:
    return read_json(folder / "replicates.json")


def table_similarity(d: dict) -> str:
    """Per layer the GW distance and CKA similarity to the next layer across seeds, and the layer groups."""
    o, base, layers = d["options"], d["base"], d["layers"]
    short = [name.split(".")[1] if name.startswith("blocks.") else name for name in layers]
    groups = []
    for sd, cuts in zip(d["seeds"], d["boundaries_per_seed"]):
        edges = [0, *(cuts or []), len(layers)]
        groups.append(f"seed {sd}: " + ", ".join(
            "{" + (short[a] if b - a == 1 else f"{short[a]}-{short[b - 1]}") + "}" for a, b in zip(edges, edges[1:])))
    hook = layers[0].rsplit(".", 1)[-1].removeprefix("hook_")
    lines = [f"{len(layers)} layers ({hook}), {o.get('n')} token positions of {o.get('prompts')} text per seed "
             f"({o.get('n_prompts')} texts), {o.get('solver')} GW solver, {o.get('metric')} distances; each number is "
             f"the mean over seeds {', '.join(map(str, d['seeds']))} with a 95% Student-t interval across them. Median "
             f"off-diagonal GW {interval(base['gw_offdiag_median'])}. Contiguous groups at the best silhouette: "
             + "; ".join(groups) + ".", "",
             "| layer -> next | GW distance | CKA similarity | group boundary after it (share of seeds) |",
             "|---|---|---|---|"]
    for i in range(len(layers) - 1):
        lines.append(f"| {short[i]} -> {short[i + 1]} | {interval(base['gw_to_next'][i])} | "
                     f"{interval(base['cka_to_next'][i])} | {num(float(base['boundary_share'][i]), 2)} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- finetune_study
STUDY_STEPS = (25, 50, 100, 200, 300, 500, 1000)


def load_finetune_study(folder: Path) -> dict:
    """``{model: finetune_study.json}`` for every model folder under results/finetune_study/."""
    return {p.parent.name: read_json(p) for p in sorted(folder.glob("*/finetune_study.json"))}


def _span(xs: list[float], digits: int = 3, pct: bool = False) -> str:
    """Mean over seeds, with the range of the seeds when there are several (too few for an interval)."""
    f = (lambda v: f"{100 * v:+.1f}%") if pct else (lambda v: num(v, digits))
    if not xs:
        return "-"
    mean = sum(xs) / len(xs)
    return f(mean) if len(xs) == 1 else f"{f(mean)} ({f(min(xs))} to {f(max(xs))})"


def table_finetune_study(data: dict) -> str:
    lines = []
    for model, doc in data.items():
        lines += [f"**{model}** (mean over seeds, with the range of the seeds in brackets; the perplexity rise is over "
                  "the base model on 32 held-out blocks of 64 tokens per domain)", "",
                  "| recipe | step (tokens) | seeds | C | chance | normalised C | wiki ppl | chemistry ppl | "
                  "inside +10% on both |", "|---|---|---|---|---|---|---|---|---|"]
        recipes: dict[str, list[dict]] = {}
        for run in doc["runs"].values():
            recipes.setdefault(run["recipe"], []).append(run)
        for recipe, runs in recipes.items():
            for step in STUDY_STEPS:
                ev = [e for r in runs for e in r["evaluations"] if e["step"] == step]
                if not ev:
                    continue
                inside = sum(max(e["ppl_increase"].values()) <= 0.10 for e in ev)
                lines.append(
                    f"| {recipe} | {step} ({ev[0]['tokens']}) | {len(ev)} | {_span([e['C'] for e in ev])} | "
                    f"{num(ev[0]['chance'])} | {_span([e['C_norm'] for e in ev])} | "
                    f"{_span([e['ppl_increase']['wiki'] for e in ev], pct=True)} | "
                    f"{_span([e['ppl_increase']['chemistry'] for e in ev], pct=True)} | {inside}/{len(ev)} |")
        lines += ["", f"**{model}**, the front inside the budget: per run, the evaluation with the highest normalised "
                  "C whose held-out perplexity rose by at most 10% on both domains (chosen on the held-out text "
                  "itself, so an upper bound on what a run that must choose without it gets)", "",
                  "| recipe | seed | lr | step (tokens) | normalised C | wiki ppl | chemistry ppl |",
                  "|---|---|---|---|---|---|---|"]
        for recipe, runs in recipes.items():
            for run in sorted(runs, key=lambda r: r["seed"]):
                inside = [e for e in run["evaluations"] if max(e["ppl_increase"].values()) <= 0.10]
                if inside:
                    e = max(inside, key=lambda e: e["C_norm"])
                    lines.append(f"| {recipe} | {run['seed']} | {run['config']['lr']:g} | "
                                 f"{e['step']} ({e['tokens']}) | "
                                 f"{num(e['C_norm'])} | {100 * e['ppl_increase']['wiki']:+.1f}% | "
                                 f"{100 * e['ppl_increase']['chemistry']:+.1f}% |")
        lines += _final_models(model, recipes)
        lines.append("")
    return "\n".join(lines).rstrip()


def _final_models(model: str, recipes: dict[str, list[dict]]) -> list[str]:
    """The model each budgeted run wrote to ``final/`` (``--final in-budget``: chosen on the control text alone),
    with its held-out figures, which the choice did not see."""
    chosen = [(recipe, run) for recipe, runs in recipes.items() for run in sorted(runs, key=lambda r: r["seed"])
              if run.get("final_step") is not None]
    if not chosen:
        return []
    lines = ["", f"**{model}**, what a budgeted run delivers: the model each run wrote to `final/` (`--final "
             "in-budget`: the evaluation with the highest normalised C whose control estimate kept the budget, chosen "
             "without the held-out text), and its held-out perplexity rise", "",
             "| recipe | seed | budget | steps run | final step | normalised C | wiki ppl | chemistry ppl | "
             "held-out inside the budget |", "|---|---|---|---|---|---|---|---|---|"]
    for recipe, run in chosen:
        e = next(e for e in run["evaluations"] if e["step"] == run["final_step"])
        budget = run["config"]["max_ppl_increase"]
        last = run["evaluations"][-1]["step"]
        ran = f"{last}" if run["finished"] else f"{last} (unfinished)"
        lines.append(f"| {recipe} | {run['seed']} | +{100 * budget:g}% | {ran} | {e['step']} | {num(e['C_norm'])} | "
                     f"{100 * e['ppl_increase']['wiki']:+.1f}% | {100 * e['ppl_increase']['chemistry']:+.1f}% | "
                     f"{'yes' if max(e['ppl_increase'].values()) <= budget else 'no'} |")
    return lines


register("enmeshment_gemma", load_enmeshment, table_enmeshment)
register("enmeshment_smollm2", load_enmeshment, table_enmeshment)
register("attribution_gemma", load_attribution, table_attribution)
register("recall_gemma", load_recall, table_recall)
register("recall_smollm2", load_recall, table_recall)
register("circuits_gemma", load_circuits, table_circuits)
register("circuits_smollm2", load_circuits, table_circuits)
register("shuffle_null", load_shuffle_null, table_shuffle_null)
for _m in ("gemma", "smollm2"):
    register(f"similarity_{_m}", load_similarity, table_similarity)
register("finetune_study", load_finetune_study, table_finetune_study)


# ---------------------------------------------------------------------------------------------- driver
def render(name: str, results: Path = RESULTS) -> str:
    """The block of kind ``name``: its table and provenance line, or a "not generated" line."""
    kind = KINDS[name]
    folder = results / name
    if not folder.is_dir():
        return f"*Not generated yet: `results/{name}/` does not exist.*"
    return f"{kind.table(kind.load(folder))}\n\n{provenance(folder)}"


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- results:{re.escape(name)} -->\n)(.*?)(<!-- /results:{re.escape(name)} -->)", re.S)


def update(text: str, results: Path = RESULTS) -> str:
    """``text`` (RESULTS.md) with the block of every registered kind that has markers regenerated."""
    for name in KINDS:
        pat = _block(name)
        if pat.search(text):
            body = render(name, results)
            text = pat.sub(lambda m: m.group(1) + body + "\n" + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="exit 1 if RESULTS.md differs from what results/ gives")
    ap.add_argument("--print", dest="show", metavar="KIND", help="print one kind's block")
    ap.add_argument("--results-md", type=Path, default=RESULTS_MD)
    args = ap.parse_args(argv)
    if args.show:
        if args.show not in KINDS:
            ap.error(f"unknown kind {args.show!r}: registered {', '.join(KINDS)}")
        print(render(args.show))
        return 0
    text = args.results_md.read_text()
    new = update(text)
    missing = [n for n in KINDS if not _block(n).search(text)]
    if args.check:
        if new != text:
            print(f"{args.results_md} is out of date with results/: run python scripts/results_tables.py",
                  file=sys.stderr)
            return 1
        print(f"{args.results_md} matches results/ ({len(KINDS) - len(missing)} tables)")
        return 0
    if new != text:
        args.results_md.write_text(new)
    print(f"{args.results_md}: {len(KINDS) - len(missing)} tables regenerated"
          + (f"; no markers for {', '.join(missing)}" if missing else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
