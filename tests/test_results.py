"""results/ and analyses/RESULTS.md: the tables are what results/ gives, every result says how it was made, and
(slow) the cheap real-model figures come out again on a fixed seed within stated tolerances."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


tables = _script("results_tables")


def test_results_md_tables_are_what_results_gives():
    text = (ROOT / "analyses" / "RESULTS.md").read_text()
    assert tables.update(text) == text, "run python scripts/results_tables.py after changing results/"
    for name in tables.KINDS:  # every registered kind has its place in RESULTS.md
        assert f"<!-- results:{name} -->" in text and f"<!-- /results:{name} -->" in text


def test_every_result_is_small_json_or_csv_with_a_manifest():
    folders = [p for p in RESULTS.iterdir() if p.is_dir() and not p.name.startswith(".")] if RESULTS.is_dir() else []
    assert folders, "results/ holds no result"
    total = 0
    for folder in folders:
        m = json.loads((folder / "manifest.json").read_text())
        assert m["commands"] and m["git_commit"] and "seeds" in m and m["machine"]["cpu"], folder
        for p in folder.rglob("*"):
            if p.is_file():
                assert p.suffix in (".json", ".csv"), p
                total += p.stat().st_size
    assert total < 5 * 2**20


def test_a_registered_kind_is_rendered_between_its_markers(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "values.json").write_text(json.dumps({"a": 1.5}))
    (tmp_path / "toy" / "manifest.json").write_text(json.dumps({
        "commands": ["toy --run"], "git_commit": "abc", "seeds": [0, 1], "machine": {"cpu": "X", "cores": 2},
        "load_average_before": [0.1, 0, 0], "load_average_after": [0.2, 0, 0], "date": "today", "wall_s": 1}))
    tables.register("toy", lambda f: json.loads((f / "values.json").read_text()), lambda d: f"| a |\n| {d['a']} |")
    tables.register("toy_missing", lambda f: None, lambda d: "never")
    try:
        text = ("x\n<!-- results:toy -->\nold\n<!-- /results:toy -->\ny\n"
                "<!-- results:toy_missing -->\n<!-- /results:toy_missing -->\n")
        out = tables.update(text, tmp_path)
        assert "| 1.5 |" in out and "old" not in out and out.startswith("x\n") and "\ny\n" in out
        assert "`toy --run`" in out and "seeds 0,1" in out
        assert "Not generated yet" in out
        assert tables.update(out, tmp_path) == out  # regenerating is idempotent
    finally:
        del tables.KINDS["toy"], tables.KINDS["toy_missing"]


# ------------------------------------------------------------------------------------------------- slow
def _stored(kind: str, *parts: str):
    path = RESULTS.joinpath(kind, *parts)
    if not path.is_file():
        pytest.skip(f"{path} not generated")
    return json.loads(path.read_text())


def _means(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals)


@pytest.mark.slow  # ~15 s CPU each: a partition of the model's MLP graphs (and a 9-shuffle null where stored)
@pytest.mark.parametrize("kind,fixture", [("enmeshment_gemma", "embedded_bridge"),
                                          ("enmeshment_smollm2", "smollm2_bridge")])
@pytest.mark.parametrize("variant,balance", [("spectral", 0.0), ("spectral_balanced", 0.5)])
def test_enmeshment_comes_out_again(request, kind, fixture, variant, balance):
    # Tolerances: the partition of seed 0 is deterministic on one machine; on another CPU or BLAS, float
    # round-off can move k-means to another optimum on a few of the graphs, which moves the mean C by at
    # most a few thousandths. The null's mean over all graphs from 9 shuffles (stored: 99) differs by its
    # sampling error (null sd ~0.001-0.013 per graph), well under 0.003.
    import circuitclust as cc

    stored = _stored(kind, variant, "seed0", "clusterability.json")
    model = request.getfixturevalue(fixture)
    null = stored["shuffles"] > 0
    res = cc.cluster(model, cc.ClusterOptions(k=4, parts=("mlp",), shuffles=9 if null else 0,
                                              balance=balance, seed=0, device="cpu"))
    got = res.graphs
    assert [g["name"] for g in got] == [g["name"] for g in stored["graphs"]]
    assert _means(got, "clusterability") == pytest.approx(_means(stored["graphs"], "clusterability"), abs=0.005)
    assert _means(got, "chance") == pytest.approx(_means(stored["graphs"], "chance"), abs=0.01)
    assert _means(got, "clusterability_norm") == pytest.approx(_means(stored["graphs"], "clusterability_norm"),
                                                               abs=0.01)
    if null:
        assert _means(got, "shuffle_mean") == pytest.approx(_means(stored["graphs"], "shuffle_mean"), abs=0.003)
    if balance:
        assert all(min(g["row_sizes"]) > 0 and min(g["col_sizes"]) > 0 for g in got)


def test_circuits_collects_the_run_folders_its_commands_wrote(tmp_path, monkeypatch):
    # The producer runs the demo and the further seeds' patch steps as CLI commands (stood in for here by a fake
    # that writes what they would) and must collect from the folders it told them to write.
    make = _script("make_results")
    real_run, outs = make.subprocess.run, []

    def fake_cli(args, **kw):
        if "circuitclust" not in args:  # git, for the manifest
            return real_run(args, **kw)
        out = Path(args[args.index("--out") + 1])
        outs.append(out)
        patch = out / "patch" if args[3] == "demo" else out
        patch.mkdir(parents=True)
        (patch / "circuits.csv").write_text(f"seed,{args[args.index('--seed') + 1]}\n")
        if args[3] == "demo":
            (out / "finetune").mkdir()
            (out / "finetune" / "metrics.jsonl").write_text('{"step": 0}\n')

    monkeypatch.setattr(make.subprocess, "run", fake_cli)
    monkeypatch.setattr(make, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(make, "CIRCUIT_SEEDS", (0, 1))
    out = make.circuits("tiny-gemma", "circuits_tiny")
    assert len(outs) == 2 and all(o.is_absolute() and o.parent != ROOT for o in outs)
    assert (out / "seed0" / "circuits.csv").read_text() == "seed,0\n"
    assert (out / "seed1" / "circuits.csv").read_text() == "seed,1\n"
    assert json.loads((out / "finetune_metrics.json").read_text()) == [{"step": 0}]
    assert not (ROOT / "RUN").exists() and not (ROOT / "PATCH").exists()


@pytest.mark.slow  # ~25 s CPU: 8 prompts, attribution patching and exact ablation of 72 nodes
def test_attribution_vs_exact_agreement_on_gemma_comes_out_again(embedded_bridge):
    # Tolerance 0.02 on the Spearman correlation of 72 nodes: the exact effects and the attribution estimates
    # are deterministic up to float round-off, which can swap nodes of nearly equal effect.
    make = _script("make_results")
    stored = _stored("attribution_gemma", "attribution.json")
    seed0 = next(r for r in stored["runs"] if r["seed"] == 0)
    got = make.attribution_agreement(embedded_bridge, 0)
    assert got["n_prompts"] == seed0["n_prompts"] and len(got["exact"]) == len(seed0["exact"])
    assert got["spearman"] == pytest.approx(seed0["spearman"], abs=0.02)
