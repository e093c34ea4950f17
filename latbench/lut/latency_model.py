"""LUT-sum latency model: the sum of block latencies from a table, the non-block part, and a fitted overhead.

The sum of per-block latencies is not the end-to-end latency: per-call overhead,
fusion across block boundaries and cache residency make a whole model faster or
slower than its blocks (``../shared/MEASUREMENT.md``, "Blocks versus the whole
model"), and a whole model has parts that are no block at all: BERT's embeddings
and its MLM head over a 30522-word vocabulary, GPT's LM head, ViT's patch
embedding and classifier. So, per deployment and workload, the model fits

    e2e_ms ≈ a · Σ blocks_ms + b · n_blocks + c + d · rest_gflop

by least squares on measured whole models, where ``rest_gflop`` is the analytic
GFLOPs of everything outside the blocks (embeddings + head,
:func:`non_block_gflop`, from :func:`latbench.models.cost.model_cost`).

Why a fitted coefficient on analytic FLOPs, and not a measured table over the
hidden width: at a fixed workload the non-block part depends on the model-wide
dimensions only (hidden width, vocabulary, tokens, classes), and its FLOPs are
proportional to them (BERT: ``2·B·S·(H² + H·V)``, dominated by the ``H·V``
decoder; GPT: ``2·B·S·H·V``; ViT: the patch convolution and classifier, both
``∝ H``), as are its bytes (embedding rows, head weights). One coefficient
``d`` (ms per GFLOP) on that number therefore captures the whole part as a line
in ``H``, with ``c`` as its intercept, and it (1) needs no measurement beyond
the whole models the overhead fit uses already (the profiler measures blocks and
models, not "everything but the blocks"), (2) extrapolates beyond the widths it
was fitted on, and (3) follows a change of vocabulary or sequence length through
the FLOPs, where a table over ``H`` alone would silently answer for the wrong
vocabulary. It assumes that the non-block latency is linear in its FLOPs
(compute-bound heads, as at sequence length 128 on a CPU) or, equivalently at a
fixed workload, linear in the width; a memory-bound head scales the same way.
Measured here (CPU, 1 thread, seq 32, 30522 words): the head's latency is affine
in the width from 64 to 128 (``c`` takes the intercept), but not across 32 → 64,
where its weights leave the cache; fit on the widths you will predict.

The fit reports its accuracy (MAPE and the share within ±10%) on the models it
was fitted on: of the plain sum (``a=1, b=c=d=0``), of the overhead alone
(``d=0``) and of the full model. Coefficients that the data cannot determine are
fixed at 0 and the report says so: ``b`` when every model has the same number of
blocks (it cannot be told apart from ``c``), ``d`` when every model has the same
non-block cost (the same width: it is then part of ``c``, and the model does not
transfer to other widths).

Files: ``schema_version`` 2 adds ``d``; a version-1 file (fitted without the
non-block term) reads as ``d = 0`` and predicts exactly what it did.
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

SCHEMA_VERSION = 2
FORMAT_NAME = "latbench-lut-sum"
#: Relative spread below which a feature counts as constant (its coefficient cannot be fitted).
_CONSTANT_RTOL = 1e-9


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
    """Accuracy on the fitting data: of the plain sum, of the overhead alone (``d=0``) and of the fitted model.

    Attributes:
        plain_sum: The sum of block latencies as the prediction.
        fitted: The fitted model.
        fixed_b: ``b`` was held at 0 (every model had the same number of blocks).
        fixed_d: ``d`` was held at 0 (no non-block costs given, or all equal).
        without_d: The best ``a, b, c`` fit on the same data (None when ``d`` was fixed: ``fitted`` is that fit).
    """

    plain_sum: Accuracy
    fitted: Accuracy
    fixed_b: bool = False
    fixed_d: bool = False
    without_d: Accuracy | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "plain_sum": self.plain_sum.to_dict(),
            "fitted": self.fitted.to_dict(),
            "fixed_b": self.fixed_b,
            "fixed_d": self.fixed_d,
            "without_d": None if self.without_d is None else self.without_d.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FitReport:
        without = data.get("without_d")
        return cls(
            plain_sum=Accuracy(**data["plain_sum"]),
            fitted=Accuracy(**data["fitted"]),
            fixed_b=bool(data["fixed_b"]),
            # A version-1 report has no key: its model had no non-block term.
            fixed_d=bool(data.get("fixed_d", True)),
            without_d=None if without is None else Accuracy(**without),
        )


def _vector(values: Any, size: int, what: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 1 and size > 1:
        v = np.full(size, v[0])
    if v.size != size:
        raise LatbenchError("lut-sum", f"{size} block sums but {v.size} {what}")
    return v


def _arrays(
    sum_of_blocks_ms: Any, n_blocks: Any, rest_gflop: Any = None, measured_ms: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    s = np.asarray(sum_of_blocks_ms, dtype=np.float64).ravel()
    n = _vector(n_blocks, s.size, "block counts")
    if not (np.isfinite(s).all() and (s >= 0).all()):
        raise LatbenchError("lut-sum", "block sums must be finite and non-negative")
    if not (np.isfinite(n).all() and (n >= 1).all()):
        raise LatbenchError("lut-sum", "block counts must be >= 1")
    r = None
    if rest_gflop is not None:
        r = _vector(rest_gflop, s.size, "non-block costs")
        if not (np.isfinite(r).all() and (r >= 0).all()):
            raise LatbenchError("lut-sum", "non-block costs (GFLOPs) must be finite and non-negative")
    m = None
    if measured_ms is not None:
        m = np.asarray(measured_ms, dtype=np.float64).ravel()
        if m.shape != s.shape:
            raise LatbenchError("lut-sum", f"{s.size} block sums but {m.size} measured latencies")
        if not (np.isfinite(m).all() and (m > 0).all()):
            raise LatbenchError("lut-sum", "measured latencies must be positive and finite")
    return s, n, r, m


def _is_constant(x: np.ndarray) -> bool:
    return bool(np.ptp(x) <= _CONSTANT_RTOL * max(1.0, float(np.abs(x).max())))


def _lstsq(columns: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Least squares on columns scaled to unit norm (GFLOPs and ms differ by decades); coefficients, full rank."""
    design = np.stack(columns, axis=1)
    norms = np.linalg.norm(design, axis=0)
    norms[norms == 0] = 1.0
    coef, _, rank, _ = np.linalg.lstsq(design / norms, y, rcond=None)
    return coef / norms, bool(rank == len(columns))


