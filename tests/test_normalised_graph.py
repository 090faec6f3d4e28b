import pytest
import torch

from circuitclust.core.normalised_graph import NormalisedGraph


def reference(w, power):
    a = w.abs() if power == 1 else w * w
    dr, dc = a.sum(2), a.sum(1)
    ir = torch.where(dr > 0, dr.rsqrt(), 0.0)
    ic = torch.where(dc > 0, dc.rsqrt(), 0.0)
    return a * ir[:, :, None] * ic[:, None, :], dr, dc


@pytest.mark.parametrize("power", [1, 2])
@pytest.mark.parametrize("block_rows", [None, 1, 7, 64])
def test_blockwise_products_match_the_dense_matrix(power, block_rows):
    g = torch.Generator().manual_seed(0)
    w = torch.randn(3, 50, 80, generator=g, dtype=torch.float64)
    w[1, 4] = 0  # an isolated row
    w[2, :, 9] = 0  # an isolated column
    an, dr, dc = reference(w, power)
    graph = NormalisedGraph(w, power, dtype=torch.float64, block_rows=block_rows)
    assert torch.allclose(graph.row_degrees, dr) and torch.allclose(graph.col_degrees, dc)
    assert torch.allclose(graph.dense(), an)
    vt = torch.randn(3, 4, 80, generator=g, dtype=torch.float64)
    y, gvt = graph.gram(vt)
    assert torch.allclose(y, an @ vt.transpose(1, 2))
    assert torch.allclose(gvt, (an.transpose(1, 2) @ an @ vt.transpose(1, 2)).transpose(1, 2))
    assert graph.row_scale[1, 4] == 0 and graph.col_scale[2, 9] == 0


def test_input_not_modified_and_other_dtypes_converted():
    w = torch.randn(1, 40, 30).bfloat16()
    before = w.clone()
    graph = NormalisedGraph(w, 1, dtype=torch.float32, block_rows=8)
    an, _, _ = reference(w.float(), 1)
    assert torch.equal(w, before)
    assert graph.dense().dtype == torch.float32 and torch.allclose(graph.dense(), an, atol=1e-6)
    for power in (1, 2):  # same dtype: |W| / W^2 are written into a separate buffer, never into w
        w32 = torch.randn(2, 40, 30)
        before = w32.clone()
        graph = NormalisedGraph(w32, power)
        assert torch.equal(w32, before) and graph.a.data_ptr() != w32.data_ptr()
        assert torch.allclose(graph.dense(), reference(w32, power)[0], atol=1e-6)
    wt = torch.randn(1, 30, 40).transpose(1, 2)  # not contiguous
    assert torch.allclose(NormalisedGraph(wt, 1, block_rows=5).dense(), reference(wt, 1)[0], atol=1e-6)


def test_non_finite_weights_show_in_the_degrees():
    w = torch.ones(1, 6, 5)
    w[0, 2, 3] = float("nan")
    assert not torch.isfinite(NormalisedGraph(w, 1, block_rows=2).row_degrees).all()
