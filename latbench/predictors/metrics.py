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


@dataclass(frozen=True)
class NoiseCeiling:
    """What a perfect predictor would score against one run of noisy labels (see :func:`label_noise_ceiling`).

    Attributes:
        n: Architectures measured in both runs.
        shift: The change common to all architectures from run 1 to run 2 (median ratio - 1), divided out.
        rerun_mean, rerun_median, rerun_max: Relative difference per architecture between the runs, in %.
        rerun_tau: Kendall's τ between the two runs.
        floor_mape: Mean rerun difference / √2, in %: the MAPE of a predictor that knew the true latency.
        mape, within_5pct, within_10pct, kendall_tau: That perfect predictor's expected figures against run 1,
            by simulation (``within_*`` as shares 0..1).
    """

    n: int
    shift: float
    rerun_mean: float
    rerun_median: float
    rerun_max: float
    rerun_tau: float
    floor_mape: float
    mape: float
    within_5pct: float
    within_10pct: float
    kendall_tau: float


def label_noise_ceiling(first_ms: Any, second_ms: Any, n_sim: int = 400, seed: int = 0) -> NoiseCeiling:
    """The best figures any predictor can expect against labels as noisy as two runs of them show.

    ``first_ms`` and ``second_ms`` are the same architectures measured twice. With ``log run_i =
    log truth + e_i`` and the ``e_i`` independent and alike, the difference of the runs is ``e_1 -
    e_2``: the floor of the MAPE is the mean relative difference / √2 (what the rerun
    difference of two runs overstates, as both carry noise). For ±5%, ±10% and Kendall τ the
    perfect predictor (the truth) is simulated: the truth is the mean of the two runs' logs, shrunk
    towards its centre by the noise it still holds, the label the truth plus noise drawn from the
    observed differences / √2 with random signs (heavy tails kept); the figures are averaged over
    ``n_sim`` draws. A common shift between the runs (the machine's speed at another time) is
    divided out first: it moves every label alike and says nothing of their noise.

    τ between the two runs understates the ceiling (both sides are noisy); these figures do not.
    """
    from scipy.stats import kendalltau

    a = np.asarray(first_ms, dtype=np.float64).ravel()
    b = np.asarray(second_ms, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size < 3:
        raise LatbenchError("metrics", f"need the same >= 3 architectures in both runs, got {a.size}, {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all() and (a > 0).all() and (b > 0).all()):
        raise LatbenchError("metrics", "measured latencies must be positive and finite")
    ratio = float(np.median(b / a))
    b = b / ratio
    rel = np.abs(b - a) / ((a + b) / 2)
    d = np.log(b) - np.log(a)
    d = d - d.mean()
    truth = (np.log(a) + np.log(b)) / 2
    centre = truth.mean()
    spread = truth.var()
    # the mean of two runs still holds noise of variance var(e) / 2 = var(d) / 4
    shrink = np.sqrt(max(0.0, 1.0 - d.var() / 4 / spread)) if spread > 0 else 1.0
    truth = centre + (truth - centre) * shrink
    rng = np.random.default_rng(seed)
    sums = np.zeros(4)
    for _ in range(n_sim):
        e = rng.choice(d, size=d.size) / np.sqrt(2) * rng.choice((-1.0, 1.0), size=d.size)
        label = truth + e
        ape = np.abs(np.expm1(truth - label))
        sums += (
            100 * ape.mean(),
            (ape <= 0.05 + _EPS).mean(),
            (ape <= 0.10 + _EPS).mean(),
            float(kendalltau(truth, label).statistic),
        )
    mape, w5, w10, tau = sums / n_sim
    return NoiseCeiling(
        n=int(a.size),
        shift=100 * (ratio - 1),
        rerun_mean=float(100 * rel.mean()),
        rerun_median=float(100 * np.median(rel)),
        rerun_max=float(100 * rel.max()),
        rerun_tau=float(kendalltau(a, b).statistic),
        floor_mape=float(100 * rel.mean() / np.sqrt(2)),
        mape=float(mape),
        within_5pct=float(w5),
        within_10pct=float(w10),
        kendall_tau=float(tau),
    )
