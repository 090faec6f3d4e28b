import pytest
import torch
from _helpers import dense_gram

from circuitclust.core.svd import block_lanczos_svd, exact_svd, subspace_cosines


def structured(m, n, rank, seed=0, noise=0.05):
    """A matrix with a decaying top spectrum (rank-`rank` signal plus noise), batched [1, m, n]."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, rank, generator=g) @ torch.diag(torch.linspace(3, 1, rank)) @ torch.randn(rank, n, generator=g)
    return (a + noise * torch.randn(m, n, generator=g) * a.std())[None]


def test_block_lanczos_matches_exact_svd():
    a = structured(300, 500, 6)
    ue, se, ve = exact_svd(a.double(), 4)
    u, s, v, steps = block_lanczos_svd(dense_gram(a), 1, 500, 4, block=5, n_iter=6,
                                       generator=torch.Generator().manual_seed(0))
    assert u.shape == (1, 300, 4) and v.shape == (1, 500, 4) and s.shape == (1, 4) and steps == 6
    assert subspace_cosines(ue, u.double()).min() > 0.999 and subspace_cosines(ve, v.double()).min() > 0.999
    assert torch.allclose(s.double(), se, rtol=1e-3)
    # orthonormal, and u = A v / s
    assert torch.allclose(u.transpose(1, 2) @ u, torch.eye(4)[None], atol=1e-4)
    assert torch.allclose(a @ v, u * s[:, None, :], atol=1e-3 * float(se.max()))


def test_one_step_is_not_enough_on_a_flat_spectrum():
    """The accuracy check can fail: a single step on noise does not find the top vectors."""
    a = torch.randn(1, 200, 400, generator=torch.Generator().manual_seed(1))
    ue, _, _ = exact_svd(a.double(), 3)
    u, _, _, _ = block_lanczos_svd(dense_gram(a), 1, 400, 3, block=3, n_iter=1,
                                   generator=torch.Generator().manual_seed(0))
    assert subspace_cosines(ue, u.double()).min() < 0.9


def test_early_stop_on_a_well_separated_spectrum():
    a = structured(200, 300, 3, noise=0.01)
    u, _, v, steps = block_lanczos_svd(dense_gram(a), 1, 300, 3, block=4, n_iter=10, tol=1e-3,
                                       generator=torch.Generator().manual_seed(0))
    ue, _, ve = exact_svd(a.double(), 3)
    assert steps < 10
    assert subspace_cosines(ve, v.double()).min() > 0.9999


def test_deflation_keeps_known_vectors_out():
    a = structured(150, 250, 5)
    ue, _, ve = exact_svd(a.double(), 4)
    v0 = ve[:, :, :1].float()
    u, _, v, _ = block_lanczos_svd(dense_gram(a), 1, 250, 3, block=4, n_iter=6, deflate=v0,
                                   generator=torch.Generator().manual_seed(0))
    assert float((v0.transpose(1, 2) @ v).abs().max()) < 1e-4
    assert subspace_cosines(ve[:, :, 1:], v.double()).min() > 0.999


def test_batched_members_are_independent_and_rank_deficiency_is_finite():
    a = torch.cat([structured(100, 120, 4, seed=s) for s in range(2)] + [torch.zeros(1, 100, 120)])
    a[2, :, :2] = 1.0  # rank 1: the other wanted singular values are 0
    u, s, v, _ = block_lanczos_svd(dense_gram(a), 3, 120, 3, block=4, n_iter=5,
                                   generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(u).all() and torch.isfinite(v).all() and torch.isfinite(s).all()
    for i in range(2):
        ue, _, _ = exact_svd(a[i:i + 1].double(), 3)
        assert subspace_cosines(ue, u[i:i + 1].double()).min() > 0.999
    assert float(s[2, 1:].max()) < 1e-3 * float(s[2, 0])


@pytest.mark.parametrize("seed", [0, 3])
def test_deterministic_for_a_generator_seed(seed):
    a = structured(120, 200, 4)
    run = lambda: block_lanczos_svd(dense_gram(a), 1, 200, 3, block=4, n_iter=4,  # noqa: E731
                                    generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run()[0], run()[0])
