"""Training loops for pruning and fine-tuning: distillation, data parallelism, exact resumption.

One loop (:func:`train`) serves the dense baseline, pruning (a :class:`Pruner`
gathers importance after every backward pass and prunes every
``interval_prune`` batches) and fine-tuning. It is built so that a run
interrupted and resumed from its last checkpoint ends exactly where an
uninterrupted run does:

- the batch of step ``s`` is a pure function of ``(seed, s)`` (a seeded
  permutation per epoch), so a resumed run sees the same batches;
- a checkpoint holds the model, the AdamW state, the pruner's state and the step,
  and is written atomically (:func:`latbench.pruning.checkpoint.save_run`).

Data parallelism (``torchrun``, any backend; gloo on CPU): every process builds
the same global batch and takes its contiguous shard; gradients are all-reduced
(averaged) before the pruner reads them, so the importance, and hence every
pruning decision, equals a single process's on the same global batch (rank 0's
accumulated scores are broadcast as well, against last-bit differences). Only
rank 0 writes files.

Data is either ``(inputs, targets)`` tensors (the digits) or :class:`MaskedText`,
token windows trained with BERT's masked-LM objective: every step masks its
global batch afresh (RoBERTa's dynamic masking, with
:func:`latbench.supernet.objectives.make_batch`, the super-net trainer's masker)
from a generator seeded by ``(seed, step)``, so resumption and data
parallelism stay exact; the cross-entropy of a shard is weighted by its share
of the global batch's masked tokens, so the averaged gradient is the whole
batch's.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from latbench.errors import LatbenchError
from latbench.pruning.checkpoint import load_run, save_run
from latbench.pruning.config import TrainConfig
from latbench.pruning.pruner import Pruner

__all__ = [
    "BatchSource",
    "MaskedLMSource",
    "MaskedText",
    "TrainOutcome",
    "batch_source",
    "distill_loss",
    "evaluate_accuracy",
    "train",
    "world",
]

#: Seed stream of the MLM masks of a training step (the super-net trainer uses 2 for its own).
_MASK_STREAM = 2


# ------------------------------------------------------------- distributed
def world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` outside torch.distributed)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def allreduce_mean(tensors: list[Tensor]) -> None:
    """Average ``tensors`` over the processes, in place, with one all-reduce of their concatenation."""
    import torch.distributed as dist

    _, size = world()
    if size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def _is_main() -> bool:
    return world()[0] == 0


def _barrier() -> None:
    import torch.distributed as dist

    if world()[1] > 1:
        dist.barrier()


# -------------------------------------------------------------------- data
class BatchSource:
    """Deterministic global batches: step ``s`` reads rows of a seeded per-epoch permutation.

    Args:
        data: A dataset of ``(inputs, targets)`` tensors.
        batch_size: Rows per global batch (at most the dataset's size; the last partial batch
            of an epoch is dropped, so every batch is full).
        seed: Same seed, same batches.
    """

    def __init__(self, data: TensorDataset, batch_size: int, seed: int) -> None:
        self.tensors = data.tensors
        self.n = len(self.tensors[0])
        if batch_size > self.n:
            raise LatbenchError("batch_size", f"{batch_size} exceeds the {self.n} training examples")
        self.batch_size = batch_size
        self.seed = seed
        self.per_epoch = self.n // batch_size
        self._perm: tuple[int, Tensor] | None = None

    def indices(self, step: int) -> Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if self._perm is None or self._perm[0] != epoch:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=gen))
        return self._perm[1][i * self.batch_size : (i + 1) * self.batch_size]

    def batch(self, step: int, rank: int = 0, size: int = 1) -> tuple[Tensor, ...]:
        """This process's shard of the global batch of ``step``."""
        if self.batch_size % size:
            raise LatbenchError("batch_size", f"{self.batch_size} does not split evenly over {size} processes")
        idx = self.indices(step)
        per = self.batch_size // size
        idx = idx[rank * per : (rank + 1) * per]
        return tuple(t[idx] for t in self.tensors)


