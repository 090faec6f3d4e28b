"""Regenerate the files under results/ that analyses/RESULTS.md's tables are made from.

Each result kind is a producer registered in ``PRODUCERS``: it runs the pipeline (library calls, the same as
the CLI commands it records) and writes JSON/CSV only (no partitions or tensors) into ``results/<kind>/``,
with ``manifest.json``: the equivalent command, git commit, seeds, machine (CPU, cores, torch, load average
before and after) and wall time. ``scripts/results_tables.py`` turns them into the tables.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python scripts/make_results.py enmeshment_gemma [KIND ...]
    .venv/bin/python scripts/make_results.py --list

Kinds and their cost on the project's 2-core CPU: ``enmeshment_gemma`` / ``enmeshment_smollm2`` (MLP
clusterability of Gemma 3 270M / SmolLM2 135M, spectral and balanced, 3 seeds x 99 shuffles, and equal blocks;
~10-20 min each on a quiet machine), ``attribution_gemma`` (attribution vs exact cluster patching on 8
country_capital prompts, 3 partition seeds; a few minutes), ``recall_gemma`` / ``recall_smollm2`` (the recall
tasks' accuracy; ~1 min), ``circuits_gemma`` / ``circuits_smollm2`` (base vs clustered circuits: the demo with 32
prompts per task, then its patch step on two further prompt seeds; ~1 h / ~1.5 h), ``similarity_gemma`` /
``similarity_smollm2`` (layer similarity on held-out wiki text, 3 seeds; a few minutes), ``shuffle_null`` (the
shuffle-null benchmark; ~4 min on a quiet machine).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
_COMMIT = "unknown"
RESULTS = ROOT / "results"
SEEDS = (0, 1, 2)


def git_commit() -> str:
    """The checkout's commit, ``+dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _fresh(kind: str) -> Path:
    """An empty staging folder for ``results/<kind>/``: :func:`main` puts it in place once the producer has
    finished, so a failed or interrupted run leaves the stored result as it was."""
    global _COMMIT
    _COMMIT = git_commit()  # the code that runs is the code at the start
    out = RESULTS / f".{kind}.partial"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return out


def _put_in_place(staging: Path, kind: str) -> Path:
    final = RESULTS / kind
    old = RESULTS / f".{kind}.old"
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    if old.exists():
        shutil.rmtree(old)
    return final


def _manifest(out: Path, commands: list[str], seeds, started: float, load_before: list[float], **extra) -> None:
    doc = {"schema": "circuitclust.results_manifest/1", "commands": commands, "git_commit": _COMMIT,
           "seeds": list(seeds), "machine": machine(), "load_average_before": load_before,
           "load_average_after": load(), "date": time.strftime("%Y-%m-%d %H:%M %Z"),
           "wall_s": round(time.perf_counter() - started, 1), **extra}
    (out / "manifest.json").write_text(json.dumps(doc, indent=1) + "\n")


def _keep_json_csv(folder: Path) -> None:
    """Drop what results/ does not keep (partitions, tensors, markers): JSON and CSV only."""
    for p in sorted(folder.rglob("*"), reverse=True):
        if p.is_file() and p.suffix not in (".json", ".csv") or p.name == ".circuitclust-run":
            p.unlink()
        elif p.is_file() and p.name == "partition.json":
            p.unlink()


#: Shuffles per graph and seed of the enmeshment result (``--shuffles``): 99 lets p reach 0.01.
SHUFFLES = 99
#: Shuffles of the plain (unbalanced) spectral variant (``--plain-shuffles``; default: as ``--shuffles``).
PLAIN_SHUFFLES: int | None = None


#: The embedded real models the per-model results are made for: result-kind suffix -> model spec.
MODELS = {"gemma": "gemma-3-270m", "smollm2": "smollm2-135m"}


