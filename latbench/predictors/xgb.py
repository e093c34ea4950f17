"""``xgboost``: gradient-boosted trees on log latency, with a quantile booster for the interval.

- **Base**: the trees start from a log-linear model of the features (``log ms ≈
  w·log(1 + x) + c``, ridge), passed to xgboost as the base margin, and learn
  what it misses. Latency is close to a power law of FLOPs and bytes; trees alone
  approximate that smooth trend with hundreds of steps and cannot extrapolate it,
  while on top of it a few dozen trees suffice (faster to predict, too).
- **Point**: minimises the absolute error of ``log(ms)`` by default: the median
  latency given the features, and an absolute error in log space is a relative
  error in ms, the error a latency budget cares about (robust, too, to the
  drifting outliers measured data sets hold).
- **Interval**: a second booster learns the ``interval_low`` / ``interval_high``
  quantiles of ``log(ms)``, widened (or narrowed) on the validation set by
  conformalised quantile regression so that it covers what it claims on new
  architectures. It only runs when an interval is asked for.

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
    conformal_margin,
    fit_log_linear,
    log_features,
    log_target,
)

OBJECTIVES: dict[str, str] = {"absolute": "reg:absoluteerror", "squared": "reg:squarederror"}
BASES: tuple[str, ...] = ("log-linear", "constant")


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
        base: ``log-linear`` (trees on top of a ridge fit of log latency on log features) or ``constant``.
        base_ridge: Ridge penalty of the log-linear base.
        early_stopping_rounds: Stop when the validation error has not improved for this many rounds.
        interval_low, interval_high: Quantiles of the interval.
        interval_learning_rate: Learning rate of the quantile booster.
        n_jobs: Threads for fitting and predicting (0: all usable cores).
        num_parallel_tree: Trees grown per round and averaged (xgboost's boosted random forest;
            with ``subsample`` < 1 each sees other rows: bagging inside the booster).
        monotone: Constrain the trees (what they add to the base) so that no feature that counts
            work (widths, layers, FLOPs, bytes, the workload) lowers the predicted latency as it
            grows; only the arithmetic intensity is left free. Needs ``objective=squared``.
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
    base: str = "log-linear"
    base_ridge: float = 1e-4
    early_stopping_rounds: int = 100
    interval_low: float = 0.05
    interval_high: float = 0.95
    interval_learning_rate: float = 0.1
    n_jobs: int = 0
    num_parallel_tree: int = 1
    monotone: bool = False

    def __post_init__(self) -> None:
        check_positive(self, "num_parallel_tree")
        if not isinstance(self.monotone, bool):
            raise LatbenchError("monotone", f"expected true or false, got {self.monotone!r}")
        if self.monotone and self.objective == "absolute":
            # xgboost re-fits the leaves of an L1 objective after growing each tree, ignoring the
            # constraints (0.5% violations measured on a noisy store); squared error keeps them.
            raise LatbenchError(
                "monotone", "needs objective=squared (xgboost re-fits absolute-error leaves unconstrained)"
            )
        check_positive(self, "n_estimators", "rounds_without_validation", "learning_rate", "max_depth")
        check_positive(self, "early_stopping_rounds", "interval_learning_rate")
        if self.objective not in OBJECTIVES:
            raise LatbenchError("objective", f"expected one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        if self.base not in BASES:
            raise LatbenchError("base", f"expected one of {', '.join(BASES)}, got {self.base!r}")
        if self.base_ridge < 0:
            raise LatbenchError("base_ridge", f"must be >= 0, got {self.base_ridge}")
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
        self.base_coef = np.zeros(0)
        self.base_intercept = 0.0
        self.interval_margin = 0.0

    def _threads(self) -> int:
        if self.config.n_jobs:
            return self.config.n_jobs
        try:
            return len(os.sched_getaffinity(0))
        except AttributeError:
            return os.cpu_count() or 1

    def _margin(self, x: np.ndarray) -> np.ndarray:
        """The base model's log latency (the boosters' starting point)."""
        if self.base_coef.size == 0:
            return np.full(x.shape[0], self.base_intercept)
        return log_features(x) @ self.base_coef + self.base_intercept

    def _params(self, seed: int) -> dict[str, Any]:
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
            "verbosity": 0,
            **({"num_parallel_tree": c.num_parallel_tree} if c.num_parallel_tree > 1 else {}),
        }

    def _monotone(self) -> dict[str, Any]:
        """xgboost's ``monotone_constraints`` for :attr:`XGBoostConfig.monotone` (arch features only)."""
        spec = self._spec()
        if not self.config.monotone or spec.kind != "arch":
            return {}
        signs = ",".join("0" if col == "intensity" else "1" for col in spec.columns)
        return {"monotone_constraints": f"({signs})"}

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
        c = self.config
        if c.base == "log-linear":
            self.base_coef, self.base_intercept = fit_log_linear(log_features(x), y, c.base_ridge)
        else:
            self.base_coef, self.base_intercept = np.zeros(0), float(np.median(y))
        dtrain = xgb.DMatrix(x, label=y, base_margin=self._margin(x))
        dval = xv = yv = None
        if x_val is not None and y_val_ms is not None and len(y_val_ms):
            xv = check_matrix(x_val, spec.n_features, "validation features")
            yv = log_target(y_val_ms)
            dval = xgb.DMatrix(xv, label=yv, base_margin=self._margin(xv))
        point_params = {**self._params(seed), **self._monotone(), "objective": OBJECTIVES[c.objective]}
        metric = "mae" if c.objective == "absolute" else "rmse"
        self._point = self._train(point_params, dtrain, dval, metric)
        quantile_params = {
            **self._params(seed + 1),
            "eta": c.interval_learning_rate,
            "objective": "reg:quantileerror",
            "quantile_alpha": np.array([c.interval_low, c.interval_high]),
        }
        # The quantile booster has two outputs: each starts from the base margin.
        qtrain = xgb.DMatrix(x, label=y, base_margin=np.repeat(self._margin(x)[:, None], 2, axis=1))
        qval = None
        if xv is not None:
            qval = xgb.DMatrix(xv, label=yv, base_margin=np.repeat(self._margin(xv)[:, None], 2, axis=1))
        self._interval = self._train(quantile_params, qtrain, qval, "quantile")
        self.best_rounds = self._point.num_boosted_rounds()
        self.fitted = True
        self.interval_margin = 0.0
        if xv is not None and yv is not None:
            q = self._quantiles(xv)
            self.interval_margin = conformal_margin(q[:, 0], q[:, 1], yv, c.interval_high - c.interval_low)
        return self

    def _quantiles(self, x: np.ndarray) -> np.ndarray:
        margin = self._margin(x)
        q = np.asarray(self._interval.inplace_predict(x, base_margin=np.column_stack([margin, margin])))
        return q.reshape(x.shape[0], 2).astype(np.float64)

    def _log_point(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        x = check_matrix(x, self._spec().n_features)
        return np.asarray(self._point.inplace_predict(x, base_margin=self._margin(x)), dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self._log_point(x))

    def predict_interval(self, x: np.ndarray) -> Prediction:
        point = self._log_point(x)
        q = self._quantiles(check_matrix(x, self._spec().n_features))
        return Prediction.from_log(point, q[:, 0] - self.interval_margin, q[:, 1] + self.interval_margin)

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
        return {
            "point_file": "model.ubj",
            "interval_file": "interval.ubj",
            "best_rounds": self.best_rounds,
            "base_coef": [float(w) for w in self.base_coef],
            "base_intercept": self.base_intercept,
            "interval_margin": self.interval_margin,
        }

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        xgb = import_xgboost()
        where = str(directory / "predictor.json")
        try:
            coef = np.asarray(state.get("base_coef", []), dtype=np.float64)
            intercept, margin = float(state["base_intercept"]), float(state["interval_margin"])
        except (KeyError, TypeError, ValueError):
            raise LatbenchError(where, "state: malformed base model or interval margin") from None
        if coef.ndim != 1 or coef.size not in (0, self._spec().n_features):
            raise LatbenchError(
                where, f"state: the base model has {coef.size} weights, the features {self._spec().n_features}"
            )
        boosters = []
        for key in ("point_file", "interval_file"):
            fname = state.get(key)
            if not isinstance(fname, str):
                raise LatbenchError(where, f"state.{key}: expected a file name")
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
        self.base_coef, self.base_intercept, self.interval_margin = coef, intercept, margin
        self.fitted = True
