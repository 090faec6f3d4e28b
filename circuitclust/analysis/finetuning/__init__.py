"""Fine-tuning for clusterability: the causal-LM loss plus a clusterability regulariser, optionally inside a
capability budget, with exact resume and DDP.

Modules, one job each: :mod:`.options` (:class:`FinetuneConfig`, every option), :mod:`.trainer` (:func:`finetune`:
set-up, step, evaluation, checkpoints), :mod:`.budget` (the capability budget: control text, lambda's dual
ascent, the final model's choice), :mod:`.regulariser` (the clusterability term on a
model's matrices), :mod:`.objectives` (next-token loss, KL to the base model, held-out perplexity),
:mod:`.batches` (the step -> batch order), :mod:`.generated_text` (training text the base model samples itself),
:mod:`.processes` (the processes of a distributed run and their random-number state).
"""
from .options import FinetuneConfig, lam_at
from .objectives import heldout_kl, heldout_perplexity
from .regulariser import ClusterabilityLoss, make_partition
from .budget import budget_slack
from .trainer import finetune

__all__ = ["FinetuneConfig", "finetune", "lam_at", "budget_slack", "heldout_kl", "heldout_perplexity",
           "ClusterabilityLoss", "make_partition"]