def enmeshment(model_spec: str, kind: str) -> Path:
    """Claim 1: clusterability of a model's MLP graphs (k = 4) under the spectral partition, plain and balanced
    (0.5), 3 seeds x SHUFFLES shuffles each, and under equal blocks (deterministic, one seed)."""
    import circuitclust as cc
    from circuitclust.models import load_model

    out, t0, l0 = _fresh(kind), time.perf_counter(), load()
    model = load_model(model_spec, device="cpu")
    seeds = ",".join(map(str, SEEDS))
    commands = []
    plain = SHUFFLES if PLAIN_SHUFFLES is None else PLAIN_SHUFFLES
    for name, balance, shuffles in (("spectral_balanced", 0.5, SHUFFLES), ("spectral", 0.0, plain)):
        opts = cc.ClusterOptions(k=4, parts=("mlp",), shuffles=shuffles, balance=balance, device="cpu")
        cc.cluster_seeds(model, SEEDS, opts).save(out / name)
        commands.append(f"circuitclust cluster {model_spec} --k 4 --parts mlp --shuffles {shuffles} --balance "
                        f"{balance} --seeds {seeds} --device cpu --out {name}")
    res = cc.cluster(model, cc.ClusterOptions(k=4, parts=("mlp",), method="blocks", shuffles=SHUFFLES, device="cpu"))
    res.model = model_spec
    res.save(out / "blocks")
    commands.append(f"circuitclust cluster {model_spec} --k 4 --parts mlp --method blocks --shuffles {SHUFFLES} "
                    "--device cpu --out blocks")
    _keep_json_csv(out)
    _manifest(out, commands, SEEDS, t0, l0, model=model_spec)
    return out


ATTRIBUTION = {"task": "country_capital", "max_prompts": 8, "k": 4, "balance": 0.5, "parts": ("mlp",)}


def attribution_agreement(model, seed: int, max_prompts: int = ATTRIBUTION["max_prompts"]) -> dict:
    """Spearman agreement between attribution patching and exact resample ablation of every (layer, cluster)
    node of a balanced spectral MLP partition (``seed``) on the first ``max_prompts`` prompts of the task.
    Also used by tests/test_results.py to re-run the stored figure."""
    from circuitclust.analysis.clustering import partition_model
    from circuitclust.analysis.patching.effects import attribution_agreement as agreement
    from circuitclust.analysis.patching.prompts import encode_task
    from circuitclust.analysis.patching.units import unit_layout

    a = ATTRIBUTION
    partition = partition_model(model, k=a["k"], parts=a["parts"], seed=seed, balance=a["balance"])
    prompts = encode_task(model, a["task"], max_prompts=max_prompts)
    res = agreement(model, prompts, unit_layout(model, partition))
    return {"seed": seed, "spearman": float(res["spearman"]), "n_prompts": int(prompts.clean.shape[0]),
            "attribution": res["attribution"].values.tolist(), "exact": res["exact"].values.tolist()}


def attribution_gemma() -> Path:
    """Attribution vs exact cluster patching on Gemma 3 270M, 3 partition seeds."""
    from circuitclust.core.replicates import aggregate, interval_info
    from circuitclust.models import load_model

    out, t0, l0 = _fresh("attribution_gemma"), time.perf_counter(), load()
    model = load_model("gemma-3-270m", device="cpu")
    runs = [attribution_agreement(model, s) for s in SEEDS]
    summary = aggregate([{"spearman": r["spearman"]} for r in runs])
    doc = {"schema": "circuitclust.results_attribution/1", "model": "gemma-3-270m", "settings": ATTRIBUTION,
           "interval": interval_info(SEEDS), "spearman": summary["spearman"], "runs": runs}
    (out / "attribution.json").write_text(json.dumps(doc, indent=1) + "\n")
    _manifest(out, ["python scripts/make_results.py attribution_gemma  (analysis.patching.effects."
                    "attribution_agreement on a balanced spectral MLP partition, k 4, per seed)"], SEEDS, t0, l0)
    return out


def recall(model_spec: str, kind: str) -> Path:
    """Top-1 recall accuracy of a model on the bundled tasks (Wilson 95% CIs); deterministic."""
    out, t0, l0 = _fresh(kind), time.perf_counter(), load()
    cmd = [sys.executable, "-m", "circuitclust", "tasks", model_spec, "--json", str(out / "recall.json")]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    _manifest(out, [f"circuitclust tasks {model_spec} --json recall.json"], [], t0, l0, model=model_spec)
    return out


#: The base-vs-clustered circuit runs: the demo's pipeline with 32 prompts per task (prompt seed 0); the demo's
#: fine-tuning recipe gives the clustered model; then the demo's patch step again on that fine-tuning with each
#: further prompt seed (``--circuit-seeds``: a new sample of 32 prompts, bootstrap, controls and attention
#: co-clustering per seed). ``shuffles`` only sets the demo's clustering steps, which are not collected (19 keeps
#: them short). The tasks, chosen for time on the 2-core CPU (the effect matrix and the circuits of one task cost
#: about 5 minutes per model and seed there): the demo's two recall tasks and IOI; the other recall tasks, wiki
#: and chemistry are left out (see benchmarks/circuits.py for all eight on the base Gemma).
CIRCUITS = {"max_prompts": 32, "shuffles": 19, "tasks": "country_capital,element_symbol,ioi"}
#: Prompt seeds of the circuit runs (``--circuit-seeds``; the first is the demo's).
CIRCUIT_SEEDS: tuple[int, ...] = (0, 1, 2)
#: Files of a patch run folder kept under results/ (the per-prompt tensors and partitions are not).
PATCH_FILES = ("circuits.csv", "faithfulness.csv", "specialisation.json", "comparison.json", "run_config.json",
               "compare/circuits.csv", "compare/faithfulness.csv", "compare/specialisation.json")
