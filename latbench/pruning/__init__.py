"""Latency-aware global structural pruning (NViT's algorithm, generalised), and dense conversion.

- :mod:`~latbench.pruning.config`: :class:`PruneConfig`, :class:`TrainConfig`, NViT's config format.
- :mod:`~latbench.pruning.groups`: prunable groups (emb, heads, qk, v, mlp) and exact masking.
- :mod:`~latbench.pruning.importance`: ``Importance.__call__(group) -> scores`` and its registry.
- :mod:`~latbench.pruning.latency`: the LUT-driven latency regulariser.
- :mod:`~latbench.pruning.pruner`: the global pruner (steps, interactive veto, rounding, state).
- :mod:`~latbench.pruning.dense`: masked model → small dense model.
- :mod:`~latbench.pruning.loop`, :mod:`~latbench.pruning.run`: training with distillation,
  data parallelism and exact resumption; one call per stage.
- :mod:`~latbench.pruning.measure`: a block LUT measured on this CPU, and models timed interleaved.
- :mod:`~latbench.pruning.digits`: the digits ViT task (baseline, CPU LUT, prune, fine-tune, report).
- :mod:`~latbench.pruning.text`: the BERT task (a local text corpus through masked LM, MLM loss).

Torch is imported on first use of a torch name (PEP 562), so the configs load without it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "latbench.pruning.config": (
        "KINDS",
        "NViTConfig",
        "PruneConfig",
        "TrainConfig",
        "parse_nvit_config",
        "read_nvit_config",
    ),
    "latbench.pruning.groups": ("Group", "Masker", "Slot", "build_groups", "groups_arch"),
    "latbench.pruning.importance": (
        "IMPORTANCES",
        "Importance",
        "MagnitudeImportance",
        "Taylor22Importance",
        "Taylor23Importance",
        "get_importance",
        "register_importance",
    ),
    "latbench.pruning.latency": ("LatencyCost", "load_lut"),
    "latbench.pruning.pruner": ("PruneAction", "Pruner", "StepReport", "count_params"),
    "latbench.pruning.dense": ("kept_first_parameters", "to_dense"),
    "latbench.pruning.checkpoint": ("load_model", "load_run", "save_model", "save_run"),
    "latbench.pruning.loop": (
        "BatchSource",
        "MaskedLMSource",
        "MaskedText",
        "TrainOutcome",
        "distill_loss",
        "evaluate_accuracy",
        "train",
    ),
    "latbench.pruning.run": ("PruneOutcome", "finetune_model", "prune_model"),
    "latbench.pruning.workflow": ("PruneJob", "finetune_dir", "prune_to_dir", "report_markdown", "run_digits_task"),
    "latbench.pruning.measure": ("measure_latency_ms", "measure_lut"),
    "latbench.pruning.digits": ("DIGITS_MODEL", "digits_arch"),
    "latbench.pruning.text": ("mlm_loss", "text_data", "text_data_config"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'latbench.pruning' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
