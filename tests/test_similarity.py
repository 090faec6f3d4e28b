"""Layer similarity: GW invariances, CKA, groups, bootstrap, layer_similarity on the three tiny families,
save/load, comparison and the CLI."""
from __future__ import annotations

import json

import pytest
import torch
from _helpers import linear_cka

from circuitclust.analysis.similarity import (
    LayerSimilarity,
    bootstrap_groups,
    compare_similarity,
    find_groups,
    layer_similarity,
    resolve_hooks,
    sample_positions,
)
from circuitclust.core.cka import cka_matrix
from circuitclust.core.distances import pairwise_distances
from circuitclust.core.gw import (
    EXACT_STARTS,
    gw_cost,
    gw_distance,
    gw_entropic_plans,
    gw_exact_multistart,
    gw_matrix,
    gw_paired,
    profile_coupling,
    random_coupling,
    round_to_coupling,
)
from circuitclust.core.layer_groups import choose_n_groups, cluster_layers, group_boundaries
from circuitclust.errors import CircuitclustError, DataError

TEXTS = [
    "The river flows through the old town and past the mill before it reaches the sea.",
    "Copper conducts electricity well, which is why it is used in wires and motors.",
    "In the spring the farmers plant barley, and in the autumn they bring in the harvest.",
    "The orchestra played the symphony twice, once in the afternoon and once at night.",
    "Sodium reacts with water to form sodium hydroxide and hydrogen gas.",
    "The library opened a new wing for maps, letters and photographs of the harbour.",
]


def _points(n: int = 64, d: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # anisotropic cloud: distinct eccentricities make the GW optimum unique up to symmetries
    return torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)


