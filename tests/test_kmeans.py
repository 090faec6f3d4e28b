import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from circuitclust.core.kmeans import kmeans, kmeans_plusplus
from circuitclust.errors import OptionError


def _blobs(n_per=50, k=4, d=3, spread=0.05, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(k, d, generator=g) * 3
    truth = torch.arange(k).repeat_interleave(n_per)
    x = centers[truth] + spread * torch.randn(k * n_per, d, generator=g)
    perm = torch.randperm(k * n_per, generator=g)
    return x[perm], truth[perm]


def test_recovers_separated_blobs():
    x, truth = _blobs()
    res = kmeans(x, 4, seed=0)
    assert res.labels.shape == truth.shape and res.labels.dtype == torch.int64
    assert adjusted_rand_score(truth, res.labels) == 1.0
    assert res.centers.shape == (4, 3)


def test_batched_equals_each_problem_solved_alone():
    xs, ts = zip(*[_blobs(seed=s) for s in range(3)])
    res = kmeans(torch.stack(xs), 4, seed=0)
    assert res.labels.shape == (3, 200) and res.inertia.shape == (3,)
    for b in range(3):
        assert adjusted_rand_score(ts[b], res.labels[b]) == 1.0


def test_deterministic_for_a_seed():
    x = torch.randn(300, 4)
    a, b = kmeans(x, 5, seed=3), kmeans(x, 5, seed=3)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centers, b.centers)


def test_inertia_not_worse_than_sklearn():
    from sklearn.cluster import KMeans

    x = torch.randn(400, 3, generator=torch.Generator().manual_seed(1))
    ours = kmeans(x, 6, seed=0, n_init=10)
    sk = KMeans(6, n_init=10, random_state=0).fit(x.numpy())
    assert float(ours.inertia) <= sk.inertia_ * 1.02


def test_zero_weight_points_do_not_pull_centres():
    x, truth = _blobs(k=3)
    far = torch.full((5, 3), 100.0)
    w = torch.cat([torch.ones(len(x)), torch.zeros(5)])
    res = kmeans(torch.cat([x, far]), 3, seed=0, sample_weight=w)
    assert adjusted_rand_score(truth, res.labels[: len(x)]) == 1.0
    assert res.centers.abs().max() < 50  # no centre went to the weightless outliers


def test_duplicate_points_give_no_nan_and_valid_labels():
    x = torch.zeros(20, 2)
    x[10:] = 1.0
    res = kmeans(x, 3, seed=0)
    assert torch.isfinite(res.centers).all() and int(res.labels.max()) < 3


def test_plusplus_picks_distinct_points():
    x, _ = _blobs(k=4)
    c = kmeans_plusplus(x[None], 4, torch.Generator().manual_seed(0))
    assert c.shape == (1, 4, 3) and torch.cdist(c[0], c[0]).fill_diagonal_(99).min() > 1.0


def test_bad_k():
    with pytest.raises(ValueError):
        kmeans(torch.randn(3, 2), 4)


def test_rebalance_fills_every_cluster_at_least_cost_and_keeps_balanced_labels():
    from circuitclust.core.kmeans import rebalance

    g = torch.Generator().manual_seed(0)
    # degenerate input: every point in cluster 0 except three; clusters 2 and 3 empty
    x = torch.randn(2, 40, 3, generator=g)
    centers = torch.randn(2, 4, 3, generator=g)
    labels = torch.zeros(2, 40, dtype=torch.long)
    labels[:, :3] = 1
    out = rebalance(x, labels, centers, min_size=5)
    counts = torch.nn.functional.one_hot(out, 4).sum(1)
    assert bool((counts >= 5).all()), counts
    # only as many points move as the deficits need (1 -> needs 2 more, 2 and 3 need 5 each)
    assert int((out != labels).sum()) == 2 * 12
    # each moved point was among the cheapest candidates for its new cluster
    d = torch.cdist(x, centers).square()
    for b in range(2):
        for c in (2, 3):
            moved = (out[b] == c) & (labels[b] != c)
            cost = d[b, :, c] - d[b, torch.arange(40), labels[b]]
            stay = (out[b] == labels[b]) & (labels[b] == 0)
            assert float(cost[moved].max()) <= float(cost[stay].min()) + 1e-6
    # already balanced labels come back unchanged; impossible sizes are refused
    ok = torch.arange(40).repeat(2, 1) % 4
    assert torch.equal(rebalance(x, ok, centers, min_size=10), ok)
    with pytest.raises(OptionError):
        rebalance(x, ok, centers, min_size=11)
