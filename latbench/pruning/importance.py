"""Importance criteria: ``Importance.__call__(group) -> scores``, one score per unit, and their registry.

The Taylor criteria read the gradients that the last backward pass left in the
parameters (all-reduced first in a distributed run), so call them after
``loss.backward()``. Scores are float64 on the CPU: the global ranking compares
values across groups that may differ by orders of magnitude.

Criteria (NViT, ``pruning_engine_general.py``, ``add_criteria``):

- ``taylor22`` (method 22): ``Σ (w·∂L/∂w)²`` over every entry the unit owns.
- ``taylor23`` (method 23, "Taylor gate expectation"): ``(Σ w·∂L/∂w / n)²``, the squared
  first-order estimate of the loss change when the unit is removed, where ``n`` is
  NViT's per-kind normaliser (EMB: the block count; heads 6; QK 2; V 2; MLP 1).
- ``magnitude`` (method 2): ``Σ w²``. NViT takes the first tensor of a group only
  ("not clear how to aggregate"); here every tensor the unit owns counts, so the
  score is the squared L2 norm of the unit's weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from latbench.errors import LatbenchError
from latbench.pruning.groups import Group

__all__ = [
    "IMPORTANCES",
    "Importance",
    "MagnitudeImportance",
    "Taylor22Importance",
    "Taylor23Importance",
    "get_importance",
    "register_importance",
]


class Importance(ABC):
    """Scores every unit of a group; lower means cheaper to remove."""

    name: ClassVar[str]
    #: Whether the scores read gradients (the pruner then needs a backward pass per batch).
    needs_grad: ClassVar[bool] = True

    @abstractmethod
    def __call__(self, group: Group) -> Tensor:
        """Scores ``[group.size]`` (float64, CPU)."""


def _wg(slot_param: torch.nn.Parameter) -> Tensor:
    grad = slot_param.grad
    if grad is None:  # a tensor the loss did not reach contributes nothing (as NViT)
        return torch.zeros_like(slot_param, dtype=torch.float64)
    return slot_param.detach().double() * grad.detach().double()


IMPORTANCES: dict[str, type[Importance]] = {}


def register_importance(name: str) -> type:
    """Class decorator: make an :class:`Importance` available by ``name``."""

    def deco(cls: type[Importance]) -> type[Importance]:
        if name in IMPORTANCES:
            raise LatbenchError("importance", f"{name!r} is registered twice")
        cls.name = name
        IMPORTANCES[name] = cls
        return cls

    return deco


@register_importance("taylor22")
class Taylor22Importance(Importance):
    """NViT method 22: ``Σ (w·g)²`` per unit."""

    def __call__(self, group: Group) -> Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)
        for slot in group.slots:
            assert slot.param is not None
            total += slot.per_unit(_wg(slot.param).pow(2), group.size).cpu()
        return total


@register_importance("taylor23")
class Taylor23Importance(Importance):
    """NViT method 23: ``(Σ w·g / n_kind)²`` per unit (NViT's per-group normalisation, then the square)."""

    def __call__(self, group: Group) -> Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)
        for slot in group.slots:
            assert slot.param is not None
            total += slot.per_unit(_wg(slot.param), group.size).cpu()
        total = torch.nan_to_num(total, nan=0.0, posinf=0.0, neginf=0.0)  # NViT zeroes non-finite criteria too
        return (total / group.taylor23_divisor).pow(2)


@register_importance("magnitude")
class MagnitudeImportance(Importance):
    """NViT method 2 (weight magnitude): ``Σ w²`` over every entry the unit owns."""

    needs_grad = False

    def __call__(self, group: Group) -> Tensor:
        total = torch.zeros(group.size, dtype=torch.float64)
        for slot in group.slots:
            assert slot.param is not None
            total += slot.per_unit(slot.param.detach().double().pow(2), group.size).cpu()
        return total


def get_importance(name: str) -> Importance:
    """A fresh :class:`Importance` by registered name (``taylor22``, ``taylor23``, ``magnitude``)."""
    cls = IMPORTANCES.get(name)
    if cls is None:
        raise LatbenchError("importance", f"unknown criterion {name!r} (expected {', '.join(sorted(IMPORTANCES))})")
    return cls()
