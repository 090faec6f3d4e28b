"""Attribution patching: a first-order estimate of every unit's patching effect from one backward pass.

For a unit (dim) ``u`` at hook activation ``a`` and a replacement ``r`` (the paired corrupted prompt's
activation, the reference mean, or zero), the effect on the metric ``m`` of replacing ``a_u`` by ``r_u`` at every
position is estimated by ``sum_t dm/da_{t,u} * (r_{t,u} - a_{t,u})`` over real positions ``t``. Per batch this
costs 2 forward passes (corrupted with a cache of the unit hooks, stopped after the last one; clean with
gradients, unembedding only the last prompt positions) and 1 backward pass, whatever the number of units;
a cluster's estimate is the sum over its dims (the same linearisation).
Gradients are taken with ``torch.autograd.grad`` on the hooked activations only, so no parameter gradient is
accumulated.
"""
from __future__ import annotations

import contextlib

import torch

from ...errors import CircuitclustError
from ...models.graphs import model_device
from .interventions import _reference_at, cache_activations, flat, metric_logits
from .metrics import check_metric, task_metric
from .prompts import TaskPrompts
from .units import UnitLayout


@contextlib.contextmanager
def _params_require_grad(model):
    """Make activations differentiable even if the caller froze the parameters; restore afterwards."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    try:
        for p in params:
            p.requires_grad_(True)
        yield
    finally:
        for p, b in zip(params, before):
            p.requires_grad_(b)


def attribution_patching(model, prompts: TaskPrompts, layout: UnitLayout, metric: str = "logit_diff",
                         reference: dict[str, torch.Tensor] | None = None,
                         batch_size: int = 8) -> dict[str, torch.Tensor]:
    """Per-prompt attribution of every dim of ``layout``.

    Returns CPU float32 tensors: ``clean`` ``[n]`` metric, ``corrupted`` ``[n, n_dims]`` estimates of the
    metric change when each dim takes the corrupted prompt's activation (absent without corrupted prompts),
    ``mean`` ``[n, n_dims]`` the same for the ``reference`` means (when given), ``zero`` ``[n, n_dims]`` for
    zero ablation. Sum over dims for clusters
    (:meth:`UnitLayout.dims_to_nodes`) or whole heads (:meth:`UnitLayout.dims_to_units`).
    """
    if len(prompts) == 0:
        raise CircuitclustError(f"'{prompts.name}' has no prompts")
    metric = check_metric(metric, prompts)  # plain texts: the per-token loss
    dev = model_device(model)
    hooks = layout.hooks
    out: dict[str, list[torch.Tensor]] = {"clean": [], "corrupted": [], "mean": [], "zero": []}
    with _params_require_grad(model):
        for batch in prompts.batches(batch_size):
            batch = batch.to(dev)
            corr = None
            if batch.corrupted is not None:
                with torch.no_grad():
                    _, corr = cache_activations(model, batch.corrupted, hooks, logits=False)
            store: dict[str, torch.Tensor] = {}

            def keeper(name):
                def keep(act, hook):
                    # return a new node of the graph: some bridge hook points (hook_z) pass a reshaped
                    # copy and only use what the hook returns, so the returned tensor is the one to differentiate
                    store[name] = act.view_as(act)
                    return store[name]
                return keep

            with torch.enable_grad():
                logits = metric_logits(model, batch, fwd_hooks=[(h, keeper(h)) for h in hooks])
                m = task_metric(metric, logits, batch)
                grads = torch.autograd.grad(m.sum(), [store[h] for h in hooks], allow_unused=True)
            mask = batch.position_mask().to(dev).float()
            rows_c, rows_m, rows_z = [], [], []
            for h, g in zip(hooks, grads):
                a = flat(store[h]).detach().float()
                g = torch.zeros_like(a) if g is None else flat(g).float()
                rows_z.append(torch.einsum("bt,btn->bn", mask, -g * a))
                if corr is not None:
                    rows_c.append(torch.einsum("bt,btn->bn", mask, g * (corr[h].float() - a)))
                if reference is not None:
                    ref = _reference_at(reference[h], a.shape[1]).float()
                    rows_m.append(torch.einsum("bt,btn->bn", mask, g * (ref[None] - a)))
            out["clean"].append(m.detach().float().cpu())
            out["zero"].append(torch.cat(rows_z, 1).cpu())
            if rows_c:
                out["corrupted"].append(torch.cat(rows_c, 1).cpu())
            if rows_m:
                out["mean"].append(torch.cat(rows_m, 1).cpu())
            store.clear()  # free this batch's activations before the next batch runs
            del logits, grads
    return {k: torch.cat(v) for k, v in out.items() if v}


def estimate_key(method: str) -> str:
    """The :func:`attribution_patching` entry that estimates ``method``'s ablation (``zero`` -> ``"zero"``,
    ``mean`` -> ``"mean"``, ``counterfactual`` -> ``"corrupted"``)."""
    from .interventions import Ablation

    return {Ablation.ZERO: "zero", Ablation.MEAN: "mean", Ablation.COUNTERFACTUAL: "corrupted"}[Ablation.parse(method)]