@dataclass(frozen=True)
class MaskedText:
    """Token windows ``(input_ids,)`` to train on with BERT's masked-LM objective.

    Attributes:
        windows: The windows (:func:`latbench.supernet.data.text_splits`).
        mask_prob: Share of the tokens predicted in each window (BERT's 15%).
    """

    windows: TensorDataset
    mask_prob: float = 0.15


class MaskedLMSource(BatchSource):
    """Batches of token windows masked per step: ``(masked ids, targets)``, targets ``-100`` where unpredicted.

    The global batch of ``step`` is masked as a whole (so every process draws the same masks) and
    then sharded. :meth:`ce_weight` says how much a shard's mean cross-entropy counts.
    """

    def __init__(self, data: MaskedText, batch_size: int, seed: int) -> None:
        super().__init__(data.windows, batch_size, seed)
        self.mask_prob = data.mask_prob
        self._last: tuple[int, Tensor, Tensor] | None = None

    def _global(self, step: int) -> tuple[Tensor, Tensor]:
        if self._last is None or self._last[0] != step:
            from latbench.supernet.objectives import make_batch

            rng = np.random.default_rng([self.seed, step, _MASK_STREAM])
            b = make_batch("mlm", TensorDataset(*self.tensors), self.indices(step).numpy(), rng, self.mask_prob)
            self._last = (step, b.inputs, b.targets)
        return self._last[1], self._last[2]

    def batch(self, step: int, rank: int = 0, size: int = 1) -> tuple[Tensor, ...]:
        if self.batch_size % size:
            raise LatbenchError("batch_size", f"{self.batch_size} does not split evenly over {size} processes")
        inputs, targets = self._global(step)
        per = self.batch_size // size
        return inputs[rank * per : (rank + 1) * per], targets[rank * per : (rank + 1) * per]

    def ce_weight(self, step: int, rank: int = 0, size: int = 1) -> float:
        """``size · (this shard's masked tokens) / (the global batch's)``: 1 in a single process."""
        if size == 1:
            return 1.0
        targets = self._global(step)[1]
        per = self.batch_size // size
        mine = int((targets[rank * per : (rank + 1) * per] != -100).sum())
        return size * mine / max(int((targets != -100).sum()), 1)


def batch_source(data: TensorDataset | MaskedText, batch_size: int, seed: int) -> BatchSource:
    """The batches of ``data``: plain ``(inputs, targets)`` rows, or masked-LM windows."""
    if isinstance(data, MaskedText):
        return MaskedLMSource(data, batch_size, seed)
    return BatchSource(data, batch_size, seed)


