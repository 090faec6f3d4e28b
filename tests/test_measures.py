import math

import numpy as np
import pytest
import torch
from _helpers import shuffle_test

from circuitclust.core.measures import chance_level, clusterability, ncut, null_stats
from circuitclust.core.network import NetworkGraph, spectral_clustering


def test_clusterability_equals_direct_numpy():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(30, 50, generator=g)
    r, c = torch.randint(0, 4, (30,), generator=g), torch.randint(0, 4, (50,), generator=g)
    wn, rn, cn = w.numpy().astype(np.float64), r.numpy(), c.numpy()
    direct = sum((wn[np.ix_(rn == i, cn == i)] ** 2).sum() for i in range(4)) / (wn ** 2).sum()
    assert float(clusterability(w, r, c)) == pytest.approx(direct, rel=1e-5)


def test_clusterability_batched_and_differentiable():
    w = torch.randn(3, 10, 12, requires_grad=True)
    r, c = torch.randint(0, 2, (3, 10)), torch.randint(0, 2, (3, 12))
    v = clusterability(w, r, c)
    assert v.shape == (3,)
    v.sum().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert float(clusterability(torch.zeros(4, 4), r[0, :4], c[0, :4])) == 0.0


def test_chance_level():
    r = torch.tensor([0, 0, 1, 1])
    c = torch.tensor([0, 1, 1, 1, 1, 1])
    assert float(chance_level(r, c, 2)) == pytest.approx((2 * 1 + 2 * 5) / 24)
    blocks = torch.arange(8) // 2
    assert float(chance_level(blocks, blocks, 4)) == pytest.approx(0.25)


def test_null_stats():
    st = null_stats(1.0, [0.1, 0.2, 0.3])
    assert st.p == pytest.approx(0.25) and st.z > 0
    st = null_stats(0.2, [0.1, 0.2, 0.3])
    assert st.p == pytest.approx(3 / 4)
    assert null_stats(0.05, [0.1, 0.2], higher_is_better=False).p == pytest.approx(1 / 3)


def test_shuffle_test_minimum_p_on_planted_blocks_not_on_iid():
    g = torch.Generator().manual_seed(0)
    r, c = torch.randint(0, 3, (60,), generator=g), torch.randint(0, 3, (80,), generator=g)
    planted = 0.3 * torch.randn(60, 80, generator=g) + (r[:, None] == c[None, :]) * torch.randn(60, 80, generator=g)
    st = shuffle_test(planted, 3, n=9, seed=0)
    assert st.p == pytest.approx(1 / 10) and st.value > st.mean + 3 * st.std and len(st.null) == 9
    iid = torch.randn(60, 80, generator=g)
    assert shuffle_test(iid, 3, n=9, seed=0).p > 1 / 10


def _two_cliques():
    # nodes 0-3 and 4-7: dense inside, one weak link between
    net = NetworkGraph(8)
    net.add(torch.ones(2, 2), 0, 2)
    net.add(torch.ones(2, 2), 4, 6)
    weak = torch.zeros(2, 2)
    weak[0, 0] = 0.01
    net.add(weak, 2, 4)
    return net


def test_network_graph_matmul_matches_dense_adjacency():
    net = _two_cliques()
    dense = torch.zeros(8, 8)
    for a, i0, o0 in net.blocks:
        dense[i0:i0 + a.shape[0], o0:o0 + a.shape[1]] += a
    dense = dense + dense.T
    x = torch.randn(8, 3)
    assert torch.allclose(net.matmul(x), dense @ x)
    assert torch.allclose(net.degrees(), dense.sum(1))


def test_spectral_clustering_and_ncut_on_two_cliques():
    net = _two_cliques()
    lab = spectral_clustering(net, 2, seed=0)
    assert len(set(lab[:4].tolist())) == 1 and len(set(lab[4:].tolist())) == 1 and lab[0] != lab[4]
    good = ncut(net, lab, 2)
    bad = ncut(net, torch.tensor([0, 1, 0, 1, 0, 1, 0, 1]), 2)
    assert good < 0.01 < bad


def test_zero_degree_nodes_are_dropped():
    net = NetworkGraph(10)
    net.add(torch.ones(2, 2), 0, 2)
    net.add(torch.ones(2, 2), 4, 6)
    lab = spectral_clustering(net, 2, seed=0)
    assert (lab[8:] == -1).all() and (lab[:8] >= 0).all()
    assert np.isfinite(ncut(net, lab, 2))


def test_normalised_clusterability_is_0_at_chance_and_1_block_diagonal():
    from circuitclust.core.measures import normalised_clusterability

    blocks = torch.arange(8) // 2  # 4 equal clusters of 2
    diag = torch.zeros(8, 8)
    diag[blocks[:, None] == blocks[None, :]] = 1.0
    chance = chance_level(blocks, blocks, 4)
    assert float(normalised_clusterability(clusterability(diag, blocks, blocks), chance)) == pytest.approx(1.0)
    flat = torch.ones(8, 8)  # every entry the same: C equals its chance level exactly
    assert float(normalised_clusterability(clusterability(flat, blocks, blocks), chance)) == pytest.approx(0.0, abs=1e-12)
    assert float(normalised_clusterability(0.1, 0.25)) == pytest.approx(-0.2)  # below chance is negative
    assert math.isnan(float(normalised_clusterability(1.0, 1.0)))  # one cluster holds everything


def test_benjamini_hochberg_matches_the_step_up_rule():
    from circuitclust.core.measures import benjamini_hochberg

    p = [0.01, 0.04, 0.03, 0.20, float("nan")]
    q = benjamini_hochberg(p).tolist()
    # m = 4 non-NaN tests; sorted 0.01, 0.03, 0.04, 0.20 -> 0.04, 0.0533, 0.0533, 0.20 after the running min
    assert q[:4] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.20])
    assert math.isnan(q[4])
    assert benjamini_hochberg([]).numel() == 0


def test_intervals_say_how_they_were_made():
    from circuitclust.core.measures import interval_method

    full = interval_method(1000)
    assert full == {"level": 0.95, "method": "percentile bootstrap over prompts", "n_boot": 1000}
    few = interval_method(5, "token positions")
    assert few["level"] is None and "indicative" in few["note"] and "95%" not in few["method"]
    assert few["method"].startswith("2.5-97.5 percentile range of 5 bootstrap resamples")
