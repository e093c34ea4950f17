"""Latency constraints: a speed-up over a reference, an absolute bound, or a window around a target."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from latbench.errors import LatbenchError

REFERENCE_SOURCES = ("measured", "predicted", "given")


@dataclass(frozen=True)
class Reference:
    """The model a speed-up is counted against, and its latency on the target.

    Attributes:
        arch: Canonical JSON of the reference architecture (BERT-base for ``bert`` ...).
        latency_ms: Its latency in ms.
        source: ``measured`` (on the target, with the profiling protocol), ``predicted``
            (by the search's predictor: trust it less, the reference often lies outside
            the predictor's training data) or ``given`` (``--reference-ms``).
        low_ms, high_ms: The measurement's 95% CI of the median, or the predictor's interval.
        deploy_key: The deployment it was measured in (measured references).
    """

    arch: str
    latency_ms: float
    source: str
    low_ms: float | None = None
    high_ms: float | None = None
    deploy_key: str | None = None

    def __post_init__(self) -> None:
        if self.source not in REFERENCE_SOURCES:
            raise LatbenchError("reference", f"unknown source {self.source!r}")
        if not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise LatbenchError("--reference-ms", f"must be a positive latency in ms, got {self.latency_ms}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        return cls(**{k: data.get(k) for k in ("arch", "latency_ms", "source", "low_ms", "high_ms", "deploy_key")})


@dataclass(frozen=True)
class LatencyConstraint:
    """Which latencies a search accepts: ``low * target_ms <= latency <= high * target_ms``.

    ``target_ms`` is ``reference_ms / speedup`` (``--latency-constraint 7``) or an absolute
    bound (``--latency-ms X``). The default window ``[0, 1]`` is a plain upper bound;
    AutoTinyBERT's candidate search uses ``[0.85, 1.1]`` (its upper end lies *above* the
    target: an architecture predicted 10% slower than asked is still a candidate).

    With ``margin``, the predictor's upper interval bound (not its point) must lie under
    the top of the window, and its lower bound over the bottom: a safety margin as wide as
    the predictor's own uncertainty. An interval is never taken narrower than
    ``margin_floor`` (a ratio to the point, set from the predictor's typical interval over the
    space): a search maximising quality under the bound would otherwise seek out exactly the
    architectures whose interval happens to collapse onto the point, and gain no margin at all.

    Attributes:
        target_ms: The latency asked for, ms.
        speedup: The speed-up over the reference, or None for an absolute bound.
        reference_ms: The reference latency the target came from (None for absolute bounds).
        low, high: The window as fractions of ``target_ms``.
        margin: Judge by the predictor's interval instead of its point.
    """

    target_ms: float
    speedup: float | None = None
    reference_ms: float | None = None
    low: float = 0.0
    high: float = 1.0
    margin: bool = False
    margin_floor: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target_ms) and self.target_ms > 0):
            raise LatbenchError("--latency-ms", f"must be a positive latency in ms, got {self.target_ms}")
        if self.speedup is not None and not (math.isfinite(self.speedup) and self.speedup > 0):
            raise LatbenchError("--latency-constraint", f"must be a positive speed-up, got {self.speedup}")
        if not (0.0 <= self.low < self.high and math.isfinite(self.high)):
            raise LatbenchError("--window", f"expected 0 <= low < high, got {self.low},{self.high}")
        if not (math.isfinite(self.margin_floor) and self.margin_floor >= 1.0):
            raise LatbenchError("--safety-margin", f"the interval floor must be a ratio >= 1, got {self.margin_floor}")

    @classmethod
    def speedup_over(cls, reference_ms: float, speedup: float, **kwargs: Any) -> LatencyConstraint:
        """``latency <= reference_ms / speedup`` (times the window)."""
        if not (math.isfinite(speedup) and speedup > 0):
            raise LatbenchError("--latency-constraint", f"must be a positive speed-up, got {speedup}")
        return cls(target_ms=reference_ms / speedup, speedup=speedup, reference_ms=reference_ms, **kwargs)

    @property
    def bound_ms(self) -> float:
        """The largest accepted latency."""
        return self.high * self.target_ms

    @property
    def floor_ms(self) -> float:
        """The smallest accepted latency (0 without a window)."""
        return self.low * self.target_ms

    def _ends(self, ms: np.ndarray, low_ms: Any, high_ms: Any) -> tuple[np.ndarray, np.ndarray]:
        """The latencies the window judges: the point, or with a margin the (floored) interval."""
        if not self.margin:
            return ms, ms
        top = ms if high_ms is None else np.asarray(high_ms, dtype=np.float64)
        bottom = ms if low_ms is None else np.asarray(low_ms, dtype=np.float64)
        return np.maximum(top, ms * self.margin_floor), np.minimum(bottom, ms / self.margin_floor)

    def feasible(self, ms: Any, low_ms: Any = None, high_ms: Any = None) -> np.ndarray:
        """Whether each predicted latency is accepted (by its interval with ``margin``)."""
        ms = np.asarray(ms, dtype=np.float64)
        top, bottom = self._ends(ms, low_ms, high_ms)
        ok = top <= self.bound_ms
        if self.low > 0:
            ok &= bottom >= self.floor_ms
        return ok

    def violation(self, ms: Any, low_ms: Any = None, high_ms: Any = None) -> np.ndarray:
        """How far outside the window each latency lies, relative to the target (0 inside)."""
        ms = np.asarray(ms, dtype=np.float64)
        top, bottom = self._ends(ms, low_ms, high_ms)
        over = np.maximum(0.0, top - self.bound_ms)
        under = np.maximum(0.0, self.floor_ms - bottom) if self.low > 0 else np.zeros_like(ms)
        return (over + under) / self.target_ms

    def describe(self) -> str:
        if self.speedup is not None:
            what = f"{self.speedup:g}x faster than the reference ({self.reference_ms:.4g} ms): {self.target_ms:.4g} ms"
        else:
            what = f"{self.target_ms:.4g} ms"
        if self.low > 0 or self.high != 1.0:
            what += f", window [{self.low:g}, {self.high:g}] ({self.floor_ms:.4g} to {self.bound_ms:.4g} ms)"
        if self.margin:
            what += f", judged by the predictor's interval (at least x{self.margin_floor:.3g} of the point)"
        return what

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bound_ms"] = self.bound_ms
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LatencyConstraint:
        keys = ("target_ms", "speedup", "reference_ms", "low", "high", "margin")
        return cls(**{k: data[k] for k in keys}, margin_floor=float(data.get("margin_floor", 1.0)))


def parse_window(text: str | None) -> tuple[float, float] | None:
    """``"0.85,1.1"`` -> (0.85, 1.1); None stays None."""
    if text is None:
        return None
    try:
        low, high = (float(p) for p in text.split(","))
    except ValueError:
        raise LatbenchError(
            "--window", f"expected LOW,HIGH fractions of the target like 0.85,1.1, got {text!r}"
        ) from None
    if not (0.0 <= low < high and math.isfinite(high)):
        raise LatbenchError("--window", f"expected 0 <= LOW < HIGH, got {text!r}")
    return low, high
