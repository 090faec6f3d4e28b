"""Clusterability fine-tuning: causal-LM loss + ``lam * (1 - C)`` over the regularised matrices (+ optional
KL to the frozen base model), with held-out evaluation, atomic HF checkpoints, exact resume and DDP.

One :class:`~.options.FinetuneConfig` holds every option (the CLI's options and defaults are generated from it)
and is saved with the run. :func:`finetune` reads in one sitting: :func:`_setup` builds everything a step needs
(:class:`_Run`), then the loop calls :func:`_train_step`, :func:`_evaluate` and :func:`_save_checkpoint`; the
capability budget's decisions (its control text, lambda's dual ascent, the final model's choice) are
:mod:`.budget`'s.

RUN_DIR layout (written through ``circuitclust.runfiles``): ``run_config.json``, ``partition.json`` /
``.safetensors``, ``metrics.jsonl`` (one JSON per evaluation, step 0 = the base model), ``checkpoints/step-N/``
(``save_pretrained`` + tokenizer + ``trainer_state.pt``), ``final/``.

Exact resume: the batch order is a function of the step (see :mod:`.batches`), and a checkpoint holds the
optimizer, scheduler, every process's RNG state and the metric accumulators, so a killed run resumed
from step ``k`` retraces an uninterrupted one.

DDP (``torchrun``/``accelerate launch``): each process trains on its own slice of every global batch;
weights are replicated, so each process's clusterability term is already the global value and DDP's
gradient averaging leaves its gradient unchanged; task loss and perplexity sums are all-reduced.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ...core.measures import normalised_clusterability
from ...core.partition import ModelPartition
from ...data import BUNDLED_CORPORA, corpus_texts, other_domain, token_blocks
from ...errors import OptionError, RunFolderError
from ...models.adapter import adapter_for
from ...models.graphs import weight_graphs
from ...runfiles import (
    append_metrics,
    check_output_folder,
    checkpoint_folder,
    checkpoint_steps,
    copy_model_folder,
    is_run_folder,
    load_checkpoint_state,
    load_partition,
    mark_run_folder,
    prune_checkpoints,
    remove_run_folder,
    run_kind,
    save_model_folder,
    save_partition,
    trim_metrics,
    write_finetune_config,
)
from ..clustering.permute import permute_contiguous
from .batches import batch_indices
from .budget import best_step, budget_record, budget_slack, consider_for_final, control_split, new_state, next_scale
from .options import FinetuneConfig, lam_at
from .generated_text import GENERATED, GenerationOptions, generated_texts
from .objectives import heldout_kl, heldout_perplexity, lm_loss, token_kl
from .processes import Dist, rng_state, set_rng_state, setup_dist
from .regulariser import ClusterabilityLoss, make_partition, mean_of


# ------------------------------------------------------------------------------------------------- setup
def _load_config(out: Path, cfg: FinetuneConfig) -> FinetuneConfig:
    """On --resume the stored options win, except ``steps`` (extend a run) and ``device``."""
    path = out / "run_config.json"
    try:
        stored = json.loads(path.read_text())["config"]
        names = {f.name for f in fields(FinetuneConfig)}
        merged = {k: v for k, v in stored.items() if k in names}
        merged["graphs"] = tuple(merged["graphs"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunFolderError(f"{path} is damaged ({type(e).__name__}): it cannot be resumed; pass --overwrite "
                             "to start the run again") from None
    merged["steps"], merged["device"] = cfg.steps, cfg.device
    resumed = FinetuneConfig(**merged)
    # options given for this call (not left at their defaults) that the stored run overrides
    ignored = [f"{f.name}={getattr(cfg, f.name)!r} (the run has {getattr(resumed, f.name)!r})"
               for f in fields(FinetuneConfig)
               if f.name not in ("out", "steps", "device") and getattr(cfg, f.name) != getattr(resumed, f.name)
               and getattr(cfg, f.name) != f.default]
    if ignored and int(os.environ.get("RANK", "0")) == 0:
        print(f"finetune: resuming {out} with its own options; ignoring {', '.join(ignored)}", flush=True)
    return resumed


def _check_folder(out: Path, resume: bool, overwrite: bool) -> bool:
    """Whether ``out`` may take this run; True when an old run there must be deleted first (``overwrite``).
    A new run needs a new or empty folder (or ``overwrite`` of an old run); ``resume`` needs a fine-tuning
    run folder (or a new or empty one, which starts the run). Only reads: every process checks alike."""
    if resume and overwrite:
        raise OptionError("--resume continues the run in --out and --overwrite deletes it: pass only one")
    run_here = is_run_folder(out)
    if run_here and overwrite:
        check_output_folder(out, overwrite=True, kind="finetune")
        return True
    if run_here and resume:
        if not (out / "run_config.json").is_file() and run_kind(out) != "finetune":
            raise RunFolderError(f"{out} holds no fine-tuning run to resume (no run_config.json): pass "
                                 "--overwrite to start one there, or choose a new --out")
        return False
    if run_here:
        raise RunFolderError(f"{out} already holds a run: pass --resume to continue it, --overwrite to replace "
                             "it, or choose a new --out")
    check_output_folder(out, overwrite=False)
    return False


def _trainable(hf, cfg: FinetuneConfig, closs: ClusterabilityLoss) -> list[torch.nn.Parameter]:
    if cfg.train == "all":
        return list(hf.parameters())
    if cfg.train == "mlp":  # the MLP biases travel with their matrices
        names = {g.param_name for g in weight_graphs(hf, parts=("mlp",))}
        names |= {n[: -len("weight")] + "bias" for n in names if n.endswith(".weight")}
    else:
        names = {g.param_name for g in closs.graphs}
    chosen = [p for n, p in hf.named_parameters() if n in names]
    for p in hf.parameters():
        p.requires_grad_(False)
    for p in chosen:
        p.requires_grad_(True)
    return chosen


def _new_partition(hf, cfg: FinetuneConfig, **provenance: Any) -> ModelPartition:
    """The fixed partition of the regularised matrices: made on the current weights by every process alike
    (deterministic in the seed), so no process has to read another's."""
    part = make_partition(hf, cfg.partition, cfg.k, cfg.graphs, cfg.seed, balance=cfg.balance)
    part.provenance.update(model=cfg.model, seed=cfg.seed, **provenance)
    return part


