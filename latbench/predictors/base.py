"""The :class:`Predictor` base class, its configs, its predictions, and the registry of predictors.

A predictor maps a feature matrix (:mod:`latbench.predictors.features`) to a
latency in ms with an interval ``(low, high)`` around it, so a search can keep a
safety margin. Every predictor learns ``log(latency)``: errors that matter are
relative, and latencies span orders of magnitude.

The registry maps names to ``"module:Class"`` strings, imported on first use, so
``import latbench.predictors`` loads neither xgboost nor torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from latbench.config import Config, check_positive  # noqa: F401  (re-exported for the predictors)
from latbench.errors import LatbenchError
from latbench.predictors.data import Validity
from latbench.predictors.features import ArchArrays, FeatureSpec, arch_features, frame_features
from latbench.registry import Registry


# ------------------------------------------------------------------ configs
class PredictorConfig(Config):
    """Mixin for a predictor's frozen dataclass config: ``to_dict`` / ``from_dict`` with checked keys."""


def check_quantiles(low: float, high: float) -> None:
    if not 0.0 < low < 0.5 < high < 1.0:
        raise LatbenchError("interval", f"quantiles must satisfy 0 < low < 0.5 < high < 1, got {low}, {high}")


# -------------------------------------------------------------- predictions
@dataclass(frozen=True, eq=False)
class Prediction:
    """Predicted latencies in ms with an interval, one per row: ``low_ms <= ms <= high_ms``."""

    ms: np.ndarray
    low_ms: np.ndarray
    high_ms: np.ndarray

    def __post_init__(self) -> None:
        ms = np.asarray(self.ms, dtype=np.float64)
        # An interval always holds its point, whatever the interval model learnt.
        object.__setattr__(self, "ms", ms)
        object.__setattr__(self, "low_ms", np.minimum(np.asarray(self.low_ms, dtype=np.float64), ms))
        object.__setattr__(self, "high_ms", np.maximum(np.asarray(self.high_ms, dtype=np.float64), ms))

    def __len__(self) -> int:
        return int(self.ms.size)

    @classmethod
    def from_log(cls, log_ms: np.ndarray, log_low: np.ndarray, log_high: np.ndarray) -> Prediction:
        return cls(np.exp(log_ms), np.exp(log_low), np.exp(log_high))


def log_target(y_ms: Any, where: str = "target") -> np.ndarray:
    """``log(latency_ms)``, refusing non-positive or non-finite latencies."""
    y = np.asarray(y_ms, dtype=np.float64).ravel()
    if y.size == 0:
        raise LatbenchError(where, "no training rows")
    if not (np.isfinite(y).all() and (y > 0).all()):
        raise LatbenchError(where, "latencies must be positive and finite")
    return np.log(y)


def log_features(x: np.ndarray) -> np.ndarray:
    """``log(1 + x)`` of non-negative features (FLOPs, bytes and widths span decades)."""
    return np.log1p(np.maximum(x, 0.0))


def fit_log_linear(z: np.ndarray, y: np.ndarray, ridge: float = 1e-6) -> tuple[np.ndarray, float]:
    """Ridge regression ``y ≈ z·w + c`` (no penalty on ``c``): returns ``(w, c)``.

    ``ridge`` is relative to the number of rows, so it means the same for any data size;
    constant or collinear columns get small, finite weights instead of a singular fit.
    """
    mu = z.mean(axis=0)
    zc, yc = z - mu, y - y.mean()
    gram = zc.T @ zc + ridge * z.shape[0] * np.eye(z.shape[1])
    coef = np.linalg.lstsq(gram, zc.T @ yc, rcond=None)[0]
    return coef, float(y.mean() - mu @ coef)


def conformal_margin(low: np.ndarray, high: np.ndarray, y: np.ndarray, coverage: float) -> float:
    """Conformalised quantile regression (Romano et al., 2019): how far to widen ``[low, high]``.

    With the scores ``max(low - y, y - high)`` of held-out rows, widening every interval by
    their ``coverage·(1 + 1/n)`` quantile makes it hold ``coverage`` of new rows (a negative
    margin narrows intervals that were too wide). Quantile models fit on the training set
    are over-confident on its noise; the validation set corrects that.
    """
    scores = np.maximum(low - y, y - high)
    level = min(1.0, coverage * (1.0 + 1.0 / scores.size))
    return float(np.quantile(scores, level, method="higher"))


def check_matrix(x: Any, n_features: int, where: str = "features") -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise LatbenchError(where, f"expected a matrix with {n_features} columns, got shape {arr.shape}")
    return arr


