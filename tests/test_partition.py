import pytest
import torch

from circuitclust.core.partition import ModelPartition, Partition, block_labels
from circuitclust.errors import PartitionMismatchError
from circuitclust.models import load_hf, weight_graphs
from circuitclust.runfiles import load_partition, save_partition


def test_block_labels_are_equal_contiguous_blocks():
    lab = block_labels(10, 3)
    assert lab.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert torch.bincount(block_labels(3072, 4)).tolist() == [768] * 4
    with pytest.raises(ValueError, match="between 1 and"):
        block_labels(3, 4)


def test_partition_validates_labels():
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        Partition(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
    with pytest.raises(ValueError, match="int64"):
        Partition(torch.tensor([0.0, 1.0]), torch.tensor([0, 1]), 2)
    p = Partition.blocks(4, 6, 2)
    r, c = p.masks()
    assert r.shape == (4, 2) and c.shape == (6, 2) and p.sizes() == ([2, 2], [3, 3])


def test_model_partition_ties_shared_spaces_and_round_trips(tmp_path):
    hf, _, _ = load_hf("tiny-gemma")
    graphs = weight_graphs(hf, parts=("mlp", "attn"))
    mp = ModelPartition.blocks(graphs, 4, model="tiny-gemma")
    assert torch.equal(mp["blocks.1.mlp.in"].col_labels, mp["blocks.1.mlp.out"].row_labels)
    assert torch.equal(mp["blocks.1.mlp.gate"].col_labels, mp["blocks.1.mlp.out"].row_labels)
    save_partition(mp, tmp_path)
    back = load_partition(tmp_path / "partition.json")
    assert back.k == 4 and set(back) == set(mp) and back.provenance["model"] == "tiny-gemma"
    for name in mp:
        assert torch.equal(back[name].row_labels, mp[name].row_labels)
        assert torch.equal(back[name].col_labels, mp[name].col_labels)
    back.check_graphs(graphs)


def test_partition_for_another_model_is_rejected(tmp_path):
    gemma, _, _ = load_hf("tiny-gemma")
    gpt2, _, _ = load_hf("tiny-gpt2")
    mp = ModelPartition.blocks(weight_graphs(gemma, parts=("attn",)), 2, model="tiny-gemma")
    with pytest.raises(PartitionMismatchError, match="made for another model"):
        mp.check_graphs(weight_graphs(gpt2, parts=("attn",)))
    with pytest.raises(PartitionMismatchError, match="has no graph"):
        mp.check_graphs(weight_graphs(gemma, parts=("mlp",)))
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(PartitionMismatchError, match="one is missing"):
        load_partition(tmp_path / "p.json")
