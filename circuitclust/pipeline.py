"""The pipeline API: one function per operation, each taking a frozen, validated options object and returning a
typed result that saves itself into a run folder (through ``circuitclust.runfiles``) and loads back.

    import circuitclust as cc
    res = cc.cluster("tiny-gpt2", cc.ClusterOptions(k=4, parts=("mlp",), shuffles=20))
    res.save("runs/c")
    tuned = cc.finetune(cc.FinetuneConfig(model="tiny-gpt2", out="runs/ft", steps=50))
    eff = cc.patch("tiny-gpt2", ["country_capital"], partition=res.partition)
    sim = cc.similarity("tiny-gpt2", "wiki", cc.SimilarityOptions(n=128))

``model`` arguments take a model spec (see :func:`circuitclust.models.load_model`) or an already loaded
TransformerBridge. The command line, the demo and ``analyses/`` are thin callers of these functions.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from .analysis.finetuning import FinetuneConfig
from .analysis.finetuning import finetune as _finetune
from .analysis.patching import Ablation, ModelPatching
from .analysis.similarity import LayerSimilarity
from .core.partition import ModelPartition
from .errors import (OptionError, check_choice, check_device_map, check_dtype, check_float, check_int,
                     resolve_device)
from .models.graphs import matrix_kinds


def _bridge(model: Any, device: str | None, options: Any = None):
    """``model`` as a TransformerBridge: loaded when it is a spec (in ``options.dtype``, placed by
    ``options.device_map`` when set, else on ``device``), as it is otherwise."""
    from .models import load_model

    if not isinstance(model, (str, Path)):
        return model
    dtype, device_map = getattr(options, "dtype", None), getattr(options, "device_map", None)
    return load_model(str(model), device=None if device_map else device, dtype=dtype, device_map=device_map)


def _check_placement(options: Any) -> None:
    """Validate (and normalise) an options object's ``dtype`` and ``device_map`` (not both a device and a map)."""
    object.__setattr__(options, "dtype", check_dtype(options.dtype))
    object.__setattr__(options, "device_map", check_device_map(options.device_map, options.device))


def _spec(model: Any) -> str:
    from .analysis.clustering import model_id

    return str(model) if isinstance(model, (str, Path)) else model_id(model)


# ----------------------------------------------------------------------------------------------- cluster
@dataclass(frozen=True)
class ClusterOptions:
    """How to partition and score a model's weight graphs (validated on creation).

    ``k`` clusters per graph; ``parts``: ``"mlp"``, ``"attn"`` or matrix kinds; ``method``: ``spectral``
    (co-clustering of |W|, or W^2 with ``power=2``) or ``blocks`` (equal contiguous blocks); ``shuffles``:
    entry-shuffled re-clusterings per graph for the null (default 99, so p can reach 0.01 and survive the
    Benjamini-Hochberg correction; 0 skips the null); ``balance`` (spectral, in [0, 1]): every cluster keeps
    at least ``balance * n / k`` units on each side of each graph (0: none, so a cluster can be empty on
    one side and its chance level high); ``ncut``: also the whole-network n-cut (with
    ``ncut_shuffles``, default ``shuffles``); ``svd``/``n_init``: the co-clusterer's SVD method and k-means
    restarts; ``device``: where the model and the partitioner run (default: CUDA when available); ``dtype``:
    the model's weights (float32, bfloat16, float16; the partitioner works in float32 either way);
    ``device_map``: spread the model over several devices instead (``auto``, ``balanced``... or
    ``{module: device}``).
    """

    k: int = 4
    parts: tuple[str, ...] = ("mlp", "attn")
    method: str = "spectral"
    power: int = 1
    shuffles: int = 99
    seed: int = 0
    svd: str = "auto"
    n_init: int = 10
    balance: float = 0.0
    ncut: bool = False
    ncut_shuffles: int | None = None
    device: str | None = None
    dtype: str | None = None
    device_map: str | dict | None = None

    def __post_init__(self) -> None:
        from .analysis.clustering import METHODS

        object.__setattr__(self, "parts", tuple(self.parts))
        matrix_kinds(self.parts)
        check_int("k", self.k, 2)
        check_choice("method", self.method, METHODS)
        check_choice("power", self.power, (1, 2))
        check_int("shuffles", self.shuffles, 0)
        check_int("n_init", self.n_init, 1)
        check_float("balance", self.balance, 0.0, 1.0)
        check_choice("svd", self.svd, ("auto", "exact", "randomized"))
        if self.ncut_shuffles is not None:
            check_int("ncut_shuffles", self.ncut_shuffles, 0)
        resolve_device(self.device)
        _check_placement(self)


