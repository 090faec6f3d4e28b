"""``circuitclust finetune MODEL --out RUN_DIR [options]``: clusterability fine-tuning.

The options, their defaults and help texts are generated from the fields of
:class:`~circuitclust.analysis.finetuning.FinetuneConfig`, so the command and the Python API cannot disagree.
"""
from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from ..analysis.finetuning import FinetuneConfig
from .common import echo, fmt_interval, format_table, one_line_errors
from .main import app


def _config_parameters() -> list[inspect.Parameter]:
    """One keyword parameter per CLI field of FinetuneConfig (tuples become comma-separated strings)."""
    params = []
    for f in dataclasses.fields(FinetuneConfig):
        if f.default is dataclasses.MISSING or not f.metadata.get("cli", True):
            continue
        default, annotation = f.default, type(f.default)
        if isinstance(default, tuple):
            default, annotation = ",".join(default), str
        elif default is None:
            annotation = Optional[str]
        option = typer.Option(default, f"--{f.name.replace('_', '-')}", help=f.metadata["help"])
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=annotation))
    return params


def finetune(model: str, out: str, resume: bool, overwrite: bool, seeds: Optional[str] = None,
             **options: Any) -> None:
    """Fine-tune MODEL with the clusterability loss; evaluate held-out perplexity on both bundled domains."""
    from ..analysis.finetuning import finetune as run

    for f in dataclasses.fields(FinetuneConfig):
        if isinstance(f.default, tuple) and f.name in options:
            options[f.name] = tuple(s.strip() for s in options[f.name].split(",") if s.strip())
    cfg = FinetuneConfig(model=model, out=out, **options)
    if seeds is not None:
        from ..pipeline import finetune_seeds, parse_seeds

        reps = finetune_seeds(cfg, parse_seeds(seeds), resume=resume, overwrite=overwrite)
        reps.save(out)
        ml = reps.summary["model_level"]
        rows = [("mean clusterability", fmt_interval(ml["mean_clusterability"])),
                ("normalised", fmt_interval(ml["mean_clusterability_norm"])),
                ("chance", fmt_interval(ml["chance"]))]
        rows += [(f"held-out ppl {name}", fmt_interval(v)) for name, v in (ml.get("heldout_ppl") or {}).items()]
        rows += [(f"held-out ppl rise {name}", fmt_interval(v)) for name, v in
                 (ml.get("heldout_ppl_increase") or {}).items()]
        echo(format_table(["final model", "mean [95% over seeds " + ",".join(map(str, reps.seeds)) + "]"], rows))
        echo(f"wrote {Path(out) / 'replicates.json'} and one run per seed in {out}/seed{{S}}/")
        return
    last = run(cfg, resume=resume, overwrite=overwrite)
    if last:
        rows = [("step", last["step"]), ("mean clusterability", last["mean_clusterability"]),
                ("chance", last["chance"])]
        rows += [(f"held-out ppl {name}", v) for name, v in last["heldout_ppl"].items()]
        if last.get("final"):
            rows.append(("chosen", f"inside the budget (of {last['final']['last_step']} steps run)"))
        echo(format_table(["final model", "value"], rows))
    echo(f"run folder: {out}")


_fixed = [
    inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str, default=typer.Argument(
        ..., help="gemma-3-270m|smollm2-135m, tiny-gpt2|tiny-pythia|tiny-gemma, an HF folder, a .gguf, or a hub name")),
    inspect.Parameter("out", inspect.Parameter.KEYWORD_ONLY, annotation=str, default=typer.Option(
        ..., "--out", help="run folder (metrics.jsonl, partition, checkpoints/, final/); new or empty unless "
                           "--resume or --overwrite")),
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--resume", help="continue RUN_DIR from its newest checkpoint (or start it if it holds none)")),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--overwrite", help="delete the run already in RUN_DIR and start again")),
    inspect.Parameter("seeds", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[str], default=typer.Option(
        None, "--seeds", help="replicates: comma-separated seeds (e.g. 0,1,2), one run each in OUT/seed{S}/ "
                              "(with --resume, each continues), the final models' evaluations aggregated as mean and t "
                              "interval in OUT/replicates.json (replaces --seed)")),
]
finetune.__signature__ = inspect.Signature(_fixed + _config_parameters())  # type: ignore[attr-defined]
finetune.__annotations__ = {p.name: p.annotation for p in finetune.__signature__.parameters.values()}
app.command("finetune")(one_line_errors(finetune))
