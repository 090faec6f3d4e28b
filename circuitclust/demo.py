"""The demo: the whole pipeline on one model, each step one call of :mod:`circuitclust.pipeline`.

Steps (each writes its own sub-folder of the output folder, so every step can be re-run or inspected alone):
``cluster_base`` (balanced spectral partition of the MLPs, clusterability vs chance and shuffles) -> ``finetune``
(the budgeted recipe: clusterability loss with a distillation term, lambda adapted to a held-out perplexity budget,
a fixed number of steps, final model the most clusterable one inside the budget) -> ``cluster_finetuned`` (re-score)
-> ``patch``
(cluster ablation, attribution, circuits; base vs fine-tuned on the same partition) -> ``similarity`` (GW and CKA
layer distances, base vs fine-tuned) -> ``report.html``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import OptionError, check_float, check_int, resolve_device


@dataclass(frozen=True)
class DemoOptions:
    """The demo's options (validated on creation).

    The fine-tuning runs ``steps`` optimizer steps, so its outcome does not depend on the machine's speed;
    ``minutes`` is only a safety cap on the fine-tuning's wall time (when it bites, the run says so and
    records ``time_budget_hit``); 60 steps take about 7 minutes on the project's 2-core CPU with the
    embedded Gemma, far inside the default cap.

    The recipe is the budgeted one of ``benchmarks/finetune_pareto.py`` (``loss-10``): ``lam`` is the largest
    per-weight lambda (``loss_reduction="entries"``; about 5x the value at which the loss's push on an MLP weight
    matches the task gradient's on Gemma 3 270M), adapted by the trainer to keep the held-out perplexity rise
    within ``max_ppl_increase`` (0 = no budget: lambda stays at ``lam``); with a budget, the fine-tuned model the
    later steps use is the most clusterable evaluated one (every 10 steps) inside the budget on the control text
    (``FinetuneConfig.final = "in-budget"``).
    ``tasks``: comma-separated patching tasks (recall task names, ``ioi``, ``wiki``, ``chemistry``), ``recall``
    or ``all``; exact cluster ablation costs one forward pass per (layer, part, cluster) per batch, and the
    embedded model's 262k-token unembedding makes each pass slow on a CPU, so the default is two tasks. The
    patch step's units are MLP neurons and attention heads (the attention clusters are co-clustered there,
    since fine-tuning partitions the MLPs), and its circuits use counterfactual ablation with both controls.
    ``shuffles`` per graph for the clusterability null: 99 lets p reach 0.01 (the batched null costs about
    105 s of CPU per clustering step of the embedded Gemma, shared by the torch threads);
    ``balance``: the spectral partition's minimum cluster share (see ``ClusterOptions``), for the clustering
    steps and the fine-tuning's partition alike: 0.5 keeps every cluster at least half its equal share, so no
    cluster is empty on one side.
    """

    model: str = "gemma-3-270m"
    data: str = "wiki"
    steps: int = 60
    minutes: float = 30.0
    k: int = 4
    lam: float = 4e-4
    max_ppl_increase: float = 0.10
    distill: float = 1.0
    shuffles: int = 99
    balance: float = 0.5
    max_prompts: int = 8
    tasks: str = "country_capital,element_symbol"
    similarity_n: int = 128
    seq_len: int = 64
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        check_int("steps", self.steps, 1)
        check_float("minutes", self.minutes, 0.0, open_min=True)
        check_int("k", self.k, 2)
        check_float("lam", self.lam, 0.0)
        check_float("max_ppl_increase", self.max_ppl_increase, 0.0)
        if self.max_ppl_increase > 0 and self.lam <= 0:
            raise OptionError("a perplexity budget adapts lambda: give lam > 0 (or max_ppl_increase 0)", option="lam")
        check_float("distill", self.distill, 0.0)
        check_int("shuffles", self.shuffles, 0)
        check_float("balance", self.balance, 0.0, 1.0)
        check_int("max_prompts", self.max_prompts, 1)
        check_int("similarity_n", self.similarity_n, 4)
        check_int("seq_len", self.seq_len, 2)
        if not self.task_names:
            raise OptionError("tasks is empty: give recall task names (e.g. country_capital) or 'all'",
                              option="tasks")
        resolve_device(self.device)

    @property
    def task_names(self) -> list[str]:
        from .data import expand_tasks

        return expand_tasks(self.tasks) if self.tasks.strip() else []

    def check_inputs(self) -> None:
        """The model spec, tasks and corpus exist and can be read (before any step starts)."""
        from .data import load_corpus, task_kind
        from .models.loading import check_spec

        check_spec(self.model)
        for name in self.task_names:
            task_kind(name)
        load_corpus(self.data, "train")


def run_demo(options: DemoOptions, out: str | Path, *, overwrite: bool = False,
             echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every demo step into the folder ``out`` (new or empty, or a previous demo run with ``overwrite``);
    ``echo`` receives a line per step. Returns the demo log (also written to ``out/demo_log.json``)."""
    from .runfiles import MARKER, check_output_folder, mark_run_folder, remove_run_folder

    out = Path(out)
    options.check_inputs()
    if overwrite and out.exists():
        remove_run_folder(out, kind="demo")
    check_output_folder(out)
    mark_run_folder(out, "demo")
    try:
        return _run_steps(options, out, echo)
    except BaseException:
        if [p.name for p in out.iterdir()] == [MARKER]:  # no step wrote anything: leave no folder behind
            (out / MARKER).unlink()
            out.rmdir()
        raise


