"""Small synthetic run folders that follow the run-folder contract exactly (file names, schema strings, keys),
for the plot and report tests. Numbers are made up but shaped like real ones."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TASKS = ["capitals", "elements", "languages"]
K = 4
N_LAYERS = 4
GRAPH_KINDS = [("mlp.in", "mlp_in", (64, 256)), ("mlp.out", "mlp_out", (256, 64))]


def _write(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1))


def clusterability(model: str = "tiny-gpt2", shift: float = 0.0, ncut: bool = True, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    graphs = []
    for layer in range(N_LAYERS):
        for suffix, kind, shape in GRAPH_KINDS:
            c = float(0.25 + shift + rng.normal(0, 0.01))
            graphs.append({"name": f"blocks.{layer}.{suffix}", "layer": layer, "kind": kind, "shape": list(shape),
                           "k": K, "row_sizes": [shape[0] // K] * K, "col_sizes": [shape[1] // K] * K,
                           "clusterability": c, "chance": 0.25, "shuffle_mean": 0.251, "shuffle_std": 0.004,
                           "z": (c - 0.251) / 0.004, "p": 0.5 if shift == 0 else 0.0196})
    return {"schema": "circuitclust.clusterability/1", "model": model, "k": K, "seed": seed, "shuffles": 50,
            "graphs": graphs,
            "ncut": {"value": 3.9 - 4 * shift, "shuffle_mean": 3.95, "shuffle_std": 0.01, "z": -5.0 * shift / 0.1,
                     "p": 0.0196} if ncut else None}


def metrics(n: int = 6) -> list[dict]:
    rows = []
    for i in range(n):
        c = 0.25 + 0.05 * i
        rows.append({"step": 10 * i, "tokens": 10 * i * 8 * 64, "task_loss": 3.0 - 0.1 * i, "lam": 20.0 * min(1, i / 2),
                     "mean_clusterability": c, "chance": 0.25,
                     "clusterability": {f"blocks.{l}.{s}": c + 0.01 * l for l in range(N_LAYERS) for s, _, _ in GRAPH_KINDS},
                     "heldout_ppl": {"wiki": 20.0 + i, "chemistry": 30.0 + 2 * i}, "kl": 0.01 * i,
                     "tokens_per_s": 900.0})
    return rows


def _nodes() -> list[dict]:
    return [{"layer": l, "part": "mlp", "cluster": c, "size": 256 // K} for l in range(N_LAYERS) for c in range(K)]


def effects(scale: float = 1.0, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    nodes = _nodes()
    eff = rng.normal(0, 0.2 * scale, (len(nodes), len(TASKS)))
    return {"schema": "circuitclust.effects/1", "model": "tiny-gpt2", "k": K, "metric": "logit_diff",
            "tasks": TASKS, "nodes": nodes, "effect": eff.tolist(), "ci_low": (eff - 0.05).tolist(),
            "ci_high": (eff + 0.05).tolist(), "baseline": {t: 2.0 + i for i, t in enumerate(TASKS)}}


def specialisation(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    per = [{**n, "score": float(rng.uniform(0, 1)), "top_task": TASKS[i % len(TASKS)]}
           for i, n in enumerate(_nodes())]
    return {"schema": "circuitclust.specialisation/1", "per_cluster": per, "model_score": 0.41,
            "flips_histogram": {t: [5, 3, 1, 0, 1] for t in TASKS}}


GRID = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


def circuits(smaller: bool = False, red_flag: bool = False) -> dict:
    total = N_LAYERS * (256 + 4)  # MLP neurons and attention heads
    tasks = {}
    for i, t in enumerate(TASKS):
        size = (60 if smaller else 120) + 10 * i
        curve = [[q, int(q * total), min(1.0, int(q * total) / size * 0.8)] for q in GRID]
        rand = [[q, n, f * 0.3] for q, n, f in curve]
        flag = red_flag and i == 0
        nonsense = ({"defined": True, "curve": [[q, n, min(1.0, 2 * f)] for q, n, f in curve], "cpr": 0.7,
                     "circuit_size": size // 2, "fraction": size / 2 / total, "red_flag": True} if flag else
                    {"defined": False, "curve": [], "cpr": None, "circuit_size": None, "fraction": None,
                     "red_flag": False, "note": "faithfulness is undefined"})
        tasks[t] = {"curve": curve, "cpr": 0.6 - 0.1 * i, "cmd": 0.4 + 0.1 * i, "circuit_size": size,
                    "fraction": size / total, "circuit_faithfulness": 0.81, "n_units_total": total,
                    "parts": {"mlp": size - 3, "attn": 3}, "share_largest_cluster": 0.4 + 0.1 * i,
                    "clusters_touched": 3 + i, "random": {"defined": True, "curve": rand, "cpr": 0.2, "cmd": 0.8},
                    "nonsense": nonsense,
                    "attribution_check": {"spearman": 0.7, "spearman_random": 0.5, "top_k_overlap": 0.75},
                    "cluster_circuit": [{"layer": i % N_LAYERS, "part": "mlp", "cluster": 1, "size": 64},
                                        {"layer": 3, "part": "mlp", "cluster": i % K, "size": 64}]}
    return {"schema": "circuitclust.circuits/2", "threshold": 0.8, "ablation": "counterfactual", "grid": GRID,
            "tasks": tasks, "attribution_spearman": 0.83, "red_flags": [TASKS[0]] if red_flag else [],
            "attribution_check": {t: {"spearman": 0.7, "top_k_overlap": 0.75} for t in TASKS}}


def similarity() -> dict:
    layers = [f"blocks.{l}.hook_resid_post" for l in range(N_LAYERS)]
    idx = np.arange(N_LAYERS)
    gw = np.abs(idx[:, None] - idx[None, :]) * 0.1
    cka = 1.0 - gw
    return {"schema": "circuitclust.similarity/1", "model": "tiny-gpt2", "layers": layers, "n": 256, "seed": 0,
            "gw": gw.tolist(), "cka": cka.tolist(),
            "groups": {"boundaries": [2], "labels": [0, 0, 1, 1], "stability": 0.9}}


def finetune_study() -> dict:
    """A finetune_study.json doc: two recipes x two seeds, three evaluations each (steps 0, 50, 100)."""
    runs = {}
    for recipe, slope, budget in (("papers", 0.5, None), ("budget-10", 0.2, 0.1)):
        for seed in (0, 1):
            ev = []
            for i, step in enumerate((0, 50, 100)):
                e = {"step": step, "tokens": step * 256, "C": 0.25 + 0.1 * i, "chance": 0.25,
                     "C_norm": 0.1 * i / 0.75, "ppl": {"wiki": 20 * (1 + slope * i), "chemistry": 30.0},
                     "ppl_increase": {"wiki": slope * i, "chemistry": slope * i / 2}, "lam": 20.0}
                if budget:
                    e["budget_held"] = slope * i <= budget
                ev.append(e)
            runs[f"{recipe}/seed-{seed}"] = {"recipe": recipe, "seed": seed, "steps": 100, "finished": True,
                                             "config": {"max_ppl_increase": budget or 0.0}, "evaluations": ev}
    return {"schema": "circuitclust.finetune_study/1", "model": "tiny-gpt2", "command": "test", "git_commit": "x",
            "machine": "test", "runs": runs}


def make_partition(folder: Path, model: str = "tiny-gpt2"):
    """Equal-block partition of the tiny model's MLP graphs, saved as partition.json/.safetensors."""
    from circuitclust.core.partition import ModelPartition, Partition
    from circuitclust.models import load_hf, weight_graphs
    from circuitclust.runfiles import save_partition

    hf, _, _ = load_hf(model)
    part = ModelPartition.blocks(weight_graphs(hf, ("mlp",)), K, model=model, seed=0)
    # ModelPartition.save currently refuses tied label tensors that share memory (safetensors); give each
    # its own copy so the fixture does not depend on that being fixed
    part = ModelPartition({n: Partition(p.row_labels.clone(), p.col_labels.clone(), p.k, p.provenance)
                           for n, p in part.graphs.items()}, part.spaces, part.k,
                          {s: v.clone() for s, v in part.space_labels.items()}, part.provenance)
    save_partition(part, folder)
    return part


