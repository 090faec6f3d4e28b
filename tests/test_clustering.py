import json

import pytest
import torch

import circuitclust
from circuitclust.analysis.clustering import ncut_model, partition_model, score_model
from circuitclust.core.measures import clusterability
from circuitclust.errors import PartitionMismatchError
from circuitclust.models import load_model, weight_graphs
from circuitclust.runfiles import load_partition, save_partition


@pytest.fixture(scope="module")
def models():
    return {name: load_model(name, device="cpu") for name in ("tiny-gpt2", "tiny-pythia", "tiny-gemma")}


def test_tied_labels_shared_for_gated_mlp_and_attention(models):
    m = models["tiny-gemma"]
    mp = circuitclust.partition_model(m, k=4, parts=("mlp", "attn"), seed=0)
    assert isinstance(mp, circuitclust.ModelPartition)
    for l in range(4):
        neurons = mp.space_labels[f"mlp.{l}"]
        assert torch.equal(mp[f"blocks.{l}.mlp.in"].col_labels, neurons)
        assert torch.equal(mp[f"blocks.{l}.mlp.gate"].col_labels, neurons)
        assert torch.equal(mp[f"blocks.{l}.mlp.out"].row_labels, neurons)
        assert torch.equal(mp[f"blocks.{l}.attn.o"].row_labels, mp.space_labels[f"attn.{l}"])
        assert torch.equal(mp[f"blocks.{l}.attn.q"].col_labels, mp.space_labels[f"attn_qk.{l}"])
        assert len(set(neurons.tolist())) == 4
    assert mp.provenance["method"] == "spectral" and mp.provenance["model"] == "tiny-gemma"


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-pythia"])
def test_other_families_tie_value_and_output(models, name):
    mp = partition_model(models[name], k=3, parts=("mlp", "attn"))
    assert torch.equal(mp["blocks.0.attn.v"].col_labels, mp["blocks.0.attn.o"].row_labels)
    assert torch.equal(mp["blocks.0.attn.q"].col_labels, mp["blocks.0.attn.k"].col_labels)
    assert torch.equal(mp["blocks.1.mlp.in"].col_labels, mp["blocks.1.mlp.out"].row_labels)


def test_planted_structure_in_a_model_is_found(models):
    """Plant 4 sub-networks in layer 0's MLP: the tied partition must find them (this test can fail)."""
    from sklearn.metrics import adjusted_rand_score as ari

    m = load_model("tiny-gpt2", device="cpu")
    g = weight_graphs(m, parts=("mlp",), layers=[0])
    w_in, w_out = g[0].weight, g[1].weight
    neurons = torch.arange(w_in.shape[1]) % 4
    resid = torch.arange(w_in.shape[0]) % 4
    with torch.no_grad():
        w_in.mul_(0.1 + (resid[:, None] == neurons[None, :]))
        w_out.mul_(0.1 + (neurons[:, None] == resid[None, :]))
    mp = partition_model(m, k=4, parts=("mlp",), layers=[0])
    assert ari(neurons, mp.space_labels["mlp.0"]) >= 0.95
    rows = score_model(m, mp, shuffles=4, seed=0)
    assert all(r["p"] == pytest.approx(1 / 5) for r in rows)
    assert all(r["clusterability"] > r["chance"] + 0.3 for r in rows)


def test_deterministic(models):
    a = partition_model(models["tiny-gemma"], k=3, parts=("mlp",), seed=4)
    b = partition_model(models["tiny-gemma"], k=3, parts=("mlp",), seed=4)
    for n in a:
        assert torch.equal(a[n].row_labels, b[n].row_labels) and torch.equal(a[n].col_labels, b[n].col_labels)


