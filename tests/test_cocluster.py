import pytest
import torch
from sklearn.metrics import adjusted_rand_score as ari
from _helpers import dense_gram

import circuitclust
from circuitclust.core.cocluster import cocluster, cocluster_batch, cocluster_labels
from circuitclust.core.measures import clusterability
from circuitclust.core.svd import exact_svd, randomized_svd, subspace_cosines
from circuitclust.errors import CircuitclustError


def planted(n_in, n_out, k, noise, seed=0):
    """Block structure (random sizes, i.e. random row/column permutations of contiguous blocks) + noise."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, k, (n_in,), generator=g)
    c = torch.randint(0, k, (n_out,), generator=g)
    w = noise * torch.randn(n_in, n_out, generator=g) + (r[:, None] == c[None, :]) * torch.randn(n_in, n_out, generator=g)
    return w, r, c


@pytest.mark.parametrize("k,noise", [(2, 0.3), (3, 0.5), (4, 0.3), (4, 0.6), (6, 0.4)])
def test_planted_blocks_recovered(k, noise):
    w, r, c = planted(120, 200, k, noise, seed=k)
    p = cocluster(w, k, seed=0)
    assert ari(r, p.row_labels) >= 0.95 and ari(c, p.col_labels) >= 0.95
    # rows and columns of one planted block share the cluster id (one k-means over both sides)
    both = ari(torch.cat([r, c]), torch.cat([p.row_labels, p.col_labels]))
    assert both >= 0.95


def test_heavy_noise_is_not_recovered():
    """The planted-block test can fail: at noise 3 the structure is drowned."""
    w, r, c = planted(120, 200, 4, 3.0)
    assert ari(r, cocluster(w, 4).row_labels) < 0.5


def test_agrees_with_sklearn_spectral_coclustering():
    from sklearn.cluster import SpectralCoclustering

    w, r, c = planted(150, 240, 4, 0.4, seed=5)
    p = cocluster(w, 4, seed=0)
    sk = SpectralCoclustering(4, random_state=0).fit(w.abs().numpy())
    assert ari(sk.row_labels_, p.row_labels) >= 0.95 and ari(sk.column_labels_, p.col_labels) >= 0.95


def test_not_worse_than_sklearn_on_structure_plus_noise():
    from sklearn.cluster import SpectralCoclustering

    w, _, _ = planted(200, 300, 4, 0.8, seed=2)
    p = cocluster(w, 4, seed=0)
    sk = SpectralCoclustering(4, random_state=0).fit(w.abs().numpy())
    ours = float(clusterability(w, p.row_labels, p.col_labels))
    theirs = float(clusterability(w, torch.as_tensor(sk.row_labels_), torch.as_tensor(sk.column_labels_)))
    assert ours >= theirs - 0.01


def test_randomized_path_on_planted_blocks():
    w, r, c = planted(600, 800, 4, 0.5, seed=1)
    p = cocluster(w, 4, svd="randomized")
    assert p.provenance["svd"] == "randomized"
    assert ari(r, p.row_labels) >= 0.95 and ari(c, p.col_labels) >= 0.95


def test_randomized_svd_subspace_matches_exact():
    w, _, _ = planted(300, 500, 4, 0.5)
    a = w.abs()[None]
    ue, _, ve = exact_svd(a, 4)
    ur, _, vr = randomized_svd(a, 4, n_iter=6, generator=torch.Generator().manual_seed(0))
    assert subspace_cosines(ue, ur).min() > 0.99 and subspace_cosines(ve, vr).min() > 0.99


def test_partition_contract_and_public_export():
    w, _, _ = planted(40, 60, 3, 0.3)
    p = circuitclust.cocluster(w, 3, seed=1, model="x")
    assert isinstance(p, circuitclust.Partition)
    assert p.row_labels.shape == (40,) and p.col_labels.shape == (60,) and p.k == 3
    assert p.row_labels.dtype == torch.int64 and int(p.row_labels.max()) < 3
    assert p.provenance["method"] == "spectral" and p.provenance["seed"] == 1 and p.provenance["model"] == "x"


def test_deterministic_for_a_seed():
    w = torch.randn(80, 120)
    a, b = cocluster(w, 4, seed=7), cocluster(w, 4, seed=7)
    assert torch.equal(a.row_labels, b.row_labels) and torch.equal(a.col_labels, b.col_labels)
    a, b = cocluster(w, 4, seed=7, svd="randomized"), cocluster(w, 4, seed=7, svd="randomized")
    assert torch.equal(a.row_labels, b.row_labels)


def test_batch_matches_single_on_structure():
    ws, truths = zip(*[(planted(60, 90, 3, 0.3, seed=s)[0], planted(60, 90, 3, 0.3, seed=s)[1]) for s in range(4)])
    parts = cocluster_batch(torch.stack(ws), 3, seed=0)
    assert len(parts) == 4
    for p, r in zip(parts, truths):
        assert ari(r, p.row_labels) >= 0.95


def test_power_two_and_float64_and_bfloat16():
    w, r, _ = planted(60, 90, 3, 0.3)
    for x in (w, w.double(), w.bfloat16()):
        p = cocluster(x, 3, power=2)
        assert ari(r, p.row_labels) >= 0.95


def test_zero_rows_and_columns_get_finite_valid_labels():
    w, r, c = planted(60, 90, 3, 0.3)
    w[::7] = 0
    w[:, ::5] = 0
    p = cocluster(w, 3)
    for lab in (p.row_labels, p.col_labels):
        assert lab.min() >= 0 and lab.max() < 3
    keep_r, keep_c = w.abs().sum(1) > 0, w.abs().sum(0) > 0
    assert ari(r[keep_r], p.row_labels[keep_r]) >= 0.95 and ari(c[keep_c], p.col_labels[keep_c]) >= 0.95


@pytest.mark.parametrize("bad,msg", [
    (lambda: cocluster(torch.randn(5, 6), 1), "k=1"),
    (lambda: cocluster(torch.randn(5, 6), 6), "k=6"),
    (lambda: cocluster(torch.zeros(5, 6), 2), "all zero"),
    (lambda: cocluster(torch.tensor([[1.0, float("nan")], [1.0, 2.0], [3.0, 1.0]]), 2), "NaN"),
    (lambda: cocluster(torch.tensor([[1.0, float("inf")], [1.0, 2.0], [3.0, 1.0]]), 2), "NaN or inf"),
    (lambda: cocluster(torch.randn(4, 5), 2, power=3), "power"),
    (lambda: cocluster(torch.randn(4), 2), "matrix"),
])
def test_degenerate_inputs_raise_clear_errors(bad, msg):
    with pytest.raises(CircuitclustError, match=msg):
        bad()


def test_too_few_nonzero_units():
    w = torch.zeros(6, 6)
    w[0, 0] = 1.0
    with pytest.raises(CircuitclustError, match="fewer than k"):
        cocluster_labels(w, 3)


def test_default_lanczos_steps_are_accurate_on_a_small_gap():
    """The default step cap (SVD_N_ITER) must pin down the top vectors where sigma_k and sigma_(k+1) differ by
    3% (as on Gemma attention stacks, where the early stop never triggers); 6 steps did not."""
    from circuitclust.core.cocluster import SVD_N_ITER, SVD_TOL
    from circuitclust.core.svd import block_lanczos_svd, exact_svd, subspace_cosines

    g = torch.Generator().manual_seed(0)
    m, n = 600, 400
    u = torch.linalg.qr(torch.randn(m, n, generator=g, dtype=torch.float64)).Q
    v = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q
    s = torch.cat([torch.tensor([3.0, 2.9, 2.8]), 2.72 * 0.998 ** torch.arange(n - 3)]).double()
    a = ((u * s) @ v.T)[None]
    _, _, ve = exact_svd(a, 3)

    def worst(steps):
        return min(float(subspace_cosines(ve, block_lanczos_svd(
            dense_gram(a.float()), 1, n, 3, block=4, n_iter=steps, tol=SVD_TOL,
            generator=torch.Generator().manual_seed(seed))[2].double()).min()) for seed in range(4))

    assert worst(SVD_N_ITER) > 0.99
    assert worst(6) < 0.9
