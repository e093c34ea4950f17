"""How good a latency predictor is: relative error, absolute error, and whether it ranks correctly."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from latbench.errors import LatbenchError

# An error of exactly 5% counts as within ±5%, whatever the last bit of the division says.
_EPS = 1e-12


@dataclass(frozen=True)
class Metrics:
    """Accuracy of predictions against measurements.

    Attributes:
        n: Number of (prediction, measurement) pairs.
        mape: Mean absolute percentage error, in %.
        rmse_ms: Root mean squared error, in ms.
        within_5pct: Share (0..1) of predictions within ±5% of the measurement.
        within_10pct: Share (0..1) within ±10%.
        kendall_tau: Kendall's τ-b between predictions and measurements (ranking, what a search needs).
        spearman_rho: Spearman's ρ.
        max_ape: The worst absolute percentage error, in %.
    """

    n: int
    mape: float
    rmse_ms: float
    within_5pct: float
    within_10pct: float
    kendall_tau: float
    spearman_rho: float
    max_ape: float

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Any, where: str = "metrics") -> Metrics:
        if not isinstance(data, Mapping):
            raise LatbenchError(where, "expected an object")
        names = [f.name for f in fields(cls)]
        missing = [k for k in names if k not in data]
        if missing:
            raise LatbenchError(where, f"missing key {missing[0]!r}")
        try:
            values = {k: (float("nan") if data[k] is None else data[k]) for k in names}
            values["n"] = int(values["n"])
            return cls(**{k: v if k == "n" else float(v) for k, v in values.items()})
        except (TypeError, ValueError):
            raise LatbenchError(where, "malformed metrics (expected numbers)") from None


def compute_metrics(predicted_ms: Any, measured_ms: Any) -> Metrics:
    """Accuracy of ``predicted_ms`` against ``measured_ms`` (same length, measured > 0).

    Rank correlations are NaN when either side is constant (or n < 2).
    """
    from scipy.stats import kendalltau, spearmanr

    pred = np.asarray(predicted_ms, dtype=np.float64).ravel()
    meas = np.asarray(measured_ms, dtype=np.float64).ravel()
    if pred.shape != meas.shape or pred.size == 0:
        raise LatbenchError("metrics", f"need equally many predictions and measurements, got {pred.size}, {meas.size}")
    if not (np.isfinite(meas).all() and (meas > 0).all()):
        raise LatbenchError("metrics", "measured latencies must be positive and finite")
    if not np.isfinite(pred).all():
        raise LatbenchError("metrics", "predictions must be finite")
    ape = np.abs(pred - meas) / meas
    tau = rho = float("nan")
    if pred.size >= 2 and np.ptp(pred) > 0 and np.ptp(meas) > 0:
        tau = float(kendalltau(pred, meas).statistic)
        rho = float(spearmanr(pred, meas).statistic)
    return Metrics(
        n=int(pred.size),
        mape=float(100.0 * ape.mean()),
        rmse_ms=float(np.sqrt(np.mean((pred - meas) ** 2))),
        within_5pct=float((ape <= 0.05 + _EPS).mean()),
        within_10pct=float((ape <= 0.10 + _EPS).mean()),
        kendall_tau=tau,
        spearman_rho=rho,
        max_ape=float(100.0 * ape.max()),
    )
