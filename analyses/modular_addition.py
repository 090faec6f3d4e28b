"""Modular addition from scratch, with and without the clusterability loss, analysed with circuitclust.

Reproduces, on a model small enough to train here, the papers' three claims: an unregularised network is
enmeshed (clusterability near chance), training with the clusterability loss makes it clusterable, and the
clustered network forms smaller circuits without more task specialisation.

Data: every pair (a, b) with a, b in [0, p), tokens ``[a, b, "="]``, answer ``(a + b) mod p``; a fixed
train/test split seeded by ``--data-seed``. Model: a GPT-2 (``GPT2LMHeadModel`` built from a config, no
dropout, untied unembedding) with a WordLevel tokenizer over ``"0" .. str(p-1), "="``, trained full batch
with AdamW on the answer position only. Two runs with the same seeds: ``lam = 0`` and ``lam = --lam`` with
:class:`circuitclust.analysis.finetuning.regulariser.ClusterabilityLoss` on equal contiguous blocks (k clusters) of
every MLP ``W_in`` / ``W_out``.

Per run, with the toolkit: clusterability of every MLP graph vs chance and a shuffle null under the training
partition and under a fresh spectral co-clustering of the final weights (``score_model``,
``partition_model``); the cluster effect matrix on the task (mean ablation, logit difference, bootstrap
CIs); specialisation over answer-range sub-tasks; attribution-ranked unit and cluster circuits with their
faithfulness curves (``task_circuits``). Prompts for patching: clean ``[a, b, =]``, corrupted ``[a', b, =]``
with ``a' != a`` (so a different answer), drawn from ``--patch-split``.

Outputs in ``--out``: ``results.json`` (schema ``circuitclust.modadd/1``: command, settings, seeds, per run
training curve, accuracies, clusterability tables, patching results, timings, and an ``error`` string in
place of any step that failed), ``results.md`` (the summary table, also printed), and per run
``{run}/model`` (HF ``save_pretrained`` + tokenizer) and ``{run}/partition.*`` (the training partition).

    python analyses/modular_addition.py --out runs/modadd
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch

SCHEMA = "circuitclust.modadd/1"
MLP_GRAPHS = ("mlp_in", "mlp_out")


# ----------------------------------------------------------------------------------------------- data
def make_data(p: int, train_frac: float, data_seed: int) -> dict[str, torch.Tensor]:
    """All ``p * p`` problems and a seeded split. Returns ``tokens`` ``[p*p, 3]`` int64 (``a, b, =`` with
    ``=`` the id ``p``), ``answers`` ``[p*p]`` int64, ``train`` / ``test`` index tensors."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.reshape(-1), b.reshape(-1)
    tokens = torch.stack([a, b, torch.full_like(a, p)], 1)
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(data_seed))
    n_train = int(round(train_frac * p * p))
    if not 0 < n_train < p * p:
        raise ValueError(f"--train-frac {train_frac} leaves an empty train or test set for p = {p}")
    return {"tokens": tokens, "answers": (a + b) % p, "train": perm[:n_train], "test": perm[n_train:]}


