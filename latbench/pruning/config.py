"""Pruning and training configurations (frozen, validated, JSON round-trip), and NViT's config format.

:class:`PruneConfig` says *what* is removed and when to stop; :class:`TrainConfig`
says how the model is trained meanwhile (optimiser, batches, distillation).
Neither imports torch.

NViT's pruning configuration (``nvit/pruning_configs/*.json``, read by its
``PruningConfigReader``) maps onto :class:`PruneConfig` with
:func:`read_nvit_config`; every NViT key is either mapped, accepted at the one
value NViT's ViT pruning uses, or refused in one line naming the key.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from latbench.errors import LatbenchError

#: The prunable group kinds, as in NViT: the shared embedding width, and per block the
#: heads, the Q/K dims per head, the V dims per head and the MLP neurons.
KINDS: tuple[str, ...] = ("emb", "heads", "qk", "v", "mlp")

#: Importance criteria by name; NViT's method numbers are accepted as aliases.
IMPORTANCE_ALIASES: dict[str, str] = {
    "taylor22": "taylor22",
    "22": "taylor22",
    "taylor23": "taylor23",
    "23": "taylor23",
    "magnitude": "magnitude",
    "2": "magnitude",
}

#: NViT's ``group_criteria`` prunes each layer type in fixed chunks, whatever its config's
#: ``group_size`` says: EMB 16, heads 2, QK 8, V 8, MLP 16 (pruning_engine_general.py).
NVIT_GRANULARITY: dict[str, int] = {"emb": 16, "heads": 2, "qk": 8, "v": 8, "mlp": 16}


def _int(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise LatbenchError(where, f"expected an integer, got {value!r}")
    if value < minimum:
        raise LatbenchError(where, f"must be >= {minimum}, got {value}")
    return value


def _float(value: Any, where: str, lo: float | None = None, hi: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise LatbenchError(where, f"expected a finite number, got {value!r}")
    if lo is not None and value < lo:
        raise LatbenchError(where, f"must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise LatbenchError(where, f"must be <= {hi}, got {value}")
    return float(value)


def _per_kind(value: Any, where: str, default: int) -> dict[str, int]:
    """A per-kind integer map: an int for every kind, or a mapping of some kinds (the rest ``default``)."""
    if isinstance(value, Mapping):
        unknown = sorted(set(value) - set(KINDS))
        if unknown:
            raise LatbenchError(where, f"unknown group kind {unknown[0]!r} (expected {', '.join(KINDS)})")
        return {k: _int(value.get(k, default), f"{where}.{k}") for k in KINDS}
    return {k: _int(value, where) for k in KINDS}


def _from_dict(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise LatbenchError(where, f"expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise LatbenchError(where, f"unknown field {unknown[0]!r}")
    try:
        return cls(**dict(data))
    except LatbenchError as exc:
        raise LatbenchError(where, f"{exc.where}: {exc.what}") from None


@dataclass(frozen=True)
class PruneConfig:
    """What the pruner removes, how it ranks, and when it stops.

    Attributes:
        importance: ``taylor22`` (NViT method 22, Σ(w·g)²), ``taylor23`` (method 23,
            (Σ w·g)² after NViT's per-group normalisation) or ``magnitude`` (method 2, Σ w²);
            ``"22"``, ``"23"``, ``"2"`` are accepted.
        latency_target: Stop as soon as the LUT-predicted latency is at most this fraction of
            the original's (NViT's exit), in (0, 1); ``None`` for no latency target.
        params_target: Stop as soon as the model has at most this many parameters; ``None``
            for none. At least one target must be set.
        latency_regularization: λ in ``score -= λ·(LUT(dims) - LUT(dims with the group one smaller))``.
        prune_per_iter: Units (neurons, heads, dims, channels) removed per pruning step.
        interval_prune: Training batches between pruning steps; importance is averaged over them.
        momentum: Momentum of the importance across pruning steps (NViT ``pruning_momentum``; 0: off).
        kinds: Which group kinds may be pruned.
        floors: Fewest units a group keeps (per kind; at least 1: a block never loses all its heads).
        granularity: Units removed together from one group (NViT prunes in chunks; 1: unit by unit).
        round_to: After pruning, round each group's size down to a multiple of this (1: no rounding).
        normalize: Divide importance by its median over the active units and latency gains by the
            current latency per active unit before combining them, so that λ is unit-free. NViT
            combines raw values (``False``).
        l2_normalize_per_group: Divide each group's scores by their L2 norm (NViT ``l2_normalization_per_layer``).
        max_prune_iters: Most pruning steps (NViT ``maximum_pruning_iterations``); ``None``: no limit.
        max_pruned_units: Most units removed in all (NViT ``prune_neurons_max``); ``None``: no limit.
        start_after: Training batches before the first importance is gathered
            (NViT ``start_pruning_after_n_iterations``).
        loss_threshold: Skip a pruning step while the mean loss since the last one is above this
            (NViT ``pruning_threshold``); ``None``: never skip.
        seed: Seed of the run (data order).
    """

    importance: str = "taylor23"
    latency_target: float | None = 0.5
    params_target: int | None = None
    latency_regularization: float = 0.0
    prune_per_iter: int = 32
    interval_prune: int = 100
    momentum: float = 0.0
    kinds: tuple[str, ...] = KINDS
    floors: Any = 1
    granularity: Any = 1
    round_to: Any = 1
    normalize: bool = False
    l2_normalize_per_group: bool = False
    max_prune_iters: int | None = None
    max_pruned_units: int | None = None
    start_after: int = 0
    loss_threshold: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        name = IMPORTANCE_ALIASES.get(str(self.importance))
        if name is None:
            raise LatbenchError(
                "importance", f"unknown criterion {self.importance!r} (expected taylor22, taylor23, magnitude)"
            )
        object.__setattr__(self, "importance", name)
        if self.latency_target is None and self.params_target is None:
            raise LatbenchError("latency_target", "set a latency target, a parameter target, or both")
        if self.latency_target is not None:
            t = _float(self.latency_target, "latency_target")
            if not 0.0 < t < 1.0:
                raise LatbenchError("latency_target", f"must lie strictly between 0 and 1 (a fraction), got {t}")
            object.__setattr__(self, "latency_target", t)
        if self.params_target is not None:
            _int(self.params_target, "params_target")
        object.__setattr__(
            self, "latency_regularization", _float(self.latency_regularization, "latency_regularization", lo=0.0)
        )
        _int(self.prune_per_iter, "prune_per_iter")
        _int(self.interval_prune, "interval_prune")
        m = _float(self.momentum, "momentum", lo=0.0)
        if m >= 1.0:
            raise LatbenchError("momentum", f"must be < 1, got {m}")
        object.__setattr__(self, "momentum", m)
        kinds = (self.kinds,) if isinstance(self.kinds, str) else tuple(self.kinds)
        if not kinds:
            raise LatbenchError("kinds", "prune at least one group kind")
        for k in kinds:
            if k not in KINDS:
                raise LatbenchError("kinds", f"unknown group kind {k!r} (expected {', '.join(KINDS)})")
        object.__setattr__(self, "kinds", tuple(k for k in KINDS if k in kinds))
        object.__setattr__(self, "floors", _per_kind(self.floors, "floors", 1))
        object.__setattr__(self, "granularity", _per_kind(self.granularity, "granularity", 1))
        object.__setattr__(self, "round_to", _per_kind(self.round_to, "round_to", 1))
        for flag in ("normalize", "l2_normalize_per_group"):
            if not isinstance(getattr(self, flag), bool):
                raise LatbenchError(flag, f"expected true or false, got {getattr(self, flag)!r}")
        for opt in ("max_prune_iters", "max_pruned_units"):
            if getattr(self, opt) is not None:
                _int(getattr(self, opt), opt)
        _int(self.start_after, "start_after", minimum=0)
        if self.loss_threshold is not None:
            object.__setattr__(self, "loss_threshold", _float(self.loss_threshold, "loss_threshold"))
        _int(self.seed, "seed", minimum=0)

    def replace(self, **changes: Any) -> PruneConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["kinds"] = list(self.kinds)
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "prune config") -> PruneConfig:
        """Build from :meth:`to_dict`'s output; unknown fields are refused, naming ``where``."""
        return _from_dict(cls, data, where)


