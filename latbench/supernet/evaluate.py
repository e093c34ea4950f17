"""Evaluate sub-networks of a trained super-net: validation loss, perplexity, accuracy, latency.

:func:`subnet_quality` is the quality objective of a latency-constrained
search: the validation loss of a sub-network, with the super-net's shared
weights (lower is better), so a search can trade (latency, loss) as whittle's
multi-objective search does.

Latency: :func:`evaluate_subnet` gives the analytic roofline estimate (no
hardware involved); :func:`predict_subnet_latency` asks a trained latency
predictor and :func:`measured_subnet_latency` reads a measurement of the
profiler. Both take what the caller loaded or measured (a predictor object, a
result-store row), so this module imports neither the predictors nor the
profiler.
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
    "SubnetLatency",
    "default_data",
    "evaluate_subnet",
    "extract_sub_network",
    "latency_workload",
    "measured_subnet_latency",
    "predict_subnet_latency",
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


# ------------------------------------------------------------------ latency
@dataclass(frozen=True)
class SubnetLatency:
    """A predicted or measured latency of one sub-network at one workload.

    Attributes:
        source: ``predicted`` or ``measured``.
        ms: The predicted latency, or the measured median.
        low_ms, high_ms: The predictor's interval, or the 95% CI of the measured median.
        batch: Batch size of the workload.
        seq_len: Tokens per sequence (``None`` for ViT: the image decides).
        detail: One line: which predictor and the deployment it was trained for, or the measured deployment.
        n: Timed calls (measured only).
        unstable: The protocol's unstable flag (measured only).
        env_id: Environment fingerprint of the measurement (measured only).
    """

    source: str
    ms: float
    low_ms: float
    high_ms: float
    batch: int
    seq_len: int | None
    detail: str
    n: int | None = None
    unstable: bool | None = None
    env_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ms": self.ms,
            "low_ms": self.low_ms,
            "high_ms": self.high_ms,
            "batch": self.batch,
            "seq_len": self.seq_len,
            "detail": self.detail,
            "n": self.n,
            "unstable": self.unstable,
            "env_id": self.env_id,
        }


def latency_workload(data: DataConfig, batch: int = 1) -> tuple[int, int | None]:
    """``(batch, seq_len)`` a sub-network's latency is taken at: the run's sequence length (text), none (ViT)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise LatbenchError("--batch", f"expected an integer >= 1, got {batch!r}")
    return batch, None if data.family == "vit" else data.seq_len


def _deploy_words(deploy: Any) -> str:
    if not deploy:
        return "an unknown deployment"
    keys = ("backend", "device", "mode", "precision", "threads")
    given = [(k, deploy.get(k)) for k in keys]
    # Store rows come through pandas: a missing thread count reads as NaN.
    words = [f"{k} {v}" for k, v in given if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return ", ".join(words) or "an unknown deployment"


def predict_subnet_latency(
    predictor: Any,
    arch: Arch,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    force: bool = False,
    where: str = "--predictor",
) -> SubnetLatency:
    """The latency a trained predictor (:class:`latbench.predictors.base.Predictor`) gives ``arch``, with its interval.

    Refused, in one line naming ``where``: a predictor of another family, one trained on an imported table
    (it predicts from the table's columns, not from architectures), one whose features assume other family
    settings (vocabulary, image size ...); and, unless ``force``, a workload outside the one it was trained on.
    """
    spec = getattr(predictor, "features", None)
    if spec is None:
        raise LatbenchError(where, "the predictor has no feature set (not trained?)")
    if spec.kind == "table":
        raise LatbenchError(where, "this predictor was trained on an imported table; it cannot predict from an arch")
    validity = getattr(predictor, "validity", None)
    family = spec.family or (validity.family if validity is not None else None)
    if family is not None and family != arch.family:
        raise LatbenchError(where, f"the predictor is for {family} models; this super-net is {arch.family}")
    if spec.kind == "arch":
        for key, theirs in spec.extras.items():
            ours = getattr(arch, key)
            if ours != theirs:
                raise LatbenchError(
                    where, f"the predictor's features assume {key} {theirs}; this sub-network has {key} {ours}"
                )
    if validity is not None and not force:
        for key, value in (("batch", batch), ("seq_len", seq_len)):
            rng = validity.workload.get(key)
            if value is not None and rng is not None and not rng[0] <= value <= rng[1]:
                raise LatbenchError(
                    where, f"{key} {value} lies outside the predictor's {rng[0]}..{rng[1]}; use --force to predict"
                )
    pred = predictor.predict_archs([arch], batch=batch, seq_len=seq_len)
    device = validity.device if validity is not None and validity.device else "an unknown device"
    statistic = getattr(predictor, "statistic", None) or "median"
    deploy = _deploy_words(validity.deploy if validity is not None else {})
    return SubnetLatency(
        source="predicted",
        ms=float(pred.ms[0]),
        low_ms=float(pred.low_ms[0]),
        high_ms=float(pred.high_ms[0]),
        batch=batch,
        seq_len=seq_len,
        detail=f"{predictor.name} predictor of the {statistic} on {device} ({deploy})",
    )


def measured_subnet_latency(row: Any) -> SubnetLatency:
    """A result-store row of a whole-model measurement (:func:`latbench.search.measure.measure_models`) as a
    :class:`SubnetLatency` (the median with its 95% CI)."""
    seq = row.get("seq_len")
    seq_len = None if seq is None or (isinstance(seq, float) and math.isnan(seq)) else int(seq)
    deploy = {k: row.get(k) for k in ("backend", "device", "mode", "precision", "threads")}
    return SubnetLatency(
        source="measured",
        ms=float(row["median_ms"]),
        low_ms=float(row["ci_low_ms"]),
        high_ms=float(row["ci_high_ms"]),
        batch=int(row["batch"]),
        seq_len=seq_len,
        detail=_deploy_words(deploy),
        n=int(row["n"]),
        unstable=bool(row["unstable"]),
        env_id=str(row["env_id"]),
    )
