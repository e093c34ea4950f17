"""Evaluate sub-networks of a trained super-net: validation loss, perplexity, accuracy, analytic latency.

:func:`subnet_quality` is the quality objective of a latency-constrained
search: the validation loss of a sub-network, with the super-net's shared
weights (lower is better), so a search can trade (latency, loss) as whittle's
multi-objective search does.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latbench.errors import LatbenchError
from latbench.models.families import TransformerModel
from latbench.models.supernet import SuperNet
from latbench.space.arch import Arch
from latbench.supernet.config import DataConfig, objective_of
from latbench.supernet.objectives import Batch, label_loss_sum, make_batch, predicted_logits
from latbench.supernet.train import TrainedModel, load_trained, task_data

__all__ = [
    "ASSUMED_PEAK_BYTES_PER_S",
    "ASSUMED_PEAK_FLOPS",
    "SubnetEvaluation",
    "default_data",
    "evaluate_subnet",
    "extract_sub_network",
    "subnet_quality",
]

#: Peaks of the analytic roofline latency when nothing was measured: one modern CPU core's order of
#: magnitude (100 GFLOP/s fp32, 20 GB/s). The number ranks architectures; it is not a measurement.
ASSUMED_PEAK_FLOPS = 100e9
ASSUMED_PEAK_BYTES_PER_S = 20e9
#: Seed stream of the evaluation masks (MLM): fixed, so every sub-network sees the same masked tokens.
_EVAL_STREAM = 7


@dataclass(frozen=True)
class SubnetEvaluation:
    """Quality and cost of one sub-network on one split.

    Attributes:
        arch: The sub-network.
        split: ``val`` or ``test``.
        objective: ``mlm``, ``causal-lm`` or ``classification``.
        loss: Mean cross-entropy (nats) over the predicted tokens or images.
        perplexity: ``exp(loss)`` for the language models, else ``None``.
        accuracy: Share of predicted tokens / images whose arg-max is right.
        count: Predicted tokens / images.
        params: Parameters of the dense sub-network.
        flops: FLOPs of one example (batch 1, the data's sequence length).
        latency_ms: Analytic roofline latency of one example at the assumed peaks.
        latency_source: How ``latency_ms`` was obtained.
    """

    arch: Arch
    split: str
    objective: str
    loss: float
    perplexity: float | None
    accuracy: float
    count: int
    params: int
    flops: int
    latency_ms: float
    latency_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "split": self.split,
            "objective": self.objective,
            "loss": self.loss,
            "perplexity": self.perplexity,
            "accuracy": self.accuracy,
            "count": self.count,
            "params": self.params,
            "flops": self.flops,
            "latency_ms": self.latency_ms,
            "latency_source": self.latency_source,
        }


def default_data(arch: Arch, seq_len: int = 16) -> DataConfig:
    """The data a model without a run directory is evaluated on: the digits, or the default corpus."""
    if arch.family == "vit":
        return DataConfig("vit")
    return DataConfig(arch.family, seq_len=min(seq_len, arch.max_seq_len))  # type: ignore[type-var]


def _resolve(
    source: str | os.PathLike[str] | TrainedModel | TransformerModel, data: DataConfig | None
) -> tuple[TransformerModel, DataConfig]:
    if isinstance(source, (str, os.PathLike)):
        source = load_trained(source)
    if isinstance(source, TrainedModel):
        return source.model, data or source.config.data
    if isinstance(source, TransformerModel):
        return source, data or default_data(source.arch)
    raise LatbenchError(
        "supernet", f"expected a run directory, a trained model or a model, got {type(source).__name__}"
    )


@torch.no_grad()
def evaluate_subnet(
    source: str | os.PathLike[str] | TrainedModel | TransformerModel,
    arch: Arch | None = None,
    *,
    split: str = "val",
    data: DataConfig | None = None,
    batch_size: int = 512,
    max_examples: int | None = None,
) -> SubnetEvaluation:
    """Loss, perplexity, accuracy and analytic latency of sub-network ``arch`` of a trained super-net.

    Args:
        source: A run directory, a :class:`TrainedModel`, or a model (super-net or dense; then ``data``
            defaults to :func:`default_data`).
        arch: The sub-network (default: the whole model). A dense model only evaluates its own arch.
        split: ``val`` or ``test``.
        data: Override the data (default: the run's).
        batch_size: Examples per forward pass (does not change the result).
        max_examples: Evaluate only the first this many examples of the split (quick search loops).

    Raises:
        LatbenchError: ``arch`` does not fit the model, or an unknown split.
    """
    if split not in ("val", "test"):
        raise LatbenchError("--split", f"expected val or test, got {split!r}")
    model, data_cfg = _resolve(source, data)
    target = model.arch if arch is None else arch
    if isinstance(model, SuperNet):
        model.check_fits(target, "--arch")
    elif target != model.arch:
        raise LatbenchError("--arch", f"the model is one dense network ({model.arch.describe()})")
    _, val_set, test_set = task_data(data_cfg)
    dataset = val_set if split == "val" else test_set
    n = len(dataset) if max_examples is None else min(len(dataset), max_examples)
    objective = objective_of(target.family)
    rng = np.random.default_rng([data_cfg.seed, _EVAL_STREAM])
    batch = make_batch(objective, dataset, np.arange(n), rng, data_cfg.mask_prob)
    was_training = model.training
    previous = model.active_arch if isinstance(model, SuperNet) else None
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    try:
        if isinstance(model, SuperNet):
            model.set_sub_network(target)
        device = next(model.parameters()).device
        for start in range(0, n, batch_size):
            part = Batch(batch.inputs[start : start + batch_size], batch.targets[start : start + batch_size]).to(device)
            logits = model(part.inputs)
            loss_sum += float(label_loss_sum(logits, part.targets))
            rows, labels = predicted_logits(logits, part.targets)
            correct += int((rows.argmax(-1) == labels).sum())
            count += int(labels.numel())
    finally:
        if previous is not None:
            model.set_sub_network(previous)  # type: ignore[union-attr]
        model.train(was_training)
    loss = loss_sum / max(count, 1)
    params, flops, latency = _analytic(target, data_cfg)
    return SubnetEvaluation(
        arch=target,
        split=split,
        objective=objective,
        loss=loss,
        perplexity=None if objective == "classification" else math.exp(min(loss, 700.0)),
        accuracy=correct / max(count, 1),
        count=count,
        params=params,
        flops=flops,
        latency_ms=latency,
        latency_source=(
            f"analytic roofline, batch 1, fp32, assumed peaks {ASSUMED_PEAK_FLOPS / 1e9:g} GFLOP/s and "
            f"{ASSUMED_PEAK_BYTES_PER_S / 1e9:g} GB/s"
        ),
    )


def _analytic(arch: Arch, data: DataConfig) -> tuple[int, int, float]:
    from latbench.models.cost import model_cost

    cost = model_cost(arch, 1, None if arch.family == "vit" else data.seq_len).total
    return cost.params, cost.flops, cost.roofline_ms(ASSUMED_PEAK_FLOPS, ASSUMED_PEAK_BYTES_PER_S)


def subnet_quality(
    source: str | os.PathLike[str] | TrainedModel | TransformerModel,
    arch: Arch,
    *,
    split: str = "val",
    max_examples: int | None = None,
) -> float:
    """Validation loss (mean cross-entropy, nats; lower is better) of sub-network ``arch``.

    A search's quality objective. A run directory is loaded once and cached until its checkpoint changes.
    """
    return evaluate_subnet(source, arch, split=split, max_examples=max_examples).loss


def extract_sub_network(
    supernet: str | os.PathLike[str] | TrainedModel,
    arch: Arch | None,
    out_dir: str | os.PathLike[str],
    fmt: str = "safetensors",
    *,
    verify: bool = True,
) -> Any:
    """Extract ``arch`` from a trained super-net and export it (:func:`latbench.checkpoints.export.export_model`).

    Returns:
        The :class:`~latbench.checkpoints.export.ExportResult`.
    """
    from latbench.checkpoints.export import export_model

    trained = load_trained(supernet) if isinstance(supernet, (str, os.PathLike)) else supernet
    if arch is not None and isinstance(trained.model, SuperNet):
        trained.model.check_fits(arch, "--arch")
    dense = trained.extract(arch)
    source = {"run": str(Path(trained.path).resolve()), "step": trained.step, "data": trained.config.data.to_dict()}
    return export_model(dense, out_dir, fmt, source=source, verify=verify)