@dataclass(frozen=True)
class TrainConfig:
    """How the model is trained while it is pruned or fine-tuned.

    The loss is NViT's (after DeiT's ``DistillationLoss``): ``(1 - α)·CE(student, labels) +
    α·τ²·KL(teacher_τ ‖ student_τ)``, the teacher being the unpruned model and ``_τ`` the
    softmax at temperature τ.

    Attributes:
        steps: Training batches (for pruning: the most batches; pruning stops earlier at its target).
        batch_size: Global batch (split evenly over the processes of a distributed run).
        lr: AdamW learning rate (0: importance is gathered without changing the weights).
        weight_decay: AdamW weight decay.
        distill_alpha: α, the weight of the distillation term (0: plain cross-entropy).
        distill_tau: τ, the distillation temperature.
        checkpoint_every: Batches between checkpoints (0: only at the end).
        seed: Seed of the data order.
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    distill_alpha: float = 0.5
    distill_tau: float = 1.0
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        _int(self.steps, "steps", minimum=0)
        _int(self.batch_size, "batch_size")
        object.__setattr__(self, "lr", _float(self.lr, "lr", lo=0.0))
        object.__setattr__(self, "weight_decay", _float(self.weight_decay, "weight_decay", lo=0.0))
        object.__setattr__(self, "distill_alpha", _float(self.distill_alpha, "distill_alpha", lo=0.0, hi=1.0))
        tau = _float(self.distill_tau, "distill_tau")
        if tau <= 0:
            raise LatbenchError("distill_tau", f"must be > 0, got {tau}")
        object.__setattr__(self, "distill_tau", tau)
        _int(self.checkpoint_every, "checkpoint_every", minimum=0)
        _int(self.seed, "seed", minimum=0)

    def replace(self, **changes: Any) -> TrainConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "train config") -> TrainConfig:
        return _from_dict(cls, data, where)


# ---------------------------------------------------------------------- NViT
@dataclass(frozen=True)
class NViTConfig:
    """NViT's pruning configuration as read, and what it becomes here.

    Attributes:
        prune: The :class:`PruneConfig` fields it sets (pass them to ``PruneConfig(**prune, ...)``).
        latency_look_up_table: Its ``latency_look_up_table`` path, if any (the CLI's ``--lut`` wins).
        source: The file it was read from.
        raw: The file's content.
    """

    prune: dict[str, Any]
    latency_look_up_table: str | None = None
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    def to_prune_config(self, **overrides: Any) -> PruneConfig:
        """A :class:`PruneConfig` from the file, with ``overrides`` (e.g. the CLI's options) on top."""
        return PruneConfig(**{**self.prune, **overrides})


#: NViT keys mapped onto a PruneConfig field (``None``: handled specially below).
_NVIT_MAP: dict[str, str | None] = {
    "method": "importance",
    "frequency": "interval_prune",
    "prune_per_iteration": "prune_per_iter",
    "maximum_pruning_iterations": "max_prune_iters",
    "prune_neurons_max": "max_pruned_units",
    "pruning_momentum": "momentum",
    "l2_normalization_per_layer": "l2_normalize_per_group",
    "start_pruning_after_n_iterations": "start_after",
    "pruning_threshold": "loss_threshold",
    "latency_regularization": "latency_regularization",
    "seed": "seed",
    "group_size": None,
    "latency_look_up_table": None,
}

#: NViT keys accepted only at the value its ViT pruning runs with (anything else is another algorithm).
_NVIT_FIXED: dict[str, Any] = {
    "starting_neuron": 0,
    "fixed_layer": -1,
    "rank_neurons_equally": False,
    "push_group_down": False,
    "push_down": False,
    "do_iterative_pruning": True,
    "fixed_criteria": False,
    "leave_at_least_one_group": True,
    "reset_gates": False,
}

#: NViT keys that change only its logging or bookkeeping, or that its engine itself ignores.
_NVIT_IGNORED: dict[str, str] = {
    "pruning_silent": "logging only",
    # PruningConfigReader never reads it; the engine sets use_momentum = pruning_momentum > 0.
    "use_momentum": "NViT derives it from pruning_momentum",
    "do_after_step": "a hook of NViT's group-lasso optimiser, not used by ViT pruning",
    "set_moment_zero": "SGD momentum reset; the optimiser here is AdamW",
    "flops_regularization": "not used by NViT's ViT pruning",
    "params_regularization": "not used by NViT's ViT pruning",
    "push_down_weight_decay": "only with push_down",
}


def parse_nvit_config(data: Any, where: str = "nvit config") -> NViTConfig:
    """Map NViT's parsed pruning config onto :class:`PruneConfig` fields.

    ``method`` 22/23/2 → ``importance``; ``frequency`` → ``interval_prune``;
    ``prune_per_iteration`` → ``prune_per_iter``; ``maximum_pruning_iterations`` →
    ``max_prune_iters``; ``prune_neurons_max`` → ``max_pruned_units``; ``pruning_momentum``
    → ``momentum``; ``l2_normalization_per_layer`` → ``l2_normalize_per_group``;
    ``start_pruning_after_n_iterations`` → ``start_after``; ``pruning_threshold`` →
    ``loss_threshold``. ``group_size`` is read but, as in NViT's ``group_criteria`` (which
    overrides it), the chunks are NViT's fixed :data:`NVIT_GRANULARITY`.

    Raises:
        LatbenchError: An unknown key, a value of the wrong type, or a key at a value that
            selects another of NViT's algorithms (one line naming the key).
    """
    if not isinstance(data, Mapping):
        raise LatbenchError(where, f"expected a JSON object, got {type(data).__name__}")
    if "jobConfiguration" in data:  # NViT's reader unwraps this envelope too
        data = data["jobConfiguration"]
        if not isinstance(data, Mapping):
            raise LatbenchError(where, "jobConfiguration: expected an object")
    prune: dict[str, Any] = {"granularity": dict(NVIT_GRANULARITY)}
    lut_path: str | None = None
    for key, value in data.items():
        if key in _NVIT_IGNORED:
            continue
        if key in _NVIT_FIXED:
            want = _NVIT_FIXED[key]
            if value != want or isinstance(value, bool) != isinstance(want, bool):
                raise LatbenchError(where, f"{key}={value!r} is not supported (only {want!r}: NViT's ViT pruning)")
            continue
        if key not in _NVIT_MAP:
            raise LatbenchError(where, f"unknown NViT config key {key!r}")
        target = _NVIT_MAP[key]
        if key == "group_size":
            _int(value, f"{where}: group_size")
            continue
        if key == "latency_look_up_table":
            if not isinstance(value, str):
                raise LatbenchError(where, f"latency_look_up_table: expected a path, got {value!r}")
            lut_path = value or None
            continue
        if key == "method":
            if isinstance(value, bool) or value not in (22, 23, 2):
                raise LatbenchError(where, f"method={value!r} is not supported (22, 23 or 2)")
            value = str(value)
        if key == "prune_neurons_max" and value in (-1, 0):
            value = None  # NViT: -1 (or its default 0 with no cap applied) means no cap
        if key == "maximum_pruning_iterations" and value in (-1, 0):
            value = None
        if key == "pruning_threshold" and value == -1:
            value = None  # NViT: -1.0 disables the loss check
        assert target is not None
        prune[target] = value
    try:
        # Validate now, against a placeholder target, so a bad value is reported as the file's.
        PruneConfig(**{**prune, "latency_target": 0.5})
    except LatbenchError as exc:
        back = {v: k for k, v in _NVIT_MAP.items() if v}
        key = back.get(exc.where.split(".")[0], exc.where)
        raise LatbenchError(where, f"{key}: {exc.what}") from None
    return NViTConfig(prune=prune, latency_look_up_table=lut_path, source=where, raw=dict(data))


def read_nvit_config(path: str | os.PathLike[str]) -> NViTConfig:
    """Read NViT's pruning config JSON (e.g. ``group8_m23_m09.json``); see :func:`parse_nvit_config`."""
    from latbench.io import read_json

    return parse_nvit_config(read_json(path), str(path))