# ----------------------------------------------------------------- predictor
class Predictor(ABC):
    """A latency model: fit on features and measured ms, predict ms with an interval.

    Subclasses set :attr:`name` and :attr:`config_class`, and implement
    :meth:`fit`, :meth:`predict_interval`, :meth:`save_state` and :meth:`load_state`.

    Attributes:
        config: The model's frozen dataclass config.
        features: The feature set it was (or will be) trained on.
        validity: Where its predictions hold (set when trained from a data set).
        statistic: Which statistic of the measurements it predicts (``median``, ``p10`` ...).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[PredictorConfig]]

    def __init__(self, config: PredictorConfig | Mapping[str, Any] | None = None, features: FeatureSpec | None = None):
        if config is None or isinstance(config, Mapping):
            config = self.config_class.from_dict(config, f"{self.name} config")
        if not isinstance(config, self.config_class):
            raise LatbenchError(self.name, f"expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.config = config
        self.features = features
        self.validity: Validity | None = None
        self.statistic: str | None = None
        self.fitted = False

    def __repr__(self) -> str:
        n = self.features.n_features if self.features is not None else "?"
        return f"{type(self).__name__}({self.name}, features={n}, fitted={self.fitted})"

    # ------------------------------------------------------------ features
    def _spec(self) -> FeatureSpec:
        if self.features is None:
            raise LatbenchError(self.name, "no feature set; fit the predictor or load a trained one")
        return self.features

    def featurize(self, frame: Any) -> np.ndarray:
        """The feature matrix of a DataFrame's rows (stores: ``arch``/``batch``/``seq_len``; tables: columns)."""
        return frame_features(frame, self._spec())

    def featurize_archs(self, archs: Sequence[Any], batch: Any = 1, seq_len: Any = None) -> np.ndarray:
        """Features of architectures at a workload (one batch / seq_len, or one per architecture)."""
        return arch_features(ArchArrays.from_archs(archs), batch, seq_len, self._spec())

    # ---------------------------------------------------------- the model
    @abstractmethod
    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> Predictor:
        """Fit on features ``x`` and measured ``y_ms``; a validation set drives early stopping.

        Same data and seed, same predictor.
        """

    @abstractmethod
    def predict_interval(self, x: np.ndarray) -> Prediction:
        """Predicted ms with an interval for each row of ``x``."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted ms for each row of ``x`` (the point only; may be faster than the interval)."""
        return self.predict_interval(x).ms

    def predict_frame(self, frame: Any) -> Prediction:
        """Predictions for a DataFrame's rows."""
        return self.predict_interval(self.featurize(frame))

    def predict_archs(self, archs: Sequence[Any], batch: Any = 1, seq_len: Any = None) -> Prediction:
        """Predictions for architectures at a workload."""
        return self.predict_interval(self.featurize_archs(archs, batch, seq_len))

    def predict_arrays(
        self, arrays: ArchArrays, batch: Any = 1, seq_len: Any = None, chunk_size: int = 16384
    ) -> np.ndarray:
        """Point predictions for many architectures held as arrays: the fast batch path.

        Works through ``chunk_size`` architectures at a time: the features of a chunk stay
        in the cache, and those of 10^6 architectures (~300 MB) never exist at once.
        """
        spec = self._spec()
        n = len(arrays)
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, chunk_size):
            sl = slice(start, min(n, start + chunk_size))
            b = np.asarray(batch)[sl] if np.ndim(batch) > 0 else batch
            s = np.asarray(seq_len)[sl] if np.ndim(seq_len) > 0 else seq_len
            out[sl] = self.predict(arch_features(arrays.take(sl), b, s, spec))
        return out

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise LatbenchError(self.name, "not fitted yet")

    # --------------------------------------------------------- persistence
    @abstractmethod
    def save_state(self, directory: Path) -> dict[str, Any]:
        """Write the fitted state's files into ``directory``; return what goes into ``predictor.json``."""

    @abstractmethod
    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        """Restore the fitted state from ``directory`` and ``predictor.json``'s ``state``."""


# ------------------------------------------------------------------ registry
#: name → ``"module:Class"`` (imported on first use) or the class itself.
_REGISTRY: dict[str, str | type[Predictor]] = {
    "xgboost": "latbench.predictors.xgb:XGBoostPredictor",
    "mlp": "latbench.predictors.mlp:MLPPredictor",
    "lut-sum": "latbench.predictors.lut_sum:LutSumPredictor",
    "roofline-linear": "latbench.predictors.roofline:RooflineLinearPredictor",
    "recalibrated": "latbench.predictors.transfer:RecalibratedPredictor",
    "residual-xgboost": "latbench.predictors.transfer:ResidualXGBoostPredictor",
}

#: Predictors that ``train-predictor`` trains from a data set (the others come from few-shot transfer).
TRAINABLE: tuple[str, ...] = ("xgboost", "mlp", "lut-sum", "roofline-linear")


_PREDICTORS = Registry("predictor", "--model", _REGISTRY, listed=TRAINABLE)


def register_predictor(name: str, target: str | type[Predictor]) -> None:
    """Register a predictor class (or its ``"module:Class"`` path) under ``name``."""
    _PREDICTORS.register(name, target)


def predictor_names() -> tuple[str, ...]:
    """All registered predictor names."""
    return _PREDICTORS.names()


def get_predictor_class(name: str) -> type[Predictor]:
    """The class registered under ``name`` (imported now)."""
    return _PREDICTORS.get(name)  # type: ignore[no-any-return]


def create_predictor(
    name: str, config: PredictorConfig | Mapping[str, Any] | None = None, features: FeatureSpec | None = None
) -> Predictor:
    """A new, unfitted predictor of the registered kind ``name``."""
    return get_predictor_class(name)(config, features)
