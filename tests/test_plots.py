"""Every figure function on contract-shaped fixture data: the traces, values and hover text it must carry."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import runfolder_fixtures as F
from circuitclust import plots
from circuitclust.core.partition import Partition


def _planted(n_in: int, n_out: int, k: int, seed: int = 0):
    """A block-diagonal |W| hidden behind a random permutation of rows and columns, with its partition."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, k, (n_in,), generator=g)
    cols = torch.randint(0, k, (n_out,), generator=g)
    w = torch.randn(n_in, n_out, generator=g) * 0.05
    w[rows[:, None] == cols[None, :]] *= 20
    return w, Partition(rows, cols, k)


# ------------------------------------------------------------------ weights

def test_axis_bins_without_downsampling_sorts_by_cluster():
    labels = torch.tensor([2, 0, 1, 0, 2, 1])
    b = plots.axis_bins(labels, 3, max_bins=10, unit="neuron")
    assert b.n_bins == 6
    assert labels[b.order].tolist() == [0, 0, 1, 1, 2, 2]
    assert b.order.tolist() == [1, 3, 2, 5, 0, 4]  # stable within a cluster
    assert b.cluster_starts == [2, 4]
    assert b.labels[0] == "neuron 1 · cluster 0"
    assert len(set(b.labels)) == 6


def test_axis_bins_downsampling_never_mixes_clusters():
    labels = torch.randint(0, 5, (1000,), generator=torch.Generator().manual_seed(1))
    b = plots.axis_bins(labels, 5, max_bins=64)
    assert b.n_bins <= 64 + 5
    sorted_lab = labels[b.order]
    for k in range(b.n_bins):
        assert sorted_lab[b.bin_of == k].unique().numel() == 1
    assert len(set(b.labels)) == b.n_bins
    assert torch.all(b.bin_of[1:] >= b.bin_of[:-1])  # bins are runs of consecutive sorted units


def test_block_average_matches_numpy():
    w, p = _planted(50, 70, 3)
    rb, cb = plots.axis_bins(p.row_labels, 3, 8), plots.axis_bins(p.col_labels, 3, 9)
    got = plots.block_average(w, rb, cb)
    a = w.abs().numpy()[rb.order.numpy()][:, cb.order.numpy()]
    r_bin, c_bin = rb.bin_of.numpy(), cb.bin_of.numpy()
    want = np.array([[a[r_bin == i][:, c_bin == j].mean() for j in range(cb.n_bins)] for i in range(rb.n_bins)])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_weight_heatmaps_before_after_selector_and_block_diagonal():
    w1, p1 = _planted(40, 120, 4, seed=0)
    w2, p2 = _planted(120, 40, 4, seed=1)
    before = {"blocks.0.mlp.in": torch.randn(40, 120), "blocks.0.mlp.out": torch.randn(120, 40)}
    after = {"blocks.0.mlp.in": w1, "blocks.0.mlp.out": w2}
    part = {"blocks.0.mlp.in": p1, "blocks.0.mlp.out": p2}
    fig = plots.weight_heatmaps(before, part, after=after, max_cells=32)
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert len(heat) == 4  # 2 graphs x (before, after)
    assert [bool(t.visible) for t in heat] == [True, True, False, False]
    assert {t.coloraxis for t in heat} == {"coloraxis"}  # one colour scale for both panels
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["blocks.0.mlp.in", "blocks.0.mlp.out"]
    assert buttons[1].args[0]["visible"] == [False, False, True, True]
    assert "block-averaged" in fig.layout.title.text and "blocks.0.mlp.in" in fig.layout.title.text
    z = np.asarray(heat[1].z)  # after, first graph: reordered, the planted blocks sit on the diagonal
    assert z.shape[0] <= 32 + 4 and z.shape[1] <= 32 + 4
    rb = plots.axis_bins(p1.row_labels, 4, 32)
    cb = plots.axis_bins(p1.col_labels, 4, 32)
    rc = p1.row_labels[rb.order][torch.tensor([int((rb.bin_of == i).nonzero()[0]) for i in range(rb.n_bins)])]
    cc = p1.col_labels[cb.order][torch.tensor([int((cb.bin_of == j).nonzero()[0]) for j in range(cb.n_bins)])]
    same = (rc[:, None] == cc[None, :]).numpy()
    assert z[same].mean() > 5 * z[~same].mean()
    assert "cluster" in heat[0].y[0] and "mean |W|" in heat[0].hovertemplate and "layer 0" in heat[0].hovertemplate
    assert len(fig.layout.shapes) == 2 * 2 * 3  # k-1 boundaries per side, per panel


