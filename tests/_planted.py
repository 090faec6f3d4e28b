"""A tiny GPT-2 whose weights are edited so that a task provably depends on known MLP neurons only.

Every attention output matrix and every MLP output row is zeroed except the planted neurons' rows, so no
other unit can change the logits whatever its activation. The planted neurons read whether the last token
is A or B (their input columns point along the embedding difference, which is scaled up to dominate the
layer norm) and write +-(unembedding of P - unembedding of Q). Prompts ending in A answer P (corrupted: B,
Q); prompts ending in B answer Q (corrupted: A, P). Task 2 does the same with tokens C/D -> R/S through a
second set of planted neurons.
"""
from __future__ import annotations

import torch

from circuitclust.analysis.prompts import TaskPrompts
from circuitclust.models import hf_model_of, load_model, weight_graphs

A, B, P, Q = 300, 301, 400, 401
C, D, R, S = 302, 303, 402, 403
# (layer, neuron, sign): + reads "last token is A", writes +(P - Q)
PLANTED_1 = [(1, 5, 1), (1, 70, 1), (2, 130, -1), (2, 131, -1)]
PLANTED_2 = [(2, 200, 1), (2, 201, -1)]


def planted_model():
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
                gs[(layer, "mlp_out")].weight[n] = 60 * sign * write
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


def planted_units(layout, planted=PLANTED_1) -> set[int]:
    """Global unit ids of the planted neurons in ``layout``."""
    out = set()
    for layer, n, _ in planted:
        slot = next(s for s in layout.slots if s.layer == layer and s.part == "mlp")
        out.add(slot.unit_offset + n)
    return out