# ------------------------------------------------------------------ losses
def distill_loss(
    student: Tensor, teacher: Tensor | None, labels: Tensor, alpha: float, tau: float, ce_weight: float = 1.0
) -> Tensor:
    """``(1 - α)·CE + α·τ²·KL(teacher_τ ‖ student_τ)`` (DeiT's soft ``DistillationLoss``, which NViT uses).

    The KL term is summed and divided by the number of logits, as DeiT/NViT do. Logits may have
    extra leading dims (``[B, S, V]`` for a masked LM: then both terms cover only the masked
    positions, those whose label is not -100); labels of -100 are ignored by the CE term,
    which is scaled by ``ce_weight`` (a shard's share of the predicted positions, see
    :meth:`MaskedLMSource.ce_weight`).
    """
    flat = student.reshape(-1, student.shape[-1])
    ce = F.cross_entropy(flat, labels.reshape(-1), ignore_index=-100)
    if ce_weight != 1.0:
        ce = ce * ce_weight
    if teacher is None or alpha == 0.0:
        return ce
    t = teacher.reshape(-1, teacher.shape[-1]).detach()
    if student.dim() > 2:
        # A masked LM predicts only its masked positions: distil there, not over the unmasked ~85%
        # whose logits no loss asks for (DeiT's per-logit normalisation, over the positions that count).
        keep = labels.reshape(-1) != -100
        if keep.any():
            flat, t = flat[keep], t[keep]
    kl = F.kl_div(F.log_softmax(flat / tau, dim=-1), F.log_softmax(t / tau, dim=-1), reduction="sum", log_target=True)
    kd = kl * (tau * tau) / flat.numel()
    return (1.0 - alpha) * ce + alpha * kd


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, data: TensorDataset, batch_size: int = 512) -> float:
    """Top-1 accuracy of a classifier on ``data`` (eval mode; the model's mode is restored)."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    x, y = data.tensors[0].to(device), data.tensors[1].to(device)
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
    model.train(was)
    return correct / max(len(x), 1)


# -------------------------------------------------------------------- loop
@dataclass(frozen=True)
class TrainOutcome:
    """How a run ended.

    Attributes:
        steps: Batches done in all (resumed ones included).
        resumed_from: The step the run resumed at (0 if it started fresh).
        last_loss: Loss of the last batch (this process's shard), or NaN if no batch ran.
        stopped: ``steps`` (all batches done) or ``pruned`` (the pruner reached its target).
    """

    steps: int
    resumed_from: int
    last_loss: float
    stopped: str


def train(
    model: nn.Module,
    data: TensorDataset | MaskedText,
    config: TrainConfig,
    *,
    kind: str = "train",
    teacher: nn.Module | None = None,
    pruner: Pruner | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    resume: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainOutcome:
    """Train ``model`` for ``config.steps`` batches (with a pruner: until it reaches its target).

    Args:
        model: The model (masked by ``pruner``, when given).
        data: ``(inputs, targets)`` training data, or token windows for masked LM (:class:`MaskedText`).
        config: Optimiser, batches, distillation, checkpoint interval.
        kind: Recorded in the checkpoint and checked on resume (``train``, ``prune``, ``finetune``).
        teacher: The unpruned model to distil from (``config.distill_alpha`` > 0).
        pruner: Gathers importance after every backward pass and prunes when due.
        checkpoint: Where to write the run checkpoint (every ``checkpoint_every`` batches and at the end).
        resume: Continue from ``checkpoint`` if it exists.
        on_step: Called with the number of batches done after each batch (progress, tests' interruptions).

    Returns:
        How the run ended.
    """
    rank, size = world()
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    start = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        state = load_run(ckpt, kind)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if pruner is not None:
            if "pruner" not in state:
                raise LatbenchError(str(ckpt), "holds no pruner state")
            pruner.load_state_dict(state["pruner"])
        start = int(state["step"])
    if teacher is not None:
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    source = batch_source(data, config.batch_size, config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device

    def save(step: int) -> None:
        if ckpt is None:
            return
        if _is_main():
            state: dict[str, Any] = {
                "kind": kind,
                "step": step,
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": opt.state_dict(),
                "train_config": config.to_dict(),
            }
            if pruner is not None:
                state["pruner"] = pruner.state_dict()
            save_run(ckpt, state)
        _barrier()

    last = math.nan
    step = start
    stopped = "steps"
    for step in range(start, config.steps):
        if pruner is not None and pruner.finished:
            stopped = "pruned"
            break
        x, y = (t.to(device) for t in source.batch(step, rank, size))
        model.train()
        logits = model(x)
        t_logits = None
        if teacher is not None and config.distill_alpha > 0:
            with torch.no_grad():
                t_logits = teacher(x)
        weight = source.ce_weight(step, rank, size) if isinstance(source, MaskedLMSource) else 1.0
        loss = distill_loss(logits, t_logits, y, config.distill_alpha, config.distill_tau, weight)
        opt.zero_grad(set_to_none=False)
        loss.backward()
        grads = [p.grad for p in params if p.grad is not None]
        loss_value = loss.detach().reshape(1).clone()
        allreduce_mean([*grads, loss_value])
        last = float(loss_value)
        if pruner is not None:
            pruner.accumulate(last)
        opt.step()
        if pruner is not None:
            pruner.enforce()
            if pruner.due:
                pruner.step()
        done = step + 1
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            save(done)
        if on_step is not None:
            on_step(done)
    else:
        step = config.steps
    if pruner is not None and pruner.finished:
        stopped = "pruned"
    end = step if stopped == "pruned" else config.steps
    save(end)
    return TrainOutcome(steps=end, resumed_from=start, last_loss=last, stopped=stopped)