@dataclass
class _Run:
    """Everything a training step, an evaluation and a checkpoint need, built once by :func:`_setup`."""

    cfg: FinetuneConfig
    d: Dist
    out: Path
    hf: Any
    tok: Any
    model: Any                   # hf, or its DDP wrapper
    teacher: Any | None
    closs: ClusterabilityLoss
    part: ModelPartition | None  # None until the warm-up ends
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    sched: Any
    train_blocks: torch.Tensor
    eval_blocks: dict[str, torch.Tensor]
    acc: dict[str, Any]          # metric accumulators since the last evaluation (saved with checkpoints)
    start: int
    chance: float
    control_blocks: dict[str, torch.Tensor]  # the budget's control text (empty without a budget)
    # lambda multiplier of the budget's dual ascent, the base model's control and held-out figures and the
    # last control estimate (saved with checkpoints)
    budget: dict[str, Any]

    @property
    def tokens_per_step(self) -> int:
        c = self.cfg
        return c.batch_size * c.grad_accum * self.d.world * c.seq_len

    def autocast(self):
        dtype = self.cfg.compute_dtype(self.d.device)
        return torch.autocast(self.d.device.type, dtype=dtype, enabled=dtype != torch.float32)


def _texts(cfg: FinetuneConfig, train_texts, eval_texts) -> tuple[list[str] | None, dict[str, list[str]]]:
    """Training texts (None for ``--data generated``: they need the loaded base model, see
    :func:`_generated`), and held-out texts of the training corpus and of the other bundled domain(s)."""
    if train_texts is not None:
        texts = train_texts
    elif cfg.data == GENERATED:
        texts = None
    else:
        texts = corpus_texts(cfg.data, "train")
    if eval_texts is None:
        eval_texts = {} if cfg.data == GENERATED else \
            {cfg.data if cfg.data in BUNDLED_CORPORA else "heldout": corpus_texts(cfg.data, "heldout")}
        eval_texts.update({dom: corpus_texts(dom, "heldout") for dom in other_domain(cfg.data)})
    return texts, eval_texts


def _generated(cfg: FinetuneConfig, base, tok) -> list[str]:
    """``--data generated``: the cached texts of the base model (already loaded, on the training device)."""
    return generated_texts(base, tok, GenerationOptions(n_texts=cfg.gen_texts, new_tokens=cfg.gen_tokens),
                           progress=int(os.environ.get("RANK", "0")) == 0)


