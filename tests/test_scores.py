"""The one score type and the one ablation type: shapes checked against the layout, node scores as sums of
unit scores, a stable ranking by |score|; ablations parsed once, equal to their strings."""
import json

import pytest
import torch
from _planted import planted_model

from circuitclust.analysis.patching.interventions import Ablation, ablation_hooks
from circuitclust.analysis.patching.scores import Scores
from circuitclust.analysis.patching.units import unit_layout
from circuitclust.core.partition import ModelPartition
from circuitclust.errors import OptionError, PartitionMismatchError
from circuitclust.models import weight_graphs


@pytest.fixture(scope="module")
def layout():
    m = planted_model()
    return unit_layout(m, ModelPartition.blocks(weight_graphs(m, ("mlp",)), 4))


def test_scores_rank_by_magnitude_and_sum_per_node(layout):
    n = layout.n_units
    values = torch.zeros(n)
    values[[5, 0, 9]] = torch.tensor([-3.0, 2.0, 2.0])
    s = Scores(values, layout)
    assert s.order()[:3].tolist() == [5, 0, 9]  # |-3| first, then the tie 2, 2 by index
    nodes = s.to_nodes()
    assert nodes.level == "node" and len(nodes) == len(layout.nodes)
    expected = torch.zeros(len(layout.nodes)).index_add_(0, layout.node_of_unit().cpu(), values)
    assert torch.equal(nodes.values, expected) and nodes.to_nodes() is nodes
    assert float(nodes.values.sum()) == pytest.approx(1.0)


def test_scores_refuse_the_wrong_shape_or_level(layout):
    with pytest.raises(PartitionMismatchError, match="units"):
        Scores(torch.zeros(layout.n_units + 1), layout)
    with pytest.raises(PartitionMismatchError, match="nodes"):
        Scores(torch.zeros(layout.n_units), layout, level="node")
    with pytest.raises(OptionError, match="level"):
        Scores(torch.zeros(layout.n_units), layout, level="edge")


def test_ablation_is_one_parsed_type():
    assert Ablation.parse("mean") is Ablation.MEAN and Ablation.MEAN == "mean"
    assert json.dumps({"method": Ablation.RESAMPLE}) == '{"method": "counterfactual"}'
    with pytest.raises(OptionError, match="method='median'"):
        Ablation.parse("median")
    with pytest.raises(OptionError, match="method"):
        ablation_hooks({}, "median")