def test_weight_heatmaps_small_matrix_is_not_downsampled_and_rejects_bad_shapes():
    w, p = _planted(10, 12, 2)
    fig = plots.weight_heatmaps({"blocks.1.mlp.in": w}, {"blocks.1.mlp.in": p}, max_cells=64)
    assert "block-averaged" not in fig.layout.title.text
    assert np.asarray(fig.data[0].z).shape == (10, 12)
    assert not fig.layout.updatemenus
    with pytest.raises(ValueError, match="does not match"):
        plots.weight_heatmaps({"blocks.1.mlp.in": w.T}, {"blocks.1.mlp.in": p})
    with pytest.raises(ValueError, match="no graph"):
        plots.weight_heatmaps({"other": w}, {"blocks.1.mlp.in": p})


# ------------------------------------------------------------------ clusterability

def test_clusterability_bars_vs_chance_and_shuffle_null():
    before, after = F.clusterability(), F.clusterability(shift=0.2, seed=1)
    fig = plots.clusterability_bars({"base": before, "tuned": after})
    assert len(fig.data) == 6  # per run: bars, shuffle null, chance
    bars = [t for t in fig.data if t.type == "bar"]
    assert list(bars[1].y) == [g["clusterability"] for g in after["graphs"]]
    null = fig.data[1]
    assert list(null.y) == [g["shuffle_mean"] for g in before["graphs"]]
    assert list(null.error_y.array) == [g["shuffle_std"] for g in before["graphs"]]
    assert list(fig.data[2].y) == [0.25] * 8
    assert fig.layout.scattermode == "group" and fig.data[1].offsetgroup == fig.data[0].offsetgroup
    assert "chance" in bars[0].hovertemplate and "layer" in bars[0].hovertemplate


def test_ncut_figure_and_missing_ncut():
    fig = plots.ncut_figure({"a": F.clusterability(), "b": F.clusterability(shift=0.2)})
    assert len(fig.data) == 2 and list(fig.data[0].y) == [3.9, pytest.approx(3.1)]
    assert list(fig.data[1].error_y.array) == [0.01, 0.01]
    with pytest.raises(ValueError, match="n-cut"):
        plots.ncut_figure(F.clusterability(ncut=False))


# ------------------------------------------------------------------ training

def test_training_curves_panels():
    m = F.metrics()
    fig = plots.training_curves(m)
    names = [t.name for t in fig.data]
    for want in ("task loss", "KL to base", "held-out ppl wiki", "held-out ppl chemistry", "mean clusterability",
                 "chance", "lambda"):
        assert want in names
    assert names.count("per-graph clusterability") == 8
    ppl = fig.data[names.index("held-out ppl chemistry")]
    assert list(ppl.y) == [r["heldout_ppl"]["chemistry"] for r in m]
    assert fig.layout.yaxis2.type == "log"
    assert sum(1 for t in fig.data if t.showlegend is not False) == 8  # per-graph lines share one entry
    two = plots.training_curves({"a": m, "b": m[:3]})
    assert len(two.data) == 2 * len(fig.data) and two.data[-1].line.dash == "dash"


def test_pareto_front_one_trace_per_run_and_domain_with_budget_lines():
    doc = F.finetune_study()
    fig = plots.pareto_front(doc)
    assert len(fig.data) == 4 * 2  # 4 runs x (wiki, chemistry) panels
    wiki = [t for t in fig.data if t.xaxis == "x"]
    first = wiki[0]
    run = doc["runs"]["papers/seed-0"]
    assert list(first.x) == [100 * e["ppl_increase"]["wiki"] for e in run["evaluations"]]
    assert list(first.y) == [e["C_norm"] for e in run["evaluations"]]
    assert first.marker.symbol != wiki[1].marker.symbol  # seeds told apart by marker
    assert first.line.color != wiki[2].line.color  # recipes by colour
    assert sum(1 for s in fig.layout.shapes if s.x0 == 10.0) == 2  # the 10% budget, in both panels


# ------------------------------------------------------------------ patching

def test_effect_heatmaps_with_cis_on_hover():
    e1, e2 = F.effects(), F.effects(scale=2.0, seed=1)
    fig = plots.effect_heatmaps({"base": e1, "tuned": e2})
    assert len(fig.data) == 2
    np.testing.assert_allclose(np.asarray(fig.data[0].z), np.asarray(e1["effect"]))
    assert list(fig.data[0].x) == F.TASKS and fig.data[0].y[5] == "L1 mlp c1"
    assert fig.data[0].customdata[5][2][1] == f"{e1['ci_low'][5][2]:.4g}"
    assert "CI" in fig.data[0].hovertemplate
    assert fig.layout.coloraxis.cmid == 0 and fig.layout.coloraxis.cmax == pytest.approx(
        max(abs(v) for e in (e1, e2) for row in e["effect"] for v in row))