def _setup(cfg: FinetuneConfig, resume: bool, overwrite: bool, train_texts, eval_texts) -> _Run:
    """Claim the run folder, load the model (or the checkpoint to resume), the data, the partition, the loss
    and the optimizer; write ``run_config.json`` for a new run."""
    from ...models.loading import check_spec, load_hf

    out = Path(cfg.out)
    check_spec(cfg.model)
    d = setup_dist(cfg.device)
    delete_old = _check_folder(out, resume, overwrite)  # every process, so all fail alike on a bad folder
    d.barrier()
    if delete_old and d.rank == 0:
        remove_run_folder(out, kind="finetune")
    d.barrier()
    if resume and (out / "run_config.json").is_file():
        cfg = _load_config(out, cfg)
    have = checkpoint_steps(out)
    start = have[-1] if resume and have else 0
    if resume and d.rank == 0 and not have:
        print(f"finetune: {out} has no checkpoint yet: starting the run from step 0", flush=True)
    ckpt = checkpoint_folder(out, start) if start else None
    texts, eval_texts = _texts(cfg, train_texts, eval_texts)  # a bad --data fails before the model loads

    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    hf, tok, _ = load_hf(str(ckpt) if ckpt else cfg.model)
    max_len = adapter_for(hf).n_ctx
    if max_len is not None and cfg.seq_len > max_len:
        raise OptionError(f"--seq-len {cfg.seq_len} is longer than the model's context ({max_len} tokens)")
    teacher = None
    if cfg.distill > 0 or cfg.max_kl > 0:
        teacher = (load_hf(cfg.model)[0] if ckpt else copy.deepcopy(hf))
        teacher = teacher.to(d.device, cfg.compute_dtype(d.device)).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    hf.to(d.device)
    hf.train(cfg.dropout)
    if texts is None:  # the base model: the teacher, the model itself before training, or loaded once more
        base = teacher if teacher is not None else hf if not ckpt else load_hf(cfg.model)[0].to(d.device)
        texts = _generated(cfg, base, tok)
    train_blocks = token_blocks(texts, tok, cfg.seq_len)
    eval_blocks = {name: token_blocks(t, tok, cfg.seq_len)[: cfg.eval_blocks] for name, t in eval_texts.items()}
    train_blocks, control_blocks = control_split(cfg, tok, train_blocks, own_corpus=train_texts is None)

    # The partition is fixed: loaded on resume, made now, or (spectral warm-up) made when the warm-up ends.
    # Until then the loss is unused (lambda is 0) and equal blocks stand in for the clusterability shown.
    part = None
    if ckpt and start >= cfg.partition_warmup:
        part = load_partition(out).to(d.device)
    elif not ckpt and cfg.partition_warmup == 0:
        part = _new_partition(hf, cfg)
        if cfg.permute:
            part = permute_contiguous(hf, part)
            part.provenance.update(model=cfg.model, seed=cfg.seed)
        if d.rank == 0:
            # the folder's first file: marked first, so a run killed before its config is written resumes
            mark_run_folder(out, "finetune")
            save_partition(part, out)
        part = part.to(d.device)
    shown = part if part is not None else make_partition(hf, "blocks", cfg.k, cfg.graphs, cfg.seed)
    closs = ClusterabilityLoss(hf, shown, graphs=cfg.graphs, reduction=cfg.loss_reduction)

    params = _trainable(hf, cfg, closs)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / cfg.lr_warmup) if cfg.lr_warmup > 0 else 1.0)
    acc = {"task": 0.0, "kl": 0.0, "n": 0, "tokens_window": 0, "time": 0.0}
    budget = new_state(cfg)
    if ckpt:
        state = load_checkpoint_state(ckpt)
        budget.update(state.get("budget") or {})
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        acc = state["accumulators"]
        rngs = state["rng"]
        set_rng_state(rngs[d.rank] if len(rngs) == d.world else rngs[0])
    model = hf
    if d.on:
        model = torch.nn.parallel.DistributedDataParallel(
            hf, device_ids=[d.device] if d.device.type == "cuda" else None)
    run = _Run(cfg, d, out, hf, tok, model, teacher, closs, part, params, opt, sched, train_blocks, eval_blocks,
               acc, start, mean_of(closs.chance()), control_blocks, budget)
    if cfg.budgeted and budget["base_control"] is None:
        budget["base_control"] = budget["control"] = _control_estimate(run)
    if d.rank == 0:
        if not ckpt:
            trim_metrics(out, None)  # a run killed before its first checkpoint starts over
            mark_run_folder(out, "finetune")
            write_finetune_config(out, asdict(cfg), seed=cfg.seed, model=cfg.model, world_size=d.world,
                                  device=str(d.device), torch=torch.__version__, train_blocks=len(train_blocks),
                                  eval_blocks={k: len(v) for k, v in eval_blocks.items()},
                                  control_blocks={k: len(v) for k, v in control_blocks.items()})
        else:
            trim_metrics(out, start)  # drop evaluations logged after the checkpoint we resume from
    return run


