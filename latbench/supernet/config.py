"""Configuration of a super-net training run: the data, the objective, the strategy, the optimiser.

A run directory stores its :class:`TrainConfig` as JSON; a restarted run must
find the same configuration there, so everything that changes the resulting
weights lives in this one frozen dataclass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from latbench.errors import LatbenchError
from latbench.space.arch import Arch
from latbench.space.spaces import SearchSpace

__all__ = ["OBJECTIVES", "STRATEGIES", "DataConfig", "TrainConfig", "objective_of"]

#: Training strategies: the whole super-net; k random sub-networks; largest + k random + smallest.
STRATEGIES: tuple[str, ...] = ("standard", "random", "sandwich")
#: The objective of each family: masked LM, image classification, causal LM.
OBJECTIVES: dict[str, str] = {"bert": "mlm", "vit": "classification", "gpt": "causal-lm"}


def objective_of(family: str) -> str:
    """The objective a family trains with (``mlm``, ``classification`` or ``causal-lm``)."""
    return OBJECTIVES[family]


def _positive_int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LatbenchError(where, f"expected an integer >= {minimum}, got {value!r}")
    return value


def _fraction(value: Any, where: str, *, low_open: bool = True, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LatbenchError(where, f"expected a number, got {value!r}")
    if (value <= 0.0 if low_open else value < 0.0) or value > high:
        raise LatbenchError(where, f"must lie in {'(' if low_open else '['}0, {high}], got {value}")
    return float(value)


@dataclass(frozen=True)
class DataConfig:
    """Which data a family trains and is evaluated on.

    Attributes:
        family: ``bert``/``gpt`` read text; ``vit`` reads scikit-learn's digits.
        paths: ``.txt`` files or directories for text; empty means the default corpus
            (:func:`latbench.supernet.data.default_corpus`). Ignored for ``vit``.
        seq_len: Tokens per text window.
        seed: Seed of the train/val/test split.
        val_fraction: Share of the data for validation.
        test_fraction: Share of the data for testing.
        max_windows: Keep at most this many text windows (a seeded subsample); ``None`` keeps all.
        mask_prob: Share of tokens the MLM objective predicts (BERT's 15%).
    """

    family: str
    paths: tuple[str, ...] = ()
    seq_len: int = 16
    seed: int = 0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    max_windows: int | None = None
    mask_prob: float = 0.15

    def __post_init__(self) -> None:
        if self.family not in OBJECTIVES:
            raise LatbenchError("family", f"unknown family {self.family!r} (expected one of {', '.join(OBJECTIVES)})")
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        _positive_int(self.seq_len, "--seq-len", 2)
        _positive_int(self.seed, "--seed", 0)
        _fraction(self.val_fraction, "val_fraction", high=0.5)
        _fraction(self.test_fraction, "test_fraction", high=0.5)
        if self.max_windows is not None:
            _positive_int(self.max_windows, "--max-windows", 3)
        _fraction(self.mask_prob, "--mask-prob")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["paths"] = list(self.paths)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "data") -> DataConfig:
        return _from_dict(cls, data, where, paths=lambda v: tuple(v))


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the weights a training run ends with.

    Attributes:
        supernet: Shape of the trained model (the super-net; for further training, the dense model's arch).
        space: The sub-networks that ``random``/``sandwich`` sample from; ``None`` trains a dense model.
        data: The data and objective settings.
        strategy: ``standard`` (the whole network each step), ``random`` (``num_random`` sampled
            sub-networks each step) or ``sandwich`` (largest, ``num_random`` sampled, smallest).
        num_random: Sampled sub-networks per step (``random``, ``sandwich``).
        inplace_distill: In ``sandwich``, the sampled and smallest sub-networks learn the largest
            one's (detached) predictions instead of the labels (BigNAS/OFA in-place distillation).
        steps: Optimiser steps.
        batch_size: Global batch: with ``N`` processes each takes ``batch_size / N`` examples.
        lr: Peak learning rate of AdamW.
        weight_decay: AdamW weight decay (not applied to biases, norms and 1-D tensors).
        warmup_steps: Linear warm-up; then linear decay to 10% of ``lr`` at ``steps``.
        grad_clip: Clip the global gradient norm to this (0: no clipping).
        seed: Seed of the initial weights, the batch order, the masks and the sampled sub-networks.
        teacher: A trained model (an export or a run directory) to distil from (AutoTinyBERT option B).
        kd_temperature: Softmax temperature of distillation (loss scaled by ``T^2``).
        kd_weight: Weight of the distillation term; the label loss gets ``1 - kd_weight``.
        init_from: Start from this exported model (AutoTinyBERT's ``--further_train``) instead of ``seed``.
        checkpoint_every: Save a checkpoint every this many steps (and at the end).
    """

    supernet: Arch
    data: DataConfig
    space: SearchSpace | None = None
    strategy: str = "sandwich"
    num_random: int = 2
    inplace_distill: bool = False
    steps: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 10
    grad_clip: float = 1.0
    seed: int = 0
    teacher: str | None = None
    kd_temperature: float = 1.0
    kd_weight: float = 1.0
    init_from: str | None = None
    checkpoint_every: int = 50

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise LatbenchError("--strategy", f"unknown strategy {self.strategy!r} (expected {', '.join(STRATEGIES)})")
        if self.data.family != self.supernet.family:
            raise LatbenchError("data", f"family {self.data.family!r} differs from the model's")
        if self.space is None:
            if self.strategy != "standard":
                raise LatbenchError("--strategy", f"{self.strategy!r} samples sub-networks; a dense model has none")
        elif self.space.family != self.supernet.family:
            raise LatbenchError("--space", f"family {self.space.family!r} differs from the model's")
        _positive_int(self.num_random, "--num-random", 0 if self.strategy == "sandwich" else 1)
        _positive_int(self.steps, "--steps")
        _positive_int(self.batch_size, "--batch-size")
        _positive_int(self.warmup_steps, "--warmup-steps", 0)
        _positive_int(self.seed, "--seed", 0)
        _positive_int(self.checkpoint_every, "--checkpoint-every")
        _fraction(self.lr, "--lr", high=10.0)
        _fraction(self.weight_decay, "--weight-decay", low_open=False, high=10.0)
        _fraction(self.grad_clip, "--grad-clip", low_open=False, high=1e6)
        _fraction(self.kd_temperature, "--kd-temperature", high=100.0)
        _fraction(self.kd_weight, "--kd-weight", low_open=False)
        if self.inplace_distill and self.strategy != "sandwich":
            raise LatbenchError("--inplace-distill", "needs the sandwich strategy (the largest network teaches)")
        if self.inplace_distill and self.teacher is not None:
            raise LatbenchError("--inplace-distill", "choose one teacher: the largest sub-network or --teacher")

    @property
    def objective(self) -> str:
        """``mlm``, ``classification`` or ``causal-lm``; distillation is added by :attr:`teacher`."""
        return objective_of(self.supernet.family)

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warm-up, then linear decay to 10%."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return self.lr * warm * (1.0 - 0.9 * step / self.steps)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> TrainConfig:
        return _from_dict(
            cls,
            data,
            where,
            supernet=lambda v: Arch.from_dict(v, f"{where}.supernet"),
            data=lambda v: DataConfig.from_dict(v, f"{where}.data"),
            space=lambda v: None if v is None else SearchSpace.from_dict(v, f"{where}.space"),
        )


def _from_dict(cls: type, raw: Any, where: str, **convert: Any) -> Any:
    if not isinstance(raw, Mapping):
        raise LatbenchError(where, f"expected a JSON object, got {type(raw).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise LatbenchError(where, f"unknown key {unknown[0]!r}")
    kwargs = {k: (convert[k](v) if k in convert else v) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required key is missing
        raise LatbenchError(where, str(exc)) from None
