"""The model card: what a predictor is, what it learnt from, where it holds, and how good it is."""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.predictors.data import Validity
from latbench.predictors.metrics import Metrics

CARD_FORMAT = "latbench-predictor-card"
CARD_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """``card.json`` of a trained predictor.

    Attributes:
        model: Registered predictor name (``xgboost``, ``mlp`` ...).
        config: The model's config.
        seed: The seed it was trained with (same data and seed, same predictor).
        features: The feature set (:class:`~latbench.predictors.features.FeatureSpec` as a dict).
        statistic: Which statistic of the measurements it predicts.
        training_data: ``path``, ``sha256``, ``kind``, ``rows``, ``architectures`` of the data set.
        validity: Where it holds: device, deployment, workload, env_ids (:class:`~latbench.predictors.data.Validity`).
        split: How the rows were split (grouped by architecture), with the part sizes.
        metrics: Per part (``train``, ``val``, ``test``), the :class:`~latbench.predictors.metrics.Metrics`.
        fit_seconds: Wall time of the fit.
        latbench_version: The version that trained it.
        created: UTC time of training (ISO 8601).
        command: The command that rebuilds it, when known.
        workload_metrics: Test metrics per workload (data over several workloads), each with its
            ``batch``, ``seq_len``, ``kind`` (``trained``, ``interpolation`` between the workloads
            trained on, ``extrapolation`` beyond them) and :class:`~latbench.predictors.metrics.Metrics`.
    """

    model: str
    config: dict[str, Any]
    seed: int
    features: dict[str, Any]
    statistic: str
    training_data: dict[str, Any]
    validity: dict[str, Any]
    split: dict[str, Any]
    metrics: dict[str, dict[str, Any]]
    fit_seconds: float
    latbench_version: str
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    command: str | None = None
    schema_version: int = CARD_SCHEMA_VERSION
    workload_metrics: list[dict[str, Any]] | None = None

    def metrics_of(self, part: str) -> Metrics | None:
        """The metrics of one part (``train``, ``val``, ``test``), or None if it was empty."""
        data = self.metrics.get(part)
        return None if data is None else Metrics.from_dict(data, f"card.metrics.{part}")

    def validity_obj(self) -> Validity:
        return Validity.from_dict(self.validity, "card.validity")

    def to_dict(self) -> dict[str, Any]:
        out = {"format": CARD_FORMAT}
        out.update({f.name: getattr(self, f.name) for f in fields(self)})
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "card.json") -> ModelCard:
        if not isinstance(data, Mapping) or data.get("format") != CARD_FORMAT:
            raise LatbenchError(where, f'not a predictor card (no "format": "{CARD_FORMAT}")')
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= CARD_SCHEMA_VERSION:
            raise LatbenchError(
                where, f"unsupported schema_version {version!r} (this latbench reads {CARD_SCHEMA_VERSION})"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"format"})
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        required = [
            f.name for f in fields(cls) if f.name not in ("created", "command", "schema_version", "workload_metrics")
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise LatbenchError(where, f"missing key {missing[0]!r}")
        for key in ("config", "features", "training_data", "validity", "split", "metrics"):
            if not isinstance(data[key], Mapping):
                raise LatbenchError(where, f"{key}: expected an object")
        wm = data.get("workload_metrics")
        if wm is not None and not (
            isinstance(wm, list) and all(isinstance(w, Mapping) and isinstance(w.get("metrics"), Mapping) for w in wm)
        ):
            raise LatbenchError(where, "workload_metrics: expected a list of {batch, seq_len, kind, metrics}")
        card = cls(**{k: data[k] for k in names if k in data})
        card.validity_obj()
        for part in card.metrics:
            card.metrics_of(part)
        for w in wm or []:
            Metrics.from_dict(w["metrics"], "card.workload_metrics")
        return card

    def save(self, path: str | os.PathLike[str]) -> Path:
        from latbench.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelCard:
        from latbench.io import read_json

        return cls.from_dict(read_json(path), str(path))
