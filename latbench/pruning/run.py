"""One call per stage: prune a model to its target, fine-tune the result.

:func:`prune_model` wraps the :class:`~latbench.pruning.pruner.Pruner` in the
training loop (distilling from the unpruned model, as NViT does), rounds the
final sizes and converts the masked model to a dense one. :func:`finetune_model`
trains the dense model further with the same distillation. Both resume from
their checkpoint after an interruption.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn
from torch.utils.data import TensorDataset

from latbench.pruning.config import PruneConfig, TrainConfig
from latbench.pruning.dense import to_dense
from latbench.pruning.latency import LatencyCost
from latbench.pruning.loop import MaskedText, TrainOutcome, train
from latbench.pruning.pruner import PruneAction, Pruner
from latbench.space.arch import Arch

__all__ = ["PruneOutcome", "finetune_model", "prune_model"]


@dataclass(frozen=True)
class PruneOutcome:
    """The result of :func:`prune_model`.

    Attributes:
        pruner: The pruner (its masks, history and summary); its hooks are still on the masked model.
        dense: The small dense model (eval mode), equal in outputs to the masked model.
        arch: Its architecture.
        training: How the pruning run ended.
        rounded: What :meth:`Pruner.finalize` removed to round the sizes.
        reached: Whether the target was reached (``False``: the batches ran out first).
    """

    pruner: Pruner
    dense: nn.Module
    arch: Arch
    training: TrainOutcome
    rounded: tuple[PruneAction, ...]
    reached: bool

    def summary(self) -> dict[str, Any]:
        out = self.pruner.summary()
        out.update(
            {
                "reached": self.reached,
                "batches": self.training.steps,
                "rounded": [a.to_dict() for a in self.rounded],
                "latency_ratio": self.pruner.latency_ratio(self.arch),
            }
        )
        return out


def prune_model(
    model: nn.Module,
    data: TensorDataset | MaskedText,
    config: PruneConfig,
    train_config: TrainConfig,
    *,
    latency: LatencyCost | None = None,
    teacher: nn.Module | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> PruneOutcome:
    """Prune ``model`` in place (masks) until its target, then round and convert it to a dense model.

    Args:
        model: A vit/bert family model, trained.
        data: Training data, ``(inputs, targets)``, or token windows for masked LM (:class:`MaskedText`).
        config: What to prune and the target.
        train_config: How to train meanwhile (``steps`` bounds the pruning run).
        latency: The latency table priced for ``model``'s architecture.
        teacher: The model to distil from (default: a frozen copy of ``model`` as it is now).
        checkpoint: Run checkpoint path (resumed from when it exists and ``resume``).
        resume: Continue from ``checkpoint``.
        on_step: Called with the batches done after each batch.
    """
    if teacher is None and train_config.distill_alpha > 0:
        teacher = copy.deepcopy(model).eval()
    pruner = Pruner(model, config, latency)
    outcome = train(
        model,
        data,
        train_config,
        kind="prune",
        teacher=teacher,
        pruner=pruner,
        checkpoint=checkpoint,
        resume=resume,
        on_step=on_step,
    )
    reached = pruner.finished and "target reached" in pruner.reason
    rounded = tuple(pruner.finalize())
    dense, arch = to_dense(model, pruner.groups)
    return PruneOutcome(pruner=pruner, dense=dense, arch=arch, training=outcome, rounded=rounded, reached=reached)


def finetune_model(
    model: nn.Module,
    data: TensorDataset | MaskedText,
    train_config: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainOutcome:
    """Fine-tune a (dense, pruned) model in place, distilling from ``teacher`` (NViT's ``finetune_dense``)."""
    return train(
        model,
        data,
        train_config,
        kind="finetune",
        teacher=teacher,
        checkpoint=checkpoint,
        resume=resume,
        on_step=on_step,
    )
