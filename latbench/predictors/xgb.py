"""``xgboost``: gradient-boosted trees on log latency, with a quantile booster for the interval.

The point model minimises the absolute error of ``log(ms)`` by default: its
prediction is the median latency given the features, and an absolute error in
log space is a relative error in ms, the error a latency budget cares about (and
robust to the drifting outliers measured latency data sets hold). A second
booster learns the ``interval_low`` and ``interval_high`` quantiles of
``log(ms)``; it only runs when an interval is asked for, so :meth:`predict` stays
one booster.

xgboost is imported here only, on first use (``pip install 'latbench[xgboost]'``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.predictors.base import (
    Prediction,
    Predictor,
    PredictorConfig,
    check_matrix,
    check_positive,
    check_quantiles,
    log_target,
)

OBJECTIVES: dict[str, str] = {"absolute": "reg:absoluteerror", "squared": "reg:squarederror"}


def import_xgboost() -> Any:
    """The xgboost module, or a one-line error naming the extra to install."""
    try:
        import xgboost
    except ImportError:
        raise MissingDependencyError(
            "xgboost", "the xgboost predictor needs xgboost: pip install 'latbench[xgboost]'"
        ) from None
    return xgboost


@dataclass(frozen=True)
class XGBoostConfig(PredictorConfig):
    """Hyperparameters of the ``xgboost`` predictor.

    Attributes:
        n_estimators: Most boosting rounds (early stopping on the validation set picks fewer).
        rounds_without_validation: Rounds when fitted without a validation set.
        learning_rate, max_depth, min_child_weight, subsample, colsample_bytree, reg_lambda:
            xgboost's tree parameters.
        objective: ``absolute`` (median of log latency) or ``squared`` (mean of log latency).
        early_stopping_rounds: Stop when the validation error has not improved for this many rounds.
        interval_low, interval_high: Quantiles of the interval.
        n_jobs: Threads for fitting and predicting (0: all usable cores).
    """

    n_estimators: int = 3000
    rounds_without_validation: int = 300
    learning_rate: float = 0.05
    max_depth: int = 3
    min_child_weight: float = 1.0
    subsample: float = 0.8
    colsample_bytree: float = 1.0
    reg_lambda: float = 1.0
    objective: str = "absolute"
    early_stopping_rounds: int = 100
    interval_low: float = 0.05
    interval_high: float = 0.95
    n_jobs: int = 0

    def __post_init__(self) -> None:
        check_positive(self, "n_estimators", "rounds_without_validation", "learning_rate", "max_depth")
        check_positive(self, "early_stopping_rounds")
        if self.objective not in OBJECTIVES:
            raise LatbenchError("objective", f"expected one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if not 0 < self.subsample <= 1 or not 0 < self.colsample_bytree <= 1:
            raise LatbenchError("subsample", "subsample and colsample_bytree must lie in (0, 1]")
        if self.min_child_weight < 0 or self.reg_lambda < 0 or self.n_jobs < 0:
            raise LatbenchError("min_child_weight", "min_child_weight, reg_lambda and n_jobs must be >= 0")
        check_quantiles(self.interval_low, self.interval_high)


class XGBoostPredictor(Predictor):
    """Gradient-boosted trees on ``log(ms)`` (see the module docstring)."""

    name = "xgboost"
    config_class = XGBoostConfig
    config: XGBoostConfig

    def __init__(self, config: Any = None, features: Any = None) -> None:
        super().__init__(config, features)
        self._point: Any = None
        self._interval: Any = None
        self.best_rounds: int | None = None

    def _threads(self) -> int:
        if self.config.n_jobs:
            return self.config.n_jobs
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:
            return os.cpu_count() or 1

    def _params(self, seed: int, base_score: float) -> dict[str, Any]:
        c = self.config
        return {
            "eta": c.learning_rate,
            "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight,
            "subsample": c.subsample,
            "colsample_bytree": c.colsample_bytree,
            "lambda": c.reg_lambda,
            "tree_method": "hist",
            "seed": int(seed),
            "nthread": self._threads(),
            "base_score": base_score,
            "verbosity": 0,
        }

    def _train(self, params: dict[str, Any], dtrain: Any, dval: Any | None, metric: str) -> Any:
        xgb = import_xgboost()
        c = self.config
        if dval is None:
            return xgb.train(params, dtrain, num_boost_round=c.rounds_without_validation)
        booster = xgb.train(
            {**params, "eval_metric": metric},
            dtrain,
            num_boost_round=c.n_estimators,
            evals=[(dval, "val")],
            early_stopping_rounds=c.early_stopping_rounds,
            verbose_eval=False,
        )
        return booster[: booster.best_iteration + 1]

    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> XGBoostPredictor:
        xgb = import_xgboost()
        spec = self._spec()
        x = check_matrix(x, spec.n_features)
        y = log_target(y_ms)
        if x.shape[0] != y.size:
            raise LatbenchError(self.name, f"{x.shape[0]} feature rows but {y.size} latencies")
        dtrain = xgb.DMatrix(x, label=y)
        dval = None
        if x_val is not None and y_val_ms is not None and len(y_val_ms):
            dval = xgb.DMatrix(check_matrix(x_val, spec.n_features, "validation features"), label=log_target(y_val_ms))
        base = float(np.median(y))
        c = self.config
        point_params = {**self._params(seed, base), "objective": OBJECTIVES[c.objective]}
        metric = "mae" if c.objective == "absolute" else "rmse"
        self._point = self._train(point_params, dtrain, dval, metric)
        quantile_params = {
            **self._params(seed + 1, base),
            "objective": "reg:quantileerror",
            "quantile_alpha": np.array([c.interval_low, c.interval_high]),
        }
        self._interval = self._train(quantile_params, dtrain, dval, "quantile")
        self.best_rounds = self._point.num_boosted_rounds()
        self.fitted = True
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        x = check_matrix(x, self._spec().n_features)
        return np.exp(np.asarray(self._point.inplace_predict(x), dtype=np.float64))

    def predict_interval(self, x: np.ndarray) -> Prediction:
        self._require_fitted()
        x = check_matrix(x, self._spec().n_features)
        point = np.asarray(self._point.inplace_predict(x), dtype=np.float64)
        q = np.asarray(self._interval.inplace_predict(x), dtype=np.float64).reshape(x.shape[0], 2)
        return Prediction.from_log(point, q[:, 0], q[:, 1])

    def set_threads(self, n: int) -> None:
        """Threads for prediction from now on (e.g. 1 to measure one core)."""
        self._require_fitted()
        for booster in (self._point, self._interval):
            booster.set_param({"nthread": int(n)})

    # ---------------------------------------------------------- persistence
    def save_state(self, directory: Path) -> dict[str, Any]:
        from latbench.io import atomic_write

        self._require_fitted()
        for fname, booster in (("model.ubj", self._point), ("interval.ubj", self._interval)):
            raw = bytes(booster.save_raw(raw_format="ubj"))
            atomic_write(directory / fname, lambda tmp, raw=raw: tmp.write_bytes(raw))
        return {"point_file": "model.ubj", "interval_file": "interval.ubj", "best_rounds": self.best_rounds}

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        xgb = import_xgboost()
        boosters = []
        for key in ("point_file", "interval_file"):
            fname = state.get(key)
            if not isinstance(fname, str):
                raise LatbenchError(str(directory / "predictor.json"), f"state.{key}: expected a file name")
            path = directory / fname
            try:
                raw = path.read_bytes()
            except OSError:
                raise LatbenchError(str(path), "missing or unreadable model file") from None
            booster = xgb.Booster()
            try:
                booster.load_model(bytearray(raw))
            except xgb.core.XGBoostError:
                raise LatbenchError(str(path), "not an xgboost model (corrupt or truncated)") from None
            if booster.num_features() != self._spec().n_features:
                raise LatbenchError(
                    str(path), f"has {booster.num_features()} features, the feature set {self._spec().n_features}"
                )
            booster.set_param({"nthread": self._threads()})
            boosters.append(booster)
        self._point, self._interval = boosters
        self.best_rounds = state.get("best_rounds")
        self.fitted = True
