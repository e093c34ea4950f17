"""LUT-sum latency model: the sum of block latencies from a table, plus a fitted overhead.

The sum of per-block latencies is not the end-to-end latency: per-call overhead,
fusion across block boundaries and cache residency make a whole model faster or
slower than its blocks (``../shared/MEASUREMENT.md``, "Blocks versus the whole
model"). So, per deployment, the model fits

    e2e_ms ≈ a · Σ blocks_ms + b · n_blocks + c

by least squares on measured whole models, and reports its accuracy (MAPE and
the share within ±10%) with and without the fit (the plain sum is ``a=1, b=c=0``).
When every model in the fit has the same number of blocks, ``b`` cannot be told
apart from ``c``: it is fixed at 0 and the report says so.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError

SCHEMA_VERSION = 1
FORMAT_NAME = "latbench-lut-sum"


@dataclass(frozen=True)
class Accuracy:
    """How well predictions match measurements."""

    n: int
    mape: float
    within_10pct: float
    max_ape: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def accuracy(predicted_ms: Any, measured_ms: Any) -> Accuracy:
    """MAPE (in %), share of predictions within ±10% (0..1) and the worst error (in %)."""
    pred = np.asarray(predicted_ms, dtype=np.float64).ravel()
    meas = np.asarray(measured_ms, dtype=np.float64).ravel()
    if pred.shape != meas.shape or pred.size == 0:
        raise LatbenchError(
            "accuracy", f"need equally many predictions and measurements, got {pred.size} and {meas.size}"
        )
    if (meas <= 0).any() or not np.isfinite(meas).all():
        raise LatbenchError("accuracy", "measured latencies must be positive and finite")
    ape = np.abs(pred - meas) / meas
    return Accuracy(
        n=int(meas.size),
        mape=float(100.0 * ape.mean()),
        # The tolerance keeps an error of exactly 10% (e.g. 2.2 vs 2.0) inside despite rounding.
        within_10pct=float((ape <= 0.10 + 1e-12).mean()),
        max_ape=float(100.0 * ape.max()),
    )


@dataclass(frozen=True)
class FitReport:
    """Accuracy on the fitting data, of the plain sum and of the fitted model."""

    plain_sum: Accuracy
    fitted: Accuracy
    fixed_b: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"plain_sum": self.plain_sum.to_dict(), "fitted": self.fitted.to_dict(), "fixed_b": self.fixed_b}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitReport:
        return cls(
            plain_sum=Accuracy(**data["plain_sum"]), fitted=Accuracy(**data["fitted"]), fixed_b=bool(data["fixed_b"])
        )


def _arrays(sum_of_blocks_ms: Any, n_blocks: Any, measured_ms: Any | None = None) -> tuple[np.ndarray, ...]:
    s = np.asarray(sum_of_blocks_ms, dtype=np.float64).ravel()
    n = np.asarray(n_blocks, dtype=np.float64).ravel()
    if n.size == 1 and s.size > 1:
        n = np.full_like(s, n[0])
    if s.shape != n.shape:
        raise LatbenchError("lut-sum", f"{s.size} block sums but {n.size} block counts")
    if not (np.isfinite(s).all() and (s >= 0).all()):
        raise LatbenchError("lut-sum", "block sums must be finite and non-negative")
    if not (np.isfinite(n).all() and (n >= 1).all()):
        raise LatbenchError("lut-sum", "block counts must be >= 1")
    if measured_ms is None:
        return s, n
    m = np.asarray(measured_ms, dtype=np.float64).ravel()
    if m.shape != s.shape:
        raise LatbenchError("lut-sum", f"{s.size} block sums but {m.size} measured latencies")
    if not (np.isfinite(m).all() and (m > 0).all()):
        raise LatbenchError("lut-sum", "measured latencies must be positive and finite")
    return s, n, m


@dataclass(frozen=True)
class LutSumModel:
    """``e2e_ms = a · Σ blocks_ms + b · n_blocks + c`` for one deployment.

    Attributes:
        a, b, c: The overhead fit (``a=1, b=c=0`` is the plain sum).
        device, deploy, workload: Where the fit holds (as in the table's metadata).
        report: Accuracy on the models it was fitted on, with and without the fit.
    """

    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    device: str | None = None
    deploy: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    report: FitReport | None = None

    def __post_init__(self) -> None:
        for name in ("a", "b", "c"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LatbenchError(f"lut-sum.{name}", f"expected a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))

    def predict(self, sum_of_blocks_ms: Any, n_blocks: Any) -> np.ndarray | float:
        """Predicted end-to-end ms for block sums and block counts (scalars or arrays)."""
        scalar = np.ndim(sum_of_blocks_ms) == 0
        s, n = _arrays(sum_of_blocks_ms, n_blocks)
        out = self.a * s + self.b * n + self.c
        return float(out[0]) if scalar else out

    def predict_arch(self, table: Any, arch: Any, extrapolate: bool = False, force: bool = False) -> float:
        """End-to-end ms of ``arch`` from a :class:`~latbench.lut.table.LookupTable` in ms."""
        return float(self.predict(table.arch_latency_ms(arch, extrapolate=extrapolate, force=force), arch.n_layers))

    def evaluate(self, sum_of_blocks_ms: Any, n_blocks: Any, measured_ms: Any) -> FitReport:
        """Accuracy on (other) measured models, of the plain sum and of this fit."""
        s, n, m = _arrays(sum_of_blocks_ms, n_blocks, measured_ms)
        fixed = self.report.fixed_b if self.report is not None else False
        return FitReport(plain_sum=accuracy(s, m), fitted=accuracy(self.predict(s, n), m), fixed_b=fixed)

    @classmethod
    def fit(
        cls,
        sum_of_blocks_ms: Any,
        n_blocks: Any,
        measured_ms: Any,
        device: str | None = None,
        deploy: Mapping[str, Any] | None = None,
        workload: Mapping[str, Any] | None = None,
    ) -> LutSumModel:
        """Least-squares fit of ``a, b, c`` on measured whole models.

        Args:
            sum_of_blocks_ms: Per model, the sum of its block latencies from the table.
            n_blocks: Per model, its number of blocks (or one count for all).
            measured_ms: Per model, its measured end-to-end latency.
            device, deploy, workload: Recorded with the fit.

        Raises:
            LatbenchError: Fewer models than parameters, or inconsistent inputs.
        """
        s, n, m = _arrays(sum_of_blocks_ms, n_blocks, measured_ms)
        fixed_b = bool(np.all(n == n[0]))
        cols = [s, np.ones_like(s)] if fixed_b else [s, n, np.ones_like(s)]
        if s.size < len(cols):
            raise LatbenchError("lut-sum", f"fitting {len(cols)} parameters needs at least {len(cols)} measured models")
        design = np.stack(cols, axis=1)
        coef, _, rank, _ = np.linalg.lstsq(design, m, rcond=None)
        if rank < len(cols):
            raise LatbenchError("lut-sum", "the block sums do not vary enough to fit an overhead (rank-deficient)")
        a, b, c = (coef[0], 0.0, coef[1]) if fixed_b else (coef[0], coef[1], coef[2])
        model = cls(a=a, b=b, c=c, device=device, deploy=dict(deploy or {}), workload=dict(workload or {}))
        report = FitReport(plain_sum=accuracy(s, m), fitted=accuracy(model.predict(s, n), m), fixed_b=fixed_b)
        return cls(a=a, b=b, c=c, device=device, deploy=model.deploy, workload=model.workload, report=report)

    # --------------------------------------------------------------- file I/O
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "device": self.device,
            "deploy": self.deploy,
            "workload": self.workload,
            "report": None if self.report is None else self.report.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "lut-sum model") -> LutSumModel:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT_NAME:
            raise LatbenchError(where, f'not a LUT-sum model (no "format": "{FORMAT_NAME}")')
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            raise LatbenchError(where, f"unsupported schema_version {version!r} (this latbench reads {SCHEMA_VERSION})")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names - {"format", "schema_version"})
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        for key in ("a", "b", "c"):
            if key not in data:
                raise LatbenchError(where, f"missing key {key!r}")
        for key in ("deploy", "workload"):
            if not isinstance(data.get(key, {}), Mapping):
                raise LatbenchError(where, f"{key}: expected an object")
        report = None
        if data.get("report") is not None:
            try:
                report = FitReport.from_dict(data["report"])
            except (KeyError, TypeError, ValueError):
                raise LatbenchError(where, "report: malformed fit report") from None
        try:
            return cls(
                a=data["a"],
                b=data["b"],
                c=data["c"],
                device=data.get("device"),
                deploy=dict(data.get("deploy", {})),
                workload=dict(data.get("workload", {})),
                report=report,
            )
        except LatbenchError as exc:
            raise LatbenchError(where, f"{exc.where}: {exc.what}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the model as JSON, atomically."""
        from latbench.io import atomic_write_json

        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LutSumModel:
        """Read and validate a model file (one-line errors naming the file)."""
        from latbench.io import read_json

        return cls.from_dict(read_json(path), str(path))


def block_sums(table: Any, archs: Sequence[Any], extrapolate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per architecture, the sum of its block latencies (ms) from ``table`` and its block count."""
    sums = np.array([table.arch_latency_ms(a, extrapolate=extrapolate) for a in archs], dtype=np.float64)
    counts = np.array([a.n_layers for a in archs], dtype=np.float64)
    return sums, counts