#: ``--from-run``: an existing demo run folder to collect instead of running the demo again; ``--from-patch``:
#: finished patch runs of the further seeds to collect with it (each names its seed in its run_config.json).
FROM_RUN: Path | None = None
FROM_PATCH: list[Path] = []


def collect_patch(patch: Path, out: Path) -> None:
    """Copy a patch run's results (:data:`PATCH_FILES`) into ``out``."""
    for name in PATCH_FILES:
        src = patch / name
        if src.is_file():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out / name)


def _patch_seed(patch: Path) -> int:
    return int(json.loads((patch / "run_config.json").read_text())["seed"])


def _run_cli(cmd: str, placeholder: str, folder: Path, env: dict) -> None:
    """Run the recorded ``circuitclust ...`` command ``cmd`` with its ``placeholder`` argument set to ``folder``."""
    args = [str(folder) if a == placeholder else a for a in cmd.split()[1:]]
    subprocess.run([sys.executable, "-m", "circuitclust", *args], check=True, cwd=ROOT, env=env)


def circuits(model_spec: str, kind: str) -> Path:
    """Base vs clustered circuits of a model: the demo (its fine-tuning recipe, then patching with MLP neurons
    and attention heads, counterfactual circuits with both controls) with 32 prompts per task, and the patch
    step again for each further prompt seed; one folder ``seed<S>/`` per seed."""
    out, t0, l0 = _fresh(kind), time.perf_counter(), load()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = (f"circuitclust demo --model {model_spec} --out RUN --max-prompts {CIRCUITS['max_prompts']} "
           f"--tasks {CIRCUITS['tasks']} --shuffles {CIRCUITS['shuffles']} --seed {CIRCUIT_SEEDS[0]}")
    if FROM_RUN is not None:
        run = FROM_RUN
        patches = {_patch_seed(p): p for p in FROM_PATCH}
    else:
        import tempfile

        run = Path(tempfile.mkdtemp(prefix="circuits-")) / "demo"
        _run_cli(cmd, "RUN", run, env)
        patches = {}
    made = [cmd.replace("RUN", str(run)) + (f" (collected from the finished run {run})" if FROM_RUN else "")]
    seeds = [CIRCUIT_SEEDS[0]] if FROM_RUN else list(CIRCUIT_SEEDS)
    seeds += [sd for sd in sorted(patches) if sd not in seeds]
    for sd in seeds[1:]:
        patch_cmd = (f"circuitclust patch {model_spec} --out PATCH --partition {run}/finetune/partition.json "
                     f"--compare {run}/finetune --tasks {CIRCUITS['tasks']} --max-prompts "
                     f"{CIRCUITS['max_prompts']} --seed {sd}")
        if sd not in patches:
            patches[sd] = run.parent / f"patch_seed{sd}"
            _run_cli(patch_cmd, "PATCH", patches[sd], env)
        made.append(patch_cmd.replace("PATCH", str(patches[sd]))
                    + (f" (collected from the finished run {patches[sd]})" if FROM_RUN else ""))
    collect_patch(run / "patch", out / f"seed{seeds[0]}")
    for sd in seeds[1:]:
        collect_patch(patches[sd], out / f"seed{sd}")
    (out / "finetune_metrics.json").write_text(json.dumps(
        [json.loads(line) for line in (run / "finetune" / "metrics.jsonl").read_text().splitlines()], indent=1) + "\n")
    log = run / "demo_log.json"
    # a collected run: its own time (when it recorded one), not the copying's; ``extra`` overrides ``wall_s``
    wall = {"wall_s": json.loads(log.read_text()).get("seconds") if log.is_file() else None} if FROM_RUN else {}
    _manifest(out, made, seeds, t0, l0, model=model_spec, **wall)
    return out


#: The layer-similarity result: residual stream after each block on held-out wiki text, 256 token positions,
#: the exact GW solver; one replicate per seed (new positions and solver starts).
SIMILARITY = {"data": "wiki", "split": "heldout", "n": 256}