def non_block_gflop(arch: Any, batch: int, seq_len: int | None) -> float:
    """GFLOPs of everything in ``arch`` outside its blocks: embeddings and head (:mod:`latbench.models.cost`).

    The embeddings' gathers count 0 FLOPs; their cost, like the head's, grows with the
    width, so the fitted coefficient on this number carries both (see the module docstring).
    """
    from latbench.models.cost import model_cost

    cost = model_cost(arch, batch, seq_len)
    return float(cost.embedding.flops + cost.head.flops) / 1e9


def _workload_of(workload: Mapping[str, Any], where: str) -> tuple[int, int | None]:
    batch = workload.get("batch")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise LatbenchError(
            where, "does not record its batch; the non-block term needs it (pass batch=, or fit without it)"
        )
    seq_len = workload.get("seq_len")
    return batch, None if seq_len is None else int(seq_len)


@dataclass(frozen=True)
class LutSumModel:
    """``e2e_ms = a · Σ blocks_ms + b · n_blocks + c + d · rest_gflop`` for one deployment and workload.

    Attributes:
        a, b, c: The overhead fit (``a=1, b=c=0`` is the plain sum).
        d: ms per GFLOP of the non-block part (embeddings + head, :func:`non_block_gflop`); 0 when not fitted.
        device, deploy, workload: Where the fit holds (as in the table's metadata); ``workload``'s
            batch and sequence length are those at which ``rest_gflop`` is computed.
        report: Accuracy on the models it was fitted on (plain sum, without ``d``, fitted).
    """

    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    device: str | None = None
    deploy: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    report: FitReport | None = None

    def __post_init__(self) -> None:
        for name in ("a", "b", "c", "d"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise LatbenchError(f"lut-sum.{name}", f"expected a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def has_rest_term(self) -> bool:
        """Whether predictions need the non-block cost (``d != 0``)."""
        return self.d != 0.0

    def predict(self, sum_of_blocks_ms: Any, n_blocks: Any, rest_gflop: Any = None) -> np.ndarray | float:
        """Predicted end-to-end ms for block sums, block counts and non-block GFLOPs (scalars or arrays).

        Raises:
            LatbenchError: ``rest_gflop`` missing while the model has a non-block term.
        """
        scalar = np.ndim(sum_of_blocks_ms) == 0
        s, n, r, _ = _arrays(sum_of_blocks_ms, n_blocks, rest_gflop)
        out = self.a * s + self.b * n + self.c
        if self.has_rest_term:
            if r is None:
                raise LatbenchError(
                    "lut-sum",
                    f"the model has a non-block term (d = {self.d:.4g} ms/GFLOP): give rest_gflop "
                    "(non_block_gflop of each architecture) or use predict_arch",
                )
            out = out + self.d * r
        return float(out[0]) if scalar else out

    def rest_gflop(self, arch: Any, table: Any = None, batch: int | None = None, seq_len: int | None = None) -> float:
        """``arch``'s non-block GFLOPs at the fit's workload (else the table's, else ``batch``/``seq_len``)."""
        if batch is None:
            workload = self.workload if "batch" in self.workload or table is None else table.meta.workload
            where = "lut-sum model" if workload is self.workload else table.origin
            batch, seq_len = _workload_of(workload, where)
        return non_block_gflop(arch, batch, seq_len)

    def end_to_end_ms(self, arch: Any, sum_of_blocks_ms: float, table: Any = None) -> float:
        """End-to-end ms of ``arch`` given its block sum (e.g. from :meth:`LookupTable.arch_latency`)."""
        rest = self.rest_gflop(arch, table) if self.has_rest_term else None
        return float(self.predict(sum_of_blocks_ms, arch.n_layers, rest))

    def predict_arch(self, table: Any, arch: Any, extrapolate: bool = False, force: bool = False) -> float:
        """End-to-end ms of ``arch`` from a :class:`~latbench.lut.table.LookupTable` in ms."""
        self.check_table(table, force)
        return self.end_to_end_ms(arch, table.arch_latency_ms(arch, extrapolate=extrapolate, force=force), table)

    def check_table(self, table: Any, force: bool = False) -> None:
        """Refuse a table measured at another workload than the fit's, unless ``force``."""
        have = table.meta.workload
        for key in ("batch", "seq_len", "image_size", "patch_size"):
            if key in self.workload and key in have and have[key] != self.workload[key] and not force:
                raise LatbenchError(
                    table.origin,
                    f"its workload.{key} is {have[key]}, the LUT-sum model was fitted at {self.workload[key]}; "
                    "use --force (force=True in Python) to use it anyway",
                )

    def evaluate(self, sum_of_blocks_ms: Any, n_blocks: Any, measured_ms: Any, rest_gflop: Any = None) -> FitReport:
        """Accuracy on (other) measured models, of the plain sum and of this fit."""
        s, n, r, m = _arrays(sum_of_blocks_ms, n_blocks, rest_gflop, measured_ms)
        rep = self.report
        return FitReport(
            plain_sum=accuracy(s, m),
            fitted=accuracy(self.predict(s, n, r), m),
            fixed_b=rep.fixed_b if rep is not None else False,
            fixed_d=rep.fixed_d if rep is not None else not self.has_rest_term,
        )

    @classmethod
    def fit(
        cls,
        sum_of_blocks_ms: Any,
        n_blocks: Any,
        measured_ms: Any,
        rest_gflop: Any = None,
        device: str | None = None,
        deploy: Mapping[str, Any] | None = None,
        workload: Mapping[str, Any] | None = None,
    ) -> LutSumModel:
        """Least-squares fit of ``a, b, c`` (and ``d`` when ``rest_gflop`` is given) on measured whole models.

        Args:
            sum_of_blocks_ms: Per model, the sum of its block latencies from the table.
            n_blocks: Per model, its number of blocks (or one count for all).
            measured_ms: Per model, its measured end-to-end latency.
            rest_gflop: Per model, the GFLOPs outside its blocks (:func:`non_block_gflop` at the
                workload of the measurements); None fits the overhead alone (``d = 0``).
            device, deploy, workload: Recorded with the fit (``workload``'s batch and sequence
                length say where ``rest_gflop`` was computed).

        Raises:
            LatbenchError: Fewer models than parameters, or inconsistent or degenerate inputs.
        """
        s, n, r, m = _arrays(sum_of_blocks_ms, n_blocks, rest_gflop, measured_ms)
        assert m is not None
        fixed_b = _is_constant(n)
        fixed_d = r is None or _is_constant(r)
        ones = np.ones_like(s)

        def solve(with_d: bool) -> tuple[float, float, float, float]:
            cols = [s] + ([] if fixed_b else [n]) + ([r] if with_d else []) + [ones]
            if s.size < len(cols):
                raise LatbenchError(
                    "lut-sum", f"fitting {len(cols)} parameters needs at least {len(cols)} measured models"
                )
            coef, full_rank = _lstsq(cols, m)  # type: ignore[arg-type]
            if not full_rank:
                what = (
                    "block sums, block counts and non-block costs do not vary independently"
                    if with_d
                    else "block sums do not vary"
                )
                raise LatbenchError("lut-sum", f"the {what} enough to fit an overhead (rank-deficient)")
            it = iter(coef)
            a = next(it)
            b = 0.0 if fixed_b else next(it)
            d = next(it) if with_d else 0.0
            return float(a), float(b), float(next(it)), float(d)

        meta = {"device": device, "deploy": dict(deploy or {}), "workload": dict(workload or {})}
        without = cls(*solve(False)[:3], **meta)  # type: ignore[arg-type]
        model = without if fixed_d else cls(*solve(True), **meta)  # type: ignore[arg-type]
        report = FitReport(
            plain_sum=accuracy(s, m),
            fitted=accuracy(model.predict(s, n, r), m),
            fixed_b=fixed_b,
            fixed_d=fixed_d,
            without_d=None if fixed_d else accuracy(without.predict(s, n), m),
        )
        return cls(a=model.a, b=model.b, c=model.c, d=model.d, report=report, **meta)  # type: ignore[arg-type]

    @classmethod
    def fit_archs(
        cls,
        table: Any,
        archs: Sequence[Any],
        measured_ms: Any,
        *,
        rest_term: bool = True,
        extrapolate: bool = False,
        force: bool = False,
    ) -> LutSumModel:
        """Fit on whole models of ``archs`` measured at ``table``'s deployment and workload.

        Args:
            table: A :class:`~latbench.lut.table.LookupTable` in ms (its device, deployment and
                workload are recorded with the fit; its batch and sequence length price the non-block part).
            archs: The measured architectures.
            measured_ms: Their measured end-to-end latencies.
            rest_term: Fit ``d`` on the non-block GFLOPs (False: the overhead alone).
            extrapolate: Allow block points outside the table's grid (flagged by the table).
            force: Use the table for architectures of another family or workload.
        """
        sums, counts, rest = lut_features(table, archs, extrapolate=extrapolate, rest_term=rest_term, force=force)
        meta = table.meta
        return cls.fit(sums, counts, measured_ms, rest, device=meta.device, deploy=meta.deploy, workload=meta.workload)

    # --------------------------------------------------------------- file I/O
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "a": self.a,
            "b": self.b,
            "c": self.c,
            "d": self.d,
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
            raise LatbenchError(
                where, f"unsupported schema_version {version!r} (this latbench reads 1..{SCHEMA_VERSION})"
            )
        names = {f.name for f in fields(cls)} - ({"d"} if version == 1 else set())
        unknown = sorted(set(data) - names - {"format", "schema_version"})
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        # Version 1 predates the non-block term: such a model is the overhead alone (d = 0).
        for key in ("a", "b", "c") + (("d",) if version >= 2 else ()):
            if key not in data:
                raise LatbenchError(where, f"missing key {key!r}")
        for key in ("deploy", "workload"):
            if not isinstance(data.get(key, {}), Mapping):
                raise LatbenchError(where, f"{key}: expected an object")
        report = None
        if data.get("report") is not None:
            try:
                report = FitReport.from_dict(data["report"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise LatbenchError(where, "report: malformed fit report") from None
        try:
            return cls(
                a=data["a"],
                b=data["b"],
                c=data["c"],
                d=data.get("d", 0.0),
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


def load_overhead(path: str | os.PathLike[str]) -> LutSumModel:
    """Read a LUT-sum fit: its JSON file, or a ``lut-sum`` predictor directory (from ``train-predictor``).

    Raises:
        LatbenchError: Neither (one line naming the path).
    """
    p = Path(path)
    if p.is_dir():
        from latbench.predictors.persist import load_predictor

        predictor = load_predictor(p)
        if predictor.name != "lut-sum":
            raise LatbenchError(
                str(p), f"a {predictor.name} predictor, not a lut-sum one (train-predictor --model lut-sum)"
            )
        return predictor.model  # type: ignore[attr-defined,no-any-return]
    return LutSumModel.load(p)


def block_sums(table: Any, archs: Sequence[Any], extrapolate: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per architecture, the sum of its block latencies (ms) from ``table`` and its block count."""
    sums = np.array([table.arch_latency_ms(a, extrapolate=extrapolate) for a in archs], dtype=np.float64)
    counts = np.array([a.n_layers for a in archs], dtype=np.float64)
    return sums, counts


def lut_features(
    table: Any,
    archs: Sequence[Any],
    *,
    extrapolate: bool = False,
    rest_term: bool = True,
    force: bool = False,
    batch: int | None = None,
    seq_len: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per architecture: block sum (ms) from ``table``, block count, and non-block GFLOPs (None without ``rest_term``).

    The non-block GFLOPs are computed at ``batch``/``seq_len``, by default the table's workload.
    """
    sums = np.array([table.arch_latency_ms(a, extrapolate=extrapolate, force=force) for a in archs], dtype=np.float64)
    counts = np.array([a.n_layers for a in archs], dtype=np.float64)
    if not rest_term:
        return sums, counts, None
    if batch is None:
        batch, seq_len = _workload_of(table.meta.workload, table.origin)
    rest = np.array([non_block_gflop(a, batch, seq_len) for a in archs], dtype=np.float64)
    return sums, counts, rest