def _lam(r: _Run, step: int) -> float:
    """Lambda at (0-based) ``step``: the schedule's value times the budget controller's current multiplier."""
    return lam_at(r.cfg, step) * r.budget["scale"]


def _control_estimate(r: _Run) -> dict[str, dict[str, float]]:
    """Perplexity (and, with a KL budget, ``KL(base || model)``) of the current model on the control text."""
    est = {"ppl": {name: heldout_perplexity(r.hf, b, r.cfg.batch_size, r.d, r.autocast)
                   for name, b in r.control_blocks.items()}}
    if r.cfg.max_kl > 0:
        est["kl"] = {name: heldout_kl(r.hf, r.teacher, b, r.cfg.batch_size, r.d, r.autocast)
                     for name, b in r.control_blocks.items()}
    return est


def _update_lambda(r: _Run, step: int) -> None:
    """Measure the model on the control text after ``step`` steps and move lambda's multiplier by one step of
    the budget's dual ascent (:func:`.budget.next_scale`)."""
    est = _control_estimate(r)
    r.budget["scale"] = next_scale(r.cfg, r.budget["scale"], budget_slack(r.cfg, est, r.budget["base_control"]))
    r.budget["control"], r.budget["control_step"] = est, step


def _end_warmup(r: _Run, step: int) -> None:
    """Freeze the spectral partition on the weights after ``step`` task-only steps."""
    part = _new_partition(r.hf, r.cfg, after_steps=step)
    if r.d.rank == 0:
        save_partition(part, r.out)
    r.part = part.to(r.d.device)
    r.closs.set_partition(r.part)
    r.chance = mean_of(r.closs.chance())


# -------------------------------------------------------------------------------- step, eval, checkpoint
def _train_step(r: _Run, step: int) -> tuple[float, float | None]:
    """One optimizer step (``grad_accum`` micro-batches). Returns the last micro-batch's task loss and the
    mean clusterability the step saw (None when the loss was off)."""
    cfg, d = r.cfg, r.d
    t0 = time.perf_counter()
    lam = _lam(r, step)
    shown_c = None
    for m in range(cfg.grad_accum):
        first = ((step * cfg.grad_accum + m) * d.world + d.rank) * cfg.batch_size
        x = r.train_blocks[batch_indices(len(r.train_blocks), cfg.seed, first, cfg.batch_size)].to(d.device)
        sync = contextlib.nullcontext() if not d.on or m == cfg.grad_accum - 1 else r.model.no_sync()
        with sync:
            with r.autocast():
                logits = r.model(input_ids=x).logits
            task = lm_loss(logits, x)
            loss = task / cfg.grad_accum
            if r.teacher is not None:
                with torch.no_grad(), r.autocast():
                    t_logits = r.teacher(input_ids=x).logits
                kl = token_kl(logits, t_logits)
                loss = loss + cfg.distill * kl / cfg.grad_accum
                r.acc["kl"] += float(kl.detach())
            if cfg.regulariser == "loss" and lam > 0 and m == cfg.grad_accum - 1:  # once per step, synced pass
                per_c = r.closs.per_graph()
                loss = loss + lam * r.closs.reduce(per_c)
                shown_c = float(per_c.detach().mean())
            loss.backward()
        r.acc["task"] += float(task.detach())
        r.acc["n"] += 1
    if cfg.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(r.params, cfg.max_grad_norm)
    r.opt.step()
    if cfg.regulariser == "decay" and lam > 0:  # every process shrinks its replica alike
        r.closs.shrink_off_cluster_(min(r.sched.get_last_lr()[0] * lam, 0.5))
        with torch.no_grad():
            shown_c = float(r.closs.per_graph().mean())
    r.sched.step()
    r.opt.zero_grad(set_to_none=True)
    r.acc["time"] += time.perf_counter() - t0
    r.acc["tokens_window"] += r.tokens_per_step // d.world
    return float(task.detach()), shown_c


