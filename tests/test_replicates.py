import json
import math

import pytest
import torch
from scipy import stats

import circuitclust as cc
from circuitclust.core.replicates import aggregate, aggregate_rows, interval_info, summarise
from circuitclust.errors import OptionError
from circuitclust.pipeline import parse_seeds
from circuitclust.runfiles import load_replicates


def test_summarise_is_the_t_interval_of_the_mean():
    s = summarise([0.50, 0.52, 0.57])
    mean, sd = 0.53, float(torch.tensor([0.50, 0.52, 0.57]).double().std())
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)
    assert s["mean"] == pytest.approx(mean) and s["sd"] == pytest.approx(sd) and s["n"] == 3
    assert (s["lo"], s["hi"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert (s["min"], s["max"], s["values"]) == (0.50, 0.57, [0.50, 0.52, 0.57])
    # missing values are left out of n, one value gives no interval, none gives no mean
    s = summarise([1.0, None, float("nan")])
    assert s["n"] == 1 and s["mean"] == 1.0 and s["lo"] is None and s["values"] == [1.0, None, None]
    assert summarise([None, None])["mean"] is None
    assert summarise([2.0, 2.0])["lo"] == 2.0  # no spread: the interval is the point


def test_aggregate_walks_nested_records_and_rows_by_key():
    recs = [{"a": 1.0, "name": "x", "shape": [4, 8], "sizes": [1, 3], "tag": "s0", "sub": {"b": [1.0, 2.0]}},
            {"a": 3.0, "name": "x", "shape": [4, 8], "sizes": [2, 2], "tag": "s1", "sub": {"b": [3.0, 4.0]}}]
    out = aggregate(recs)
    assert out["a"]["mean"] == 2.0 and out["name"] == "x" and out["shape"] == [4, 8]
    assert [s["mean"] for s in out["sizes"]] == [1.5, 2.5]  # lists that differ: element by element
    assert out["tag"] == {"values": ["s0", "s1"]}
    assert [s["mean"] for s in out["sub"]["b"]] == [2.0, 3.0]
    rows = aggregate_rows([[{"name": "g1", "c": 1.0}, {"name": "g2", "c": 5.0}],
                           [{"name": "g2", "c": 7.0}, {"name": "g1", "c": 3.0}]], key="name")
    assert [r["name"] for r in rows] == ["g1", "g2"] and [r["c"]["mean"] for r in rows] == [2.0, 6.0]
    info = interval_info([0, 1, 2])
    assert info["level"] == 0.95 and "t interval" in info["method"] and info["seeds"] == [0, 1, 2]
    assert "note" in interval_info([0])


def test_parse_seeds():
    assert parse_seeds("0, 1,2") == (0, 1, 2) and parse_seeds([3]) == (3,)
    for bad in ("0,a", "", "1,1", "-1"):
        with pytest.raises(OptionError, match="seed"):
            parse_seeds(bad)


def test_cluster_seeds_aggregates_each_seeds_run(tmp_path):
    reps = cc.cluster_seeds("tiny-gpt2", [0, 1, 2], cc.ClusterOptions(parts=("mlp",), shuffles=3, device="cpu"))
    assert reps.seeds == (0, 1, 2) and [r.options.seed for r in reps.runs] == [0, 1, 2]
    ml = reps.summary["model_level"]
    per_seed = [r.mean_clusterability for r in reps.runs]
    assert ml["mean_clusterability"]["values"] == pytest.approx(per_seed)
    assert ml["mean_clusterability"]["mean"] == pytest.approx(sum(per_seed) / 3)
    assert ml["mean_clusterability"]["lo"] <= ml["mean_clusterability"]["mean"] <= ml["mean_clusterability"]["hi"]
    assert len(set(per_seed)) > 1  # the seed reaches the partitioner
    g0 = reps.summary["graphs"][0]
    assert g0["name"] == reps.runs[0].graphs[0]["name"]
    assert g0["clusterability"]["values"] == pytest.approx([r.graphs[0]["clusterability"] for r in reps.runs])
    assert g0["p"]["max"] == max(r.graphs[0]["p"] for r in reps.runs)
    reps.save(tmp_path)
    doc = load_replicates(tmp_path)
    assert doc["kind"] == "cluster" and doc["seeds"] == [0, 1, 2] and doc["interval"]["n"] == 3
    assert json.loads((tmp_path / "seed1" / "clusterability.json").read_text())["seed"] == 1
    header = (tmp_path / "replicates.csv").read_text().splitlines()[0]
    assert header.startswith("name,clusterability_mean,clusterability_lo,clusterability_hi")


def test_similarity_seeds_aggregates_layer_distances(tmp_path):
    reps = cc.similarity_seeds("tiny-gpt2", [0, 1], "wiki", cc.SimilarityOptions(n=16, device="cpu"))
    s = reps.summary
    assert s["layers"] == reps.runs[0].base.layers and s["interval"]["seeds"] == [0, 1]
    d01 = [float(r.base.distances[0, 1]) for r in reps.runs]
    assert s["base"]["gw_to_next"][0]["values"] == pytest.approx(d01) and d01[0] != d01[1]
    assert s["gw"]["mean"][0][1] == pytest.approx(sum(d01) / 2)
    assert len(s["boundaries_per_seed"]) == 2
    reps.save(tmp_path)
    assert load_replicates(tmp_path)["kind"] == "similarity"
    assert (tmp_path / "seed0" / "similarity.json").is_file()


def test_cli_seeds_write_replicates_and_refuse_bad_lists(tmp_path):
    from typer.testing import CliRunner

    from circuitclust.cli.main import app

    out = tmp_path / "c"
    res = CliRunner().invoke(app, ["cluster", "tiny-gpt2", "--parts", "mlp", "--shuffles", "0", "--seeds", "0,1",
                                   "--out", str(out), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "over seeds 0,1" in res.output and "C mean [95% over seeds]" in res.output
    assert load_replicates(out)["seeds"] == [0, 1] and (out / "seed0" / "partition.json").is_file()
    from circuitclust.report import build_report

    text = build_report(out, out=tmp_path / "report.html").read_text(encoding="utf-8")
    assert "0, 1 (2 replicates)" in text and "1 (one run: no interval across seeds)" in text
    bad = CliRunner().invoke(app, ["similarity", "tiny-gpt2", "--seeds", "0,0", "--out", str(tmp_path / "s")])
    assert bad.exit_code == 2 and "listed twice" in bad.output and not (tmp_path / "s").exists()
