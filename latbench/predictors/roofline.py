"""``roofline-linear``: the baseline. Linear regression of log latency on log FLOPs, bytes and blocks.

``log(ms) = w·log(1 + [flops, bytes, n_blocks]) + c`` by least squares: a latency
that is a power law of the work, the traffic and the per-block overhead. For an
imported table (no FLOPs), the logs of all given columns. The interval comes from
the quantiles of the residuals on the validation set (on the training set without
one), a split-conformal interval in log space.
"""

from __future__ import annotations

from collections.abc import Mapping
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
    fit_log_linear,
    log_features,
    log_target,
)

#: The regressors of the ``arch`` feature set.
ARCH_REGRESSORS: tuple[str, ...] = ("flops", "bytes", "n_blocks")


@dataclass(frozen=True)
class RooflineLinearConfig(PredictorConfig):
    """Settings of the ``roofline-linear`` baseline.

    Attributes:
        columns: Feature columns to regress on (empty: flops, bytes, n_blocks; for a table, all).
        ridge: L2 penalty on the weights (not the intercept), for collinear columns.
        interval_low, interval_high: Residual quantiles of the interval.
    """

    columns: tuple[str, ...] = ()
    ridge: float = 1e-6
    interval_low: float = 0.05
    interval_high: float = 0.95

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", tuple(self.columns))
        if self.ridge < 0:
            raise LatbenchError("ridge", f"must be >= 0, got {self.ridge}")
        check_quantiles(self.interval_low, self.interval_high)


class RooflineLinearPredictor(Predictor):
    """Log-linear baseline (see the module docstring)."""

    name = "roofline-linear"
    config_class = RooflineLinearConfig
    config: RooflineLinearConfig

    def __init__(self, config: Any = None, features: Any = None) -> None:
        super().__init__(config, features)
        self.coef: np.ndarray | None = None
        self.intercept = 0.0
        self.q_low = 0.0
        self.q_high = 0.0

    def _column_index(self) -> list[int]:
        spec = self._spec()
        names = self.config.columns or (ARCH_REGRESSORS if spec.kind == "arch" else spec.columns)
        missing = [c for c in names if c not in spec.columns]
        if missing:
            raise LatbenchError("columns", f"{missing[0]!r} is not a feature of this data ({spec.kind} features)")
        return [spec.columns.index(c) for c in names]

    def _design(self, x: np.ndarray) -> np.ndarray:
        x = check_matrix(x, self._spec().n_features)
        return log_features(x[:, self._column_index()])

    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> RooflineLinearPredictor:
        z = self._design(x)
        y = log_target(y_ms)
        if z.shape[0] != y.size:
            raise LatbenchError(self.name, f"{z.shape[0]} feature rows but {y.size} latencies")
        coef, self.intercept = fit_log_linear(z, y, self.config.ridge)
        self.coef = coef
        if x_val is not None and y_val_ms is not None and len(y_val_ms):
            resid = log_target(y_val_ms) - (self._design(x_val) @ coef + self.intercept)
        else:
            resid = y - (z @ coef + self.intercept)
        self.q_low = float(min(0.0, np.quantile(resid, self.config.interval_low)))
        self.q_high = float(max(0.0, np.quantile(resid, self.config.interval_high)))
        self.fitted = True
        return self

    def _log_point(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return self._design(x) @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self._log_point(x))

    def predict_interval(self, x: np.ndarray) -> Prediction:
        lp = self._log_point(x)
        return Prediction.from_log(lp, lp + self.q_low, lp + self.q_high)

    def save_state(self, directory: Path) -> dict[str, Any]:
        self._require_fitted()
        assert self.coef is not None
        spec = self._spec()
        return {
            "columns": [spec.columns[i] for i in self._column_index()],
            "coef": [float(c) for c in self.coef],
            "intercept": self.intercept,
            "q_low": self.q_low,
            "q_high": self.q_high,
        }

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        where = str(directory / "predictor.json")
        try:
            coef = np.asarray(state["coef"], dtype=np.float64)
            self.intercept, self.q_low, self.q_high = (float(state[k]) for k in ("intercept", "q_low", "q_high"))
            columns = list(state["columns"])
        except (KeyError, TypeError, ValueError):
            raise LatbenchError(where, "state: malformed roofline-linear coefficients") from None
        if columns != [self._spec().columns[i] for i in self._column_index()] or coef.shape != (len(columns),):
            raise LatbenchError(where, "state: coefficients do not match the regressor columns")
        self.coef = coef
        self.fitted = True
