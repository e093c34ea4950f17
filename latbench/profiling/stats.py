"""Statistics of a latency sample: quantiles, the confidence interval of the median, stability.

The CI of the median uses order statistics (distribution-free): with ``n``
sorted samples, the 95% interval is bounded by the samples at ranks
``n/2 ∓ 0.98·√n`` (``1.96·√n / 2``), as ``../shared/MEASUREMENT.md`` prescribes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from latbench.errors import LatbenchError

#: IQR/median above this marks a measurement unstable.
UNSTABLE_IQR_RATIO = 0.10


def median_ci(sorted_ms: np.ndarray) -> tuple[float, float]:
    """95% distribution-free confidence interval of the median of sorted samples."""
    n = len(sorted_ms)
    if n == 0:
        return math.nan, math.nan
    half = 0.98 * math.sqrt(n)
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return float(sorted_ms[lo]), float(sorted_ms[max(hi, lo)])


def ci_converged(samples_ms: Sequence[float], rel_halfwidth: float, min_samples: int) -> bool:
    """Whether the median's CI lies within ``±rel_halfwidth`` of the median."""
    if len(samples_ms) < min_samples:
        return False
    arr = np.sort(np.asarray(samples_ms, dtype=float))
    med = float(np.median(arr))
    lo, hi = median_ci(arr)
    return med > 0 and (med - lo) <= rel_halfwidth * med and (hi - med) <= rel_halfwidth * med


@dataclass(frozen=True)
class Stats:
    """Summary of per-call latencies in milliseconds."""

    n: int
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p10_ms: float
    p25_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    ci_low_ms: float
    ci_high_ms: float

    @property
    def iqr_ratio(self) -> float:
        """Interquartile range over the median (a scale-free spread)."""
        return (self.p75_ms - self.p25_ms) / self.median_ms if self.median_ms > 0 else math.inf

    @property
    def ci_rel_halfwidth(self) -> float:
        """The larger half of the median's CI, relative to the median."""
        if self.median_ms <= 0:
            return math.inf
        return max(self.median_ms - self.ci_low_ms, self.ci_high_ms - self.median_ms) / self.median_ms

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["iqr_ratio"] = self.iqr_ratio
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stats:
        """Inverse of :meth:`to_dict` (derived entries such as ``iqr_ratio`` are ignored)."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            raise LatbenchError("stats", f"missing field(s) {', '.join(missing)}")
        return cls(**{n: int(data[n]) if n == "n" else float(data[n]) for n in names})

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> Stats:
        arr = np.sort(np.asarray(samples_ms, dtype=float))
        if arr.size == 0:
            raise ValueError("no samples")
        q = np.percentile(arr, [10, 25, 50, 75, 90, 99])
        lo, hi = median_ci(arr)
        return cls(
            n=int(arr.size),
            median_ms=float(q[2]),
            mean_ms=float(arr.mean()),
            std_ms=float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            min_ms=float(arr[0]),
            max_ms=float(arr[-1]),
            p10_ms=float(q[0]),
            p25_ms=float(q[1]),
            p75_ms=float(q[3]),
            p90_ms=float(q[4]),
            p99_ms=float(q[5]),
            ci_low_ms=lo,
            ci_high_ms=hi,
        )


def relative_spread(values: Sequence[float], min_n: int = 2) -> float:
    """(p90 - p10) / median of ``values``: how far they moved, relative; NaN with fewer than ``min_n``."""
    if len(values) < max(min_n, 1):
        return math.nan
    p10, p50, p90 = np.percentile(np.asarray(values, dtype=float), [10, 50, 90])
    return float((p90 - p10) / p50) if p50 > 0 else math.nan
