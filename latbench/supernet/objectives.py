"""Objectives: masked LM (bert), causal LM (gpt), classification (vit), and knowledge distillation.

Every objective reduces to one form: a batch holds model ``inputs`` and
``targets`` of the logits' leading shape, ``-100`` where nothing is predicted.
Losses are *sums* over the predicted positions; the trainer divides by the
number of predicted positions in the *global* batch, so a batch split over
processes gives the same gradient as the whole batch in one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from latbench.supernet.data import MASK_ID

__all__ = ["IGNORE", "Batch", "distill_loss_sum", "label_loss_sum", "make_batch", "predicted_logits"]

#: Target value of a position that is not predicted (torch's cross-entropy default).
IGNORE = -100


@dataclass(frozen=True)
class Batch:
    """Model inputs and targets (``-100`` where no prediction is scored)."""

    inputs: Tensor
    targets: Tensor

    @property
    def count(self) -> int:
        """Predicted positions (the loss normaliser)."""
        return int((self.targets != IGNORE).sum())

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def shard(self, rank: int, world: int) -> Batch:
        """This process's contiguous share of the examples."""
        if world == 1:
            return self
        per = len(self) // world
        sl = slice(rank * per, (rank + 1) * per)
        return Batch(self.inputs[sl], self.targets[sl])

    def to(self, device: torch.device | str) -> Batch:
        return Batch(self.inputs.to(device), self.targets.to(device))


def mask_tokens(ids: Tensor, mask_prob: float, vocab_bytes: int, rng: np.random.Generator) -> Batch:
    """BERT's masking: each token is predicted with probability ``mask_prob``; of those 80% become the
    mask token, 10% a random byte and 10% stay. At least one token is always predicted."""
    shape = tuple(ids.shape)
    chosen = rng.random(shape) < mask_prob
    if not chosen.any():
        chosen[(0,) * len(shape)] = True
    action = rng.random(shape)
    random_ids = rng.integers(0, vocab_bytes, size=shape)
    inputs = ids.numpy().copy()
    inputs[chosen & (action < 0.8)] = MASK_ID
    swap = chosen & (action >= 0.8) & (action < 0.9)
    inputs[swap] = random_ids[swap]
    targets = np.where(chosen, ids.numpy(), IGNORE)
    return Batch(torch.from_numpy(inputs), torch.from_numpy(targets.astype(np.int64)))


def make_batch(
    objective: str, data: TensorDataset, indices: np.ndarray, rng: np.random.Generator, mask_prob: float = 0.15
) -> Batch:
    """The batch of examples ``indices`` for ``objective`` (``rng`` draws the MLM masks)."""
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64))
    if objective == "classification":
        images, labels = data.tensors
        return Batch(images[idx], labels[idx])
    ids = data.tensors[0][idx]
    if objective == "mlm":
        return mask_tokens(ids, mask_prob, 256, rng)
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = ids[:, 1:]  # next-token prediction; the last position has no target
    return Batch(ids, targets)


def predicted_logits(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Rows of ``logits`` at predicted positions, flattened to ``[n, classes]``, with their targets ``[n]``."""
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)
    keep = flat_targets != IGNORE
    return flat_logits[keep], flat_targets[keep]


def label_loss_sum(logits: Tensor, targets: Tensor) -> Tensor:
    """Summed cross-entropy over the predicted positions."""
    rows, labels = predicted_logits(logits, targets)
    return F.cross_entropy(rows.float(), labels, reduction="sum")


def distill_loss_sum(student: Tensor, teacher: Tensor, targets: Tensor, temperature: float = 1.0) -> Tensor:
    """Summed ``T^2 · KL(teacher_T || student_T)`` over the predicted positions (Hinton et al., 2015).

    The ``T^2`` keeps the gradient's scale independent of the temperature.
    """
    s_rows, _ = predicted_logits(student, targets)
    t_rows, _ = predicted_logits(teacher.detach(), targets)
    log_s = F.log_softmax(s_rows.float() / temperature, dim=-1)
    log_t = F.log_softmax(t_rows.float() / temperature, dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="sum") * temperature**2


def forward(model: nn.Module, batch: Batch) -> Tensor:
    """Logits of ``model`` on the batch's inputs (every family takes one positional input)."""
    return model(batch.inputs)
