"""``lut-sum``: a look-up table's block latencies summed, plus the fitted per-deployment overhead.

A thin predictor around :mod:`latbench.lut`: the features of a row are the sum
of its architecture's block latencies read from a :class:`~latbench.lut.LookupTable`
(in ms) and its block count; :class:`~latbench.lut.LutSumModel` fits
``e2e_ms ≈ a·Σblocks + b·n_blocks + c`` on measured whole models. The interval
comes from the quantiles of the relative residuals on the validation set.

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

# A fitted overhead can make a tiny model's latency negative; a latency is at least this (ms).
_FLOOR_MS = 1e-6


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

    def _sums(self, archs: Sequence[Any]) -> np.ndarray:
        from latbench.lut import block_sums

        sums, counts = block_sums(self._table(), archs, extrapolate=self.config.extrapolate)
        return np.column_stack([sums, counts])

    def featurize(self, frame: Any) -> np.ndarray:
        if "arch" not in frame.columns:
            raise LatbenchError("data", "lut-sum needs architectures (a result store), not an imported table")
        texts = frame["arch"].astype(str).to_numpy()
        uniq, inverse = np.unique(texts, return_inverse=True)
        archs = parse_archs(uniq.tolist())
        return self._sums([archs[u] for u in uniq])[inverse]

    def featurize_archs(self, archs: Sequence[Any], batch: Any = 1, seq_len: Any = None) -> np.ndarray:
        self._workload_check(batch, seq_len)
        return self._sums(list(archs))

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
        x = check_matrix(x, 2)
        y = np.exp(log_target(y_ms))
        self.model = LutSumModel.fit(
            x[:, 0], x[:, 1], y, device=meta.device, deploy=meta.deploy, workload=meta.workload
        )
        self.fitted = True
        if x_val is not None and y_val_ms is not None and len(y_val_ms):
            resid = log_target(y_val_ms) - np.log(self._point(check_matrix(x_val, 2)))
        else:
            resid = np.log(y) - np.log(self._point(x))
        self.q_low = float(min(0.0, np.quantile(resid, self.config.interval_low)))
        self.q_high = float(max(0.0, np.quantile(resid, self.config.interval_high)))
        return self

    def _point(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        x = check_matrix(x, 2)
        return np.maximum(np.asarray(self.model.predict(x[:, 0], x[:, 1]), dtype=np.float64), _FLOOR_MS)

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