def make_tokenizer(p: int):
    """A WordLevel tokenizer: ``"0" .. str(p-1)`` -> ids ``0 .. p-1``, ``"="`` -> ``p`` (also used as
    pad/unknown, since prompts are never padded)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {str(i): i for i in range(p)}
    vocab["="] = p
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="="))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="=", pad_token="=", eos_token="=",
                                   bos_token="=", model_max_length=3)


def build_model(p: int, n_layers: int, d_model: int, d_mlp: int, n_heads: int, seed: int):
    """A GPT-2 LM over ``p + 1`` tokens with 3 positions, no dropout, ReLU MLP, untied unembedding,
    initialised from ``seed``. Returns the HF ``GPT2LMHeadModel`` (eager attention, as the bridge needs)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=p + 1, n_positions=3, n_embd=d_model, n_layer=n_layers, n_head=n_heads,
                     n_inner=d_mlp, activation_function="relu", resid_pdrop=0.0, embd_pdrop=0.0,
                     attn_pdrop=0.0, tie_word_embeddings=False, bos_token_id=p, eos_token_id=p,
                     pad_token_id=p, architectures=["GPT2LMHeadModel"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    model.config._attn_implementation = "eager"
    return model


# ------------------------------------------------------------------------------------------- training
def answer_logits(model, tokens: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """``[n, V]`` logits at the ``=`` position (works for the HF model and the TransformerBridge)."""
    out = []
    for i in range(0, tokens.shape[0], chunk):
        lg = model(tokens[i:i + chunk])
        lg = lg.logits if hasattr(lg, "logits") else lg
        out.append(lg[:, -1])
    return torch.cat(out)


@torch.no_grad()
def accuracy(model, tokens: torch.Tensor, answers: torch.Tensor) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of the answer prediction."""
    lg = answer_logits(model, tokens).float()
    return (float((lg.argmax(-1) == answers).float().mean()),
            float(torch.nn.functional.cross_entropy(lg, answers)))


def train(model, data: dict[str, torch.Tensor], *, steps: int, lr: float, weight_decay: float, lam: float,
          k: int, device: torch.device, eval_every: int, seed: int, log: Callable[[str], None] = print) -> dict:
    """Full-batch AdamW on the answer position, ``task CE + lam * mean(1 - C(W))`` over the MLP graphs'
    fixed equal-block partition (the clusterability is tracked for ``lam = 0`` too, without gradient).
    Returns ``{"history": [...], "partition": ModelPartition, "cpu_s", "wall_s"}``."""
    from circuitclust.analysis.finetuning.regulariser import ClusterabilityLoss, make_partition, mean_of

    model.to(device).train()
    closs = ClusterabilityLoss(model, make_partition(model, "blocks", k, MLP_GRAPHS, seed), graphs=MLP_GRAPHS)
    chance = mean_of(closs.chance())
    x_tr, y_tr = data["tokens"][data["train"]].to(device), data["answers"][data["train"]].to(device)
    x_te, y_te = data["tokens"][data["test"]].to(device), data["answers"][data["test"]].to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    torch.manual_seed(seed)
    history: list[dict] = []
    t0, c0 = time.perf_counter(), time.process_time()

    def evaluate(step: int, task_loss: float | None) -> None:
        model.eval()
        tr_acc, tr_loss = accuracy(model, x_tr, y_tr)
        te_acc, te_loss = accuracy(model, x_te, y_te)
        c = mean_of(closs.clusterability())
        model.train()
        history.append({"step": step, "task_loss": task_loss, "train_acc": tr_acc, "train_loss": tr_loss,
                        "test_acc": te_acc, "test_loss": te_loss, "mean_clusterability": c, "chance": chance,
                        "lam": lam, "cpu_s": time.process_time() - c0, "wall_s": time.perf_counter() - t0})
        log(f"  step {step:5d}  train acc {tr_acc:.3f}  test acc {te_acc:.3f}  test loss {te_loss:.3f}  "
            f"C {c:.3f} (chance {chance:.3f})")

    task = None  # no training step taken yet
    for step in range(steps):
        if step % eval_every == 0:
            evaluate(step, task)
        logits = model(x_tr).logits[:, -1]
        loss = torch.nn.functional.cross_entropy(logits.float(), y_tr)
        task = float(loss.detach())
        if lam > 0:
            loss = loss + lam * closs()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    evaluate(steps, task)
    model.eval()
    return {"history": history, "partition": closs.partition, "cpu_s": time.process_time() - c0,
            "wall_s": time.perf_counter() - t0}


# ------------------------------------------------------------------------------------------- analysis
def task_prompts(data: dict[str, torch.Tensor], split: str, n: int, p: int, seed: int, n_subtasks: int):
    """Clean ``[a, b, =]`` / corrupted ``[a', b, =]`` (``a' != a``) prompts from ``split``.

    Returns ``(full_task, subtasks)``: :class:`TaskPrompts` on CPU; the sub-tasks split the same prompts by
    answer range into ``n_subtasks`` groups (for the specialisation score, which needs >= 2 tasks)."""
    from circuitclust.analysis.patching.prompts import TaskPrompts

    g = torch.Generator().manual_seed(seed)
    idx = data[split][torch.randperm(data[split].numel(), generator=g)[:n]]
    clean = data["tokens"][idx]
    shift = torch.randint(1, p, (idx.numel(),), generator=g)  # a' = a + shift mod p, never a
    corrupted = clean.clone()
    corrupted[:, 0] = (clean[:, 0] + shift) % p
    ans, cans = (clean[:, 0] + clean[:, 1]) % p, (corrupted[:, 0] + corrupted[:, 1]) % p
    lengths = torch.full((idx.numel(),), 3, dtype=torch.long)
    info = {"split": split, "seed": seed}
    full = TaskPrompts("modadd", clean, lengths, corrupted, ans, cans, 0, info)
    subtasks = []
    edges = torch.linspace(0, p, n_subtasks + 1).round().long().tolist()
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = ((ans >= lo) & (ans < hi)).nonzero().squeeze(1)
        if sel.numel():
            sub = full.subset(sel)
            sub.name = f"answer_{lo}-{hi - 1}"
            subtasks.append(sub)
    return full, subtasks


def clusterability_table(model, partition, shuffles: int, seed: int) -> dict:
    """``score_model`` rows plus their mean clusterability / chance."""
    from circuitclust.analysis.clustering import score_model

    rows = score_model(model, partition, shuffles=shuffles, seed=seed)
    return {"graphs": rows, "mean_clusterability": sum(r["clusterability"] for r in rows) / len(rows),
            "mean_chance": sum(r["chance"] for r in rows) / len(rows)}


def patching(model, partition, full, subtasks, *, threshold: float, n_boot: int, seed: int,
             batch_size: int) -> dict:
    """Cluster effect matrix (mean ablation) on the task, specialisation over the answer-range sub-tasks,
    attribution agreement and unit / cluster circuits on the task (wired as in ``patching.run.analyse_model``)."""
    from circuitclust.analysis.patching.circuits import task_circuits
    from circuitclust.analysis.patching.interventions import ablation_sweep, node_masks
    from circuitclust.analysis.patching.effects import attribution_agreement, effect_matrix, specialisation_summary
    from circuitclust.analysis.patching.units import unit_layout

    layout = unit_layout(model, partition, parts=("mlp",))
    torch.manual_seed(seed)
    em = effect_matrix(model, [full], layout, "mean", "logit_diff", "layer", batch_size, n_boot, seed)
    out: dict[str, Any] = {"nodes": em.nodes, "effect": em.effect[:, 0].tolist(), "ci_low": em.ci_low[:, 0].tolist(),
                           "ci_high": em.ci_high[:, 0].tolist(), "baseline_logit_diff": em.baseline[full.name],
                           "clean_acc": float(em.per_task[0].clean_correct.float().mean())}
    if len(subtasks) >= 2:
        sem = effect_matrix(model, subtasks, layout, "mean", "logit_diff", "layer", batch_size, n_boot, seed)
        spec = specialisation_summary(sem, n_boot, seed)
        spec.pop("model_score_boot", None)
        out["specialisation"] = {"tasks": sem.tasks, "effect": sem.effect.tolist(), **spec}
    exact = ablation_sweep(model, full, layout, node_masks(layout), "resample", "logit_diff", batch_size=batch_size)
    agree = attribution_agreement(model, full, layout, "logit_diff", batch_size, exact=exact)
    out["attribution_spearman"] = agree["spearman"]
    circ = task_circuits(model, full, layout, agree["unit_attribution_mean"], agree["reference"], "logit_diff",
                         threshold, batch_size, method="mean")  # ranked by mean-ablation attribution: ablate alike
    circ.pop("units", None)
    out["circuit"] = circ
    return out


def _step(record: dict, key: str, fn: Callable[[], Any], log: Callable[[str], None]) -> Any:
    """Run one analysis step; on failure store ``{"error": ...}`` under ``key`` instead of a number."""
    t0 = time.perf_counter()
    try:
        value = fn()
    except Exception as e:  # a failed step is reported, never filled in
        record[key] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=4)}
        log(f"  {key} FAILED: {type(e).__name__}: {e}")
        return None
    record[key] = value
    record.setdefault("timing_s", {})[key] = time.perf_counter() - t0
    return value


def run_one(name: str, lam: float, args, data: dict, out: Path, device: torch.device,
            log: Callable[[str], None]) -> dict:
    """Train one model and analyse it. Returns the run's JSON-ready record."""
    from circuitclust.analysis.clustering import partition_model
    from circuitclust.runfiles import save_partition
    from circuitclust.models.loading import bridge
    from transformers import AutoTokenizer

    log(f"[{name}] training lam={lam}")
    rec: dict[str, Any] = {"lam": lam}
    hf = build_model(args.p, args.layers, args.d_model, args.d_mlp, args.heads, args.seed)
    tr = train(hf, data, steps=args.steps, lr=args.lr, weight_decay=args.weight_decay, lam=lam, k=args.k,
               device=device, eval_every=args.eval_every, seed=args.seed, log=log)
    rec["history"] = tr["history"]
    rec["final"] = tr["history"][-1]
    rec["train_cpu_s"], rec["train_wall_s"] = tr["cpu_s"], tr["wall_s"]
    run_dir = out / name
    hf.save_pretrained(run_dir / "model")
    make_tokenizer(args.p).save_pretrained(run_dir / "model")
    # the bridge reads the tokenizer's init kwargs (name_or_path): give it the saved, reloaded one
    tok = AutoTokenizer.from_pretrained(str(run_dir / "model"))
    save_partition(tr["partition"], run_dir)
    with torch.no_grad():
        ref = answer_logits(hf, data["tokens"][data["test"][:64]].to(device))
    model = bridge(hf, tok, "gpt2", device)
    with torch.no_grad():
        rec["bridge_max_abs_diff"] = float((answer_logits(model, data["tokens"][data["test"][:64]].to(device))
                                            - ref).abs().max())
    log(f"[{name}] clusterability (shuffles={args.shuffles})")
    _step(rec, "clusterability_train_partition",
          lambda: clusterability_table(model, tr["partition"], args.shuffles, args.seed), log)
    spectral = _step(rec, "spectral_partition",
                     lambda: partition_model(model, k=args.k, parts=("mlp",), method="spectral", seed=args.seed,
                                                     balance=args.balance),
                     log)
    rec["spectral_partition"] = None if spectral is None else {"provenance": spectral.provenance}
    if spectral is not None:
        save_partition(spectral, run_dir / "spectral_partition.json")
        _step(rec, "clusterability_spectral",
              lambda: clusterability_table(model, spectral, args.shuffles, args.seed), log)
    full, subtasks = task_prompts(data, args.patch_split, args.patch_prompts, args.p, args.seed, args.subtasks)
    rec["patch_prompts"] = {"split": args.patch_split, "n": len(full), "subtasks": [s.name for s in subtasks]}
    kw = dict(threshold=args.threshold, n_boot=args.n_boot, seed=args.seed, batch_size=args.batch_size)
    if "train" in args.patch_partitions:
        log(f"[{name}] patching + circuits (training partition)")
        _step(rec, "patching_train_partition", lambda: patching(model, tr["partition"], full, subtasks, **kw), log)
    if "spectral" in args.patch_partitions and spectral is not None:
        log(f"[{name}] patching + circuits (spectral partition)")
        _step(rec, "patching_spectral", lambda: patching(model, spectral, full, subtasks, **kw), log)
    return rec


# --------------------------------------------------------------------------------------------- report
def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return "nan" if math.isnan(x) else f"{x:.{nd}f}"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_fmt(v, nd) for v in x) + "]"
    return str(x)


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def _cluster_line(tab: Any) -> str:
    if not isinstance(tab, dict) or "graphs" not in tab:
        return "error" if isinstance(tab, dict) and "error" in tab else "-"
    zs = [r["z"] for r in tab["graphs"] if r["z"] is not None]
    ps = [r["p"] for r in tab["graphs"] if r["p"] is not None]
    s = f"{tab['mean_clusterability']:.3f} (chance {tab['mean_chance']:.3f}"
    if zs:
        s += f", z {min(zs):.1f}..{max(zs):.1f}, p<={max(ps):.3f}"
    return s + ")"


def summary_table(results: dict) -> str:
    """The markdown table of the headline numbers, one column per run."""
    runs = results["runs"]
    names = list(runs)
    rows = [
        ("train acc", lambda r: _fmt(_get(r, "final", "train_acc"))),
        ("test acc", lambda r: _fmt(_get(r, "final", "test_acc"))),
        ("C, training blocks (mean over MLP graphs)", lambda r: _cluster_line(r.get("clusterability_train_partition"))),
        ("C, fresh spectral partition", lambda r: _cluster_line(r.get("clusterability_spectral"))),
    ]
    for key, label in (("patching_train_partition", "blocks"), ("patching_spectral", "spectral")):
        rows += [
            (f"[{label}] clean logit diff / acc on patch prompts",
             lambda r, k=key: f"{_fmt(_get(r, k, 'baseline_logit_diff'), 2)} / {_fmt(_get(r, k, 'clean_acc'))}"),
            (f"[{label}] circuit: units (fraction)",
             lambda r, k=key: f"{_fmt(_get(r, k, 'circuit', 'circuit_size'))} / "
                              f"{_fmt(_get(r, k, 'circuit', 'n_units_total'))} "
                              f"({_fmt(_get(r, k, 'circuit', 'fraction'))})"),
            (f"[{label}] circuit: share in largest cluster",
             lambda r, k=key: _fmt(_get(r, k, "circuit", "share_largest_cluster"))),
            (f"[{label}] cluster circuit: clusters (fraction)",
             lambda r, k=key: f"{_fmt(_get(r, k, 'circuit', 'cluster_circuit_size'))} "
                              f"({_fmt(_get(r, k, 'circuit', 'cluster_circuit_fraction'))})"),
            (f"[{label}] specialisation (chance max-share)",
             lambda r, k=key: f"{_fmt(_get(r, k, 'specialisation', 'model_score'))} "
                              f"CI {_fmt(_get(r, k, 'specialisation', 'model_score_ci'))} "
                              f"({_fmt(_get(r, k, 'specialisation', 'chance_max_share'))})"),
            (f"[{label}] attribution vs exact patching (Spearman)",
             lambda r, k=key: _fmt(_get(r, k, "attribution_spearman"))),
        ]
    head = "| measure | " + " | ".join(f"{n} (lam={runs[n]['lam']})" for n in names) + " |"
    lines = [head, "|" + "---|" * (len(names) + 1)]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fn(runs[n]) for n in names) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", default="runs/modular_addition", help="output folder")
    ap.add_argument("--p", type=int, default=113, help="modulus")
    ap.add_argument("--train-frac", type=float, default=0.3, help="fraction of all pairs used for training")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split")
    ap.add_argument("--seed", type=int, default=0, help="model init, training, partition and patching seed")
    ap.add_argument("--steps", type=int, default=100, help="full-batch training steps per run")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1.0)
    ap.add_argument("--lam", type=float, default=5.0, help="clusterability-loss weight of the second run")
    ap.add_argument("--k", type=int, default=4, help="clusters")
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-mlp", type=int, default=512)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--shuffles", type=int, default=99, help="shuffle-null size for clusterability (99: p can reach "
                    "0.01)")
    ap.add_argument("--balance", type=float, default=0.5, help="the fresh spectral partition keeps every cluster at "
                    "least this share of n/k units per side (0 = k-means as it is)")
    ap.add_argument("--patch-split", choices=("train", "test"), default="train",
                    help="which split the patching prompts come from")
    ap.add_argument("--patch-prompts", type=int, default=256)
    ap.add_argument("--patch-partitions", type=lambda v: tuple(x for x in v.split(",") if x),
                    default=("train", "spectral"), help="comma-separated partitions to patch by: train (the loss's blocks), spectral (fresh)")
    ap.add_argument("--subtasks", type=int, default=4, help="answer-range sub-tasks for specialisation")
    ap.add_argument("--threshold", type=float, default=0.8, help="circuit faithfulness threshold")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=256, help="patching batch size")
    ap.add_argument("--device", default=None, help="cpu / cuda (default: cuda when available)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None, log: Callable[[str], None] = print) -> dict:
    """Run both trainings and analyses; write ``results.json`` and ``results.md`` into ``--out``. Returns
    the results dict."""
    from circuitclust.models.loading import default_device

    args = parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    argv_used = sys.argv[1:] if argv is None else list(argv)
    t0, c0 = time.perf_counter(), time.process_time()
    data = make_data(args.p, args.train_frac, args.data_seed)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "command": "python analyses/modular_addition.py " + " ".join(shlex.quote(a) for a in argv_used),
        "settings": vars(args) | {"device": str(device)},
        "seeds": {"data_split": args.data_seed, "model_init_training_partition_patching": args.seed},
        "data": {"p": args.p, "n_pairs": args.p ** 2, "n_train": int(data["train"].numel()),
                 "n_test": int(data["test"].numel())},
        "machine": {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                    "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None},
        "runs": {},
    }
    for name, lam in (("base", 0.0), ("clustered", args.lam)):
        try:
            results["runs"][name] = run_one(name, lam, args, data, out, device, log)
        except Exception as e:  # a failed run is reported with its error, never with made-up numbers
            results["runs"][name] = {"lam": lam, "error": f"{type(e).__name__}: {e}",
                                     "traceback": traceback.format_exc(limit=6)}
            log(f"[{name}] FAILED: {type(e).__name__}: {e}")
    results["total_wall_s"] = time.perf_counter() - t0
    results["total_cpu_s"] = time.process_time() - c0
    table = summary_table(results)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    (out / "results.md").write_text(f"# Modular addition (p = {args.p})\n\n`{results['command']}`\n\n{table}\n\n"
                                    f"wall {results['total_wall_s']:.0f} s, CPU {results['total_cpu_s']:.0f} s "
                                    f"on {device}\n")
    log(table)
    log(f"wall {results['total_wall_s']:.0f} s, CPU {results['total_cpu_s']:.0f} s; wrote {out / 'results.json'}")
    return results


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