def _run_steps(o: DemoOptions, out: Path, echo: Callable[[str], None]) -> dict[str, Any]:
    from .analysis.finetuning import FinetuneConfig
    from .pipeline import ClusterOptions, PatchOptions, SimilarityOptions, cluster, finetune, patch, similarity
    from .report import build_report
    from .runfiles import load_partition, new_run_folder, write_demo_log

    t0 = time.perf_counter()
    log: list[dict] = []

    def step(name: str, run: Callable[[], Any], summary: dict[str, Any]) -> None:
        echo(f"\n=== {name}")
        t = time.perf_counter()
        run()
        elapsed = time.perf_counter() - t
        log.append({"step": name, **summary, "seconds": round(elapsed, 1)})
        echo(f"=== {name} done in {elapsed:.0f} s")

    ft = out / "finetune"
    cluster_opts = ClusterOptions(k=o.k, parts=("mlp",), shuffles=o.shuffles, balance=o.balance, seed=o.seed,
                                  device=o.device)

    def cluster_step(spec: str, folder: Path) -> None:
        with new_run_folder(folder, kind="cluster") as staging:
            res = cluster(spec, cluster_opts, progress=True)
            res.save(staging)
        echo(f"mean clusterability {res.mean_clusterability:.4f} vs chance {res.mean_chance:.4f}")

    cfg = FinetuneConfig(model=o.model, out=str(ft), data=o.data, k=o.k, lam=o.lam, loss_reduction="entries",
                         distill=o.distill, partition="spectral", balance=o.balance,
                         graphs=("mlp_in", "mlp_gate", "mlp_out"), train="regularised",
                         max_ppl_increase=o.max_ppl_increase, final="in-budget" if o.max_ppl_increase > 0 else "last",
                         steps=o.steps, max_minutes=o.minutes, seq_len=o.seq_len, batch_size=4, lr=1e-4,
                         eval_every=10, eval_blocks=8, save_every=50, keep_checkpoints=1, seed=o.seed,
                         device=o.device)
    patch_opts = PatchOptions(max_prompts=o.max_prompts, seed=o.seed, device=o.device)
    sim_opts = SimilarityOptions(n=o.similarity_n, seed=o.seed, device=o.device)

    def patch_step() -> None:
        with new_run_folder(out / "patch", kind="patch") as staging:
            patch(o.model, o.task_names, partition=load_partition(ft), options=patch_opts, compare=str(ft),
                  progress=True).save(staging)

    def similarity_step() -> None:
        with new_run_folder(out / "similarity", kind="similarity") as staging:
            similarity(o.model, o.data, sim_opts, compare=str(ft), progress=True).save(staging)

    step("cluster_base", lambda: cluster_step(o.model, out / "cluster_base"),
         {"model": o.model, "options": asdict(cluster_opts)})
    step("finetune", lambda: finetune(cfg), {"config": asdict(cfg)})
    step("cluster_finetuned", lambda: cluster_step(str(ft), out / "cluster_finetuned"),
         {"model": str(ft), "options": asdict(cluster_opts)})
    step("patch", patch_step, {"tasks": o.task_names, "options": asdict(patch_opts)})
    step("similarity", similarity_step, {"data": o.data, "options": asdict(sim_opts)})
    step("report", lambda: build_report(out, out=out / "report.html"), {})
    total = time.perf_counter() - t0
    doc = {"model": o.model, "data": o.data, "finetune_steps": o.steps, "minutes_cap": o.minutes, "options": asdict(o),
           "seconds": round(total, 1), "steps": log}
    write_demo_log(out, doc)
    echo(f"\ndemo finished in {total / 60:.1f} min; report: {(out / 'report.html').resolve()}")
    return doc
