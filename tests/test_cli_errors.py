"""Bad input through the real console entry point: every mistake is one ``error: ...`` line on stderr, exit 2,
no traceback, nothing written; and a command killed part-way leaves no truncated file."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from circuitclust.cli.main import main
from circuitclust.runfiles import save_partition


def run_cli(capsys, args: list[str]) -> tuple[int, str, str]:
    """``circuitclust ARGS`` in-process through :func:`main`: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    return e.value.code, out, err


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
    error_lines = [ln for ln in lines if ln.startswith("error: ")]
    assert code == 2, err
    assert len(error_lines) == 1, err
    assert "Traceback" not in err and "|" not in error_lines[0], err
    for needle in needles:
        assert needle in error_lines[0], (needle, err)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad files of every kind a user may hand over, and one good partition of tiny-gpt2."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty").mkdir()
    (d / "notes.txt").write_text("not a model")
    (d / "fake.gguf").write_bytes(b"\x00" * 64)
    (d / "bert").mkdir()
    (d / "bert" / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    (d / "badjson").mkdir()
    (d / "badjson" / "config.json").write_text("{not json")
    (d / "empty.jsonl").write_text("")
    (d / "garbage.jsonl").write_text("this is not json\n")
    (d / "notext.jsonl").write_text(json.dumps({"body": "no text field"}) + "\n")
    (d / "taskless.jsonl").write_text(json.dumps({"prompt": "The capital of France is"}) + "\n")
    (d / "a_file").write_text("occupied")
    (d / "other_files").mkdir()
    (d / "other_files" / "thesis.tex").write_text("mine")
    from circuitclust.analysis.clustering import partition_model
    from circuitclust.models import load_model

    save_partition(partition_model(load_model("tiny-gpt2", device="cpu"), k=4, parts=("mlp",), method="blocks"),
                   d / "gpt2part.json")
    save_partition(partition_model(load_model("tiny-pythia", device="cpu"), k=4, parts=("mlp",), method="blocks"),
                   d / "pythiapart.json")
    raw = (d / "gpt2part.safetensors").read_bytes()
    (d / "trunc.json").write_text((d / "gpt2part.json").read_text())
    (d / "trunc.safetensors").write_bytes(raw[: len(raw) // 2])
    (d / "half.json").write_text((d / "gpt2part.json").read_text()[:50])
    (d / "half.safetensors").write_bytes(raw)
    (d / "lonely.json").write_text((d / "gpt2part.json").read_text())
    (d / "wrongkind.json").write_text(json.dumps({"schema": "circuitclust.clusterability/1", "graphs": []}))
    (d / "wrongkind.safetensors").write_bytes(raw)
    (d / "hidden_only" / ".git").mkdir(parents=True)
    (d / "hidden_only" / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (d / "parent_of_runs" / "proj").mkdir(parents=True)  # holds run files one level down, and notes of its own
    (d / "parent_of_runs" / "proj" / "report.html").write_text("<html></html>")
    (d / "parent_of_runs" / "notes.txt").write_text("mine")
    (d / "x.gguf").mkdir()
    (d / "dangling").symlink_to(d / "nowhere")
    (d / "a_cluster_run").mkdir()
    (d / "a_cluster_run" / ".circuitclust-run").write_text(json.dumps({"schema": "circuitclust.run/1", "kind": "cluster"}))
    (d / "a_cluster_run" / "clusterability.json").write_text(json.dumps({"schema": "circuitclust.clusterability/1",
                                                                         "graphs": []}))
    (d / "ft_garbage").mkdir()
    (d / "ft_garbage" / "metrics.jsonl").write_bytes(bytes(range(256)) * 4)
    from circuitclust.models import build_tiny

    hf, _ = build_tiny("tiny-gpt2")
    hf.save_pretrained(d / "no_tokenizer")  # weights and config, but no tokenizer files
    (d / "run_broken").mkdir()
    (d / "run_broken" / "clusterability.json").write_text('{"schema": "circuitclust.clusterability/1", "gr')
    return d


TINY = "tiny-gpt2"

# (id, arguments with {d} for the bad-files folder and {o} for a fresh output path, words the error must contain)
CASES = [
    # model specs
    ("unknown-model", ["graphs", "no-such-model"], ["not in the local Hugging Face cache"]),
    ("missing-folder", ["graphs", "{d}/nope/"], ["does not exist"]),
    ("empty-folder", ["graphs", "{d}/empty"], ["holds no HF model"]),
    ("text-file-as-model", ["graphs", "{d}/notes.txt"], ["is a file"]),
    ("fake-gguf", ["graphs", "{d}/fake.gguf"], ["not a GGUF file"]),
    ("unsupported-architecture", ["graphs", "{d}/bert"], ["'bert' is not supported", "gpt2"]),
    ("config-not-json", ["graphs", "{d}/badjson"], ["not a readable HF model config"]),
    ("hub-name-offline", ["cluster", "gpt2", "--out", "{o}"], ["hub is unreachable"]),
    ("unsupported-in-cluster", ["cluster", "{d}/bert", "--out", "{o}"], ["not supported"]),
    # usage mistakes (click's own checks)
    ("not-a-number", ["cluster", TINY, "--k", "abc", "--out", "{o}"], ["--k", "cluster --help"]),
    ("missing-argument", ["cluster", "--out", "{o}"], ["Missing argument"]),
    ("unknown-option", ["graphs", TINY, "--frobnicate"], ["No such option"]),
    ("unknown-command", ["clusterize", TINY], ["No such command"]),
    # numbers out of range and unknown choices
    ("graphs-parts", ["graphs", TINY, "--parts", "foo"], ["unknown part 'foo'"]),
    ("graphs-no-parts", ["graphs", TINY, "--parts", ","], ["no parts given"]),
    ("cluster-k0", ["cluster", TINY, "--k", "0", "--out", "{o}"], ["--k=0"]),
    ("cluster-k-huge", ["cluster", TINY, "--k", "100000", "--out", "{o}"], ["k=100000", "smallest weight graph"]),
    ("cluster-shuffles", ["cluster", TINY, "--shuffles", "-1", "--out", "{o}"], ["--shuffles=-1"]),
    ("cluster-method", ["cluster", TINY, "--method", "kmeans", "--out", "{o}"], ["--method"]),
    ("cluster-power", ["cluster", TINY, "--power", "3", "--out", "{o}"], ["--power"]),
    ("cluster-parts", ["cluster", TINY, "--parts", "mlp,foo", "--out", "{o}"], ["unknown part 'foo'"]),
    ("cluster-threads", ["cluster", TINY, "--threads", "0", "--out", "{o}"], ["--threads=0"]),
    ("finetune-lr-nan", ["finetune", TINY, "--lr", "nan", "--out", "{o}"], ["--lr", "finite"]),
    ("finetune-lr-negative", ["finetune", TINY, "--lr", "-1", "--out", "{o}"], ["--lr"]),
    ("finetune-lam-inf", ["finetune", TINY, "--lam", "inf", "--out", "{o}"], ["--lam", "finite"]),
    ("finetune-steps0", ["finetune", TINY, "--steps", "0", "--out", "{o}"], ["--steps=0"]),
    ("finetune-batch0", ["finetune", TINY, "--batch-size", "0", "--out", "{o}"], ["--batch-size=0"]),
    ("finetune-seq-len", ["finetune", TINY, "--seq-len", "100000", "--steps", "1", "--out", "{o}"],
     ["longer than the model's context"]),
    ("finetune-graphs", ["finetune", TINY, "--graphs", "foo", "--out", "{o}"], ["unknown part 'foo'"]),
    ("finetune-partition", ["finetune", TINY, "--partition", "random", "--out", "{o}"], ["--partition"]),
    ("finetune-seeds", ["finetune", TINY, "--seeds", "0,x", "--out", "{o}"], ["--seeds", "0,x"]),
    ("finetune-float16", ["finetune", TINY, "--dtype", "float16", "--out", "{o}"], ["--dtype", "bfloat16"]),
    ("finetune-resume-and-overwrite", ["finetune", TINY, "--resume", "--overwrite", "--out", "{o}"],
     ["pass only one"]),
    ("patch-threshold", ["patch", TINY, "--threshold", "2", "--out", "{o}"], ["--threshold=2"]),
    ("patch-n-boot", ["patch", TINY, "--n-boot", "0", "--out", "{o}"], ["--n-boot=0"]),
    ("patch-method", ["patch", TINY, "--method", "foo", "--out", "{o}"], ["--method"]),
    ("patch-metric", ["patch", TINY, "--metric", "foo", "--out", "{o}"], ["--metric"]),
    ("patch-max-rows", ["patch", TINY, "--max-rows", "0", "--out", "{o}"], ["--max-rows=0"]),
    ("similarity-n", ["similarity", TINY, "--n", "1", "--out", "{o}"], ["--n=1 is too small"]),
    ("similarity-split", ["similarity", TINY, "--split", "test", "--out", "{o}"], ["--split"]),
    ("similarity-solver", ["similarity", TINY, "--solver", "magic", "--out", "{o}"], ["--solver"]),
    ("similarity-starts", ["similarity", TINY, "--starts", "warm", "--out", "{o}"], ["--starts", "warm"]),
    ("similarity-groups", ["similarity", TINY, "--groups", "0", "--out", "{o}"], ["--n-groups=0"]),
    ("similarity-boot", ["similarity", TINY, "--boot", "-1", "--out", "{o}"], ["--n-boot=-1"]),
    ("tasks-limit", ["tasks", TINY, "--limit", "0"], ["--limit=0"]),
    ("tasks-batch", ["tasks", TINY, "--batch-size", "0"], ["--batch-size=0"]),
    ("report-weight-cells", ["report", "{d}/run_broken", "--weight-cells", "-1"], ["--weight-cells=-1"]),
    ("demo-minutes", ["demo", "--model", TINY, "--minutes", "0", "--out", "{o}"], ["--minutes=0"]),
    ("demo-k", ["demo", "--model", TINY, "--k", "1", "--out", "{o}"], ["--k=1"]),
    ("demo-model", ["demo", "--model", "no-such-model", "--out", "{o}"], ["no-such-model"]),
    ("demo-no-tasks", ["demo", "--model", TINY, "--tasks", " , ", "--out", "{o}"], ["--tasks is empty"]),
    ("cluster-threads-huge", ["cluster", TINY, "--threads", "100000", "--out", "{o}"], ["--threads=100000"]),
    ("patch-n-boot-huge", ["patch", TINY, "--n-boot", "1000000000", "--out", "{o}"], ["--n-boot=1000000000"]),
    ("patch-task-twice", ["patch", TINY, "--tasks", "country_capital,country_capital", "--out", "{o}"],
     ["listed twice"]),
    ("similarity-no-hooks", ["similarity", TINY, "--hooks", " , ", "--out", "{o}"], ["--hooks is empty"]),
    ("empty-model-spec", ["graphs", ""], ["model spec is empty"]),
    ("gguf-folder", ["graphs", "{d}/x.gguf"], ["is a folder, not a GGUF file"]),
    ("model-without-tokenizer", ["tasks", "{d}/no_tokenizer"], ["holds no tokenizer"]),
    ("out-broken-link", ["cluster", TINY, "--out", "{d}/dangling"], ["broken link"]),
    ("out-other-kind", ["similarity", TINY, "--out", "{d}/a_cluster_run", "--overwrite"], ["holds a cluster run"]),
    ("report-metrics-garbage", ["report", "{d}/ft_garbage", "-o", "{o}.html"], ["can be read", "metrics.jsonl"]),
    ("report-out-under-a-file", ["report", "{d}/a_cluster_run", "-o", "{d}/a_file/r.html", "--no-weights"],
     ["a file stands where a folder is needed"]),
    # devices
    ("device-name", ["cluster", TINY, "--device", "foo", "--out", "{o}"], ["not a device name"]),
    ("device-cuda", ["cluster", TINY, "--device", "cuda:7", "--out", "{o}"], ["cuda:7"]),
    ("device-finetune", ["finetune", TINY, "--device", "cpu:abc", "--out", "{o}"], ["cpu:abc"]),
    # data files
    ("data-unknown", ["finetune", TINY, "--data", "foo.jsonl", "--out", "{o}"], ["does not exist"]),
    ("data-empty", ["finetune", TINY, "--data", "{d}/empty.jsonl", "--out", "{o}"], ["empty.jsonl"]),
    ("data-garbage", ["finetune", TINY, "--data", "{d}/garbage.jsonl", "--out", "{o}"], ["garbage.jsonl"]),
    ("data-no-text", ["similarity", TINY, "--data", "{d}/notext.jsonl", "--out", "{o}"], ["text"]),
    ("task-unknown", ["patch", TINY, "--tasks", "capitals_of_mars", "--out", "{o}"], ["unknown task"]),
    ("task-malformed", ["patch", TINY, "--tasks", "{d}/garbage.jsonl", "--out", "{o}"], ["garbage.jsonl"]),
    ("task-fields", ["tasks", TINY, "--task", "{d}/taskless.jsonl"], ["answer"]),
    # partition files
    ("partition-missing", ["patch", TINY, "--partition", "{d}/nope.json", "--out", "{o}"], ["missing"]),
    ("partition-dir", ["patch", TINY, "--partition", "{d}/empty", "--out", "{o}"], ["both needed"]),
    ("partition-no-tensors", ["patch", TINY, "--partition", "{d}/lonely.json", "--out", "{o}"], ["both needed"]),
    ("partition-truncated-tensors", ["patch", TINY, "--partition", "{d}/trunc.json", "--out", "{o}"],
     ["cannot read partition"]),
    ("partition-truncated-json", ["patch", TINY, "--partition", "{d}/half.json", "--out", "{o}"],
     ["cannot read partition"]),
    ("partition-wrong-kind", ["patch", TINY, "--partition", "{d}/wrongkind.json", "--out", "{o}"],
     ["not a circuitclust partition"]),
    ("partition-other-architecture", ["patch", TINY, "--partition", "{d}/pythiapart.json", "--tasks",
                                      "country_capital", "--out", "{o}"], ["gpt_neox", "gpt2"]),
    # folders and output paths
    ("out-is-a-file", ["cluster", TINY, "--out", "{d}/a_file"], ["is a file"]),
    ("out-holds-other-files", ["similarity", TINY, "--out", "{d}/other_files"], ["holding other files"]),
    ("out-holds-other-files-overwrite", ["cluster", TINY, "--out", "{d}/other_files", "--overwrite"],
     ["holding other files"]),
    ("out-holds-hidden-files", ["cluster", TINY, "--out", "{d}/hidden_only"], ["holding other files"]),
    ("out-holds-run-folders-overwrite", ["cluster", TINY, "--out", "{d}/parent_of_runs", "--overwrite"],
     ["holding other files"]),
    ("out-is-working-folder", ["cluster", TINY, "--out", "."], ["current folder"]),
    ("out-is-parent-folder", ["similarity", TINY, "--out", ".."], ["current folder"]),
    ("demo-overwrite-foreign", ["demo", "--model", TINY, "--out", "{d}/parent_of_runs", "--overwrite"],
     ["holding other files"]),
    ("report-missing", ["report", "{d}/nope"], ["not a folder"]),
    ("report-empty", ["report", "{d}/empty"], ["holds none of"]),
    ("report-unreadable", ["report", "{d}/run_broken", "-o", "{o}.html"], ["can be read"]),
    ("report-out-dir", ["report", "{d}/run_broken", "-o", "{d}/empty"], ["is a folder"]),
    ("report-out-foreign", ["report", "{d}/run_broken", "-o", "{d}/notes.txt"], ["not a circuitclust report"]),
    ("report-compare-missing", ["report", "{d}/run_broken", "--compare", "{d}/nope"], ["not a folder"]),
    ("tasks-json-dir", ["tasks", TINY, "--json", "{d}/empty"], ["is a folder"]),
    ("tasks-json-exists", ["tasks", TINY, "--json", "{d}/notes.txt"], ["--overwrite"]),
    ("finetune-resume-foreign", ["finetune", TINY, "--resume", "--out", "{d}/other_files"], ["holding other files"]),
    ("patch-compare-missing", ["patch", TINY, "--compare", "{d}/nope/", "--out", "{o}"], ["does not exist"]),
    ("similarity-compare-missing", ["similarity", TINY, "--compare", "{d}/nope/", "--out", "{o}"],
     ["does not exist"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line(case, files, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # "--out ." and "--out .." point into this test's own folders
    _, args, needles = case
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, [a.format(d=files, o=out) for a in args])
    assert_one_line_error(code, err, *needles)
    assert not out.exists() and not Path(f"{out}.html").exists()  # nothing half-written
    assert not any(p.name.startswith(".out") for p in tmp_path.iterdir())  # no staging folder left
    # folders that are not circuitclust runs are never touched, --overwrite or not
    assert (files / "parent_of_runs" / "notes.txt").is_file() and (files / "hidden_only" / ".git" / "HEAD").is_file()
    assert (files / "other_files" / "thesis.tex").is_file()


def test_rerun_refuses_then_overwrites(files, tmp_path, capsys):
    out = tmp_path / "c"
    code, _, err = run_cli(capsys, ["cluster", TINY, "--parts", "mlp", "--shuffles", "0", "--out", out])
    assert code == 0, err
    first = json.loads((out / "clusterability.json").read_text())
    code, _, err = run_cli(capsys, ["cluster", TINY, "--parts", "mlp", "--k", "2", "--out", out])
    assert_one_line_error(code, err, "already holds a run", "--overwrite")
    assert json.loads((out / "clusterability.json").read_text()) == first  # untouched
    code, _, err = run_cli(capsys, ["cluster", TINY, "--parts", "mlp", "--k", "2", "--shuffles", "0", "--out", out,
                                    "--overwrite"])
    assert code == 0, err
    assert json.loads((out / "clusterability.json").read_text())["k"] == 2
    assert sorted(p.name for p in out.iterdir()) == [".circuitclust-run", "clusterability.csv", "clusterability.json",
                                                     "partition.json", "partition.safetensors"]
    code, _, err = run_cli(capsys, ["finetune", TINY, "--out", out])
    assert_one_line_error(code, err, "already holds a run", "--resume")


def test_late_error_is_not_glued_to_a_progress_bar(files, tmp_path, capsys):
    # the n-cut of a model with only MLP graphs needs the attention graphs it was asked for: a failure that
    # can only happen after the partition's progress bar has run
    from circuitclust.cli.common import print_error
    from tqdm.auto import tqdm

    bar = tqdm(total=10, desc="partition")
    bar.update(3)
    print_error("something failed\nacross lines")
    _, err = capsys.readouterr()
    last = err.replace("\r", "\n").splitlines()[-1]
    assert last == "error: something failed across lines"
    assert err.endswith("\nerror: something failed across lines\n")


def _run_files_intact(folder: Path) -> None:
    """Every JSON parses, every safetensors file loads, every CSV has a header and whole rows."""
    from safetensors.torch import load_file

    for p in folder.rglob("*"):
        if p.is_dir() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue  # staging copies (".name.partial-PID", ".tmp-step-N") are never read
        if p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".safetensors":
            load_file(str(p))
        elif p.suffix == ".jsonl":
            for line in p.read_text().splitlines():
                json.loads(line)
        elif p.suffix == ".csv":
            rows = p.read_text().splitlines()
            assert rows and all(r.count(",") == rows[0].count(",") for r in rows if '"' not in r), p


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_commands_leave_whole_files_and_rerun_as_documented(tmp_path):
    """SIGKILL a cluster run and a fine-tuning run part-way: no file is truncated, the cluster folder is
    either absent or the old run, a re-run without --overwrite refuses or (fine-tuning with --resume)
    continues from its last checkpoint to the same end as an uninterrupted run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cli = [sys.executable, "-m", "circuitclust"]

    def kill_when(args: list[str], ready, extra: float) -> None:
        """Start ``circuitclust ARGS``, wait until ``ready()`` (at most 4 min), then ``extra`` s, then SIGKILL."""
        proc = subprocess.Popen(cli + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not ready() and proc.poll() is None:
            time.sleep(0.1)
        time.sleep(extra)
        assert proc.poll() is None, "the command ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    # cluster: a killed first run leaves no folder (only a staging folder, cleaned by the next run)
    out = tmp_path / "c"
    cluster = ["cluster", TINY, "--shuffles", "5000", "--out", str(out)]
    staging = lambda: bool(list(tmp_path.glob(".c.partial-*")))  # noqa: E731
    kill_when(cluster, staging, 1.0)
    assert not out.exists()
    done = subprocess.run(cli + ["cluster", TINY, "--shuffles", "0", "--out", str(out)], env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    assert not list(tmp_path.glob(".c.partial-*"))  # the killed run's staging folder is gone
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a killed --overwrite leaves the old run whole
    kill_when(cluster + ["--overwrite"], staging, 1.0)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    _run_files_intact(out)
    again = subprocess.run(cli + cluster, env=env, capture_output=True, text=True)
    assert again.returncode == 2 and again.stderr.startswith("error: ") and "--overwrite" in again.stderr
    # SIGTERM stops a command like Ctrl-C: a clean line, exit 128 + 15, its staging folder removed
    proc = subprocess.Popen(cli + ["cluster", TINY, "--shuffles", "5000", "--out", str(tmp_path / "t")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not list(tmp_path.glob(".t.partial-*")) and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and err.replace("\r", "\n").splitlines()[-1] == "interrupted by signal 15", err
    assert not (tmp_path / "t").exists() and not list(tmp_path.glob(".t.partial-*"))

    # finetune: kill while it trains, resume, and compare with an uninterrupted run
    ft = ["finetune", TINY, "--steps", "600", "--eval-every", "20", "--batch-size", "2", "--seq-len", "32",
          "--eval-blocks", "2", "--seed", "3"]
    killed, whole = tmp_path / "ft_killed", tmp_path / "ft_whole"
    kill_when(ft + ["--out", str(killed)], lambda: len(list((killed / "checkpoints").glob("step-*"))) > 0, 1.0)
    assert not (killed / "final").exists()
    _run_files_intact(killed)
    refused = subprocess.run(cli + ft + ["--out", str(killed)], env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = subprocess.run(cli + ft + ["--out", str(killed), "--resume"], env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    straight = subprocess.run(cli + ft + ["--out", str(whole)], env=env, capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    a = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        assert ra["heldout_ppl"] == pytest.approx(rb["heldout_ppl"], rel=1e-5)
        assert ra["mean_clusterability"] == pytest.approx(rb["mean_clusterability"], abs=1e-6)
