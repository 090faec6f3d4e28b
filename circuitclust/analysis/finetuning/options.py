"""The options of a fine-tuning run: :class:`FinetuneConfig` (validated on creation, saved with the run, the
source of the ``finetune`` command's options and defaults) and the lambda schedule it implies."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ...errors import OptionError, check_choice, check_dtype, check_float, check_int, resolve_device
from ...models.graphs import matrix_kinds

TRAIN_CHOICES = ("all", "mlp", "regularised")


def _opt(default: Any, help: str, cli: bool = True) -> Any:
    """A config field with its CLI help (``cli=False``: an option of the Python API only)."""
    return field(default=default, metadata={"help": help, "cli": cli})


@dataclass(frozen=True)
class FinetuneConfig:
    """Every option of a fine-tuning run, validated on creation and written to ``run_config.json``.

    The ``finetune`` command's options, their defaults and help texts are generated from these fields.
    """

    model: str
    out: str
    data: str = _opt("wiki", "wiki | chemistry | generated (text the base model samples itself, cached) | a "
                             ".jsonl/.txt file | a hub dataset name")
    gen_texts: int = _opt(512, "--data generated: texts sampled from the base model (from BOS, temperature 1)")
    gen_tokens: int = _opt(128, "--data generated: tokens per sampled text")
    k: int = _opt(4, "clusters per matrix")
    lam: float = _opt(20.0, "strength of the clusterability regulariser: the loss weight (see --loss-reduction), "
                            "or with --regulariser decay the decoupled off-cluster decay (rate lr x lam per step)")
    regulariser: str = _opt("loss", "loss: lam x (1 - C) added to the training loss (the papers' recipe); decay: "
                                    "every off-cluster weight shrunk by a factor 1 - lr x lam after each optimizer "
                                    "step, like AdamW's decoupled weight decay (its strength does not depend on "
                                    "Adam's gradient normalisation)")
    loss_reduction: str = _opt("mean", "mean: lam x mean(1 - C) (lam ~ 20); entries: lam x sum of n_in*n_out*(1 - C), "
                                       "a per-weight lam that transfers across model sizes (~1e-5 to 1e-4)")
    lam_schedule: str = _opt("constant", "constant | linear (ramp over --lam-warmup steps)")
    lam_warmup: int = _opt(0, "steps of the linear lambda ramp")
    steps: int = _opt(100, "optimizer steps (with --resume: the new total)")
    batch_size: int = _opt(8, "sequences per process and micro-batch")
    grad_accum: int = _opt(1, "micro-batches per optimizer step")
    seq_len: int = _opt(128, "tokens per sequence")
    lr: float = _opt(1e-4, "AdamW learning rate")
    weight_decay: float = _opt(0.0, "AdamW weight decay")
    lr_warmup: int = _opt(0, "linear learning-rate warm-up steps")
    max_grad_norm: float = _opt(0.0, "gradient clipping norm (0 = off)")
    distill: float = _opt(0.0, "weight of KL(base model || model) per token, keeps capability")
    partition: str = _opt("blocks", "blocks (equal contiguous) | spectral (co-clustering)")
    partition_warmup: int = _opt(0, "task-only steps before a spectral partition is frozen")
    balance: float = _opt(0.0, "spectral: every cluster keeps at least this share of n/k units on each side "
                               "(0 = k-means as it is; 0.5 keeps clusters from collapsing)")
    graphs: tuple[str, ...] = _opt(("mlp_in", "mlp_out"),
                                   "regularised matrix kinds, e.g. mlp_in,mlp_gate,mlp_out,attn_o")
    train: str = _opt("all", "trained parameters: all | mlp | regularised")
    permute: bool = _opt(False, "reorder MLP neurons so clusters are contiguous (same function)")
    dropout: bool = _opt(True, "train with dropout (off: deterministic, e.g. for DDP checks)", cli=False)
    max_ppl_increase: float = _opt(0.0, "capability budget: the largest relative rise of perplexity on held-out "
                                        "control text (e.g. 0.10); lambda is adapted to stay inside it (0 = off)")
    max_kl: float = _opt(0.0, "capability budget: the largest mean per-token KL(base || model) on the control text "
                              "in nats (0 = off); with --max-ppl-increase both must hold")
    budget_every: int = _opt(10, "steps between the budget's control estimates (lambda updates)")
    budget_blocks: int = _opt(32, "control sequences per domain: the tail of the training corpus (kept out of "
                                  "training) and the train split of the other bundled domain")
    dual_lr: float = _opt(0.3, "step of the budget's dual ascent on log(lambda): at each control estimate lambda "
                               "is multiplied by exp(dual_lr x s), s = (target - cost) / budget, 4x faster "
                               "downwards (s < 0) since damage shows with a lag")
    budget_target: float = _opt(0.75, "share of the budget the controller steers to, leaving the rest as a "
                                      "margin for the control estimate's noise")
    budget_start: float = _opt(0.25, "with a budget, --lam is the largest lambda; the run starts at this share "
                                     "of it")
    final: str = _opt("last", "the model written to final/: last (the last step's) | in-budget (with a budget: "
                              "the evaluated model with the highest clusterability whose control estimate kept "
                              "the budget; its checkpoint is kept, and metrics.jsonl ends with its record)")
    eval_every: int = _opt(50, "steps between held-out evaluations")
    max_minutes: float = _opt(0.0, "safety cap: stop cleanly (evaluate, checkpoint, final/) after this many minutes "
                                   "of training and record time_budget_hit (0 = no cap)")
    eval_blocks: int = _opt(32, "held-out sequences per domain")
    save_every: int = _opt(0, "steps between checkpoints (0 = at every evaluation)")
    keep_checkpoints: int = _opt(2, "checkpoints kept (0 = all)")
    seed: int = _opt(0, "seed of initialisation-free randomness: data order, dropout, partition")
    device: str | None = _opt(None, "cpu | cuda | cuda:N (default: CUDA if available)")
    dtype: str | None = _opt(None, "compute dtype of mixed precision: float32 or bfloat16 (default: bfloat16 on "
                                   "CUDA, float32 elsewhere); the trained weights and AdamW's state stay float32, "
                                   "the frozen base model (distillation teacher) is held in it")

    def __post_init__(self) -> None:
        object.__setattr__(self, "graphs", tuple(self.graphs))
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        self.validate()

    def validate(self) -> None:
        """Check every option; raises :class:`OptionError` naming the field (the CLI shows it as its option)."""
        check_choice("lam_schedule", self.lam_schedule, ("constant", "linear"))
        check_choice("loss_reduction", self.loss_reduction, ("mean", "entries"))
        check_choice("regulariser", self.regulariser, ("loss", "decay"))
        check_choice("partition", self.partition, ("blocks", "spectral"))
        check_choice("train", self.train, TRAIN_CHOICES)
        check_choice("final", self.final, ("last", "in-budget"))
        for name in ("steps", "batch_size", "grad_accum", "eval_every", "eval_blocks", "budget_every",
                     "budget_blocks", "gen_texts"):
            check_int(name, getattr(self, name), 1)
        check_int("seq_len", self.seq_len, 2)
        check_int("gen_tokens", self.gen_tokens, 8)
        check_int("k", self.k, 2)
        for name in ("lam_warmup", "lr_warmup", "partition_warmup", "save_every", "keep_checkpoints"):
            check_int(name, getattr(self, name), 0)
        check_float("lr", self.lr, 0.0, open_min=True)
        for name in ("lam", "weight_decay", "max_grad_norm", "distill", "max_minutes", "max_ppl_increase", "max_kl"):
            check_float(name, getattr(self, name), 0.0)
        check_float("balance", self.balance, 0.0, 1.0)
        check_float("dual_lr", self.dual_lr, 0.0, 10.0, open_min=True)
        check_float("budget_target", self.budget_target, 0.0, 1.0, open_min=True)
        check_float("budget_start", self.budget_start, 0.0, 1.0, open_min=True)
        if self.budgeted and self.lam <= 0:
            raise OptionError("a capability budget adapts lambda from its starting value: give --lam > 0")
        if self.final == "in-budget" and not self.budgeted:
            raise OptionError("--final in-budget chooses among the models inside a capability budget: give "
                              "--max-ppl-increase or --max-kl, or use --final last", option="final")
        matrix_kinds(self.graphs)
        if self.permute and self.partition_warmup > 0:
            raise OptionError("permute needs the partition at step 0: drop partition_warmup (--partition-warmup)")
        resolve_device(self.device)
        if self.dtype not in (None, "float32", "bfloat16"):  # canonical since __post_init__
            # float16 gradients underflow without loss scaling, which this trainer does not do
            raise OptionError(f"fine-tuning computes in float32 or bfloat16, not {self.dtype}: use --dtype "
                              "bfloat16 to halve the memory of activations and of the frozen base model",
                              option="dtype")

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The dtype forward passes run in on ``device`` (autocast; float32 means none)."""
        name = self.dtype or ("bfloat16" if device.type == "cuda" else "float32")
        return getattr(torch, name)

    @property
    def budgeted(self) -> bool:
        """Whether lambda is adapted to a capability budget."""
        return self.max_ppl_increase > 0 or self.max_kl > 0


def lam_at(cfg: FinetuneConfig, step: int) -> float:
    """Lambda used at (0-based) ``step``: 0 before a warm-up partition exists, then constant or ramped."""
    if step < cfg.partition_warmup:
        return 0.0
    if cfg.lam_schedule == "linear" and cfg.lam_warmup > 0:
        return cfg.lam * min(1.0, (step - cfg.partition_warmup + 1) / cfg.lam_warmup)
    return cfg.lam