@dataclass
class ClusterResult:
    """A model's partition, the clusterability of every graph beside its chance level and shuffle null
    (``graphs``: one dict per graph, see ``circuitclust.runfiles.write_clusterability``), the n-cut (or
    None), the options and the wall time of each stage."""

    model: str
    options: ClusterOptions
    partition: ModelPartition
    graphs: list[dict[str, Any]]
    ncut: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def mean_clusterability(self) -> float:
        return sum(r["clusterability"] for r in self.graphs) / len(self.graphs)

    @property
    def mean_chance(self) -> float:
        return sum(r["chance"] for r in self.graphs) / len(self.graphs)

    @property
    def mean_normalised(self) -> float:
        """Mean ``(C - chance) / (1 - chance)`` over the graphs where it is defined (NaN if none)."""
        vals = [r["clusterability_norm"] for r in self.graphs if r.get("clusterability_norm") is not None]
        return sum(vals) / len(vals) if vals else float("nan")

    def save(self, folder: str | Path) -> Path:
        """Write ``partition.json``/``.safetensors`` and ``clusterability.json``/``.csv`` into ``folder``."""
        from .runfiles import save_partition, write_clusterability

        save_partition(self.partition, folder)
        o = self.options
        return write_clusterability(folder, {
            "model": self.model, "k": o.k, "seed": o.seed, "shuffles": o.shuffles, "graphs": self.graphs,
            "ncut": self.ncut, "method": o.method, "power": o.power, "parts": list(o.parts),
            "options": asdict(o), "timings": self.timings})

    @classmethod
    def load(cls, folder: str | Path) -> "ClusterResult":
        from .runfiles import load_clusterability, load_partition

        doc = load_clusterability(folder)
        opts = doc.get("options") or {"k": doc["k"], "seed": doc.get("seed", 0), "shuffles": doc.get("shuffles", 0),
                                      "method": doc.get("method", "spectral"), "power": doc.get("power", 1),
                                      "parts": doc.get("parts", ("mlp", "attn"))}
        return cls(doc["model"], ClusterOptions(**opts), load_partition(folder), doc["graphs"], doc.get("ncut"),
                   doc.get("timings", {}))