def similarity(model_spec: str, kind: str) -> Path:
    """Layer similarity of a model (GW and CKA between all blocks' residual streams, contiguous layer groups)
    on held-out wiki text, 3 seeds."""
    import circuitclust as cc
    from circuitclust.models import load_model

    out, t0, l0 = _fresh(kind), time.perf_counter(), load()
    model = load_model(model_spec, device="cpu")
    opts = cc.SimilarityOptions(n=SIMILARITY["n"], split=SIMILARITY["split"], device="cpu")
    cc.similarity_seeds(model, SEEDS, SIMILARITY["data"], opts).save(out)
    _keep_json_csv(out)
    _manifest(out, [f"circuitclust similarity {model_spec} --data {SIMILARITY['data']} --split "
                    f"{SIMILARITY['split']} --n {SIMILARITY['n']} --seeds {','.join(map(str, SEEDS))} --device cpu"],
              SEEDS, t0, l0, model=model_spec)
    return out


def shuffle_null() -> Path:
    """The shuffle-null benchmark (benchmarks/shuffle_null.py): 100 shuffles of Gemma 3 270M's 54 MLP graphs,
    batched (1 and 2 workers) against the per-shuffle path; timings need a quiet machine (load recorded)."""
    out, t0, l0 = _fresh("shuffle_null"), time.perf_counter(), load()
    args = ["--shuffles", "100", "--reference-shuffles", "10", "--workers", "1,2"]
    subprocess.run([sys.executable, "shuffle_null.py", *args, "--json", str(out / "benchmark.json")], check=True,
                   cwd=ROOT / "benchmarks", env={**os.environ, "PYTHONPATH": str(ROOT)})
    _manifest(out, ["OMP_NUM_THREADS=1 python benchmarks/shuffle_null.py " + " ".join(args)], [0], t0, l0)
    return out


def _per_model(fn: Callable[[str, str], Path], prefix: str, short: str) -> Callable[[], Path]:
    def produce() -> Path:
        return fn(MODELS[short], f"{prefix}_{short}")

    produce.__doc__ = (fn.__doc__ or "").replace("a model", MODELS[short], 1)
    return produce


PRODUCERS: dict[str, Callable[[], Path]] = {
    **{f"enmeshment_{s}": _per_model(enmeshment, "enmeshment", s) for s in MODELS},
    "attribution_gemma": attribution_gemma,
    **{f"recall_{s}": _per_model(recall, "recall", s) for s in MODELS},
    **{f"circuits_{s}": _per_model(circuits, "circuits", s) for s in MODELS},
    **{f"similarity_{s}": _per_model(similarity, "similarity", s) for s in MODELS},
    "shuffle_null": shuffle_null,
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kinds", nargs="*", help=f"result kinds to regenerate: {', '.join(PRODUCERS)}")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--shuffles", type=int, default=SHUFFLES, help="shuffles per graph and seed (enmeshment_gemma)")
    ap.add_argument("--plain-shuffles", type=int, default=None,
                    help="shuffles of the unbalanced spectral variant (default: --shuffles)")
    ap.add_argument("--from-run", type=Path, default=None,
                    help="circuits_*: collect this finished demo run folder instead of running the demo")
    ap.add_argument("--from-patch", type=Path, nargs="*", default=[],
                    help="circuits_* with --from-run: finished patch runs of further prompt seeds to collect too")
    ap.add_argument("--circuit-seeds", default=",".join(map(str, CIRCUIT_SEEDS)),
                    help="circuits_*: prompt seeds (the first is the demo's; each further one re-runs the patch step)")
    args = ap.parse_args(argv)
    if args.from_patch and args.from_run is None:
        ap.error("--from-patch collects further seeds of a --from-run demo: give --from-run too")
    globals()["FROM_RUN"] = args.from_run
    globals()["FROM_PATCH"] = list(args.from_patch)
    from circuitclust.errors import OptionError
    from circuitclust.pipeline import parse_seeds

    try:
        globals()["CIRCUIT_SEEDS"] = parse_seeds(args.circuit_seeds)
    except OptionError as e:
        ap.error(f"--circuit-seeds: {e}")
    globals()["SHUFFLES"] = args.shuffles
    globals()["PLAIN_SHUFFLES"] = args.plain_shuffles
    if args.list or not args.kinds:
        print("\n".join(f"{k}: {(f.__doc__ or '').splitlines()[0]}" for k, f in PRODUCERS.items()))
        return
    for kind in args.kinds:
        if kind not in PRODUCERS:
            ap.error(f"unknown kind {kind!r}: use one of {', '.join(PRODUCERS)}")
    for kind in args.kinds:
        t = time.perf_counter()
        path = _put_in_place(PRODUCERS[kind](), kind)
        print(f"{kind}: wrote {path.relative_to(ROOT)} in {time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
