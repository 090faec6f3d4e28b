"""Ablations through TransformerBridge hooks: zero, mean or counterfactual values on exactly the chosen units.

An ablation is a ``[n_dims]`` bool mask over the global dims of a :class:`~.units.UnitLayout` (True =
replace). Only the hook points whose slots have a True dim get a hook. Replacement values:

- ``zero``: 0.
- ``mean``: the per-position mean activation over a reference set (:func:`mean_activations`; positions past
  every reference prompt take the mean over all real positions). Position-wise means keep position-specific
  activations (the first token's huge "attention sink" values) out of the other positions. The analyses pass
  a reference set disjoint from the evaluated prompts (``circuitclust.analysis.patching.prompts.sample_task``), so the
  replacement carries no information about the prompts being scored.
- ``counterfactual`` (also accepted as ``resample``, its earlier name): the activation of the paired
  corrupted prompt at the same position (interchange intervention, MIB's "patching"; needs
  ``TaskPrompts.corrupted``), cached by one extra forward pass per batch.

Units of one cluster are exactly the dims labelled with that cluster in the partition's ``mlp.{l}`` /
``attn.{l}`` space, one layer at a time (:func:`node_masks`) or in all layers at once
(:func:`cluster_masks`).

Speed (the forward pass is the whole cost of exact patching): every metric evaluation goes through
:func:`metric_logits`, which unembeds only the distinct last prompt positions (HF's ``logits_to_keep``;
Gemma's 262k-token unembedding of every position was ~60% of a forward), and :func:`ablation_sweep` stacks
several ablation sets along the batch axis (one copy of the prompt batch per set, a per-row mask in the
hooks, at most ``max_rows`` rows per forward). Passes that only need activations stop as soon as the last
requested hook fired.
"""
from __future__ import annotations

from enum import Enum
from typing import Callable, Iterable

import torch

from ...errors import CircuitclustError, check_choice
from ...models.graphs import model_device
from .metrics import logits_at, task_metric, top1_correct
from .prompts import TaskPrompts
from .units import UnitLayout

class Ablation(str, Enum):
    """How an ablated dim is replaced (the one ablation type of interventions, patching and circuits). A
    ``str`` enum: ``Ablation.MEAN == "mean"``, and it is written to JSON as its value."""

    ZERO = "zero"
    MEAN = "mean"
    COUNTERFACTUAL = "counterfactual"
    RESAMPLE = "counterfactual"  # the earlier name of the same ablation (an alias member)

    @classmethod
    def _missing_(cls, value):
        return cls.COUNTERFACTUAL if value == "resample" else None

    @classmethod
    def parse(cls, value: "Ablation | str", name: str = "method") -> "Ablation":
        """``value`` as an :class:`Ablation` (``"resample"`` reads as ``counterfactual``);
        :class:`~circuitclust.errors.OptionError` naming ``name`` otherwise."""
        return cls(check_choice(name, value, [*METHODS, "resample"]))


METHODS = tuple(a.value for a in Ablation)


def flat(act: torch.Tensor) -> torch.Tensor:
    """``[b, T, ...]`` -> ``[b, T, n]`` (``hook_z``'s heads x head dims flattened head-major)."""
    return act.reshape(act.shape[0], act.shape[1], -1)


def cache_activations(model, tokens: torch.Tensor, hooks: Iterable[str], logits: bool = True,
                      keep: Callable[[torch.Tensor], torch.Tensor] = flat
                      ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """One forward pass caching only ``hooks``. Returns ``(logits [b, T, V], {hook: keep(act)})``, by default
    ``{hook: [b, T, n]}`` (``keep`` may select positions, so only those are stored); ``logits=False`` stops
    the pass once every hook fired and returns ``(None, {...})`` (the cheapest way to get activations: no
    later blocks, no unembedding)."""
    from transformer_lens.model_bridge.exceptions import StopAtLayerException

    store: dict[str, torch.Tensor] = {}
    hooks = list(dict.fromkeys(hooks))

    def keeper(name):  # hook.name is the canonical point name, which may differ from the alias asked for
        def store_act(act, hook):
            store[name] = keep(act).detach()
            if not logits and len(store) == len(hooks):
                raise StopAtLayerException(act)  # run_with_hooks catches it and returns early
        return store_act

    out = model.run_with_hooks(tokens, fwd_hooks=[(h, keeper(h)) for h in hooks])
    missing = [h for h in hooks if h not in store]
    if missing:
        raise CircuitclustError(f"hook points {missing} did not fire: this model's bridge lacks them")
    return (out if logits else None), store


def metric_logits(model, batch: TaskPrompts, tokens: torch.Tensor | None = None, fwd_hooks: Iterable = (),
                  full_logits: bool = False) -> torch.Tensor:
    """Run ``model`` on ``tokens`` (default ``batch.clean``, on the model's device) with ``fwd_hooks`` and
    return what :func:`~.metrics.task_metric` needs.

    Prompt tasks: ``[b, V]`` logits at each prompt's last real position; only the distinct last positions
    of the batch are unembedded (``logits_to_keep``). A model that rejects or ignores ``logits_to_keep``
    falls back to unembedding every position (same values). Plain texts scored on their last
    ``batch.loss_tokens`` tokens: ``[b, loss_tokens, V]`` logits at the positions that predict them (equal-length
    texts, so the positions are shared by every row). Other plain texts, or ``full_logits=True``: ``[b, T, V]``
    logits of every position.
    """
    tokens = batch.clean if tokens is None else tokens
    hooks = list(fwd_hooks)
    if batch.is_text and batch.loss_tokens is not None and not full_logits:
        k, t = batch.loss_tokens, tokens.shape[1]
        pos = torch.arange(t - k - 1, t - 1, device=tokens.device)
        try:
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks, logits_to_keep=pos)
        except TypeError:
            logits = model.run_with_hooks(tokens, fwd_hooks=hooks)
        return logits if logits.shape[1] == k else logits[:, pos.to(logits.device)]
    if batch.is_text or full_logits:
        return model.run_with_hooks(tokens, fwd_hooks=hooks)
    return logits_at(lambda **kw: model.run_with_hooks(tokens, fwd_hooks=hooks, **kw),
                     (batch.lengths - 1).to(tokens.device))