def cluster(model: Any, options: ClusterOptions | None = None, *, progress: bool = False,
            **overrides: Any) -> ClusterResult:
    """Partition ``model``'s weight graphs (tied hidden units) and score them against chance and shuffles.

    ``options`` (default :class:`ClusterOptions`), updated with ``overrides`` (e.g. ``k=8``). Returns a
    :class:`ClusterResult`."""
    import torch

    from .analysis.clustering import ncut_model, partition_model, score_model

    o = replace(options or ClusterOptions(), **overrides)
    dev = str(resolve_device(o.device))
    t0 = time.perf_counter()
    m = _bridge(model, dev, o)
    timings = {"load_s": round(time.perf_counter() - t0, 2)}
    with torch.no_grad():
        t = time.perf_counter()
        mp = partition_model(m, k=o.k, parts=o.parts, method=o.method, seed=o.seed, device=dev, power=o.power,
                             svd=o.svd, n_init=o.n_init, balance=o.balance, progress=progress)
        timings["partition_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        rows = score_model(m, mp, shuffles=o.shuffles, seed=o.seed, device=dev, progress=progress)
        timings["score_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        nc = None
        if o.ncut:
            nc = ncut_model(m, o.k, parts=o.parts, seed=o.seed, device=dev, progress=progress,
                            shuffles=o.shuffles if o.ncut_shuffles is None else o.ncut_shuffles)
        timings["ncut_s"] = round(time.perf_counter() - t, 2)
    return ClusterResult(_spec(model), o, mp, rows, nc, timings)


# ---------------------------------------------------------------------------------------------- finetune
def finetune(config: FinetuneConfig, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Fine-tune ``config.model`` with the clusterability loss into the run folder ``config.out`` (see
    :class:`~circuitclust.analysis.finetuning.FinetuneConfig`); returns the evaluation record of the model in
    ``final/`` (the last one, or with ``final="in-budget"`` the chosen one). The fine-tuned
    model (``config.out``) is itself a model spec for :func:`cluster`, :func:`patch` and :func:`similarity`."""
    return _finetune(config, resume=resume, overwrite=overwrite, progress=progress)


# ------------------------------------------------------------------------------------------------- patch
@dataclass(frozen=True)
class PatchOptions:
    """How to patch (validated on creation).

    Units: ``parts`` (MLP neurons and attention heads, or head dims where the partition splits a head; a part
    the partition lacks is co-clustered here with its k). Effect matrix: cluster ablation ``method`` (zero |
    mean | counterfactual), ``metric`` (logit_diff | logprob; texts use the per-token loss), ``n_boot``
    bootstrap resamples. Circuits: units outside a circuit ablated with ``circuit_method`` (counterfactual,
    MIB's most faithful, by default), ``threshold`` (faithfulness a circuit must reach), ``controls`` (the
    random-ranking baseline and the nonsense task beside every circuit), ``cluster_level`` (also circuits of
    cluster nodes), ``n_check`` units per task whose attribution is checked by exact ablation (the ``top_k``
    attribution ranks first among them). Prompts: ``max_prompts`` evaluated per task and ``n_reference``
    reference prompts (mean ablation), both drawn at random with each seed of ``seeds`` (default: ``seed``);
    several seeds are replicates, aggregated as a mean and an interval. Texts (``wiki``, ``chemistry``):
    windows of ``text_tokens`` tokens scored on their last ``loss_tokens``. ``n_null``: samples of each
    specialisation null. ``batch_size`` prompts per batch, ``max_rows`` prompt rows per forward pass,
    ``circuits`` (search circuits), ``k`` (clusters when the model is co-clustered here), ``device``,
    ``dtype`` (float32, bfloat16, float16) and ``device_map`` (several devices instead of ``device``)."""

    metric: str = "logit_diff"
    method: Ablation | str = Ablation.MEAN
    circuit_method: Ablation | str = Ablation.COUNTERFACTUAL
    parts: tuple[str, ...] = ("mlp", "attn")
    threshold: float = 0.8
    batch_size: int = 8
    max_rows: int = 64
    max_prompts: int | None = 32
    n_reference: int = 16
    n_boot: int = 1000
    seed: int = 0
    seeds: tuple[int, ...] | None = None
    circuits: bool = True
    controls: bool = True
    cluster_level: bool = True
    n_check: int = 32
    top_k: int = 8
    n_null: int = 1000
    text_tokens: int = 48
    loss_tokens: int = 16
    k: int = 4
    device: str | None = None
    dtype: str | None = None
    device_map: str | dict | None = None

    def __post_init__(self) -> None:
        from .analysis.patching.run import check_patch_options

        object.__setattr__(self, "method", Ablation.parse(self.method))
        object.__setattr__(self, "circuit_method", Ablation.parse(self.circuit_method, "circuit_method"))
        object.__setattr__(self, "parts", tuple(self.parts))
        check_patch_options(metric=self.metric, method=self.method, threshold=self.threshold,
                            batch_size=self.batch_size, n_boot=self.n_boot, max_rows=self.max_rows,
                            circuit_method=self.circuit_method, n_check=self.n_check, top_k=self.top_k,
                            n_null=self.n_null, parts=self.parts)
        check_int("k", self.k, 2)
        check_int("n_reference", self.n_reference, 1, 100_000)
        check_int("text_tokens", self.text_tokens, 4, 4096)
        check_int("loss_tokens", self.loss_tokens, 1, self.text_tokens - 2)
        if self.max_prompts is not None:
            check_int("max_prompts", self.max_prompts, 1)
        if self.seeds is not None:
            object.__setattr__(self, "seeds", tuple(self.seeds))
            if not self.seeds or len(set(self.seeds)) != len(self.seeds):
                raise OptionError("seeds must be distinct integers, at least one", option="seeds")
            for sd in self.seeds:
                check_int("seeds", sd, 0)
        resolve_device(self.device)
        _check_placement(self)

    @property
    def seed_list(self) -> tuple[int, ...]:
        return self.seeds if self.seeds else (self.seed,)


@dataclass
class PatchResult:
    """Cluster ablation effects, specialisation and circuits of one model (``base``, the first seed's analysis;
    with several seeds ``base.circuits["replicates"]`` aggregates them), and, when a second model was given,
    its own (``other``) and the paired ``comparison``; with the partition and options."""

    model: str
    options: PatchOptions
    partition: ModelPartition
    partition_source: str
    tasks: list[str]
    base: ModelPatching
    other: ModelPatching | None = None
    comparison: dict[str, Any] | None = None
    compare_model: str | None = None
    wall_s: float = 0.0

    def save(self, folder: str | Path) -> Path:
        """Write effects/specialisation/circuits (+ ``compare/`` and ``comparison.json``), the partition and
        ``run_config.json`` into ``folder``."""
        from .runfiles import save_partition, write_comparison, write_patch_results, write_run_config

        folder = Path(folder)
        write_patch_results(folder, self.base)
        save_partition(self.partition, folder)
        if self.other is not None:
            write_patch_results(folder / "compare", self.other)
        if self.comparison is not None:
            write_comparison(folder, self.comparison)
        o = self.options
        write_run_config(folder, {"model": self.model, "partition": self.partition_source, "tasks": self.tasks,
                                  "k": self.partition.k, "compare": self.compare_model, "options": asdict(o),
                                  "max_prompts": o.max_prompts, "metric": o.metric, "method": o.method,
                                  "circuit_method": o.circuit_method, "parts": list(o.parts),
                                  "threshold": o.threshold, "batch_size": o.batch_size, "n_boot": o.n_boot,
                                  "seed": o.seed, "seeds": list(o.seed_list), "circuits": o.circuits,
                                  "max_rows": o.max_rows, "wall_s": self.wall_s})
        return folder


def _task_pools(m, tasks: Sequence[Any], o: PatchOptions) -> list[tuple[Any, Any]]:
    """Every usable prompt of each task (and, for texts, its reference pool) for model ``m``."""
    from .analysis.patching.prompts import encode_task, load_task_prompts

    out = []
    for i, t in enumerate(tasks):
        if isinstance(t, (str, Path)):
            out.append(load_task_prompts(m, str(t), seed=o.seed, text_tokens=o.text_tokens,
                                         loss_tokens=o.loss_tokens))
        else:
            out.append((encode_task(m, t, name=f"task{i}"), None))
    return out


def _analyse_seeds(m, partition: ModelPartition, pools, o: PatchOptions, name: str, progress: bool, on_tasks=None):
    from .analysis.patching.run import aggregate_replicates, analyse_model, replicate_summary
    from .analysis.patching.prompts import sample_task

    opts = dict(metric=o.metric, method=o.method, threshold=o.threshold, batch_size=o.batch_size,
                n_boot=o.n_boot, circuits=o.circuits, progress=progress, max_rows=o.max_rows, parts=o.parts,
                circuit_method=o.circuit_method, controls=o.controls, n_check=o.n_check, top_k=o.top_k,
                n_null=o.n_null, cluster_level=o.cluster_level)
    first, summaries = None, []
    for sd in o.seed_list:
        drawn = [sample_task(pool, o.max_prompts, o.n_reference, sd, ref) for pool, ref in pools]
        if on_tasks is not None and first is None:
            on_tasks([p for p, _ in drawn])
        res = analyse_model(m, partition, [p for p, _ in drawn], references=[r for _, r in drawn], seed=sd,
                            model_name=name, **opts)
        first = first or res
        summaries.append(replicate_summary(res))
    if len(o.seed_list) > 1:
        first.circuits["replicates"] = aggregate_replicates(list(o.seed_list), summaries)
    return first


def patch(model: Any, tasks: Sequence[Any], *, partition: ModelPartition | None = None,
          options: PatchOptions | None = None, compare: Any = None, progress: bool = False,
          on_tasks=None, **overrides: Any) -> PatchResult:
    """Ablate every (layer, part, cluster) of ``partition`` on every task; effect matrix with CIs and BH q,
    specialisation against its nulls, flips, attribution checked against exact ablation, and circuits with
    MIB's faithfulness curve, CPR and CMD beside a random ranking and the nonsense control; with ``compare``,
    the same for a second model (e.g. the fine-tuned run) on the same prompts and partition, and the paired
    differences.

    ``tasks``: bundled recall task names, ``ioi``, ``wiki``, ``chemistry``, .jsonl paths or lists of rows.
    ``partition``: default the one a run folder given as ``model`` (or ``compare``) holds, else a
    co-clustering of ``model`` with ``options.k``; parts it lacks are co-clustered here. ``on_tasks``
    (optional) receives the first seed's sampled tasks (e.g. to print how many prompts each kept)."""
    from .analysis.patching.run import compare as compare_results
    from .analysis.patching.units import complete_partition, default_partition, unit_layout
    from .runfiles import run_partition

    o = replace(options or PatchOptions(), **overrides)
    dev = str(resolve_device(o.device))
    t0 = time.perf_counter()
    m = _bridge(model, dev, o)
    source = "given"
    if partition is None:
        for spec in (model, compare):
            found = run_partition(spec) if isinstance(spec, (str, Path)) else None
            if found is not None:
                partition, source = found
                break
    if partition is None:
        partition, source = default_partition(m, k=o.k, seed=o.seed), f"co-clustered here (k={o.k})"
    partition, added = complete_partition(m, partition, o.parts, o.seed)
    if added:
        source += f"; {', '.join(added)} co-clustered here (k={partition.k})"
    unit_layout(m, partition, o.parts)  # fail fast on a partition made for another model
    names = [t if isinstance(t, (str, Path)) else f"task{i}" for i, t in enumerate(tasks)]
    if len({str(n) for n in names}) != len(names):
        raise OptionError(f"tasks {', '.join(map(str, names))}: a task is listed twice", option="tasks")
    base = _analyse_seeds(m, partition, _task_pools(m, tasks, o), o, _spec(model), progress, on_tasks)
    result = PatchResult(_spec(model), o, partition, source, [str(n) for n in names], base)
    if compare is not None:
        del m
        other_model = _bridge(compare, dev, o)
        result.other = _analyse_seeds(other_model, partition, _task_pools(other_model, tasks, o), o, _spec(compare),
                                      progress)
        result.comparison = compare_results(base, result.other, o.n_boot, o.seed)
        result.compare_model = _spec(compare)
    result.wall_s = time.perf_counter() - t0
    return result


# -------------------------------------------------------------------------------------------- similarity
@dataclass(frozen=True)
class SimilarityOptions:
    """How to compare layers (validated on creation): ``n`` token positions sampled with ``seed`` from the
    corpus ``split`` (held-out by default, so a fine-tuned model is not compared on its training text);
    ``metric`` (euclidean | cosine); GW ``solver`` (exact | entropic | entropic-pgd) and the
    exact solver's ``starts``; ``hooks`` (resid_post by default); ``n_groups`` layer groups (None: best
    silhouette), ``contiguous`` groups or free; ``n_boot`` bootstrap resamples; ``batch_size``; ``device``;
    ``dtype`` (float32, bfloat16, float16) and ``device_map`` (several devices instead of ``device``)."""

    n: int = 256
    metric: str = "euclidean"
    solver: str = "exact"
    seed: int = 0
    split: str = "heldout"
    hooks: str | None = None
    n_groups: int | None = None
    contiguous: bool = True
    n_boot: int = 0
    starts: tuple[str, ...] | None = None
    batch_size: int = 8
    device: str | None = None
    dtype: str | None = None
    device_map: str | dict | None = None

    def __post_init__(self) -> None:
        from .analysis.similarity import check_similarity_options
        from .core.gw import EXACT_STARTS

        object.__setattr__(self, "starts", tuple(self.starts) if self.starts is not None else EXACT_STARTS)
        check_similarity_options(n=self.n, metric=self.metric, solver=self.solver, batch_size=self.batch_size,
                                 split=self.split, n_boot=self.n_boot, starts=self.starts)
        if self.n_groups is not None:
            check_int("n_groups", self.n_groups, 2)
        if self.hooks is not None and not [h for h in str(self.hooks).split(",") if h.strip()]:
            raise OptionError("hooks is empty: give resid_post, resid_pre, mlp_out, attn_out or hook names",
                              option="hooks")
        resolve_device(self.device)
        _check_placement(self)


@dataclass
class SimilarityResult:
    """Layer similarity of one model (``base``, a ``LayerSimilarity``) and, with a second model, its own
    (``other``) and the ``comparison``."""

    base: LayerSimilarity
    other: LayerSimilarity | None = None
    comparison: dict[str, Any] | None = None

    def save(self, folder: str | Path) -> Path:
        from .runfiles import write_similarity_compare

        folder = Path(folder)
        self.base.save(folder)
        if self.other is not None:
            self.other.save(folder / "compare")
        if self.comparison is not None:
            write_similarity_compare(folder, self.comparison)
        return folder


def similarity(model: Any, data: str | Sequence[str] = "wiki", options: SimilarityOptions | None = None, *,
               compare: Any = None, progress: bool = False, **overrides: Any) -> SimilarityResult:
    """GW distances and linear CKA between the representations of every pair of layers of ``model`` on
    ``data`` (a corpus name, a .jsonl/.txt path or a list of texts), the layer groups, and with
    ``compare`` the same for a second model on the same inputs and the comparison."""
    from .analysis.similarity import compare_similarity, layer_similarity

    o = replace(options or SimilarityOptions(), **overrides)
    dev = str(resolve_device(o.device))
    kwargs = dict(hooks=o.hooks, n=o.n, metric=o.metric, solver=o.solver, seed=o.seed, batch_size=o.batch_size,
                  split=o.split, n_groups=o.n_groups, contiguous=o.contiguous, n_boot=o.n_boot,
                  progress=progress, exact_starts=list(o.starts))
    base = layer_similarity(_bridge(model, dev, o), data, model_name=_spec(model), **kwargs)
    result = SimilarityResult(base)
    if compare is not None:
        result.other = layer_similarity(_bridge(compare, dev, o), data, model_name=_spec(compare), **kwargs)
        result.comparison = compare_similarity(base, result.other)
    return result


# -------------------------------------------------------------------------------------------- replicates
def parse_seeds(seeds: str | Sequence[int]) -> tuple[int, ...]:
    """``"0,1,2"`` (or a sequence of ints) -> ``(0, 1, 2)``: distinct non-negative seeds, in the given order;
    :class:`OptionError` otherwise."""
    if isinstance(seeds, str):
        parts = [p.strip() for p in seeds.split(",") if p.strip()]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            raise OptionError(f"seeds {seeds!r} is not a comma-separated list of integers, e.g. 0,1,2",
                              option="seeds") from None
    else:
        values = [check_int("seeds", v, 0) for v in seeds]
    if not values:
        raise OptionError("seeds is empty: give one or more seeds, e.g. 0,1,2", option="seeds")
    for v in values:
        check_int("seeds", v, 0)
    if len(set(values)) != len(values):
        raise OptionError(f"seeds {','.join(map(str, values))}: a seed is listed twice", option="seeds")
    return tuple(values)


@dataclass
class Replicates:
    """One operation run once per seed (``kind``: cluster | similarity | finetune): the per-seed results ``runs``
    (in ``seeds`` order, each a :class:`ClusterResult`, a :class:`SimilarityResult`, or a fine-tuning's last
    evaluation record) and ``summary``, their numbers aggregated across seeds (mean and Student t 95% interval,
    see :mod:`circuitclust.core.replicates`). ``save`` writes each run into ``seed{S}/`` (a fine-tuning has
    already written its own) and the summary into ``replicates.json`` (+ CSV)."""

    kind: str
    seeds: tuple[int, ...]
    runs: list[Any]
    summary: dict[str, Any]

    def save(self, folder: str | Path) -> Path:
        from .runfiles import write_replicates

        folder = Path(folder)
        for seed, run in zip(self.seeds, self.runs):
            if hasattr(run, "save"):
                run.save(folder / f"seed{seed}")
        return write_replicates(folder, {"kind": self.kind, "seeds": list(self.seeds), **self.summary})


def _mean_of(rows: Sequence[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return sum(vals) / len(vals) if vals else None


def cluster_summary(runs: Sequence[ClusterResult], seeds: Sequence[int]) -> dict[str, Any]:
    """Across-seed summary of cluster results: the model-level means (C, chance, normalised C, shuffle mean,
    graphs at BH q <= 0.05) and every graph's row, each number as mean / interval / per-seed values."""
    from .core.replicates import aggregate, aggregate_rows, interval_info

    per_seed = [{"mean_clusterability": r.mean_clusterability, "mean_chance": r.mean_chance,
                 "mean_normalised": _mean_of(r.graphs, "clusterability_norm"),
                 "mean_shuffle": _mean_of(r.graphs, "shuffle_mean"),
                 "significant_q05": (sum(1 for g in r.graphs if g.get("q") is not None and g["q"] <= 0.05)
                                     if r.options.shuffles else None),
                 "n_graphs": len(r.graphs)} for r in runs]
    o = runs[0].options
    return {"model": runs[0].model, "k": o.k, "options": {**asdict(o), "seed": None},
            "interval": interval_info(seeds), "model_level": aggregate(per_seed),
            "graphs": aggregate_rows([r.graphs for r in runs], key="name")}


def cluster_seeds(model: Any, seeds: Sequence[int], options: ClusterOptions | None = None, *,
                  progress: bool = False, **overrides: Any) -> Replicates:
    """:func:`cluster` once per seed in ``seeds`` (the model loaded once), the results aggregated across seeds
    (:func:`cluster_summary`). Returns :class:`Replicates`."""
    seeds = parse_seeds(seeds)
    o = replace(options or ClusterOptions(), **overrides)
    m = _bridge(model, str(resolve_device(o.device)), o)
    runs = [cluster(m, replace(o, seed=s), progress=progress) for s in seeds]
    for r in runs:
        r.model = _spec(model)
    return Replicates("cluster", seeds, runs, cluster_summary(runs, seeds))


#: The numbers of a fine-tuning's final model (its last or chosen evaluation) that its replicates summarise.
FINETUNE_SUMMARY = ("step", "tokens", "task_loss", "mean_clusterability", "mean_clusterability_norm", "chance",
                    "heldout_ppl", "heldout_ppl_increase", "kl", "time_budget_hit")


def finetune_seeds(config: FinetuneConfig, seeds: str | Sequence[int], *, resume: bool = False,
                   overwrite: bool = False, progress: bool = True) -> Replicates:
    """:func:`finetune` once per seed in ``seeds`` (the seed sets the data order, dropout and the partition),
    each run in ``config.out/seed{S}/`` (resumable on its own), and their final models' evaluations aggregated
    across seeds: ``Replicates("finetune", ...)`` whose ``save(config.out)`` writes ``replicates.json`` (+ CSV).

    ``config.out`` holds nothing but those runs and the summary; anything else there raises
    :class:`~circuitclust.errors.RunFolderError` before any training starts."""
    import re

    from .errors import RunFolderError
    from .core.replicates import aggregate, interval_info

    seeds = parse_seeds(seeds)
    root = Path(config.out)
    if root.exists():
        foreign = [p.name for p in root.iterdir()
                   if not re.fullmatch(r"seed\d+|replicates\.(json|csv)|\.?replicates\.(json|csv)\.tmp.*", p.name)]
        if not root.is_dir() or foreign:
            raise RunFolderError(f"{root} holds {', '.join(sorted(foreign)[:3]) or 'a file'}, not only seed{{S}}/ "
                                 "runs: give --out a new folder for fine-tuning with --seeds")
    runs = [finetune(replace(config, seed=s, out=str(root / f"seed{s}")), resume=resume, overwrite=overwrite,
                     progress=progress) for s in seeds]
    last = [{k: r.get(k) for k in FINETUNE_SUMMARY} for r in runs]
    summary = {"model": config.model, "options": {**asdict(config), "seed": None, "out": str(root)},
               "interval": interval_info(seeds), "model_level": aggregate(last)}
    return Replicates("finetune", seeds, runs, summary)


def similarity_summary(runs: Sequence["SimilarityResult"], seeds: Sequence[int]) -> dict[str, Any]:
    """Across-seed summary of similarity results: per layer the GW and CKA distance to the next layer, the
    whole GW / CKA matrices (mean, interval ends), the median off-diagonal GW, how often each gap between
    layers is a group boundary, and (with a comparison) its numbers; each number as mean / interval / values."""
    import torch

    from .core.replicates import aggregate, interval_info, summarise

    def per_seed(sim: LayerSimilarity) -> dict[str, Any]:
        n = len(sim.layers)
        gw, cka = sim.distances.double().cpu(), sim.cka.double().cpu()
        off = gw[~torch.eye(n, dtype=torch.bool)]
        cuts = [0.0] * max(n - 1, 0)
        for b in (sim.groups.boundaries if sim.groups is not None else []):
            cuts[b - 1] = 1.0
        return {"gw_to_next": [float(gw[i, i + 1]) for i in range(n - 1)],
                "cka_to_next": [float(cka[i, i + 1]) for i in range(n - 1)],
                "gw_offdiag_median": float(off.median()) if off.numel() else None,
                "n_groups": sim.groups.n_groups if sim.groups is not None else None,
                "boundary_share": cuts}

    def matrix(mats: list[torch.Tensor]) -> dict[str, Any]:
        entries = [[summarise([float(m[i, j]) for m in mats]) for j in range(mats[0].shape[1])]
                   for i in range(mats[0].shape[0])]
        return {key: [[e[key] for e in row] for row in entries] for key in ("mean", "lo", "hi")}

    base = [r.base for r in runs]
    out = {"model": base[0].provenance.get("model"), "layers": base[0].layers, "interval": interval_info(seeds),
           "options": {k: v for k, v in base[0].provenance.items() if k not in ("seed", "exact_start_summary")},
           "base": aggregate([per_seed(s) for s in base]),
           "gw": matrix([s.distances.double().cpu() for s in base]),
           "cka": matrix([s.cka.double().cpu() for s in base]),
           "boundaries_per_seed": [s.groups.boundaries if s.groups is not None else None for s in base]}
    if all(r.other is not None for r in runs):
        out["other"] = aggregate([per_seed(r.other) for r in runs])
        out["other_model"] = runs[0].other.provenance.get("model")
    if all(r.comparison is not None for r in runs):
        keys = ("gw_spearman", "cka_spearman", "groups_ari", "per_layer_gw")
        out["comparison"] = aggregate([{k: r.comparison.get(k) for k in keys} for r in runs])
    return out


def similarity_seeds(model: Any, seeds: Sequence[int], data: str | Sequence[str] = "wiki",
                     options: "SimilarityOptions | None" = None, *, compare: Any = None, progress: bool = False,
                     **overrides: Any) -> Replicates:
    """:func:`similarity` once per seed in ``seeds`` (new token positions, bootstrap and solver starts per seed;
    each model loaded once), aggregated across seeds (:func:`similarity_summary`). Returns :class:`Replicates`."""
    seeds = parse_seeds(seeds)
    o = replace(options or SimilarityOptions(), **overrides)
    dev = str(resolve_device(o.device))
    m = _bridge(model, dev, o)
    other = _bridge(compare, dev, o) if compare is not None else None
    runs = []
    for s in seeds:
        res = similarity(m, data, replace(o, seed=s), compare=other, progress=progress)
        res.base.provenance["model"] = _spec(model)
        if res.other is not None:
            res.other.provenance["model"] = _spec(compare)
        runs.append(res)
    return Replicates("similarity", seeds, runs, similarity_summary(runs, seeds))


__all__ = ["ClusterOptions", "ClusterResult", "cluster", "FinetuneConfig", "finetune", "PatchOptions",
           "PatchResult", "patch", "SimilarityOptions", "SimilarityResult", "similarity", "Replicates", "parse_seeds",
           "cluster_seeds", "cluster_summary", "similarity_seeds", "similarity_summary", "finetune_seeds"]