def _evaluate(r: _Run, step: int, stopped_by_time: bool = False) -> dict[str, Any]:
    """Held-out perplexity per domain and clusterability after ``step`` steps, appended to metrics.jsonl;
    resets the accumulators."""
    cfg, d, acc = r.cfg, r.d, r.acc
    task, kl, n = d.sum([acc["task"], acc["kl"], float(acc["n"])])
    per = r.closs.clusterability()
    norm = normalised_clusterability(torch.tensor(list(per.values())), torch.tensor(list(r.closs.chance().values())))
    rec = {"step": step, "tokens": step * r.tokens_per_step, "task_loss": task / n if n else None,
           "lam": _lam(r, step - 1) if step else 0.0,
           "mean_clusterability": mean_of(per), "chance": r.chance, "clusterability": per,
           "mean_clusterability_norm": float(norm.nanmean()),
           "heldout_ppl": {name: heldout_perplexity(r.hf, b, cfg.batch_size, d, r.autocast)
                           for name, b in r.eval_blocks.items()},
           "tokens_per_s": acc["tokens_window"] * d.world / acc["time"] if acc["time"] > 0 else None,
           "partition": "ready" if r.part is not None else "warm-up"}
    if step == 0:
        r.budget["base_heldout"] = dict(rec["heldout_ppl"])
    base = r.budget["base_heldout"]
    if base:  # relative to the base model (step 0), the figure a capability budget is stated in
        rec["heldout_ppl_increase"] = {k: v / base[k] - 1.0 for k, v in rec["heldout_ppl"].items() if k in base}
    if cfg.budgeted:
        if step > 0 and r.budget.get("control_step") != step:  # judge this model, not one a few steps back
            r.budget["control"], r.budget["control_step"] = _control_estimate(r), step
        rec["budget"] = budget_record(cfg, r.budget, rec)
        consider_for_final(cfg, r.budget, rec)
    if stopped_by_time:  # the safety cap ended the run before --steps
        rec["time_budget_hit"] = True
    if r.teacher is not None:
        rec["kl"] = kl / n if n else None
    if d.rank == 0:
        append_metrics(r.out, rec)
    acc.update(task=0.0, kl=0.0, n=0, tokens_window=0, time=0.0)
    return rec


def _save_checkpoint(r: _Run, step: int) -> None:
    """The model, tokenizer, optimizer, scheduler, accumulators and every process's RNG state at ``step``."""
    rngs: list[Any] = [None] * r.d.world
    if r.d.on:
        dist.all_gather_object(rngs, rng_state())
    else:
        rngs = [rng_state()]
    if r.d.rank == 0:
        state = {"step": step, "optimizer": r.opt.state_dict(), "scheduler": r.sched.state_dict(),
                 "rng": rngs, "accumulators": dict(r.acc), "world_size": r.d.world, "budget": dict(r.budget)}
        save_model_folder(checkpoint_folder(r.out, step), r.hf, r.tok, state)
        prune_checkpoints(r.out, r.cfg.keep_checkpoints, protect=best_step(r.budget))
    r.d.barrier()


def _write_final(r: _Run, last: dict[str, Any]) -> dict[str, Any]:
    """Write ``final/`` (process 0): the current model, or with ``--final in-budget`` the chosen evaluation's
    model (its checkpoint, or the base model for step 0), whose record is then appended to metrics.jsonl marked
    ``final``. Returns the record of the model written (every process alike)."""
    from ...models.loading import load_hf

    best = r.budget.get("best") if r.cfg.final == "in-budget" else None
    end = last.get("step", r.start)
    rec = last if best is None else {**best["record"], "final": {"selection": "in-budget", "last_step": end}}
    if r.d.rank != 0:
        return rec
    if best is None or best["step"] == end:
        save_model_folder(r.out / "final", r.hf, r.tok)
    elif best["step"] == 0:
        save_model_folder(r.out / "final", load_hf(r.cfg.model)[0], r.tok)
    else:
        copy_model_folder(checkpoint_folder(r.out, best["step"]), r.out / "final")
    if best is not None:
        append_metrics(r.out, rec)
    if r.cfg.final == "in-budget" and best is None:
        print("finetune: no evaluation kept the budget on the control text: final/ holds the last model",
              flush=True)
    elif best is not None and best["step"] != end:
        print(f"finetune: final/ holds the model of step {best['step']}, the most clusterable one inside the "
              f"budget on the control text (the run went on to step {end}, kept in checkpoints/)", flush=True)
    return rec


