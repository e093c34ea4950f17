"""Train a super-net (or further-train a dense model) with checkpoints, resume and torch.distributed.

Determinism: every random choice of step ``s`` - the examples of its batch, the
MLM masks, the sampled sub-networks - is drawn from a generator seeded by
``(seed, s, stream)``, not from a running state. So a run restarted from its
last checkpoint (model, optimiser and step) continues exactly as an
uninterrupted run, and every process of a distributed run samples the same
sub-networks.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) or in
an already initialised process group, each of ``N`` processes takes a
contiguous ``batch_size / N`` share of the global batch. Losses are sums over
a process's predicted positions divided by the global batch's count, and the
gradients are summed over processes (one all-reduce per step), so the update
equals the single-process update on the same global batch up to float
summation order. Process 0 writes the files.

A run directory holds ``run.json`` (the :class:`TrainConfig`), ``checkpoint.pt``
(model, optimiser, step, loss history; rewritten atomically every
``checkpoint_every`` steps and at the end) and, when finished, ``summary.json``.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.io import SCHEMA_VERSION, atomic_write, atomic_write_json, read_json
from latbench.models.families import TransformerModel
from latbench.models.supernet import SuperNet
from latbench.space.arch import Arch
from latbench.supernet.config import DataConfig, TrainConfig
from latbench.supernet.data import digits_splits, load_corpus, text_splits
from latbench.supernet.objectives import Batch, distill_loss_sum, label_loss_sum, make_batch

__all__ = [
    "CHECKPOINT_FILE",
    "RUN_FILE",
    "SUMMARY_FILE",
    "TrainResult",
    "TrainedModel",
    "batch_indices",
    "check_device",
    "load_model_dir",
    "load_trained",
    "plan_sub_networks",
    "task_data",
    "train_supernet",
]

RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "summary.json"
RUN_KIND = "latbench-supernet-run"
#: Independent random streams of one step.
_BATCH_STREAM, _SAMPLE_STREAM, _MASK_STREAM = 0, 1, 2
#: Config fields a restarted run may change without changing its weights.
_RESUME_FREE = ("checkpoint_every",)


# ------------------------------------------------------------------ data
@functools.lru_cache(maxsize=8)
def task_data(data: DataConfig) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """Train, validation and test sets of a data configuration (cached: callers must not modify them)."""
    if data.family == "vit":
        return digits_splits(data.seed, data.val_fraction, data.test_fraction)
    texts = load_corpus(list(data.paths) or None)
    return text_splits(texts, data.seq_len, data.seed, data.val_fraction, data.test_fraction, data.max_windows)


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """Examples of global batch ``step``: consecutive slices of one seeded permutation per epoch."""
    pos = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs = pos // n
    out = np.empty(batch_size, dtype=np.int64)
    for epoch in np.unique(epochs):
        perm = np.random.default_rng([seed, int(epoch), _BATCH_STREAM]).permutation(n)
        sel = epochs == epoch
        out[sel] = perm[pos[sel] % n]
    return out


def plan_sub_networks(config: TrainConfig, step: int) -> list[tuple[str, Arch]]:
    """The ``(role, arch)`` pairs step ``step`` trains, in order.

    ``standard``: ``[("full", supernet)]``; ``random``: ``num_random`` x ``("random", sampled)``;
    ``sandwich``: ``("max", space.max_arch())``, the sampled ones, ``("min", space.min_arch())``.
    """
    space = config.space
    if space is None or config.strategy == "standard":
        return [("full", config.supernet)]
    rng = np.random.default_rng([config.seed, step, _SAMPLE_STREAM])
    sampled: list[tuple[str, Arch]] = [("random", space.sample(rng)) for _ in range(config.num_random)]  # type: ignore[misc]
    if config.strategy == "random":
        return sampled
    return [("max", space.max_arch()), *sampled, ("min", space.min_arch())]


def step_batch(config: TrainConfig, train: TensorDataset, step: int) -> Batch:
    """The global batch of step ``step`` (masks drawn from the step's own stream)."""
    idx = batch_indices(len(train), config.batch_size, config.seed, step)
    rng = np.random.default_rng([config.seed, step, _MASK_STREAM])
    return make_batch(config.objective, train, idx, rng, config.data.mask_prob)


# ---------------------------------------------------------- distribution
@dataclass(frozen=True)
class _Group:
    rank: int = 0
    world: int = 1
    created: bool = False


def _join_group(device: torch.device) -> _Group:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return _Group(dist.get_rank(), dist.get_world_size())
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Group()
    if not dist.is_available():
        raise LatbenchError("torchrun", "this torch build has no torch.distributed")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Group(dist.get_rank(), dist.get_world_size(), created=True)


def _all_reduce_(tensors: list[Tensor], group: _Group) -> None:
    """Sum ``tensors`` over processes in place (one flattened all-reduce)."""
    if group.world == 1 or not tensors:
        return
    import torch.distributed as dist

    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def _barrier(group: _Group) -> None:
    if group.world > 1:
        import torch.distributed as dist

        dist.barrier()


# ---------------------------------------------------------------- run dir
def _check_run_dir(out: Path, config: TrainConfig) -> None:
    path = out / RUN_FILE
    if not path.exists():
        return
    stored = _read_run(path)
    old, new = stored.to_dict(), config.to_dict()
    for key in new:
        if key not in _RESUME_FREE and old.get(key) != new[key]:
            raise LatbenchError(
                str(out),
                f"holds a run with another {key} ({old.get(key)!r}); rerun the same command or use a new --out",
            )


def _read_run(path: Path) -> TrainConfig:
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") != RUN_KIND:
        raise LatbenchError(str(path), f"not a latbench training run (expected kind {RUN_KIND!r})")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise LatbenchError(str(path), f"schema_version {data.get('schema_version')!r} is not supported")
    return TrainConfig.from_dict(data.get("config"), f"{path}: config")


def _save_checkpoint(out: Path, model: nn.Module, optimizer: torch.optim.Optimizer, step: int, history: list) -> None:
    state = {
        "schema_version": SCHEMA_VERSION,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
    }
    atomic_write(out / CHECKPOINT_FILE, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: pickle and zip errors vary
        raise LatbenchError(str(path), f"unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or state.get("schema_version") != SCHEMA_VERSION or "model" not in state:
        raise LatbenchError(str(path), "not a latbench training checkpoint")
    return state


# ----------------------------------------------------------------- models
def _new_model(config: TrainConfig) -> TransformerModel:
    from latbench.models.build import build_supernet

    if config.init_from is not None:
        from latbench.checkpoints.export import load_extracted

        model = load_extracted(config.init_from)
        if model.arch != config.supernet:
            raise LatbenchError(config.init_from, "its architecture differs from the run's")
        return model.train()
    if config.space is None:
        from latbench.models.build import build_model

        return build_model(config.supernet, config.seed).train()
    return build_supernet(config.supernet, config.seed).train()


@dataclass(frozen=True)
class TrainedModel:
    """A trained super-net (or dense model) with the configuration it was trained with.

    Attributes:
        model: The :class:`SuperNet` (or dense model for further training), eval mode, CPU.
        config: Its training configuration (the data to evaluate it on, its search space).
        step: Steps trained.
        path: Its run directory.
    """

    model: TransformerModel
    config: TrainConfig
    step: int
    path: Path

    @property
    def is_supernet(self) -> bool:
        return isinstance(self.model, SuperNet)

    def extract(self, arch: Arch | None = None) -> TransformerModel:
        """The dense model of ``arch`` (default: the whole trained model)."""
        if isinstance(self.model, SuperNet):
            return self.model.extract(self.model.max_arch if arch is None else arch).eval()
        if arch is not None and arch != self.model.arch:
            raise LatbenchError("--arch", f"{self.path} holds one dense model ({self.model.arch.describe()})")
        return self.model


@functools.lru_cache(maxsize=4)
def _load_trained_cached(path: str, mtime_ns: int) -> TrainedModel:
    del mtime_ns  # part of the cache key: a newer checkpoint is loaded again
    p = Path(path)
    config = _read_run(p / RUN_FILE)
    state = _load_checkpoint(p / CHECKPOINT_FILE)
    model = _new_model_skeleton(config)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise LatbenchError(str(p / CHECKPOINT_FILE), f"weights do not fit the run's model ({exc})") from None
    return TrainedModel(model.eval(), config, int(state["step"]), p)


def _new_model_skeleton(config: TrainConfig) -> TransformerModel:
    from latbench.models.build import MODEL_CLASSES, SUPERNET_CLASSES

    classes = MODEL_CLASSES if config.space is None else SUPERNET_CLASSES
    with torch.device("meta"):
        model = classes[config.supernet.family](config.supernet)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    return model


def load_trained(path: str | os.PathLike[str]) -> TrainedModel:
    """The model of a training run directory, at its last checkpoint (cached until the checkpoint changes).

    Raises:
        LatbenchError: Not a run directory, or an unreadable checkpoint.
    """
    p = Path(path)
    if not (p / RUN_FILE).is_file():
        raise LatbenchError(str(p), f"not a training run (no {RUN_FILE})")
    ckpt = p / CHECKPOINT_FILE
    if not ckpt.is_file():
        raise LatbenchError(str(p), f"no {CHECKPOINT_FILE} yet (the run saved no checkpoint)")
    return _load_trained_cached(str(p.resolve()), ckpt.stat().st_mtime_ns)


def load_model_dir(path: str | os.PathLike[str]) -> TransformerModel:
    """A dense model from a run directory (its whole model) or an export directory (eval mode)."""
    from latbench.checkpoints.export import CONFIG_FILE, load_extracted

    p = Path(path)
    if (p / RUN_FILE).is_file():
        return load_trained(p).extract()
    if (p / CONFIG_FILE).is_file():
        return load_extracted(p)
    raise LatbenchError(str(p), f"neither a training run ({RUN_FILE}) nor a latbench export ({CONFIG_FILE})")


def _load_teacher(config: TrainConfig, device: torch.device) -> TransformerModel | None:
    if config.teacher is None:
        return None
    teacher = load_model_dir(config.teacher)
    arch, student = teacher.arch, config.supernet
    if arch.family != student.family:
        raise LatbenchError(config.teacher, f"a {arch.family} teacher cannot teach a {student.family} model")
    for key in ("vocab_size", "num_classes"):
        if key in student.extras and getattr(arch, key) != getattr(student, key):
            raise LatbenchError(
                config.teacher, f"teacher {key} {getattr(arch, key)} != student's {getattr(student, key)}"
            )
    if student.family != "vit" and arch.max_seq_len < config.data.seq_len:  # type: ignore[operator]
        raise LatbenchError(config.teacher, f"teacher max_seq_len {arch.max_seq_len} < --seq-len {config.data.seq_len}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval().to(device)


# --------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainResult:
    """What a call of :func:`train_supernet` did.

    Attributes:
        out_dir: The run directory.
        steps: Steps trained in total.
        start_step: Step the call started from (> 0 when it resumed a checkpoint).
        final_losses: Label loss of each role at the last step (``max``/``random``/``min`` or ``full``).
        seconds: Wall time of this call's training.
    """

    out_dir: Path
    steps: int
    start_step: int
    final_losses: dict[str, float]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "steps": self.steps,
            "start_step": self.start_step,
            "final_losses": self.final_losses,
            "seconds": self.seconds,
        }


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Norms, biases and the ViT class token are 1-D in spirit: decaying them only hurts.
        (no_decay if p.ndim < 2 or "norm" in name or name.endswith("bias") else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, foreach=False)


def train_supernet(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    *,
    device: str = "cpu",
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config`` into ``out_dir``, resuming from its checkpoint if one is there.

    Each step: for every ``(role, arch)`` of :func:`plan_sub_networks`, run that
    sub-network on this process's share of the global batch and back-propagate
    its loss (the label loss; or with ``teacher`` ``kd_weight`` x distillation
    + ``(1 - kd_weight)`` x label loss; or with ``inplace_distill`` the largest
    network's predictions for every other role). The gradients of all roles add
    up (as in BigNAS), are summed over processes, clipped, and AdamW steps once.

    Args:
        config: The run.
        out_dir: Run directory (created; an existing one must hold the same configuration).
        device: ``cpu`` or ``cuda``.
        on_step: Called after every step (and its checkpoint) with the steps done and the step's losses.
        log: Receives progress lines (process 0 only).

    Returns:
        A :class:`TrainResult`.

    Raises:
        LatbenchError: The directory holds another run, a batch does not split over the processes,
            or a teacher/initial model does not fit.
    """
    out = Path(out_dir)
    dev = check_device(device)
    group = _join_group(dev)
    try:
        return _train(config, out, dev, group, on_step, log)
    finally:
        if group.created:
            import torch.distributed as dist

            dist.destroy_process_group()


def check_device(device: str, where: str = "--device") -> torch.device:
    """``device`` (``cpu``, ``cuda`` or ``cuda:N``) as a torch device this process can use.

    Checked as ``latbench profile --device`` checks it (the same spelling and the same test
    for a CUDA build of torch and enough GPUs), so a bad value is one line naming ``where``
    before any work, not a torch error in the middle of it.
    """
    from latbench.profiling.backends._timing import cuda_problem
    from latbench.profiling.config import DeployConfig

    try:
        config = DeployConfig(backend="torch", device=device, mode="eager")
    except LatbenchError as exc:
        raise LatbenchError(where, exc.what) from None
    if config.device_type == "cuda":
        problem = cuda_problem(config)
        if problem:
            raise MissingDependencyError(where, f"{device!r} needs a CUDA build of torch and an NVIDIA GPU ({problem})")
    # "cuda" stays torch's current CUDA device (what it meant before this check); cuda:N is explicit.
    return torch.device("cuda" if str(device).strip().lower() == "cuda" else config.device)


def _train(
    config: TrainConfig,
    out: Path,
    device: torch.device,
    group: _Group,
    on_step: Callable[[int, dict[str, float]], None] | None,
    log: Callable[[str], None] | None,
) -> TrainResult:
    if config.batch_size % group.world:
        raise LatbenchError("--batch-size", f"{config.batch_size} does not split over {group.world} processes")
    say = log if (log is not None and group.rank == 0) else (lambda _msg: None)
    _check_run_dir(out, config)
    train_set, _, _ = task_data(config.data)
    teacher = _load_teacher(config, device)
    model = _new_model(config).to(device)
    optimizer = _optimizer(model, config)
    start, history = 0, []
    ckpt = out / CHECKPOINT_FILE
    if ckpt.is_file():
        state = _load_checkpoint(ckpt)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = int(state["step"]), list(state.get("history", []))
        say(f"resuming {out} at step {start}/{config.steps}")
    elif group.rank == 0:
        atomic_write_json(
            out / RUN_FILE, {"schema_version": SCHEMA_VERSION, "kind": RUN_KIND, "config": config.to_dict()}
        )
    _barrier(group)
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    losses: dict[str, float] = dict(history[-1]["losses"]) if history else {}
    for step in range(start, config.steps):
        losses = _train_step(config, model, teacher, optimizer, params, train_set, step, group, device)
        history.append({"step": step + 1, "lr": config.lr_at(step), "losses": losses})
        done = step + 1
        if done % config.checkpoint_every == 0 or done == config.steps:
            if group.rank == 0:
                _save_checkpoint(out, model, optimizer, done, history)
            _barrier(group)
        if done % max(1, config.steps // 10) == 0 or done == config.steps:
            say(f"step {done}/{config.steps}  " + "  ".join(f"{k} {v:.4f}" for k, v in losses.items()))
        if on_step is not None:
            on_step(done, losses)
    seconds = time.perf_counter() - t0
    result = TrainResult(out, config.steps, start, losses, seconds)
    if group.rank == 0:
        atomic_write_json(out / SUMMARY_FILE, {"schema_version": SCHEMA_VERSION, **result.to_dict()})
    _barrier(group)
    return result


def _train_step(
    config: TrainConfig,
    model: TransformerModel,
    teacher: TransformerModel | None,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    train_set: TensorDataset,
    step: int,
    group: _Group,
    device: torch.device,
) -> dict[str, float]:
    batch = step_batch(config, train_set, step)
    norm = float(batch.count)  # of the global batch: every process divides by the same number
    local = batch.shard(group.rank, group.world).to(device)
    for g in optimizer.param_groups:
        g["lr"] = config.lr_at(step)
    optimizer.zero_grad(set_to_none=True)
    teacher_logits = None
    if teacher is not None:
        with torch.no_grad():
            teacher_logits = teacher(local.inputs)
    roles: list[str] = []
    label_sums: list[Tensor] = []
    largest: Tensor | None = None
    for role, arch in plan_sub_networks(config, step):
        if isinstance(model, SuperNet):
            model.set_sub_network(arch)
        logits = model(local.inputs)
        label = label_loss_sum(logits, local.targets)
        if teacher_logits is not None:
            kd = distill_loss_sum(logits, teacher_logits, local.targets, config.kd_temperature)
            loss = config.kd_weight * kd + (1.0 - config.kd_weight) * label
        elif config.inplace_distill and largest is not None:
            loss = distill_loss_sum(logits, largest, local.targets, config.kd_temperature)
        else:
            loss = label
        if config.inplace_distill and role == "max":
            largest = logits.detach()
        (loss / norm).backward()
        roles.append(role)
        label_sums.append(label.detach())
    if isinstance(model, SuperNet):
        model.reset_super_network()
    grads = [p.grad for p in params if p.grad is not None]
    # The same sub-networks run on every process, so every process has grads for the same parameters.
    _all_reduce_(grads, group)
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], config.grad_clip)
    optimizer.step()
    totals = torch.stack(label_sums) / norm  # on the model's device: NCCL reduces only CUDA tensors
    _all_reduce_([totals], group)
    out: dict[str, list[float]] = {}
    for role, value in zip(roles, totals.cpu().tolist()):
        out.setdefault(role, []).append(value)
    return {role: sum(v) / len(v) for role, v in out.items()}
