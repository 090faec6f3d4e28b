"""Gromov-Wasserstein (GW) distances between distance matrices (POT, torch backend): the GW cost, the exact
multi-start solver and its starts, the entropic solvers, and paired / all-pairs batches of them. Pure tensor
code, no model knowledge.

``gw_distance`` returns Memoli's GW distance ``d = 0.5 * sqrt(GW)`` where ``GW = min_T sum_ijkl
(D1_ik - D2_jl)^2 T_ij T_kl`` is POT's square-loss objective over couplings T with uniform marginals. d is a
metric (symmetric, triangle inequality) in units of the normalised distance (:mod:`.distances`), so d = 0.1
reads "pairwise distances disagree by about 20% of the mean distance under the best matching".

GW is non-convex and every solver is a local method, so each reported value is an upper bound on the true
GW (the cost of a feasible coupling). No single start is reliable: on a 256-point planted test conditional
gradient (CG) started from the independent coupling ``p q^T`` finds the zero for a permuted copy but stalls at
the trivial value for a *noisy* copy, the identity start (the points of two layers are the same tokens) does
the reverse, and on the embedded Gemma's layer 0 CG from ``p q^T`` and the identity stalled at d = 0.58 where
the entropic solver's plan costs 0.27. ``solver="exact"`` is therefore a multi-start CG (:data:`EXACT_STARTS`):
POT's exact solver from ``p q^T``, the identity (same points only), the distance-profile matching
(:func:`profile_coupling`, Memoli's second-lower-bound plan: it finds the noisy permuted copy that the other
CG starts miss, 0.006 vs 0.109 on the 64-point planted test) and two seeded random vertices of the coupling
polytope; the lowest GW cost is kept. The entropic solver's plan (rounded onto the exact marginals)
is an opt-in sixth start (``starts=(..., "entropic")``): with it exact is never above entropic, but it costs
about 3x the CPU time for a mean GW only slightly lower on the embedded Gemma's layer pairs (see
analyses/RESULTS.md). The default trades that for speed; use the entropic start for final figures.
"""
from __future__ import annotations

import warnings
from typing import Sequence

import torch

from ..errors import CircuitclustError

SOLVERS = ("exact", "entropic", "entropic-pgd")
# Starts of the exact (CG) solver; "random" may repeat, each draw is a new seeded vertex.
EXACT_STARTS = ("product", "identity", "profile", "random", "random")
ENTROPIC_MAX_ITER = 100
START_KINDS = ("product", "identity", "profile", "entropic", "random")
PROFILE_LEVELS = 64


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def _gw_loss_to_distance(loss: torch.Tensor) -> torch.Tensor:
    return 0.5 * loss.clamp_min(0.0).sqrt()


