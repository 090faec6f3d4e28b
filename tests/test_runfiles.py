"""Loaders of run-folder files: schema checks, JSON-lines quirks, recursive discovery by sub-folder."""
from __future__ import annotations

import json

import pytest

import runfolder_fixtures as F
from circuitclust import runfiles
from circuitclust.errors import DataError


def test_loaders_accept_file_or_folder_and_check_schema(tmp_path):
    (tmp_path / "clusterability.json").write_text(json.dumps(F.clusterability()))
    assert runfiles.load_clusterability(tmp_path)["k"] == 4
    assert runfiles.load_clusterability(tmp_path / "clusterability.json")["graphs"][0]["name"] == "blocks.0.mlp.in"
    (tmp_path / "effects.json").write_text(json.dumps(dict(F.effects(), schema="circuitclust.circuits/1")))
    with pytest.raises(DataError, match="schema"):
        runfiles.load_effects(tmp_path)
    (tmp_path / "circuits.json").write_text("{not json")
    with pytest.raises(DataError, match="JSON"):
        runfiles.load_circuits(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        runfiles.load_similarity(tmp_path)


def test_metrics_jsonl_skips_blank_and_truncated_last_line(tmp_path):
    rows = F.metrics(3)
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n" + '{"step": 3')
    assert [r["step"] for r in runfiles.load_metrics(tmp_path)] == [0, 10, 20]
    (tmp_path / "metrics.jsonl").write_text('{"step": 0}\n{bad\n{"step": 2}\n')
    with pytest.raises(DataError, match="line 2"):
        runfiles.load_metrics(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("\n")
    with pytest.raises(DataError, match="no evaluations"):
        runfiles.load_metrics(tmp_path)


def test_discover_groups_by_subfolder_and_skips_checkpoints(tmp_path):
    F.make_run(tmp_path, partitions=False)
    (tmp_path / "finetune" / "checkpoints" / "step-5").mkdir(parents=True)
    (tmp_path / "finetune" / "checkpoints" / "step-5" / "run_config.json").write_text("{}")
    (tmp_path / "clusterability.json").write_text(json.dumps(F.clusterability()))
    steps = runfiles.discover(tmp_path)
    assert [s.label for s in steps] == [".", "cluster_base", "cluster_finetuned", "finetune", "patch_base",
                                        "patch_finetuned", "similarity"]
    ft = steps[3]
    assert set(ft.files) == {"metrics.jsonl", "run_config.json"}
    assert ft.has("metrics.jsonl") and not ft.has("effects.json")
    with pytest.raises(DataError, match="not a folder"):
        runfiles.discover(tmp_path / "missing")


def test_discover_empty_folder(tmp_path):
    with pytest.raises(DataError, match="holds none"):
        runfiles.discover(tmp_path)
