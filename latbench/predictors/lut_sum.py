"""``lut-sum``: a look-up table's block latencies summed, the non-block part, and the fitted overhead.

A thin predictor around :mod:`latbench.lut`: the features of a row are the sum
of its architecture's block latencies read from a :class:`~latbench.lut.LookupTable`
(in ms), its block count and, when the feature set has the column ``rest_gflop``,
the analytic GFLOPs of its embeddings and head at the row's workload
(:func:`~latbench.lut.non_block_gflop`); :class:`~latbench.lut.LutSumModel` fits
``e2e_ms ≈ a·Σblocks + b·n_blocks + c (+ d·rest_gflop)`` on measured whole
models (see :mod:`latbench.lut.latency_model` for why the non-block term is a
coefficient on analytic FLOPs). The columns come from the feature set
(:data:`latbench.predictors.features.LUT_FEATURES`), so a predictor saved with
two columns loads and predicts as it did. The interval comes from the quantiles
of the relative residuals on the validation set.

The table travels with the predictor (``lut.json`` in its directory), so a saved
``lut-sum`` predictor needs no other file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.predictors.base import (
    Prediction,
    Predictor,
    PredictorConfig,
    check_matrix,
    check_quantiles,
    log_target,
)
from latbench.predictors.data import Validity
from latbench.predictors.features import FeatureSpec, parse_archs

#: The feature columns lut-sum knows: the first two always, the non-block GFLOPs when the feature set has them.
LUT_COLUMNS: tuple[str, ...] = ("lut_sum_ms", "n_blocks", "rest_gflop")
REST_COLUMN = "rest_gflop"

# A fitted overhead can make a tiny model's latency negative; a latency is at least this (ms).
MIN_LATENCY_MS = 1e-6


@dataclass(frozen=True)
class LutSumConfig(PredictorConfig):
    """Settings of the ``lut-sum`` predictor.

    Attributes:
        extrapolate: Allow block points outside the table's grid (linear extrapolation) instead of refusing.
        interval_low, interval_high: Quantiles of the relative residuals for the interval.
    """

    extrapolate: bool = False
    interval_low: float = 0.05
    interval_high: float = 0.95

    def __post_init__(self) -> None:
        check_quantiles(self.interval_low, self.interval_high)


class LutSumPredictor(Predictor):
    """Σ block latencies from a LUT + fitted overhead (see the module docstring)."""

    name = "lut-sum"
    config_class = LutSumConfig
    config: LutSumConfig

    def __init__(self, config: Any = None, features: Any = None) -> None:
        super().__init__(config, features)
        self.table: Any = None
        self.model: Any = None
        self.q_low = 0.0
        self.q_high = 0.0

    # ------------------------------------------------------------ the table
    def set_lut(self, lut: str | os.PathLike[str] | Any) -> LutSumPredictor:
        """Use this look-up table (a ``latbench-lut`` file or a :class:`~latbench.lut.LookupTable`)."""
        from latbench.lut import LookupTable

        table = lut if isinstance(lut, LookupTable) else LookupTable.load(lut)
        if table.meta.unit != "ms":
            raise LatbenchError(table.origin, "values are not in ms; import the table saying its unit (--unit s|ms)")
        if table.meta.family is None:
            raise LatbenchError(table.origin, "the table does not record its model family")
        self.table = table
        self.features = FeatureSpec.for_lut(table.meta.family)
        return self

    def _table(self) -> Any:
        if self.table is None:
            raise LatbenchError("lut-sum", "no look-up table: give one (--lut FILE) to fit a lut-sum predictor")
        return self.table

    def check_lut(self, data: Validity, force: bool = False) -> list[str]:
        """Refuse a table measured on another device, deployment or workload than ``data``, unless ``force``."""
        table = self._table()
        workload: dict[str, Any] = {}
        for key, (lo, hi) in data.workload.items():
            if lo != hi:
                raise LatbenchError(
                    "lut-sum", f"the data spans {key} {lo}..{hi}; a look-up table holds one workload (filter the data)"
                )
            workload[key] = lo
        return table.check_compatible(device=data.device, deploy=data.deploy, workload=workload, force=force)

    def _workload_check(self, batch: Any, seq_len: Any) -> None:
        meta = self._table().meta.workload
        for key, value in (("batch", batch), ("seq_len", seq_len)):
            if value is None or key not in meta:
                continue
            values = np.unique(np.asarray(value, dtype=np.float64))
            if values.size != 1 or values[0] != meta[key]:
                raise LatbenchError(f"--{key.replace('_len', '')}", f"the look-up table holds {key}={meta[key]} only")

    def _columns(self) -> tuple[str, ...]:
        cols = self.features.columns if self.features is not None else ()
        unknown = [c for c in cols if c not in LUT_COLUMNS]
        if len(cols) < 2 or cols[:2] != LUT_COLUMNS[:2] or unknown:
            raise LatbenchError("features", f"lut-sum reads the columns {', '.join(LUT_COLUMNS)}, not {cols}")
        return tuple(cols)

    def _matrix(self, archs: Sequence[Any], batch: Any, seq_len: Any) -> np.ndarray:
        """Rows of (block sum, block count[, non-block GFLOPs at that row's batch and sequence length])."""
        from latbench.lut import block_sums, non_block_gflop

        try:
            sums, counts = block_sums(self._table(), archs, extrapolate=self.config.extrapolate)
        except LatbenchError as exc:
            if "outside the grid" not in exc.what:
                raise
            # the table's hint names lut query's flag; a predictor takes it as a setting
            what = exc.what.split(" (--extrapolate")[0]
            raise LatbenchError(
                exc.where, f"{what} (--param extrapolate=true / extrapolate=True to go beyond it)"
            ) from None
        cols = {"lut_sum_ms": sums, "n_blocks": counts}
        names = self._columns()
        if REST_COLUMN in names:
            n = len(archs)
            batches = np.broadcast_to(np.asarray(batch, dtype=object), (n,))
            seqs = np.broadcast_to(np.asarray(seq_len, dtype=object), (n,))
            cols[REST_COLUMN] = np.array(
                [
                    non_block_gflop(a, int(b), None if s is None or s != s else int(s))
                    for a, b, s in zip(archs, batches, seqs)
                ],
                dtype=np.float64,
            )
        return np.column_stack([cols[c] for c in names])

    def featurize(self, frame: Any) -> np.ndarray:
        if "arch" not in frame.columns:
            raise LatbenchError("data", "lut-sum needs architectures (a result store), not an imported table")
        texts = frame["arch"].astype(str).to_numpy()
        meta = self._table().meta.workload
        batch = frame["batch"].to_numpy() if "batch" in frame.columns else np.full(len(frame), meta.get("batch"))
        if "seq_len" in frame.columns:
            seq = frame["seq_len"].to_numpy()
        else:
            seq = np.full(len(frame), meta.get("seq_len"), dtype=object)
        keys = np.array([f"{t}|{b}|{s}" for t, b, s in zip(texts, batch, seq)])
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        archs = parse_archs(texts[first].tolist())
        missing = [b for b in batch[first] if b is None or b != b]
        if missing and REST_COLUMN in self._columns():
            raise LatbenchError("data", "the non-block term needs each row's batch (column 'batch')")
        return self._matrix([archs[t] for t in texts[first]], batch[first], seq[first])[inverse]

    def featurize_archs(self, archs: Sequence[Any], batch: Any = 1, seq_len: Any = None) -> np.ndarray:
        self._workload_check(batch, seq_len)
        if seq_len is None:
            seq_len = self._table().meta.workload.get("seq_len")
        return self._matrix(list(archs), batch, seq_len)

    # ------------------------------------------------------------ the model
    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> LutSumPredictor:
        from latbench.lut import LutSumModel

        meta = self._table().meta
        x = self._check(x)
        y = np.exp(log_target(y_ms))
        self.model = LutSumModel.fit(
            x[:, 0], x[:, 1], y, self._rest(x), device=meta.device, deploy=meta.deploy, workload=meta.workload
        )
        self.fitted = True
        if x_val is not None and y_val_ms is not None and len(y_val_ms):
            resid = log_target(y_val_ms) - np.log(self._point(x_val))
        else:
            resid = np.log(y) - np.log(self._point(x))
        self.q_low = float(min(0.0, np.quantile(resid, self.config.interval_low)))
        self.q_high = float(max(0.0, np.quantile(resid, self.config.interval_high)))
        return self

    def _check(self, x: Any) -> np.ndarray:
        return check_matrix(x, len(self._columns()))

    def _rest(self, x: np.ndarray) -> np.ndarray | None:
        names = self._columns()
        return x[:, names.index(REST_COLUMN)] if REST_COLUMN in names else None

    def _point(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        x = self._check(x)
        ms = np.asarray(self.model.predict(x[:, 0], x[:, 1], self._rest(x)), dtype=np.float64)
        return np.maximum(ms, MIN_LATENCY_MS)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self._point(x)

    def predict_interval(self, x: np.ndarray) -> Prediction:
        p = self._point(x)
        return Prediction(p, p * np.exp(self.q_low), p * np.exp(self.q_high))

    # ---------------------------------------------------------- persistence
    def save_state(self, directory: Path) -> dict[str, Any]:
        self._require_fitted()
        self._table().save(directory / "lut.json")
        self.model.save(directory / "lut_sum.json")
        return {"lut_file": "lut.json", "model_file": "lut_sum.json", "q_low": self.q_low, "q_high": self.q_high}

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        from latbench.lut import LutSumModel

        where = str(directory / "predictor.json")
        names = [state.get("lut_file"), state.get("model_file")]
        if not all(isinstance(n, str) for n in names):
            raise LatbenchError(where, "state: expected lut_file and model_file names")
        try:
            self.q_low, self.q_high = float(state["q_low"]), float(state["q_high"])
        except (KeyError, TypeError, ValueError):
            raise LatbenchError(where, "state: malformed interval quantiles") from None
        spec = self.features
        self.set_lut(directory / str(names[0]))
        if spec is not None and spec != self.features:
            raise LatbenchError(where, "the saved feature set does not match the table's family")
        self.model = LutSumModel.load(directory / str(names[1]))
        self.fitted = True
