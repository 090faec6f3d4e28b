"""A tiny GPT-2 whose weights are edited so that a task provably depends on known MLP neurons only.

Every attention output matrix and every MLP output row is zeroed except the planted neurons' rows, so no
other unit can change the logits whatever its activation. The planted neurons read whether the last token
is A or B (their input columns point along the embedding difference, which is scaled up to dominate the
layer norm) and write +-(unembedding of P - unembedding of Q). Prompts ending in A answer P (corrupted: B,
Q); prompts ending in B answer Q (corrupted: A, P). Task 2 does the same with tokens C/D -> R/S through a
second set of planted neurons.

``planted_model(head=True)`` plants a circuit that spans both unit kinds: task 1's neurons write half as much,
and attention head :data:`PLANTED_HEAD` attends to the A/B token (a constant query bias against keys that read
"the token is A or B"), reads the same "A or B" direction through its value and writes about as much as the
neurons through W_O. Under counterfactual ablation the head alone or the neurons alone keep about half of
the logit difference, so no circuit without both keeps 80% of it.
"""
from __future__ import annotations

import torch

from circuitclust.analysis.patching.prompts import TaskPrompts
from circuitclust.models import hf_model_of, load_model, weight_graphs

A, B, P, Q = 300, 301, 400, 401
C, D, R, S = 302, 303, 402, 403
# (layer, neuron, sign): + reads "last token is A", writes +(P - Q)
PLANTED_1 = [(1, 5, 1), (1, 70, 1), (2, 130, -1), (2, 131, -1)]
PLANTED_2 = [(2, 200, 1), (2, 201, -1)]
PLANTED_HEAD = (2, 1)  # (layer, head) of the planted head (head=True)
HEAD_SCALE = 400.0


def planted_model(head: bool = False):
    m = load_model("tiny-gpt2", device="cpu")
    hf = hf_model_of(m)
    wte = hf.transformer.wte.weight
    gs = {(g.layer, g.kind): g for g in weight_graphs(m)}
    with torch.no_grad():
        wte[[A, B, C, D, P, Q, R, S]] *= 20  # prompt tokens dominate the layer norms; answers get big logits
        centred = wte[[A, B, C, D]] - wte[[A, B, C, D]].mean(1, keepdim=True)
        writes = torch.stack([wte[P] - wte[Q], wte[R] - wte[S]])
        writes = writes / writes.norm(dim=1, keepdim=True)
        for (layer, kind), g in gs.items():
            if kind in ("attn_o", "mlp_out"):
                g.weight.zero_()
        for planted, (x, y, p, q) in ((PLANTED_1, (A, B, P, Q)), (PLANTED_2, (C, D, R, S))):
            # read the x-vs-y difference orthogonally to the other task's tokens, to every planted write and to
            # the layer norm's centring direction, so that each neuron set is silent on the other task's
            # prompts and blind to what earlier planted neurons wrote
            others = centred[[2, 3]] if x == A else centred[[0, 1]]
            ones = torch.ones(1, wte.shape[1])
            basis, _ = torch.linalg.qr(torch.cat([others, writes, ones]).T)
            read = centred[0 if x == A else 2] - centred[1 if x == A else 3]
            read = read - basis @ (basis.T @ read)
            read = read / read.norm()
            write = writes[0 if x == A else 1]
            for layer, n, sign in planted:
                gs[(layer, "mlp_in")].weight[:, n] = 4 * sign * read
                hf.transformer.h[layer].mlp.c_fc.bias[n] = -1.0
                gs[(layer, "mlp_out")].weight[n] = (30 if head and x == A else 60) * sign * write
            if head and x == A:
                layer, h = PLANTED_HEAD
                d = hf.config.n_embd // hf.config.n_head
                cols = slice(h * d, (h + 1) * d)
                for kind in ("attn_q", "attn_k", "attn_v"):
                    gs[(layer, kind)].weight[:, cols] = 0.0
                attn = hf.transformer.h[layer].attn.c_attn
                e = hf.config.n_embd
                for part in range(3):  # q, k, v biases of the head
                    attn.bias[part * e + h * d:part * e + (h + 1) * d] = 0.0
                either = centred[0] + centred[1]
                either = either - basis @ (basis.T @ either)
                attn.bias[h * d] = 10.0  # every query is the same: attend where the key says "A or B"
                gs[(layer, "attn_k")].weight[:, h * d] = either / either.norm()
                gs[(layer, "attn_v")].weight[:, h * d] = read
                gs[(layer, "attn_o")].weight[h * d] = HEAD_SCALE * write
    return m


def planted_prompts(task: int = 1, n: int = 8, seed: int = 0) -> TaskPrompts:
    x, y, p, q = (A, B, P, Q) if task == 1 else (C, D, R, S)
    g = torch.Generator().manual_seed(seed)
    filler = torch.randint(500, 1500, (n, 4), generator=g)
    flip = torch.arange(n) % 2 == 1
    last = torch.where(flip, y, x)
    other = torch.where(flip, x, y)
    clean = torch.cat([filler, last[:, None]], 1)
    corrupted = torch.cat([filler, other[:, None]], 1)
    answer = torch.where(flip, q, p)
    corrupted_answer = torch.where(flip, p, q)
    return TaskPrompts(f"planted{task}", clean, torch.full((n,), 5), corrupted, answer, corrupted_answer)


def planted_units(layout, planted=PLANTED_1, head: bool = False) -> set[int]:
    """Global unit ids of the planted neurons in ``layout`` (and of the planted head, whole-head units)."""
    out = set()
    for layer, n, _ in planted:
        slot = next(s for s in layout.slots if s.layer == layer and s.part == "mlp")
        out.add(slot.unit_offset + n)
    if head:
        slot = next(s for s in layout.slots if s.layer == PLANTED_HEAD[0] and s.part == "attn")
        out.add(slot.unit_offset + PLANTED_HEAD[1])
    return out
