"""``mlp``: a small PyTorch network on log features, predicting log latency and two quantiles.

Inputs are ``log(1 + feature)``, standardised with the training set's mean and
spread (kept as buffers in the module, so the network takes raw features). The
output layer has three heads in standardised ``log(ms)``: the point (trained on
the absolute error, i.e. the median, a relative error in ms) and the
``interval_low`` / ``interval_high`` quantiles (pinball loss), widened or narrowed
on the validation set by conformalised quantile regression so the interval covers
what it claims on new architectures. Early stopping keeps the weights of the best
validation epoch.

:meth:`MLPPredictor.torch_forward` is differentiable end to end (features → ms),
so a gradient searcher can back-propagate a latency penalty into relaxed
architecture dimensions (with :func:`latbench.predictors.features.torch_arch_features`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latbench.errors import LatbenchError
from latbench.predictors.base import (
    Prediction,
    Predictor,
    PredictorConfig,
    check_matrix,
    check_positive,
    check_quantiles,
    conformal_margin,
    log_target,
)

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}
_CHUNK = 16384  # rows per forward pass when predicting: activations stay in the cache


@dataclass(frozen=True)
class MLPConfig(PredictorConfig):
    """Hyperparameters of the ``mlp`` predictor.

    Attributes:
        hidden: Widths of the hidden layers.
        activation: ``silu``, ``relu``, ``gelu`` or ``tanh``.
        lr: Adam's learning rate.
        weight_decay: Adam's weight decay.
        batch_size: Rows per step.
        max_epochs: Most passes over the training set.
        patience: Stop after this many epochs without a better validation loss.
        epochs_without_validation: Epochs when fitted without a validation set.
        interval_low, interval_high: Quantiles of the interval heads.
        quantile_weight: Weight of the two quantile heads' loss beside the point's.
        threads: torch threads while fitting (0: leave torch's setting).
    """

    hidden: tuple[int, ...] = (64, 64)
    activation: str = "silu"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 64
    max_epochs: int = 600
    patience: int = 50
    epochs_without_validation: int = 200
    interval_low: float = 0.05
    interval_high: float = 0.95
    quantile_weight: float = 0.5
    threads: int = 0

    def __post_init__(self) -> None:
        hidden = tuple(self.hidden)
        if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden):
            raise LatbenchError("hidden", f"expected positive layer widths, got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)
        if self.activation not in ACTIVATIONS:
            raise LatbenchError("activation", f"expected one of {', '.join(ACTIVATIONS)}, got {self.activation!r}")
        check_positive(self, "lr", "batch_size", "max_epochs", "patience", "epochs_without_validation")
        if self.weight_decay < 0 or self.quantile_weight < 0 or self.threads < 0:
            raise LatbenchError("weight_decay", "weight_decay, quantile_weight and threads must be >= 0")
        check_quantiles(self.interval_low, self.interval_high)


class LatencyMLP(nn.Module):
    """Raw features → (point, low, high) in standardised log ms; the scalers are buffers."""

    def __init__(self, n_features: int, hidden: tuple[int, ...], activation: str) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, 3))
        self.body = nn.Sequential(*layers)
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def standardise(self, features: torch.Tensor) -> torch.Tensor:
        x = torch.log1p(torch.clamp(features.to(self.x_mean.dtype), min=0.0))
        return (x - self.x_mean) / self.x_std

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.body(self.standardise(features))

    def log_ms(self, out: torch.Tensor) -> torch.Tensor:
        return out * self.y_std + self.y_mean


def _pinball(pred: torch.Tensor, target: torch.Tensor, q: float) -> torch.Tensor:
    diff = target - pred
    return torch.maximum(q * diff, (q - 1.0) * diff).mean()


class MLPPredictor(Predictor):
    """A PyTorch MLP on log features (see the module docstring)."""

    name = "mlp"
    config_class = MLPConfig
    config: MLPConfig

    def __init__(self, config: Any = None, features: Any = None) -> None:
        super().__init__(config, features)
        self.module: LatencyMLP | None = None
        self.best_epoch: int | None = None
        self.interval_margin = 0.0

    def _new_module(self) -> LatencyMLP:
        c = self.config
        return LatencyMLP(self._spec().n_features, c.hidden, c.activation)

    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        c = self.config
        point = (out[:, 0] - y).abs().mean()
        quant = _pinball(out[:, 1], y, c.interval_low) + _pinball(out[:, 2], y, c.interval_high)
        return point + c.quantile_weight * quant

    def fit(
        self,
        x: np.ndarray,
        y_ms: np.ndarray,
        x_val: np.ndarray | None = None,
        y_val_ms: np.ndarray | None = None,
        seed: int = 0,
    ) -> MLPPredictor:
        c = self.config
        spec = self._spec()
        x = check_matrix(x, spec.n_features)
        y = log_target(y_ms)
        if x.shape[0] != y.size:
            raise LatbenchError(self.name, f"{x.shape[0]} feature rows but {y.size} latencies")
        has_val = x_val is not None and y_val_ms is not None and len(y_val_ms) > 0
        threads = torch.get_num_threads()
        if c.threads:
            torch.set_num_threads(c.threads)
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                module = self._new_module()
            xl = np.log1p(np.maximum(x, 0.0))
            std = xl.std(axis=0)
            module.x_mean.copy_(torch.as_tensor(xl.mean(axis=0)))
            module.x_std.copy_(torch.as_tensor(np.where(std > 1e-12, std, 1.0)))
            module.y_mean.fill_(float(y.mean()))
            module.y_std.fill_(float(y.std()) if y.std() > 1e-12 else 1.0)
            xt = torch.tensor(x, dtype=torch.float32)
            yt = (torch.tensor(y, dtype=torch.float32) - module.y_mean) / module.y_std
            if has_val:
                xv = torch.tensor(check_matrix(x_val, spec.n_features, "validation features"), dtype=torch.float32)
                yv = (torch.tensor(log_target(y_val_ms), dtype=torch.float32) - module.y_mean) / module.y_std
            opt = torch.optim.Adam(module.parameters(), lr=c.lr, weight_decay=c.weight_decay)
            gen = torch.Generator().manual_seed(seed)
            n = xt.shape[0]
            epochs = c.max_epochs if has_val else c.epochs_without_validation
            best_loss, best_state, best_epoch, bad = float("inf"), None, 0, 0
            for epoch in range(epochs):
                module.train()
                order = torch.randperm(n, generator=gen)
                for start in range(0, n, c.batch_size):
                    idx = order[start : start + c.batch_size]
                    loss = self._loss(module(xt[idx]), yt[idx])
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                if not has_val:
                    continue
                module.eval()
                with torch.no_grad():
                    val_loss = float((module(xv)[:, 0] - yv).abs().mean())
                if val_loss < best_loss - 1e-7:
                    best_loss, best_state, best_epoch, bad = val_loss, copy.deepcopy(module.state_dict()), epoch, 0
                else:
                    bad += 1
                    if bad >= c.patience:
                        break
            if best_state is not None:
                module.load_state_dict(best_state)
            self.best_epoch = best_epoch if has_val else epochs - 1
        finally:
            torch.set_num_threads(threads)
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        self.fitted = True
        self.interval_margin = 0.0
        if has_val:
            q = self._outputs(x_val, slice(1, 3))  # type: ignore[arg-type]
            coverage = c.interval_high - c.interval_low
            self.interval_margin = conformal_margin(q[:, 0], q[:, 1], log_target(y_val_ms), coverage)
        return self

    # ------------------------------------------------------------ prediction
    def _module(self) -> LatencyMLP:
        self._require_fitted()
        assert self.module is not None
        return self.module

    def torch_forward(self, features: torch.Tensor) -> torch.Tensor:
        """Predicted latency in ms of each row of a ``(N, n_features)`` tensor; differentiable in ``features``."""
        m = self._module()
        return torch.exp(m.log_ms(m(features)[:, 0]))

    def torch_forward_interval(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ms, low_ms, high_ms)`` tensors, differentiable in ``features`` (low/high not clamped to ms)."""
        m = self._module()
        out = m.log_ms(m(features))
        d = self.interval_margin
        return torch.exp(out[:, 0]), torch.exp(out[:, 1] - d), torch.exp(out[:, 2] + d)

    def _outputs(self, x: np.ndarray, columns: slice) -> np.ndarray:
        m = self._module()
        x = check_matrix(x, self._spec().n_features)
        parts = []
        with torch.inference_mode():
            for start in range(0, x.shape[0], _CHUNK):
                chunk = torch.from_numpy(np.array(x[start : start + _CHUNK], dtype=np.float32))
                parts.append(m.log_ms(m(chunk)[:, columns]))
        if not parts:
            return np.zeros((0, columns.stop - columns.start))
        return torch.cat(parts).double().numpy()

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.exp(self._outputs(x, slice(0, 1))[:, 0])

    def predict_interval(self, x: np.ndarray) -> Prediction:
        out = self._outputs(x, slice(0, 3))
        d = self.interval_margin
        return Prediction.from_log(out[:, 0], out[:, 1] - d, out[:, 2] + d)

    # ---------------------------------------------------------- persistence
    def save_state(self, directory: Path) -> dict[str, Any]:
        from latbench.io import atomic_write

        m = self._module()
        state = {k: v.detach().clone() for k, v in m.state_dict().items()}
        atomic_write(directory / "model.pt", lambda tmp: torch.save(state, tmp))
        return {"weights_file": "model.pt", "best_epoch": self.best_epoch, "interval_margin": self.interval_margin}

    def load_state(self, directory: Path, state: Mapping[str, Any]) -> None:
        fname = state.get("weights_file")
        if not isinstance(fname, str):
            raise LatbenchError(str(directory / "predictor.json"), "state.weights_file: expected a file name")
        try:
            margin = float(state.get("interval_margin", 0.0))
        except (TypeError, ValueError):
            raise LatbenchError(str(directory / "predictor.json"), "state.interval_margin: expected a number") from None
        path = directory / fname
        if not path.is_file():
            raise LatbenchError(str(path), "missing weights file")
        try:
            weights = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for a corrupt file
            raise LatbenchError(str(path), f"not a torch weights file ({type(exc).__name__})") from None
        module = self._new_module()
        try:
            module.load_state_dict(weights)
        except (RuntimeError, TypeError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise LatbenchError(str(path), f"weights do not fit the network ({first[:160]})") from None
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.module = module
        self.best_epoch = state.get("best_epoch")
        self.interval_margin = margin
        self.fitted = True