def test_score_rows_and_blocks_method(models):
    m = models["tiny-pythia"]
    mp = partition_model(m, k=4, parts=("mlp",), method="blocks")
    rows = score_model(m, mp, shuffles=3, seed=0)
    assert [r["name"] for r in rows] == [f"blocks.{l}.{p}" for l in range(4) for p in ("mlp.in", "mlp.out")]
    for r in rows:
        assert r["chance"] == pytest.approx(0.25) and r["row_sizes"] == [r["shape"][0] // 4] * 4
        assert 0 <= r["clusterability"] <= 1 and r["p"] is not None and r["shuffle_std"] >= 0
    g = weight_graphs(m, parts=("mlp",))[0]
    p = mp[g.name]
    assert rows[0]["clusterability"] == pytest.approx(float(clusterability(g.weight.detach(), p.row_labels, p.col_labels)))


def test_save_load_round_trip_and_mismatch(models, tmp_path):
    mp = partition_model(models["tiny-gemma"], k=4, parts=("mlp", "attn"))
    save_partition(mp, tmp_path)
    back = load_partition(tmp_path / "partition.json")
    assert back.k == 4 and set(back) == set(mp)
    for n in mp:
        assert torch.equal(back[n].row_labels, mp[n].row_labels) and torch.equal(back[n].col_labels, mp[n].col_labels)
    score_model(models["tiny-gemma"], back)  # fits its own model
    with pytest.raises(PartitionMismatchError):
        score_model(models["tiny-gpt2"], back)


def test_ncut_model(models):
    out = ncut_model(models["tiny-gpt2"], k=3, parts=("mlp",), shuffles=2)
    assert 0 <= out["value"] <= 3 and out["p"] is not None and out["n_nodes"] > 0


def test_cli_cluster_writes_run_folder(tmp_path):
    from typer.testing import CliRunner

    from circuitclust.cli.main import app

    res = CliRunner().invoke(app, ["cluster", "tiny-gpt2", "--k", "3", "--parts", "mlp", "--out", str(tmp_path),
                                   "--shuffles", "2", "--device", "cpu", "--ncut"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "clusterability.json").read_text())
    assert doc["schema"] == "circuitclust.clusterability/1" and doc["k"] == 3 and doc["shuffles"] == 2
    assert len(doc["graphs"]) == 8 and {"name", "layer", "kind", "shape", "k", "row_sizes", "col_sizes",
                                       "clusterability", "chance", "shuffle_mean", "shuffle_std", "z", "p"} <= set(doc["graphs"][0])
    assert set(doc["ncut"]) >= {"value", "shuffle_mean", "shuffle_std", "z", "p"}
    assert (tmp_path / "clusterability.csv").read_text().startswith("name,layer,kind")
    assert (tmp_path / "partition.json").is_file() and (tmp_path / "partition.safetensors").is_file()
    bad = CliRunner().invoke(app, ["cluster", "tiny-gpt2", "--k", "1", "--out", str(tmp_path / "x"), "--device", "cpu"])
    assert bad.exit_code == 2 and "k=1" in bad.output


def test_planted_graphs_pass_the_shuffle_null_after_fdr_and_iid_ones_do_not():
    # layer 0's MLP gets four planted blocks (off-block weights shrunk 20x); the other layers stay i.i.d.
    from circuitclust.models import load_hf

    hf, _, _ = load_hf("tiny-gpt2")
    with torch.no_grad():
        for g in weight_graphs(hf, parts=("mlp",), layers=[0]):
            rows = torch.arange(g.shape[0]) * 4 // g.shape[0]
            cols = torch.arange(g.shape[1]) * 4 // g.shape[1]
            off = (rows[:, None] != cols[None, :]).float()
            g.weight.mul_(1 - 0.95 * off)
    mp = partition_model(hf, k=4, parts=("mlp",), seed=0)
    rows = {r["name"]: r for r in score_model(hf, mp, shuffles=99, seed=0)}
    planted = [rows[n] for n in rows if n.startswith("blocks.0.")]
    iid = [rows[n] for n in rows if not n.startswith("blocks.0.")]
    assert all(r["p"] <= 0.01 and r["p_floor"] == pytest.approx(0.01) for r in planted)
    assert all(r["q"] <= 0.05 for r in planted)
    assert all(r["clusterability_norm"] > 0.8 for r in planted)
    assert all(r["q"] > 0.05 for r in iid)
    assert all(abs(r["clusterability_norm"]) < 0.2 for r in iid)


def test_balanced_spectral_partition_leaves_no_cluster_empty_on_any_side():
    from circuitclust.models import load_hf

    hf, _, _ = load_hf("tiny-gemma")
    with torch.no_grad():  # a degenerate layer: one residual dimension carries almost all the mass
        for g in weight_graphs(hf, parts=("mlp",), layers=[1]):
            g.weight.mul_(0.01)
            g.weight[:, 0].mul_(1000.0)
    balanced = partition_model(hf, k=4, parts=("mlp",), seed=0, balance=0.5)
    assert balanced.provenance["cocluster"]["balance"] == 0.5
    for g in weight_graphs(hf, parts=("mlp",)):
        rows, cols = balanced[g.name].sizes()
        assert min(rows) >= int(0.5 * g.shape[0] / 4) and min(cols) >= int(0.5 * g.shape[1] / 4), (g.name, rows, cols)
    # the shuffle null re-clusters with the same balanced procedure
    scored = score_model(hf, balanced, shuffles=2, seed=0)
    assert all(r["shuffle_mean"] is not None and r["clusterability_norm"] is not None for r in scored)
    # without balance the degenerate layer leaves a cluster empty on the residual side of mlp.in
    plain = partition_model(hf, k=4, parts=("mlp",), seed=0)
    assert "balance" not in plain.provenance["cocluster"]
    assert min(plain["blocks.1.mlp.in"].sizes()[0]) == 0


def test_batched_shuffle_null_is_the_same_null_as_drawing_each_shuffle_afresh(models):
    # The batched null shares one permutation per shuffle across graphs (each graph's own random order makes
    # every graph's shuffles i.i.d. uniform); in distribution it must match drawing every permutation afresh.
    from _helpers import reference_shuffle_null
    from scipy.stats import ks_2samp

    from circuitclust.analysis.clustering.null import shuffle_null
    from circuitclust.analysis.clustering.stacks import _weights

    m = models["tiny-gemma"]
    mp = partition_model(m, k=3, parts=("mlp",), seed=0, layers=[0, 1])
    graphs = weight_graphs(m, parts=("mlp",), layers=[0, 1])  # two stacks [W_in^T | W_gate^T | W_out]
    w = _weights(graphs, "cpu")
    new = shuffle_null(graphs, w, mp, 150, seed=0)
    ref = reference_shuffle_null(graphs, w, mp, 150, seed=1)
    for g in graphs:
        assert new[g.name].shape == (150,) and new[g.name].dtype == torch.float64
        assert ks_2samp(new[g.name].numpy(), ref[g.name].numpy()).pvalue > 1e-3, g.name
        # a different null would show in the spread as well as the centre
        assert new[g.name].std() == pytest.approx(float(ref[g.name].std()), rel=0.3)


def test_paired_gather_moves_exactly_the_values_of_one_gather_per_stack():
    # Stacks are gathered two at a time through an int64 view of interleaved sources; whatever the stacks a
    # call asks for (a whole pair, a pair split between calls, the odd last stack, out of order), each output
    # must be bit for bit that stack's own source gathered through the index.
    from circuitclust.analysis.clustering.null import _Layout

    gen = torch.Generator().manual_seed(0)
    lay = _Layout((4, (3, 2)), ["a", "b", "c", "d", "e"], [[]] * 5)
    values = [torch.randn(20, generator=gen).abs() for _ in range(5)]
    values[1][3] = float("inf")  # any bit pattern passes unchanged
    lay.add_sources(values)
    assert [tuple(s.shape) for s in lay.sources] == [(20, 2), (20, 2), (20, 1)]
    index = torch.randperm(20, generator=gen, dtype=torch.int32)
    pair = torch.empty(20, 2)
    for stacks in ([0, 1, 2, 3, 4], [1, 2], [3], [4], [0], [2, 3, 4], [1, 0], [3, 4, 0, 1]):
        out = torch.full((len(stacks), 4, 5), float("nan"))
        lay.gather(stacks, index, out, pair)
        for b, i in enumerate(stacks):
            assert torch.equal(out[b].reshape(-1), values[i][index.long()]), (stacks, i)


def test_shuffle_null_is_deterministic_whatever_the_workers_and_matches_blocks(models):
    from circuitclust.analysis.clustering.null import shuffle_null
    from circuitclust.analysis.clustering.stacks import _weights

    m = models["tiny-gpt2"]
    graphs = weight_graphs(m, parts=("mlp", "attn"))
    w = _weights(graphs, "cpu")
    mp = partition_model(m, k=3, parts=("mlp", "attn"), seed=0, balance=0.5)
    one = shuffle_null(graphs, w, mp, 7, seed=3, workers=1)
    two = shuffle_null(graphs, w, mp, 7, seed=3, workers=2)
    assert set(one) == {g.name for g in graphs} and all(torch.equal(one[n], two[n]) for n in one)
    assert not torch.equal(one[graphs[0].name], shuffle_null(graphs, w, mp, 7, seed=4)[graphs[0].name])
    # fixed labels (blocks): the null is the clusterability of shuffled weights under the same labels, whose
    # expectation is the chance level of equal blocks
    blocks = partition_model(m, k=4, parts=("mlp",), method="blocks")
    mlp = weight_graphs(m, parts=("mlp",))
    null = shuffle_null(mlp, _weights(mlp, "cpu"), blocks, 200, seed=0)
    for g in mlp:
        assert float(null[g.name].mean()) == pytest.approx(0.25, abs=0.01)
        shuffled = w[g.name].reshape(-1)[torch.randperm(w[g.name].numel())].view(g.shape)
        p = blocks[g.name]
        assert float(clusterability(shuffled, p.row_labels, p.col_labels)) == pytest.approx(0.25, abs=0.03)