# ------------------------------------------------------------------------------------------------- loop
def finetune(cfg: FinetuneConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True,
             train_texts: list[str] | None = None, eval_texts: dict[str, list[str]] | None = None,
             stop_at: int | None = None) -> dict[str, Any]:
    """Run (or resume) a clusterability fine-tuning into ``cfg.out``; returns the last metrics record.

    ``cfg.out`` must be new or empty, unless ``resume`` (continue the run there, or start it if there is
    none) or ``overwrite`` (delete the run there first). ``train_texts``/``eval_texts`` override the corpora
    named by ``cfg.data`` (tests). ``stop_at`` ends the run after that many steps without writing
    ``final/``, as if it had been killed there.
    """
    from tqdm.auto import tqdm

    r = _setup(cfg, resume, overwrite, train_texts, eval_texts)
    cfg, d = r.cfg, r.d
    last: dict[str, Any] = _evaluate(r, 0) if r.start == 0 else {}
    save_every = cfg.save_every or cfg.eval_every
    deadline = time.monotonic() + cfg.max_minutes * 60 if cfg.max_minutes > 0 else None
    bar = tqdm(total=cfg.steps, initial=r.start, disable=not progress or d.rank != 0, dynamic_ncols=True,
               desc="finetune" if deadline is None else f"finetune (stops at {cfg.max_minutes:g} min)")
    shown_c = mean_of(r.closs.clusterability())
    loop_t0 = time.monotonic()
    for step in range(r.start, cfg.steps):
        if r.part is None and step >= cfg.partition_warmup:
            _end_warmup(r, step)
        task, c = _train_step(r, step)
        shown_c = c if c is not None else shown_c
        done = step + 1
        if cfg.budgeted and done % cfg.budget_every == 0 and done >= cfg.partition_warmup:
            _update_lambda(r, done)
        bar.update(1)
        bar.set_postfix(loss=f"{task:.3f}", C=f"{shown_c:.3f}",
                        tok_s=f"{r.acc['tokens_window'] * d.world / max(r.acc['time'], 1e-9):.0f}")
        # Every rank must take the same decision, so the deadline is agreed by a sum over ranks.
        out_of_time = deadline is not None and d.sum([float(time.monotonic() >= deadline)])[0] > 0
        if done % cfg.eval_every == 0 or done == cfg.steps or out_of_time:
            last = _evaluate(r, done, stopped_by_time=out_of_time and done < cfg.steps)
            shown_c = last["mean_clusterability"]
        if done % save_every == 0 or done == cfg.steps or out_of_time or best_step(r.budget) == done:
            _save_checkpoint(r, done)
        if out_of_time:
            if d.rank == 0:
                bar.write(f"finetune: time budget of {cfg.max_minutes:g} min reached after {done} of {cfg.steps} "
                          "steps: the run stopped early (see time_budget_hit in metrics.jsonl)")
            break
        if stop_at is not None and done >= stop_at:
            bar.close()
            return last
        if deadline is not None:
            # The time cap, not --steps, bounds this run when it bites first: show the steps it allows at the
            # pace so far (evaluations and checkpoints included), so the bar's estimate is truthful.
            pace = (time.monotonic() - loop_t0) / (done - r.start)
            reachable = done + int(max(deadline - time.monotonic(), 0.0) / pace) + 1
            if min(cfg.steps, reachable) != bar.total:
                bar.total = min(cfg.steps, reachable)
                bar.refresh()
    bar.close()
    last = _write_final(r, last)
    if d.rank == 0 and last.get("budget") and not last["budget"]["held"]:
        print(f"finetune: the capability budget did not hold at the end (see 'budget' in {r.out}/metrics.jsonl): "
              "lower --lam or --lr, or raise --steps so that lambda has time to adapt", flush=True)
    d.barrier()
    return last


__all__ = ["finetune"]