def test_specialisation_and_flips():
    s = F.specialisation()
    fig = plots.specialisation_bars({"base": s, "tuned": F.specialisation(seed=1)})
    assert len(fig.data) == 2 and list(fig.data[0].y) == [c["score"] for c in s["per_cluster"]]
    assert fig.data[0].x[0] == "L0 mlp c0" and "0.41" in fig.data[0].name
    assert "top_task" in fig.data[0].customdata[0]
    bare = dict(s, per_cluster=[c["score"] for c in s["per_cluster"]])
    fig = plots.specialisation_bars(bare, effects=F.effects())
    assert fig.data[0].x[4] == "L1 mlp c0"
    fig = plots.flips_histogram(s)
    assert [t.name for t in fig.data] == F.TASKS and list(fig.data[0].y) == [5, 3, 1, 0, 1]


def test_faithfulness_sizes_and_locations():
    base, tuned = F.circuits(), F.circuits(smaller=True, red_flag=True)
    fig = plots.faithfulness_curves({"base": base, "tuned": tuned})
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    # per run and task: attribution and random curves; the tuned run's red-flagged task adds its nonsense curve
    assert len(lines) == 2 * 3 * 2 + 1 and len(fig.data) == len(lines) + 6
    first = base["tasks"]["capitals"]["curve"]
    assert list(lines[0].x) == [p[0] for p in first] and list(lines[0].y) == [p[2] for p in first]
    assert lines[1].line.dash == "dot" and lines[0].line.color == lines[1].line.color  # random beside it
    assert [t for t in lines if t.line.dash == "dash"][0].name.startswith("tuned: nonsense")
    assert "RED FLAG" in fig.layout.annotations[0].text and "RED FLAG" not in fig.layout.annotations[1].text
    assert fig.layout.xaxis.type == "log" and any(s.y0 == 0.8 for s in fig.layout.shapes)
    old = {"schema": "circuitclust.circuits/1", "threshold": 0.8, "tasks": {"t": {"faithfulness_curve": [[10, 0.5], [100, 1.0]], "n_units_total": 100}}}
    assert list(plots.faithfulness_curves(old).data[0].x) == [0.1, 1.0]  # a circuits/1 file still draws
    fig = plots.circuit_sizes({"base": base, "tuned": tuned})
    assert len(fig.data) == 6 and list(fig.data[3].y) == [60, 70, 80]
    fig = plots.circuit_locations({"base": base}, effects=F.effects())
    z = fig.data[0].z
    y = list(fig.data[0].y)
    assert len(y) == 16  # every effects node is a row
    assert z[y.index("L0 mlp c1")][0] == 64 and z[y.index("L0 mlp c0")][0] is None
    idx = dict(base, tasks={t: dict(v, cluster_circuit=[1, 2]) for t, v in base["tasks"].items()})
    fig = plots.circuit_locations(idx, effects=F.effects())
    assert fig.data[0].z[1][0] == 1.0 and fig.data[0].z[0][0] is None


# ------------------------------------------------------------------ similarity

def test_layer_similarity_heatmaps_with_groups():
    s = F.similarity()
    fig = plots.layer_similarity_heatmaps(s)
    assert len(fig.data) == 2
    assert fig.data[0].coloraxis == "coloraxis" and fig.data[1].coloraxis == "coloraxis2"
    np.testing.assert_allclose(np.asarray(fig.data[0].z), np.asarray(s["gw"]))
    assert fig.data[0].x[0] == "0 resid_post" and "blocks.0.hook_resid_post" in fig.data[0].customdata[0][0]
    rects = [sh for sh in fig.layout.shapes if sh.type == "rect"]
    assert len(rects) == 4 and {(r.x0, r.x1) for r in rects} == {(-0.5, 1.5), (1.5, 3.5)}
    two = plots.layer_similarity_heatmaps({"base": s, "tuned": s})
    assert len(two.data) == 4 and two.layout.coloraxis.cmax == pytest.approx(0.3)


def test_group_spans():
    assert plots.group_spans({"labels": [0, 0, 1, 1, 1, 2]}, 6) == [(0, 1), (2, 4), (5, 5)]
    assert plots.group_spans({"boundaries": [0, 3, 6]}, 6) == [(0, 2), (3, 5)]
    assert plots.group_spans({"labels": [0, 1, 0]}, 3) == [(0, 0), (1, 1), (2, 2)]
    assert plots.group_spans(None, 4) == []


def test_single_file_or_mapping():
    with pytest.raises(ValueError):
        plots.clusterability_bars({})
    assert plots.clusterability_bars(F.clusterability()).data[0].name == "run: clusterability"