def _rotation(d: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


@pytest.fixture(scope="module")
def planted():
    x = _points()
    g = torch.Generator().manual_seed(5)
    perm = torch.randperm(x.shape[0], generator=g)
    return {
        "x": x,
        "rot_scaled": 7.0 * x @ _rotation(x.shape[1]),
        "permuted": x[perm],
        "noisy": x + 0.05 * x.std() * torch.randn(x.shape, generator=g, dtype=torch.float64),
        "random": torch.randn(x.shape, generator=g, dtype=torch.float64),
    }


# ------------------------------------------------------------------------------------------- distances
def test_pairwise_distances_normalised_and_scale_free(planted):
    x = planted["x"]
    for metric in ("euclidean", "cosine"):
        d = pairwise_distances(x, metric=metric)
        n = d.shape[0]
        assert torch.allclose(d, d.T) and torch.all(d.diagonal() == 0)
        assert d.sum() / (n * (n - 1)) == pytest.approx(1.0, abs=1e-12)
        assert torch.allclose(d, pairwise_distances(5 * x, metric=metric), atol=1e-10)
    assert pairwise_distances(x, normalize="max").max() == pytest.approx(1.0)
    raw = pairwise_distances(x, normalize="none")
    assert raw[0, 1] == pytest.approx(float((x[0] - x[1]).norm()))
    batched = pairwise_distances(torch.stack([x, 2 * x]))
    assert batched.shape == (2, 64, 64) and torch.allclose(batched[0], batched[1])


# ------------------------------------------------------------------------------------------- GW
@pytest.mark.parametrize("solver", ["exact", "entropic"])
def test_gw_zero_for_isometric_copies_and_large_for_unrelated(planted, solver):
    dx = pairwise_distances(planted["x"])
    gw = {k: float(gw_distance(dx, pairwise_distances(v), solver=solver)) for k, v in planted.items()}
    for k in ("x", "rot_scaled", "permuted"):
        assert gw[k] < 1e-3, (k, gw)
    assert gw["noisy"] < 0.02, gw
    assert gw["random"] > 0.05, gw
    assert gw["random"] > 20 * max(gw["x"], gw["rot_scaled"], gw["permuted"], 1e-4)


def test_gw_cost_matches_brute_force_and_rounding_gives_couplings():
    g = torch.Generator().manual_seed(0)
    d1 = pairwise_distances(torch.randn(5, 3, generator=g, dtype=torch.float64))
    d2 = pairwise_distances(torch.randn(4, 2, generator=g, dtype=torch.float64))
    t = torch.rand(5, 4, generator=g, dtype=torch.float64)
    brute = ((d1[:, None, :, None] - d2[None, :, None, :]) ** 2 * t[:, :, None, None] * t[None, None]).sum()
    assert float(gw_cost(d1, d2, t)) == pytest.approx(float(brute), rel=1e-12)
    p, q = torch.full((5,), 0.2, dtype=torch.float64), torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    r = round_to_coupling(torch.stack([t, 2 * t]), p.expand(2, 5), q.expand(2, 4))
    assert torch.all(r >= 0)
    assert torch.allclose(r.sum(-1), p.expand(2, 5), atol=1e-15) and torch.allclose(r.sum(-2), q.expand(2, 4), atol=1e-15)
    # a plan that already is a coupling is left alone
    assert torch.allclose(round_to_coupling(p[:, None] * q[None, :], p, q), p[:, None] * q[None, :], atol=1e-17)
    for w1, w2 in ((p, p), (p, q)):
        v = random_coupling(w1, w2, torch.Generator().manual_seed(3))
        assert torch.allclose(v.sum(1), w1, atol=1e-12) and torch.allclose(v.sum(0), w2, atol=1e-12)
        assert torch.equal(v, random_coupling(w1, w2, torch.Generator().manual_seed(3)))
    assert (random_coupling(p, p, torch.Generator().manual_seed(3)) > 0).sum() == 5  # a permutation plan


@pytest.fixture(scope="module")
def hard_pairs(planted):
    # a noisy copy with its points permuted: CG from p q^T and from the identity both stall far from it
    g = torch.Generator().manual_seed(7)
    perm = torch.randperm(planted["x"].shape[0], generator=g)
    return {"noisy_permuted": planted["noisy"][perm], "noisy": planted["noisy"], "random": planted["random"],
            "permuted": planted["permuted"]}


def test_exact_never_above_entropic_plan_cost(planted, hard_pairs):
    dx = pairwise_distances(planted["x"])
    for name, y in hard_pairs.items():
        dy = pairwise_distances(y)
        plan = gw_entropic_plans(dx[None], dy[None])[0]
        assert torch.allclose(plan.sum(0), torch.full((64,), 1 / 64, dtype=plan.dtype), atol=1e-15)
        entropic_plan_cost = 0.5 * float(gw_cost(dx, dy, plan).clamp_min(0).sqrt())
        # the entropic solver reports exactly the cost of that (feasible) plan
        assert float(gw_distance(dx, dy, solver="entropic")) == pytest.approx(entropic_plan_cost, rel=1e-9, abs=1e-12)
        # with the entropic plan as an opt-in start, exact can never be above it
        starts = EXACT_STARTS + ("entropic",)
        exact, per_start = gw_exact_multistart(dx, dy, entropic_plan=plan, starts=starts)
        assert float(exact) <= entropic_plan_cost + 1e-12, name
        assert float(exact) == pytest.approx(float(per_start.nan_to_num(9.0).min()))
        assert len(per_start) == len(starts)


def test_default_exact_starts_skip_the_entropic_solver(planted, monkeypatch):
    import circuitclust.core.gw as sim

    assert "entropic" not in EXACT_STARTS and EXACT_STARTS.count("random") == 2 and "profile" in EXACT_STARTS
    calls = []
    real = sim.gw_entropic_plans
    monkeypatch.setattr(sim, "gw_entropic_plans", lambda *a, **k: calls.append(1) or real(*a, **k))
    dx, dy = pairwise_distances(planted["x"]), pairwise_distances(planted["noisy"])
    sim.gw_matrix(torch.stack([dx, dy]))
    assert not calls
    sim.gw_matrix(torch.stack([dx, dy]), starts=EXACT_STARTS + ("entropic",))
    assert calls


ENTROPIC_TOL = 0.02  # stated tolerance of the entropic solver vs exact on the planted 64-point cases


def test_entropic_within_tolerance_of_exact_on_planted_cases(planted, hard_pairs):
    dx = pairwise_distances(planted["x"])
    cases = {**hard_pairs, "rot_scaled": planted["rot_scaled"]}
    dys = [pairwise_distances(y) for y in cases.values()]
    ent = gw_paired([dx] * len(dys), dys, solver="entropic")
    exact = gw_paired([dx] * len(dys), dys, solver="exact")
    for name, e, x in zip(cases, ent.tolist(), exact.tolist()):
        assert abs(e - x) <= ENTROPIC_TOL, (name, e, x)
    # The relative epsilon makes the solver blind to a global rescaling of both matrices: a distance above the
    # noise floor scales exactly. The distance is 0.5 sqrt(GW cost), and rounding leaves a cost of ~1e-14 of
    # the scale on isometric copies, so their distance sits at a floor of ~1e-7 of the scale (0 or ~1e-7
    # depending on the BLAS kernels): there only an absolute bound holds.
    scale = 10.0
    scaled = gw_paired([scale * dx] * len(dys), [scale * d for d in dys], solver="entropic")
    floor = 1e-6 * scale
    above = (scale * ent).abs() > floor
    assert int(above.sum()) >= 3, ent  # the noisy and random pairs are far above the floor
    torch.testing.assert_close(scaled[above], scale * ent[above], rtol=1e-6, atol=0.0)
    assert bool((scaled[~above].abs() <= floor).all()), scaled


def test_exact_starts_matter_on_a_noisy_permuted_copy(planted, hard_pairs):
    dx, dy = pairwise_distances(planted["x"]), pairwise_distances(hard_pairs["noisy_permuted"])
    product_only = float(gw_distance(dx, dy, starts=("product",)))
    identity_only = float(gw_distance(dx, dy, starts=("identity",)))
    best = float(gw_distance(dx, dy))
    assert best < 0.02  # ~ the noisy copy's own distance
    assert product_only > 5 * best and identity_only > 5 * best
    # the distance-profile start alone finds it, whatever the labelling of the points
    assert float(gw_distance(dx, dy, starts=("profile",))) < 0.02
    w = torch.linspace(1, 2, 64, dtype=torch.float64)
    plan = profile_coupling(dx, dy, w / w.sum(), torch.full((64,), 1 / 64, dtype=torch.float64))
    assert torch.allclose(plan.sum(1), w / w.sum(), atol=1e-15) and torch.allclose(plan.sum(0), plan.new_full((64,), 1 / 64))
    # a permuted copy is still ~0 with the points treated as different (no identity start)
    assert float(gw_distance(dx, pairwise_distances(planted["permuted"]), same_points=False)) < 1e-6
    with pytest.raises(CircuitclustError, match="start"):
        gw_distance(dx, dy, starts=("warm",))


def test_gw_entropic_pgd_runs_and_orders():
    # POT's entropic PGD is slow and biased upwards by the plan's blur: only check the ordering on a small case
    x = _points(n=20, d=6)
    dx = pairwise_distances(x)
    same = float(gw_distance(dx, pairwise_distances(3 * x), solver="entropic-pgd"))
    other = float(gw_distance(dx, pairwise_distances(torch.randn(20, 6, dtype=torch.float64)), solver="entropic-pgd"))
    assert 0 <= same < other


def test_gw_across_widths_and_matrix_symmetric(planted):
    x = planted["x"]
    wide = torch.cat([x @ _rotation(16), torch.zeros(64, 48, dtype=torch.float64)], dim=1)  # 64-wide isometric copy
    dists = [pairwise_distances(r) for r in (x, wide, planted["noisy"], planted["random"])]
    m = gw_matrix(dists, solver="exact")
    assert m.shape == (4, 4)
    assert torch.equal(m, m.T) and torch.all(m.diagonal() == 0)
    assert m[0, 1] < 1e-3 and m[0, 3] > 0.05
    # the batched solver gives the same picture
    mb = gw_matrix(torch.stack(dists), solver="entropic", pair_batch=2)
    assert torch.equal(mb, mb.T)
    assert torch.allclose(mb[0, 1:3], m[0, 1:3], atol=5e-3)


def test_gw_weights_equal_duplicated_points(planted):
    # a point weighted 2/n is the same measure as that point listed twice
    x = planted["x"][:20]
    y = planted["random"][:20]
    dup = torch.cat([x, x[:1]]), torch.cat([y, y[:1]])
    w = torch.full((20,), 1 / 21, dtype=torch.float64)
    w[0] = 2 / 21
    weighted = gw_distance(pairwise_distances(x, weights=w), pairwise_distances(y, weights=w), p=w, q=w)
    listed = gw_distance(pairwise_distances(dup[0]), pairwise_distances(dup[1]))
    assert float(weighted) == pytest.approx(float(listed), rel=0.05)


# ------------------------------------------------------------------------------------------- CKA
def test_cka_invariances(planted):
    x = planted["x"]
    c = cka_matrix([x, planted["rot_scaled"], planted["noisy"], planted["random"], x[:, :4]])
    assert torch.allclose(c, c.T) and torch.allclose(c.diagonal(), torch.ones(5, dtype=c.dtype))
    assert c[0, 1] == pytest.approx(1.0, abs=1e-10)
    assert c[0, 2] > 0.99
    assert c[0, 3] < 0.5
    # matches the feature-space formula ||Y^T X||^2 / (||X^T X|| ||Y^T Y||) on centred features
    xc, yc = x - x.mean(0), planted["random"] - planted["random"].mean(0)
    ref = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert float(linear_cka(x, planted["random"])) == pytest.approx(float(ref), rel=1e-9)


def test_bad_inputs_raise_clear_errors(planted):
    with pytest.raises(CircuitclustError, match="at least"):
        pairwise_distances(torch.randn(2, 5))
    with pytest.raises(CircuitclustError, match="too small"):
        sample_positions(torch.ones(3, 10, dtype=torch.bool), n=2)
    with pytest.raises(DataError, match="usable token positions"):
        sample_positions(torch.ones(2, 3, dtype=torch.bool), n=50)
    with pytest.raises(CircuitclustError, match="unknown GW solver"):
        gw_matrix([pairwise_distances(planted["x"])] * 2, solver="sinkhorn")
    with pytest.raises(CircuitclustError, match="metric"):
        pairwise_distances(planted["x"], metric="manhattan")
    with pytest.raises(CircuitclustError, match="same points"):
        cka_matrix([planted["x"], planted["x"][:10]])
    with pytest.raises(CircuitclustError, match="identical"):
        pairwise_distances(torch.ones(8, 3))


# ------------------------------------------------------------------------------------------- groups
def _block_matrix(sizes, within=0.1, between=1.0, order=None):
    labels = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    if order is not None:
        labels = labels[order]
    d = torch.where(labels[:, None] == labels[None, :], within, between).double()
    g = torch.Generator().manual_seed(0)
    noise = 0.05 * torch.rand(d.shape, generator=g, dtype=torch.float64)
    d = d + noise + noise.T
    d.fill_diagonal_(0)
    return d, labels


def test_contiguous_and_free_groups_recover_planted_blocks():
    d, labels = _block_matrix([3, 5, 4])
    got = cluster_layers(d, 3, contiguous=True)
    assert got.tolist() == labels.tolist()
    assert group_boundaries(got) == [3, 8]
    k, scores = choose_n_groups(d)
    assert k == 3 and scores[3] > scores[2]
    # non-contiguous planted groups: only free clustering recovers them
    order = torch.tensor([0, 3, 1, 4, 2, 5, 6, 7, 8, 9, 10, 11])
    d2, labels2 = _block_matrix([3, 5, 4], order=order)
    free = cluster_layers(d2, 3, contiguous=False)
    same = labels2[:, None] == labels2[None, :]
    assert torch.equal(free[:, None] == free[None, :], same)
    contiguous = cluster_layers(d2, 3, contiguous=True)
    assert not torch.equal(contiguous[:, None] == contiguous[None, :], same)


def test_bootstrap_stability_high_for_clear_groups_low_for_noise():
    # three groups of layers: each group shares one point cloud (plus small noise), groups are unrelated
    g = torch.Generator().manual_seed(0)
    bases = [torch.randn(40, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    reps = [bases[i // 2] + 0.02 * torch.randn(40, 8, generator=g, dtype=torch.float64) for i in range(6)]
    dists = torch.stack([pairwise_distances(r) for r in reps])
    gw = gw_matrix(dists, solver="exact")
    groups = find_groups(gw)
    assert groups.boundaries == [2, 4]
    stab, (lo, hi) = bootstrap_groups(dists, groups, n_boot=4, seed=1, solver="exact")
    assert stab["ari_mean"] == pytest.approx(1.0)
    assert stab["boundary_freq"] == [0.0, 1.0, 0.0, 1.0, 0.0]
    assert torch.all(lo <= hi) and torch.all(lo.diagonal() == 0)


# ------------------------------------------------------------------------------------------- models
@pytest.fixture(scope="module", params=["tiny-gpt2", "tiny-pythia", "tiny-gemma"])
def tiny(request):
    from circuitclust.models import load_model

    return request.param, load_model(request.param, device="cpu")


def test_layer_similarity_on_tiny_models(tiny, tmp_path):
    name, model = tiny
    sim = layer_similarity(model, TEXTS, n=24, seed=3, model_name=name)
    n_layers = model.cfg.n_layers
    assert sim.layers == [f"blocks.{l}.hook_resid_post" for l in range(n_layers)]
    for m in (sim.distances, sim.cka):
        assert m.shape == (n_layers, n_layers) and torch.equal(m, m.T)
    assert torch.all(sim.distances.diagonal() == 0) and torch.all(sim.distances[~torch.eye(n_layers, dtype=bool)] > 0)
    assert sim.positions.shape == (24, 2) and torch.all(sim.positions[:, 1] >= 1)
    assert sim.provenance["model"] == name and sim.provenance["seed"] == 3
    assert len(sim.groups.labels) == n_layers
    assert sim.groups.labels_by_k[2] and len(sim.groups.labels_by_k[2]) == n_layers
    summary = sim.provenance["exact_start_summary"]
    assert summary["starts"] == list(EXACT_STARTS) and sum(summary["wins"].values()) >= n_layers * (n_layers - 1) // 2
    sim.save(tmp_path)
    back = LayerSimilarity.load(tmp_path)
    assert torch.equal(back.distances, sim.distances) and back.layers == sim.layers
    assert back.groups.boundaries == sim.groups.boundaries and back.groups.labels_by_k == sim.groups.labels_by_k
    doc = json.loads((tmp_path / "similarity.json").read_text())
    assert doc["schema"] == "circuitclust.similarity/1" and len(doc["gw"]) == n_layers
    assert (tmp_path / "gw.csv").read_text().splitlines()[0].startswith("layer,blocks.0.hook_resid_post")


def test_hooks_shortcuts_and_unknown_hook(tiny):
    _, model = tiny
    assert resolve_hooks(model, "mlp_out")[1] == "blocks.1.hook_mlp_out"
    assert resolve_hooks(model, ["attn_out", "blocks.0.hook_resid_post"])[-1] == "blocks.0.hook_resid_post"
    with pytest.raises(CircuitclustError, match="does not exist"):
        resolve_hooks(model, "blocks.99.hook_resid_post")
    with pytest.raises(CircuitclustError, match="does not exist"):
        layer_similarity(model, TEXTS, hooks="resid_middle", n=16)


def test_positions_depend_on_seed_and_compare_detects_change():
    from circuitclust.models import load_model

    base = load_model("tiny-gpt2", device="cpu")
    a = layer_similarity(base, TEXTS, n=24, seed=0, hooks="mlp_out")
    b = layer_similarity(base, TEXTS, n=24, seed=1, hooks="mlp_out")
    assert not torch.equal(a.positions, b.positions)
    same = compare_similarity(a, layer_similarity(base, TEXTS, n=24, seed=0, hooks="mlp_out"))
    assert same["per_layer_gw"] == pytest.approx([0.0] * 4, abs=1e-6) and same["gw_spearman"] == pytest.approx(1.0)
    other = load_model("tiny-gpt2", device="cpu")
    with torch.no_grad():  # scramble the last MLP: only the last layer's output should move
        w = other.original_model.transformer.h[3].mlp.c_proj.weight
        w.copy_(w[torch.randperm(w.shape[0])])
    c = compare_similarity(a, layer_similarity(other, TEXTS, n=24, seed=0, hooks="mlp_out"))
    assert c["per_layer_gw"][:3] == pytest.approx([0.0] * 3, abs=1e-6)
    assert c["per_layer_gw"][3] > 0.01


def test_cli_similarity(tmp_path):
    from typer.testing import CliRunner

    from circuitclust.cli.main import app

    corpus = tmp_path / "texts.txt"
    corpus.write_text("\n".join(TEXTS) + "\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["similarity", "tiny-pythia", "--data", str(corpus), "--split", "train", "--n", "16",
                                   "--out", str(out), "--compare", "tiny-pythia", "--device", "cpu", "--boot", "2",
                                   "--starts", "product,entropic"])
    assert res.exit_code == 0, res.output
    assert "bootstrap (2)" in res.output and "cut frequency" in res.output and "entropic" in res.output
    doc = json.loads((out / "similarity.json").read_text())
    assert doc["provenance"]["exact_starts"] == ["product", "entropic"]
    assert doc["groups"]["stability"]["n_boot"] == 2 and "gw_ci_low" in doc
    for f in ("similarity.json", "similarity.safetensors", "gw.csv", "cka.csv", "similarity_compare.json",
              "compare/similarity.json"):
        assert (out / f).is_file(), f
    cmp = json.loads((out / "similarity_compare.json").read_text())
    assert cmp["per_layer_gw"] == pytest.approx([0.0] * 4, abs=1e-6)
    bad = CliRunner().invoke(app, ["similarity", "tiny-pythia", "--data", str(corpus), "--n", "2", "--out", str(out)])
    assert bad.exit_code == 2 and "too small" in bad.output
