"""Activation and attribution patching by cluster: what each cluster does for a task, and the circuits of a task.

Modules, one job each, bottom up: :mod:`.prompts` (task prompts as padded token tensors), :mod:`.metrics` (task
metrics on logits), :mod:`.units` (which activations are units and which cluster each belongs to),
:mod:`.interventions` (zero, mean and counterfactual ablations through TransformerBridge hooks),
:mod:`.attribution` (attribution patching: every unit's effect from one backward pass), :mod:`.scores` (the
one score type every ranking uses), :mod:`.effects` (cluster effect matrices with intervals and q-values,
specialisation, flips), :mod:`.circuits` (circuit discovery and faithfulness as MIB defines them),
:mod:`.recall` (recall accuracy), :mod:`.run` (the whole analysis of one model or a base/other pair).
"""
from .attribution import attribution_patching
from .circuits import Faithfulness, find_circuit, task_circuits
from .effects import EffectMatrix, effect_matrix
from .interventions import Ablation, ablation_sweep
from .prompts import TaskPrompts, encode_task, load_task_prompts
from .recall import task_accuracy
from .run import ModelPatching, analyse_model, compare
from .scores import Scores
from .units import UnitLayout, unit_layout

__all__ = ["Ablation", "EffectMatrix", "Faithfulness", "ModelPatching", "Scores", "TaskPrompts", "UnitLayout",
           "ablation_sweep", "analyse_model", "attribution_patching", "compare", "effect_matrix", "encode_task",
           "find_circuit", "load_task_prompts", "task_accuracy", "task_circuits", "unit_layout"]
