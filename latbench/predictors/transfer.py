"""Few-shot transfer: adapt a predictor trained on device A to device B from k measured samples.

Methods (:func:`adapt`):

- ``recalibrate``: a linear map in log space, ``log ms_B = a + b·log ms_A(x)``,
  fitted on the k samples; the slope ``b`` is fitted only where leave-one-out
  error on the k samples prefers it to the offset alone (same device, other task:
  an offset; GPU → CPU: a slope too). Keeps the source's ranking, corrects its
  scale and spread. Works for any source predictor.
- ``residual-xgboost``: boosted stumps on the k samples that start from
  the source's (recalibrated) log prediction (xgboost's ``base_margin``) and also
  see it as a feature, so they learn only where device B departs from A.
- ``finetune`` (MLP sources): shift the MLP's output to B's scale, then train all
  its weights a few steps on the k samples, anchored to the source weights
  (an L2 penalty towards them), so k = 5 cannot drag it far.
- ``scratch``: the source's model class trained on the k samples alone: the baseline.

:func:`fewshot_evaluation` runs each method for several k on repeated draws of
k architectures from B and judges them on B's held-out architectures.
"""

from __future__ import annotations

import copy
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
    check_positive,
    create_predictor,
    log_target,
)
from latbench.predictors.data import Dataset, Validity
from latbench.predictors.metrics import compute_metrics

METHODS: tuple[str, ...] = ("recalibrate", "residual-xgboost", "finetune", "scratch")


def _load_source(directory: Path) -> Predictor:
    from latbench.predictors.persist import read_predictor_files

    return read_predictor_files(directory / "source")


def _save_source(source: Predictor, directory: Path) -> None:
    from latbench.predictors.persist import write_predictor_files

    (directory / "source").mkdir(exist_ok=True)
    write_predictor_files(source, directory / "source")


# -------------------------------------------------------------- recalibrate
@dataclass(frozen=True)
class RecalibrationConfig(PredictorConfig):
    """Settings of the log-space recalibration.

    Attributes:
        slope: ``auto`` (fit the slope ``b`` only when leave-one-out error on the k samples
            says it beats the offset alone), ``offset`` (``b = 1``) or ``fit`` (always fit ``b``).
        min_slope_samples: Below this many samples only the offset ``a`` is fitted.
        slope_shrinkage: Ridge weight pulling ``b`` towards 1 (relative to the spread of the source's predictions).
    """

    slope: str = "auto"
    min_slope_samples: int = 5
    slope_shrinkage: float = 0.1

    def __post_init__(self) -> None:
        if self.slope not in ("auto", "offset", "fit"):
            raise LatbenchError("slope", f"expected auto, offset or fit, got {self.slope!r}")
        check_positive(self, "min_slope_samples")
        if self.slope_shrinkage < 0:
            raise LatbenchError("slope_shrinkage", "must be >= 0")