def _marginal_term(d: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``w^T (d * d) w`` of ``d[..., n, n]``, ``w[..., n]`` -> ``[...]``: one space's constant term of the
    square-loss GW objective."""
    return ((d ** 2) @ w.unsqueeze(-1)).squeeze(-1).mul(w).sum(-1)


def gw_cost(d1: torch.Tensor, d2: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
    """Square-loss GW objective ``sum_ijkl (d1_ik - d2_jl)^2 T_ij T_kl`` of plans ``plan[..., n, m]`` between
    ``d1[..., n, n]`` and ``d2[..., m, m]`` -> ``[...]``. The marginals are read off the plan, so the value is
    exact for any nonnegative plan (POT's constant term assumes the plan has the target marginals)."""
    p, q = plan.sum(-1), plan.sum(-2)
    cross = (d1 * (plan @ d2 @ plan.transpose(-1, -2))).sum(dim=(-1, -2))
    return _marginal_term(d1, p) + _marginal_term(d2, q) - 2.0 * cross


def round_to_coupling(plan: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Project approximate plans ``plan[..., n, m]`` onto couplings with marginals ``p[..., n]``, ``q[..., m]``
    (Altschuler, Weed & Rigollet 2017, Alg. 2: scale rows and columns down, add the missing mass as a rank-one
    plan). The change in any entry is bounded by the marginal error, so a converged Sinkhorn plan barely moves;
    the result satisfies the marginals to rounding error, as POT's exact solver requires of a start."""
    tiny = torch.finfo(plan.dtype).tiny
    x = plan * (p / plan.sum(-1).clamp_min(tiny)).clamp(max=1.0).unsqueeze(-1)
    x = x * (q / x.sum(-2).clamp_min(tiny)).clamp(max=1.0).unsqueeze(-2)
    err_r, err_c = (p - x.sum(-1)).clamp_min(0.0), (q - x.sum(-2)).clamp_min(0.0)
    return x + err_r.unsqueeze(-1) * err_c.unsqueeze(-2) / err_r.sum(-1).clamp_min(tiny)[..., None, None]


def random_coupling(p: torch.Tensor, q: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random vertex of the coupling polytope of ``p[n]``, ``q[m]`` -> ``[n, m]`` on ``p``'s device: a random
    permutation plan when ``p`` and ``q`` are the same uniform weights, otherwise the exact OT plan
    (``ot.emd``) for a random cost. Vertices are sparse, far from ``p q^T``: a start in another basin."""
    n, m = p.shape[0], q.shape[0]
    if n == m and bool(torch.equal(p, q)) and bool((p == p[0]).all()):
        perm = torch.randperm(n, generator=generator).to(p.device)
        return torch.zeros(n, m, dtype=p.dtype, device=p.device).index_put_((torch.arange(n, device=p.device), perm),
                                                                           p)
    import ot

    cost = torch.rand(n, m, generator=generator, dtype=torch.float64)
    plan = ot.emd(p.double().cpu(), q.double().cpu(), cost, numItermax=10_000_000)
    return round_to_coupling(plan.to(p), p, q)


def _weighted_quantiles(d: torch.Tensor, w: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Quantiles at ``levels[K]`` of each row of ``d[n, n]`` under point weights ``w[n]`` -> ``[n, K]``."""
    vals, idx = d.sort(dim=-1)
    cum = w[idx].cumsum(-1)
    pos = torch.searchsorted(cum, levels.expand(d.shape[0], -1).contiguous()).clamp(max=d.shape[-1] - 1)
    return vals.gather(-1, pos)


def profile_coupling(d1: torch.Tensor, d2: torch.Tensor, p: torch.Tensor, q: torch.Tensor,
                     levels: int = PROFILE_LEVELS) -> torch.Tensor:
    """Couple points with similar distance profiles: ``d1[n, n]``, ``d2[m, m]``, weights ``p[n]``, ``q[m]`` ->
    the exact OT plan ``[n, m]`` (a vertex) for the cost ``|F1_i - F2_j|^2`` between each point's quantile
    function of distances to the others (``levels`` quantiles). This is the plan of Memoli's second lower
    bound; it is invariant to relabelling the points and robust to small noise, so it starts CG near the
    matching of a noisy permuted copy, where ``p q^T`` and the identity both stall."""
    import ot

    lv = (torch.arange(levels, dtype=d1.dtype, device=d1.device) + 0.5) / levels
    f1, f2 = _weighted_quantiles(d1, p, lv), _weighted_quantiles(d2, q, lv)
    cost = torch.cdist(f1, f2) ** 2 / levels
    plan = ot.emd(p.double().cpu(), q.double().cpu(), cost.double().cpu(), numItermax=10_000_000)
    return round_to_coupling(torch.as_tensor(plan).to(d1), p, q)


def _check_square_dists(*mats: torch.Tensor) -> None:
    for name, d in zip(("d1", "d2"), mats):
        if d.ndim != 2 or d.shape[0] != d.shape[1]:
            raise CircuitclustError(f"{name} must be a square distance matrix, got shape {tuple(d.shape)}")


def _check_starts(starts: Sequence[str]) -> None:
    bad = [s for s in starts if s not in START_KINDS]
    if bad or not len(starts):
        raise CircuitclustError(f"unknown exact-solver start '{bad[0] if bad else ''}': use some of "
                                f"{', '.join(START_KINDS)} (e.g. {','.join(EXACT_STARTS)})")


def gw_exact_multistart(d1: torch.Tensor, d2: torch.Tensor, *, p: torch.Tensor | None = None,
                        q: torch.Tensor | None = None, starts: Sequence[str] = EXACT_STARTS,
                        entropic_plan: torch.Tensor | None = None, epsilon: float = 1e-2, seed: int = 0,
                        max_iter: int = 1000, same_points: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """POT's exact GW solver (conditional gradient, ``ot.gromov.gromov_wasserstein``; numpy on the CPU) run
    from each of ``starts`` between ``d1[n, n]`` and ``d2[m, m]`` with weights ``p[n]``, ``q[m]`` (uniform by
    default). Returns ``(distance, start_distances[S])`` as ``0.5 * sqrt(GW)`` on ``d1``'s device: the lowest
    over the starts, and each start's value (NaN for ``"identity"`` when the points differ).

    Starts: ``"product"`` = ``p q^T`` (POT's default); ``"identity"`` = ``diag(p)``, only when ``same_points``
    (default: n == m and p == q; the layers see the same tokens); ``"profile"`` = :func:`profile_coupling`
    (points matched by their sorted distances to the others); ``"entropic"`` (opt-in, not in the defaults) =
    ``entropic_plan[n, m]`` if given (e.g. batched by :func:`gw_entropic_plans`), else solved here with
    ``epsilon`` (relative, see :func:`gw_entropic_plans`); ``"random"`` = a
    vertex from :func:`random_coupling`, the k-th random start drawn from ``torch.Generator().manual_seed(seed)``.
    A start's value is the lower of its plan's cost before and after CG, so the result is never above any start
    plan's cost (CG is monotone; this only guards against the two loss formulas' rounding).
    """
    import ot

    _check_square_dists(d1, d2)
    _check_starts(starts)
    p = _uniform(d1.shape[0], d1) if p is None else p.to(d1)
    q = _uniform(d2.shape[0], d2) if q is None else q.to(d1)
    if same_points is None:
        same_points = d1.shape == d2.shape and bool(torch.equal(p, q))
    gen = torch.Generator().manual_seed(seed)
    values = torch.full((len(starts),), float("nan"), dtype=d1.dtype, device=d1.device)
    for s, kind in enumerate(starts):
        if kind == "identity" and not same_points:
            continue
        if kind == "product":
            g0 = p[:, None] * q[None, :]
        elif kind == "identity":
            g0 = torch.diag(p)
        elif kind == "profile":
            g0 = profile_coupling(d1, d2, p, q)
        elif kind == "entropic":
            g0 = entropic_plan.to(d1) if entropic_plan is not None else gw_entropic_plans(
                d1[None], d2[None], p=p[None], q=q[None], epsilon=epsilon)[0]
        else:
            g0 = random_coupling(p, q, gen)
        plan = ot.gromov.gromov_wasserstein(d1, d2, p, q, symmetric=True, G0=g0, max_iter=max_iter)
        values[s] = torch.minimum(gw_cost(d1, d2, g0), gw_cost(d1, d2, torch.as_tensor(plan).to(d1)))
    return _gw_loss_to_distance(values.nan_to_num(float("inf")).min()), _gw_loss_to_distance(values)


def gw_distance(d1: torch.Tensor, d2: torch.Tensor, *, solver: str = "exact", p: torch.Tensor | None = None,
                q: torch.Tensor | None = None, epsilon: float = 1e-2, max_iter: int = 1000,
                same_points: bool | None = None, starts: Sequence[str] = EXACT_STARTS,
                seed: int = 0) -> torch.Tensor:
    """GW distance ``0.5 * sqrt(GW)`` between two metric-measure spaces given by distance matrices
    ``d1[n, n]``, ``d2[m, m]`` with point weights ``p[n]``, ``q[m]`` (uniform by default). Returns a 0-d
    tensor on ``d1``'s device.

    ``solver``: ``"exact"`` = multi-start POT conditional gradient (:func:`gw_exact_multistart` with
    ``starts``, ``seed``, ``same_points``); ``"entropic"`` = POT's batched proximal solver (``ot.batch.
    solve_gromov_batch``, KL-proximal steps of size ``epsilon`` times the pair's cost scale, in the log
    domain, stopped on a relative cost tolerance; see :func:`gw_entropic_plans`), on the tensors' device,
    reported as the cost of its plan rounded onto the marginals; ``"entropic-pgd"`` =
    ``ot.gromov.entropic_gromov_wasserstein2`` (``epsilon`` absolute; entropy-regularised objective, biased
    upwards by the blur of the plan, and its non-log Sinkhorn underflows for ``epsilon`` below ~2e-3 at
    unit-mean distances).
    """
    if solver not in SOLVERS:
        raise CircuitclustError(f"unknown GW solver '{solver}': use one of {', '.join(SOLVERS)}")
    _check_square_dists(d1, d2)
    if solver == "entropic":
        return gw_matrix_pairs(d1[None], d2[None], p=None if p is None else p[None],
                               q=None if q is None else q[None], epsilon=epsilon)[0]
    if solver == "exact":
        return gw_exact_multistart(d1, d2, p=p, q=q, starts=starts, epsilon=epsilon, seed=seed, max_iter=max_iter,
                                   same_points=same_points)[0]
    import ot

    p = _uniform(d1.shape[0], d1) if p is None else p.to(d1)
    q = _uniform(d2.shape[0], d2) if q is None else q.to(d1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Sinkhorn non-convergence warnings every outer step
        loss = ot.gromov.entropic_gromov_wasserstein2(d1, d2, p, q, epsilon=epsilon, symmetric=True,
                                                       max_iter=min(max_iter, 100), tol=1e-9, numItermax=200)
    return _gw_loss_to_distance(torch.as_tensor(loss, dtype=d1.dtype, device=d1.device))


def gw_entropic_plans(d1: torch.Tensor, d2: torch.Tensor, *, p: torch.Tensor | None = None,
                      q: torch.Tensor | None = None, epsilon: float = 1e-2, max_iter: int = ENTROPIC_MAX_ITER,
                      max_iter_inner: int = 10, rel_tol: float = 1e-3, check_every: int = 10) -> torch.Tensor:
    """Plans of POT's batched proximal GW solver (``ot.batch.solve_gromov_batch``) for B independent pairs
    ``d1[B, n, n]``, ``d2[B, m, m]`` with weights ``p[B, n]``, ``q[B, m]`` (uniform by default), rounded onto
    the exact marginals (:func:`round_to_coupling`) -> ``[B, n, m]`` on the inputs' device.

    ``epsilon`` is relative to the pair's cost scale ``c = p^T (d1*d1) p + q^T (d2*d2) q`` (the constant term
    of the GW objective, ~2-3 for unit-mean distances): the KL-proximal step is ``epsilon * c``, so a pair of
    layers with larger distance spreads takes the same number of steps. The outer loop runs ``check_every``
    proximal steps at a time (POT continues from the previous plan), then stops each pair whose rounded plan's
    GW cost changed by less than ``rel_tol`` (relative) over those steps; at most ``max_iter`` steps. The inner
    Sinkhorn projection is warm (the previous plan is its prior) and capped at ``max_iter_inner`` iterations
    with a marginal tolerance of 1e-3 relative to ``||p||``: an inexact projection is fine because the result
    is rounded onto the marginals and its exact cost is what is reported.
    """
    import ot

    b, n, m = d1.shape[0], d1.shape[1], d2.shape[1]
    p = torch.full((b, n), 1.0 / n, dtype=d1.dtype, device=d1.device) if p is None else p.to(d1)
    q = torch.full((b, m), 1.0 / m, dtype=d1.dtype, device=d1.device) if q is None else q.to(d1)
    d2 = d2.to(d1)
    scale = _marginal_term(d1, p) + _marginal_term(d2, q)
    # Dividing both matrices by sqrt(c) divides the objective by c: one shared reg = a per-pair relative step.
    root = scale.clamp_min(torch.finfo(d1.dtype).tiny).sqrt()[:, None, None]
    d1s, d2s = d1 / root, d2 / root
    plan = p.unsqueeze(-1) * q.unsqueeze(-2)
    cost = gw_cost(d1s, d2s, plan)
    active = torch.arange(b, device=d1.device)
    tol_inner = 1e-3 * float(p.norm(dim=-1).min())
    for _ in range(0, max_iter, check_every):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ot.batch.solve_gromov_batch(d1s[active], d2s[active], reg=epsilon, a=p[active], b=q[active],
                                              symmetric=True, T_init=plan[active], max_iter=check_every, tol=0.0,
                                              max_iter_inner=max_iter_inner, tol_inner=tol_inner, grad="detach")
        raw = torch.as_tensor(res.plan).to(d1)
        new = gw_cost(d1s[active], d2s[active], round_to_coupling(raw, p[active], q[active]))
        plan[active] = raw
        moving = (cost[active] - new).abs() > rel_tol * new.abs().clamp_min(torch.finfo(d1.dtype).tiny)
        cost[active] = new
        active = active[moving]
        if not len(active):
            break
    return round_to_coupling(plan, p, q)


def gw_matrix_pairs(d1: torch.Tensor, d2: torch.Tensor, *, p: torch.Tensor | None = None,
                    q: torch.Tensor | None = None, epsilon: float = 1e-2, max_iter: int = ENTROPIC_MAX_ITER,
                    max_iter_inner: int = 10, rel_tol: float = 1e-3) -> torch.Tensor:
    """Batched proximal GW for B independent pairs ``d1[B, n, n]``, ``d2[B, m, m]`` with weights ``p[B, n]``,
    ``q[B, m]`` -> ``[B]`` GW distances ``0.5 * sqrt(GW)`` on the inputs' device: the exact GW cost of the
    plans of :func:`gw_entropic_plans` (feasible couplings, so each value is an upper bound on GW)."""
    plans = gw_entropic_plans(d1, d2, p=p, q=q, epsilon=epsilon, max_iter=max_iter, max_iter_inner=max_iter_inner,
                              rel_tol=rel_tol)
    return _plan_distances(d1, d2, plans)


def _plan_distances(d1: torch.Tensor, d2: torch.Tensor, plans: torch.Tensor) -> torch.Tensor:
    """``0.5 * sqrt(GW cost)`` of ``plans[B, n, m]`` between ``d1[B, n, n]`` and ``d2[B, m, m]`` -> ``[B]``."""
    return _gw_loss_to_distance(gw_cost(d1.to(plans), d2.to(plans), plans))


def default_pair_batch(n: int, budget_bytes: float = 2e9, bytes_per: int = 8) -> int:
    """How many n x n GW problems the batched solver holds at once: it keeps about a dozen [B, n, n] tensors."""
    return max(1, int(budget_bytes // (12 * n * n * bytes_per)))


def gw_paired_starts(d1: Sequence[torch.Tensor], d2: Sequence[torch.Tensor], *, solver: str = "exact",
                     weights: torch.Tensor | None = None, epsilon: float = 1e-2, pair_batch: int | None = None,
                     starts: Sequence[str] = EXACT_STARTS, seed: int = 0,
                     progress: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GW distances of B pairs ``(d1[b], d2[b])`` -> ``(values[B], start_values[B, S] or None)``; the second
    holds every exact-solver start's distance (``solver="exact"`` only; NaN where a start does not apply).

    ``weights[n]``: point weights shared by every matrix of size n (uniform by default). ``"entropic"``
    solves ``pair_batch`` same-size pairs at once (default: what fits in ~2 GB); ``"exact"`` computes its
    entropic starts the same batched way, then runs CG pair by pair (POT's CG is numpy, one problem at a
    time), pair b's random starts seeded with ``seed + b``; ``"entropic-pgd"`` solves pairs one by one.
    """
    if solver not in SOLVERS:
        raise CircuitclustError(f"unknown GW solver '{solver}': use one of {', '.join(SOLVERS)}")
    if solver == "exact":
        _check_starts(starts)
    if len(d1) != len(d2):
        raise CircuitclustError(f"gw_paired needs as many left as right matrices ({len(d1)} vs {len(d2)})")
    if not len(d1):
        return torch.zeros(0, dtype=torch.float64), None
    from tqdm.auto import tqdm

    ref = d1[0]
    out = torch.zeros(len(d1), dtype=ref.dtype, device=ref.device)
    per_start = torch.full((len(d1), len(starts)), float("nan"), dtype=ref.dtype, device=ref.device) \
        if solver == "exact" else None
    bar = tqdm(total=len(d1), desc=f"GW ({solver})", disable=not progress, leave=False)
    same_size = all(m.shape == ref.shape for m in list(d1) + list(d2))
    batched = solver == "entropic" or (solver == "exact" and "entropic" in starts)
    chunk = (pair_batch or default_pair_batch(ref.shape[0])) if same_size and batched else 1
    n = ref.shape[0]
    for s in range(0, len(d1), chunk):
        left, right = list(d1[s:s + chunk]), list(d2[s:s + chunk])
        pw = None if weights is None or not same_size else weights.to(ref).expand(len(left), n).contiguous()
        plans = None
        if same_size and batched:
            a, b = torch.stack(left), torch.stack(right)
            plans = gw_entropic_plans(a, b, p=pw, q=pw, epsilon=epsilon)
            if solver == "entropic":
                out[s:s + len(left)] = _plan_distances(a, b, plans)
                bar.update(len(left))
                continue
        for i, (a, b) in enumerate(zip(left, right)):
            w = None if weights is None or a.shape != b.shape else weights.to(ref)
            if solver == "exact":
                out[s + i], per_start[s + i] = gw_exact_multistart(
                    a, b, p=w, q=w, starts=starts, epsilon=epsilon, seed=seed + s + i,
                    entropic_plan=None if plans is None else plans[i])
            else:
                out[s + i] = gw_distance(a, b, solver=solver, p=w, q=w, epsilon=epsilon)
            bar.update(1)
    bar.close()
    return out, per_start


def gw_paired(d1: Sequence[torch.Tensor], d2: Sequence[torch.Tensor], *, solver: str = "exact",
              weights: torch.Tensor | None = None, epsilon: float = 1e-2, pair_batch: int | None = None,
              starts: Sequence[str] = EXACT_STARTS, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """GW distances of B pairs ``(d1[b], d2[b])`` of distance matrices -> ``[B]``; see :func:`gw_paired_starts`."""
    return gw_paired_starts(d1, d2, solver=solver, weights=weights, epsilon=epsilon, pair_batch=pair_batch,
                            starts=starts, seed=seed, progress=progress)[0]


def start_summary(starts: Sequence[str], start_values: torch.Tensor) -> dict:
    """Which exact-solver start won: ``start_values[P, S]`` (NaN = start not applicable) -> {"starts",
    "wins" (per start kind, pairs where it reached the minimum within 1e-9; ties count for every winner),
    "mean" (per start position, mean distance over the pairs where it applied)}. JSON-ready."""
    v = start_values.double().cpu()
    best = v.nan_to_num(float("inf")).min(dim=1, keepdim=True).values
    won = (v <= best + 1e-9) & ~v.isnan()
    wins: dict[str, int] = {}
    for s, kind in enumerate(starts):
        wins[kind] = wins.get(kind, 0) + int(won[:, s].sum())
    means = [None if bool(v[:, s].isnan().all()) else float(v[:, s].nanmean()) for s in range(len(starts))]
    return {"starts": list(starts), "wins": wins, "mean": means}


def gw_matrix(dists: torch.Tensor | Sequence[torch.Tensor], *, solver: str = "exact",
              weights: torch.Tensor | None = None, epsilon: float = 1e-2, pair_batch: int | None = None,
              starts: Sequence[str] = EXACT_STARTS, seed: int = 0, progress: bool = False,
              return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict]:
    """All-pairs GW distances between L distance matrices (``dists[L, n, n]`` or a list of ``[n_l, n_l]``)
    -> ``[L, L]``: symmetric, zero diagonal. ``weights[n]``: point weights shared by all layers (uniform
    by default; the bootstrap passes resampling counts / n). With ``return_info`` also a dict: for the exact
    solver :func:`start_summary` (which start won how often), else {}.

    Only pairs i < j are solved and mirrored, so the matrix is symmetric by construction (a local solver run
    on (j, i) can land elsewhere); see :func:`gw_paired_starts` for the solvers, starts and batching.
    """
    mats = list(dists)
    if not mats:
        raise CircuitclustError("gw_matrix needs at least one distance matrix")
    n_layers = len(mats)
    ij = torch.triu_indices(n_layers, n_layers, offset=1)
    vals, per_start = gw_paired_starts([mats[i] for i in ij[0].tolist()], [mats[j] for j in ij[1].tolist()],
                                       solver=solver, weights=weights, epsilon=epsilon, pair_batch=pair_batch,
                                       starts=starts, seed=seed, progress=progress)
    out = torch.zeros(n_layers, n_layers, dtype=mats[0].dtype, device=mats[0].device)
    out[ij[0].to(out.device), ij[1].to(out.device)] = vals.to(out)
    out = out + out.T
    if not return_info:
        return out
    return out, ({} if per_start is None or not len(per_start) else start_summary(starts, per_start))


__all__ = ["gw_distance", "gw_paired", "gw_paired_starts", "gw_matrix", "gw_matrix_pairs", "gw_entropic_plans",
           "gw_exact_multistart", "gw_cost", "round_to_coupling", "random_coupling", "profile_coupling",
           "default_pair_batch", "PROFILE_LEVELS", "ENTROPIC_MAX_ITER", "SOLVERS", "EXACT_STARTS", "START_KINDS"]