@torch.no_grad()
def mean_activations(model, prompts: TaskPrompts, hooks: Iterable[str], batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Per-position mean activation over the clean prompts of ``prompts`` (the reference set).

    Returns ``{hook: [T_max + 1, n]}``: rows ``0..T_max-1`` are position means over the prompts long enough to
    have that position; the last row is the mean over all real positions (used beyond ``T_max``).
    """
    hooks = list(hooks)
    dev = model_device(model)
    sums: dict[str, torch.Tensor] = {}
    total = torch.zeros(prompts.clean.shape[1], device=dev)
    for batch in prompts.batches(batch_size):
        batch = batch.to(dev)
        _, acts = cache_activations(model, batch.clean, hooks, logits=False)
        mask = batch.position_mask().float()
        t = mask.shape[1]
        total[:t] += mask.sum(0)
        for h, a in acts.items():
            s = torch.einsum("bt,btn->tn", mask, a.float())
            if h not in sums:
                sums[h] = torch.zeros(prompts.clean.shape[1], a.shape[-1], device=dev)
            sums[h][:t] += s
    out = {}
    for h, s in sums.items():
        overall = s.sum(0) / total.sum().clamp_min(1)
        pos = torch.where(total[:, None] > 0, s / total.clamp_min(1)[:, None], overall)
        out[h] = torch.cat([pos, overall[None]], 0)
    return out


def _reference_at(ref: torch.Tensor, t: int) -> torch.Tensor:
    """``[t, n]`` reference means for the first ``t`` positions."""
    if t <= ref.shape[0] - 1:
        return ref[:t]
    return torch.cat([ref[:-1], ref[-1:].expand(t - ref.shape[0] + 1, -1)], 0)


def ablation_hooks(masks: dict[str, torch.Tensor], method: str, reference: dict[str, torch.Tensor] | None = None,
                   corrupted: dict[str, torch.Tensor] | None = None) -> list[tuple[str, Callable]]:
    """Forward hooks that replace the dims where ``masks[hook]`` is True.

    ``masks[hook]``: ``[n]`` bool (the same dims in every row) or ``[b, n]`` bool (per batch row, to
    evaluate several ablation sets in one forward). ``reference`` (``method="mean"``): ``{hook: [T_max + 1,
    n]}`` from :func:`mean_activations`; ``corrupted`` (``method="counterfactual"``): ``{hook: [b, T, n]}``
    activations of the paired corrupted prompts, row-aligned with the batch. Hooks with no True dim are
    skipped.
    """
    method = Ablation.parse(method)
    if method == Ablation.MEAN and reference is None:
        raise CircuitclustError("mean ablation needs reference activations (mean_activations)")
    if method == Ablation.COUNTERFACTUAL and corrupted is None:
        raise CircuitclustError("counterfactual ablation needs corrupted prompts; this task has none")
    hooks = []
    for name, mask in masks.items():
        if not bool(mask.any()):
            continue
        if mask.dim() == 2:  # per row: broadcast over positions
            mask = mask[:, None, :]

        def fn(act, hook, mask=mask, name=name):
            x = flat(act)
            if method == Ablation.ZERO:
                value = torch.zeros((), dtype=x.dtype, device=x.device)
            elif method == Ablation.MEAN:
                value = _reference_at(reference[name], x.shape[1]).to(x.dtype)
            else:
                value = corrupted[name].to(x.dtype)
            return torch.where(mask.to(x.device), value, x).reshape(act.shape)

        hooks.append((name, fn))
    return hooks


def node_masks(layout: UnitLayout, nodes: Iterable[int] | None = None) -> torch.Tensor:
    """``[n_sets, n_dims]`` bool: one set per node id (default every node), True on its cluster's dims."""
    node_of_dim = layout.node_of_dim()
    ids = torch.arange(len(layout.nodes)) if nodes is None else torch.as_tensor(list(nodes))
    return node_of_dim[None, :] == ids.to(node_of_dim.device)[:, None]


def cluster_masks(layout: UnitLayout, part: str | None = None) -> torch.Tensor:
    """``[k, n_dims]`` bool: cluster ``c`` of every layer at once (of one ``part``, or of both)."""
    lab = torch.cat([s.labels for s in layout.slots])
    keep = torch.cat([torch.full((s.n_dims,), part is None or s.part == part) for s in layout.slots])
    return (lab[None, :] == torch.arange(layout.k, device=lab.device)[:, None]) & keep.to(lab.device)[None, :]


@torch.no_grad()
def ablation_sweep(model, prompts: TaskPrompts, layout: UnitLayout, sets: torch.Tensor, method: str = "mean",
                   metric: str = "logit_diff", reference: dict[str, torch.Tensor] | None = None,
                   batch_size: int = 16, progress: bool = False, max_rows: int = 64, full_logits: bool = False,
                   clean: bool = True) -> dict[str, torch.Tensor]:
    """Ablate each of ``sets`` (``[n_sets, n_dims]`` bool) in turn over all prompts.

    Returns CPU tensors: ``clean`` ``[n]`` and ``ablated`` ``[n_sets, n]`` per-prompt metric values,
    ``clean_correct`` ``[n]`` and ``ablated_correct`` ``[n_sets, n]`` top-1 correctness (``clean=False``:
    only the ``ablated*`` entries, and no forward for the intact model). ``method="mean"`` without
    ``reference`` computes it from ``prompts`` themselves (an in-sample mean, which keeps task information in
    the replacement: the analyses always pass a disjoint reference set's means).

    Work per batch of ``b`` prompts: 1 corrupted pass (counterfactual only, stopped after the last needed
    hook), then the intact model and every set, ``max(1, max_rows // b)`` of them stacked per forward
    (``max_rows`` bounds the memory; ``max_rows < 2 * b`` evaluates one set per forward). Plain texts whose
    loss covers every position take one set per forward. ``full_logits=True`` unembeds every position (the
    slow reference path; same values).
    """
    method = Ablation.parse(method)
    dev = model_device(model)
    sets = sets.to(dev)
    if method == Ablation.MEAN and reference is None:
        reference = mean_activations(model, prompts, layout.hooks, batch_size)
    needed = [s.hook for s in layout.slots if bool(sets[:, s.offset:s.offset + s.n_dims].any())]
    # the intact model is one more "set" with no dim ablated, so its rows share the batched forwards
    todo = torch.cat([sets.new_zeros(1, sets.shape[1]), sets]) if clean else sets
    vals_all, ok_all = [], []
    batches = list(prompts.batches(batch_size))
    it = batches
    if progress:
        from tqdm import tqdm

        it = tqdm(batches, desc=f"ablate {prompts.name}", leave=False)
    for batch in it:
        batch = batch.to(dev)
        b = len(batch)
        per_fwd = 1 if batch.is_text and batch.loss_tokens is None else max(1, max_rows // b)
        corrupted = None
        if method == Ablation.COUNTERFACTUAL:
            if batch.corrupted is None:
                raise CircuitclustError(f"'{prompts.name}' has no corrupted prompts: use zero or mean ablation")
            _, corrupted = cache_activations(model, batch.corrupted, needed, logits=False)
            corrupted = {h: v.repeat(min(per_fwd, todo.shape[0]), 1, 1) for h, v in corrupted.items()}
        vals, oks = [torch.zeros(0, b)], [torch.zeros(0, b, dtype=torch.bool)]
        for c0 in range(0, todo.shape[0], per_fwd):
            chunk = todo[c0:c0 + per_fwd]
            r = chunk.shape[0]
            rows = batch.repeat(r) if r > 1 else batch
            # row s * b + i is prompt i under set s: each set's mask repeated once per prompt
            masks = {h: m.repeat_interleave(b, 0) for h, m in layout.split_dims(chunk).items() if h in needed}
            corr = None if corrupted is None else {h: v[:r * b] for h, v in corrupted.items()}
            logits = metric_logits(model, rows, fwd_hooks=ablation_hooks(masks, method, reference, corr),
                                   full_logits=full_logits)
            vals.append(task_metric(metric, logits, rows).view(r, b).cpu())
            oks.append(top1_correct(logits, rows).view(r, b).cpu())
        vals_all.append(torch.cat(vals))
        ok_all.append(torch.cat(oks))
    vals, oks = torch.cat(vals_all, 1), torch.cat(ok_all, 1)
    if not clean:
        return {"ablated": vals, "ablated_correct": oks}
    return {"clean": vals[0], "clean_correct": oks[0], "ablated": vals[1:], "ablated_correct": oks[1:]}