def _fit_offset(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    return float(np.median(y - s)), 1.0


def _fit_slope(s: np.ndarray, y: np.ndarray, shrinkage: float) -> tuple[float, float]:
    sc, yc = s - s.mean(), y - y.mean()
    lam = shrinkage * float(sc @ sc) / s.size
    # argmin Σ(yc - b·sc)² + lam·k·(b - 1)²
    b = float((sc @ yc + lam * s.size) / (sc @ sc + lam * s.size))
    return float(y.mean() - b * s.mean()), b


def _loo_error(s: np.ndarray, y: np.ndarray, fit: Any) -> float:
    errors = []
    for i in range(s.size):
        keep = np.arange(s.size) != i
        a, b = fit(s[keep], y[keep])
        errors.append(abs(y[i] - a - b * s[i]))
    return float(np.mean(errors))


class RecalibratedPredictor(Predictor):
    """A source predictor followed by ``log ms = a + b·log source_ms`` (point and interval alike)."""

    name = "recalibrated"
    config_class = RecalibrationConfig
    config: RecalibrationConfig

    def __init__(self, config: Any = None, features: Any = None, source: Predictor | None = None) -> None:
        super().__init__(config, features if features is not None else getattr(source, "features", None))
        self.source = source
        self.a = 0.0
        self.b = 1.0

    def _src(self) -> Predictor:
        if self.source is None:
            raise LatbenchError(self.name, "no source predictor")
        return self.source

    def featurize(self, frame: Any) -> np.ndarray:
        return self._src().featurize(frame)

    def featurize_archs(self, archs: Sequence[Any], batch: Any = 1, seq_len: Any = None) -> np.ndarray:
        return self._src().featurize_archs(archs, batch, seq_len)

    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> RecalibratedPredictor:
        c = self.config
        y = log_target(y_ms)
        s = np.log(self._src().predict(x))

        def slope_fit(s: np.ndarray, y: np.ndarray) -> tuple[float, float]:
            return _fit_slope(s, y, c.slope_shrinkage)

        use_slope = c.slope != "offset" and s.size >= c.min_slope_samples and np.ptp(s) > 0
        if use_slope and c.slope == "auto":
            use_slope = _loo_error(s, y, slope_fit) < _loo_error(s, y, _fit_offset)
        self.a, self.b = slope_fit(s, y) if use_slope else _fit_offset(s, y)
        self.fitted = True
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        self._require_fitted()
        return np.exp(self.a + self.b * np.log(self._src().predict(x)))

    def predict_interval(self, x: np.ndarray) -> Prediction:
        self._require_fitted()
        p = self._src().predict_interval(x)
        f = [np.exp(self.a + self.b * np.log(v)) for v in (p.ms, p.low_ms, p.high_ms)]
        return Prediction(f[0], np.minimum(f[1], f[2]), np.maximum(f[1], f[2]))

    def save_state(self, directory: Path) -> dict[str, Any]:
        self._require_fitted()
        _save_source(self._src(), directory)
        return {"a": self.a, "b": self.b, "source_dir": "source"}

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        try:
            self.a, self.b = float(state["a"]), float(state["b"])
        except (KeyError, TypeError, ValueError):
            raise LatbenchError(str(directory / "predictor.json"), "state: malformed recalibration") from None
        self.source = _load_source(directory)
        self.fitted = True


# -------------------------------------------------------- residual xgboost
@dataclass(frozen=True)
class ResidualXGBoostConfig(PredictorConfig):
    """Settings of the residual trees: few, shallow, slow (k can be 5)."""

    rounds: int = 100
    learning_rate: float = 0.1
    max_depth: int = 1
    min_child_weight: float = 1.0
    reg_lambda: float = 5.0

    def __post_init__(self) -> None:
        check_positive(self, "rounds", "learning_rate", "max_depth")


class ResidualXGBoostPredictor(Predictor):
    """Trees on k samples of device B, boosting from the source's recalibrated log prediction."""

    name = "residual-xgboost"
    config_class = ResidualXGBoostConfig
    config: ResidualXGBoostConfig

    def __init__(self, config: Any = None, features: Any = None, source: Predictor | None = None) -> None:
        super().__init__(config, features if features is not None else getattr(source, "features", None))
        self.base = RecalibratedPredictor(source=source) if source is not None else None
        self._booster: Any = None

    def _base(self) -> RecalibratedPredictor:
        if self.base is None:
            raise LatbenchError(self.name, "no source predictor")
        return self.base

    def featurize(self, frame: Any) -> np.ndarray:
        return self._base().featurize(frame)

    def featurize_archs(self, archs: Sequence[Any], batch: Any = 1, seq_len: Any = None) -> np.ndarray:
        return self._base().featurize_archs(archs, batch, seq_len)

    def _inputs(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        margin = np.log(self._base().predict(x))
        return np.column_stack([x, margin]), margin

    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> ResidualXGBoostPredictor:
        from latbench.predictors.xgb import import_xgboost

        xgb = import_xgboost()
        self._base().fit(x, y_ms)
        z, margin = self._inputs(x)
        c = self.config
        dtrain = xgb.DMatrix(z, label=log_target(y_ms), base_margin=margin)
        params = {
            "objective": "reg:absoluteerror",
            "eta": c.learning_rate,
            "max_depth": c.max_depth,
            "min_child_weight": c.min_child_weight,
            "lambda": c.reg_lambda,
            "tree_method": "hist",
            "seed": int(seed),
            "nthread": 1,
            "verbosity": 0,
        }
        self._booster = xgb.train(params, dtrain, num_boost_round=c.rounds)
        self.fitted = True
        return self

    def _log_point(self, x: np.ndarray) -> np.ndarray:
        from latbench.predictors.xgb import import_xgboost

        xgb = import_xgboost()
        self._require_fitted()
        z, margin = self._inputs(x)
        return np.asarray(self._booster.predict(xgb.DMatrix(z, base_margin=margin)), dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self._log_point(x))

    def predict_interval(self, x: np.ndarray) -> Prediction:
        lp = self._log_point(x)
        base = self._base()
        p = base.predict_interval(x)
        # The residual trees move the point; the source's interval moves with it.
        shift = lp - np.log(p.ms)
        return Prediction(np.exp(lp), p.low_ms * np.exp(shift), p.high_ms * np.exp(shift))

    def save_state(self, directory: Path) -> dict[str, Any]:
        from latbench.io import atomic_write

        self._require_fitted()
        base = self._base()
        _save_source(base._src(), directory)
        raw = bytes(self._booster.save_raw(raw_format="ubj"))
        atomic_write(directory / "residual.ubj", lambda tmp: tmp.write_bytes(raw))
        return {"a": base.a, "b": base.b, "source_dir": "source", "residual_file": "residual.ubj"}

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        from latbench.predictors.xgb import import_xgboost

        xgb = import_xgboost()
        where = str(directory / "predictor.json")
        base = RecalibratedPredictor(source=_load_source(directory))
        try:
            base.a, base.b = float(state["a"]), float(state["b"])
        except (KeyError, TypeError, ValueError):
            raise LatbenchError(where, "state: malformed recalibration") from None
        base.fitted = True
        path = directory / str(state.get("residual_file", "residual.ubj"))
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(path.read_bytes()))
        except (OSError, xgb.core.XGBoostError):
            raise LatbenchError(str(path), "missing or corrupt residual model") from None
        self.base, self._booster, self.fitted = base, booster, True


# ------------------------------------------------------------------ finetune
@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of the MLP fine-tuning on k samples.

    Attributes:
        steps: Full-batch Adam steps.
        lr: Learning rate.
        anchor: Weight of the L2 penalty pulling the weights towards the source's.
    """

    steps: int = 100
    lr: float = 3e-4
    anchor: float = 1e-2


def finetune_mlp(
    source: Predictor, x: np.ndarray, y_ms: np.ndarray, seed: int = 0, config: FinetuneConfig | None = None
) -> Predictor:
    """A copy of an MLP predictor shifted to the samples' scale, then fine-tuned on them."""
    import torch

    from latbench.predictors.mlp import MLPPredictor

    if not isinstance(source, MLPPredictor):
        raise LatbenchError("finetune", f"fine-tuning needs an mlp source predictor, got {source.name}")
    c = config or FinetuneConfig()
    y = log_target(y_ms)
    target = copy.deepcopy(source)
    module = target.module
    assert module is not None
    offset = float(np.median(y - np.log(source.predict(x))))
    module.y_mean.add_(offset)
    anchors = [p.detach().clone() for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(True)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = (torch.tensor(y, dtype=torch.float32) - module.y_mean) / module.y_std
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.Adam(module.parameters(), lr=c.lr)
        module.train()
        for _ in range(c.steps):
            loss = target._loss(module(xt), yt)
            loss = loss + c.anchor * sum(((p - a) ** 2).sum() for p, a in zip(module.parameters(), anchors))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return target


# -------------------------------------------------------------------- adapt
def _scratch(source: Predictor, x: np.ndarray, y_ms: np.ndarray, seed: int) -> Predictor:
    overrides: dict[str, Any] = {}
    if source.name == "xgboost":
        overrides = {"rounds_without_validation": 100, "min_child_weight": 0.0, "subsample": 1.0}
    fresh = create_predictor(source.name, {**source.config.to_dict(), **overrides}, source.features)
    return fresh.fit(x, y_ms, seed=seed)


def adapt(
    source: Predictor,
    x: np.ndarray,
    y_ms: np.ndarray,
    method: str = "recalibrate",
    seed: int = 0,
    validity: Validity | None = None,
    statistic: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> Predictor:
    """Adapt ``source`` to a new device from k measured samples (features ``x``, latencies ``y_ms``).

    Args:
        source: A fitted predictor of device A.
        x: Features of the k samples, computed with ``source.featurize``.
        y_ms: Their latencies measured on device B.
        method: One of :data:`METHODS` (see the module docstring).
        seed: Seed of anything random in the method.
        validity, statistic: Where the adapted predictor holds (device B's data), for its saved file.
        options: The method's settings (:class:`RecalibrationConfig`, :class:`ResidualXGBoostConfig`
            or :class:`FinetuneConfig` fields).
    """
    if method not in METHODS:
        raise LatbenchError("method", f"expected one of {', '.join(METHODS)}, got {method!r}")
    source._require_fitted()
    y = np.asarray(y_ms, dtype=np.float64)
    if len(y) < 1 or np.shape(x)[0] != len(y):
        raise LatbenchError("adapt", f"need k >= 1 samples with features, got {np.shape(x)[0]} and {len(y)}")
    if method == "recalibrate":
        out: Predictor = RecalibratedPredictor(options, source=source).fit(x, y)
    elif method == "residual-xgboost":
        out = ResidualXGBoostPredictor(options, source=source).fit(x, y, seed=seed)
    elif method == "finetune":
        out = finetune_mlp(source, x, y, seed=seed, config=FinetuneConfig(**dict(options or {})))
    else:
        out = _scratch(source, x, y, seed)
    out.validity = validity
    out.statistic = statistic
    return out


# ---------------------------------------------------------------- evaluation
@dataclass(frozen=True)
class FewShotResult:
    """One method at one k, averaged over repeated draws of the k samples."""

    method: str
    k: int
    repeats: int
    within_10pct: float
    kendall_tau: float
    mape: float
    within_10pct_std: float
    kendall_tau_std: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def fewshot_evaluation(
    source: Predictor,
    target: Dataset,
    ks: Sequence[int] = (5, 10, 20, 50),
    methods: Sequence[str] = ("recalibrate", "residual-xgboost", "scratch"),
    repeats: int = 10,
    seed: int = 0,
    test_fraction: float = 0.5,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[FewShotResult]:
    """Judge few-shot transfer from ``source`` to the device of ``target``.

    ``target``'s architectures are split once (seeded) into a pool the k samples
    are drawn from and a test set every method is judged on. For each k, ``repeats``
    draws of k architectures; each method adapts from the same draw. A ``source``
    row (k = 0) gives the source's accuracy on the test set without adaptation.
    ``options`` maps a method to its settings (see :func:`adapt`).
    """
    from latbench.predictors.split import grouped_split

    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise LatbenchError("methods", f"unknown method {bad[0]!r} (expected {', '.join(METHODS)})")
    split = grouped_split(target.groups, seed, (1.0 - test_fraction, 0.0, test_fraction))
    x_all = source.featurize(target.frame)
    y_all = target.target_ms
    x_test, y_test = x_all[split.test], y_all[split.test]
    pool_groups = np.unique(target.groups[split.train])
    results: list[FewShotResult] = []
    m0 = compute_metrics(source.predict(x_test), y_test)
    results.append(FewShotResult("source", 0, 1, m0.within_10pct, m0.kendall_tau, m0.mape, 0.0, 0.0))
    for k in ks:
        if k > pool_groups.size:
            raise LatbenchError("k", f"{k} exceeds the {pool_groups.size} architectures available to draw from")
        scores: dict[str, list[tuple[float, float, float]]] = {m: [] for m in methods}
        for r in range(repeats):
            rng = np.random.default_rng([seed, k, r])
            chosen = set(rng.choice(pool_groups, size=k, replace=False).tolist())
            idx = split.train[np.isin(target.groups[split.train], list(chosen))]
            for method in methods:
                opts = (options or {}).get(method)
                adapted = adapt(source, x_all[idx], y_all[idx], method=method, seed=seed + r, options=opts)
                m = compute_metrics(adapted.predict(x_test), y_test)
                tau = m.kendall_tau if np.isfinite(m.kendall_tau) else 0.0
                scores[method].append((m.within_10pct, tau, m.mape))
        for method in methods:
            arr = np.array(scores[method])
            results.append(
                FewShotResult(
                    method=method,
                    k=int(k),
                    repeats=repeats,
                    within_10pct=float(arr[:, 0].mean()),
                    kendall_tau=float(arr[:, 1].mean()),
                    mape=float(arr[:, 2].mean()),
                    within_10pct_std=float(arr[:, 0].std()),
                    kendall_tau_std=float(arr[:, 1].std()),
                )
            )
    return results