def make_run(root: Path, *, partitions: bool = True, finetuned_model: bool = False) -> Path:
    """A run folder as `circuitclust demo` lays it out: cluster_base, finetune, cluster_finetuned,
    patch_base, patch_finetuned, similarity. ``finetuned_model`` also saves a perturbed tiny GPT-2 into
    finetune/final/ (for the weight heatmaps)."""
    root = Path(root)
    _write(root / "cluster_base" / "clusterability.json", clusterability())
    _write(root / "cluster_finetuned" / "clusterability.json",
           clusterability(model=str(root / "finetune"), shift=0.2, seed=1))
    _write(root / "finetune" / "run_config.json", {"model": "tiny-gpt2", "k": K, "lam": 20.0, "seed": 0})
    (root / "finetune" / "metrics.jsonl").write_text("\n".join(json.dumps(m) for m in metrics()) + "\n")
    _write(root / "patch_base" / "effects.json", effects())
    _write(root / "patch_base" / "specialisation.json", specialisation())
    _write(root / "patch_base" / "circuits.json", circuits())
    _write(root / "patch_finetuned" / "effects.json", effects(scale=2.0, seed=1))
    _write(root / "patch_finetuned" / "specialisation.json", specialisation(seed=1))
    _write(root / "patch_finetuned" / "circuits.json", circuits(smaller=True, red_flag=True))
    _write(root / "similarity" / "similarity.json", similarity())
    if partitions:
        make_partition(root / "cluster_base")
        make_partition(root / "finetune")
    if finetuned_model:
        import torch

        from circuitclust.models import load_hf, weight_graphs
        from circuitclust.runfiles import load_partition

        hf, tok, _ = load_hf("tiny-gpt2")
        if not partitions:
            make_partition(root / "finetune")
        part = load_partition(root / "finetune" / "partition.json")
        with torch.no_grad():  # what clusterability fine-tuning aims at: off-cluster weights shrink
            for g in weight_graphs(hf, ("mlp",)):
                r, c = part[g.name].masks()
                g.weight.mul_(0.15 + 0.85 * (r @ c.T))
        hf.save_pretrained(root / "finetune" / "final")
        tok.save_pretrained(root / "finetune" / "final")
    return root
