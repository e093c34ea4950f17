"""Training and judging predictors on a data set: grouped split, fit, metrics, card, predictions.

ds = load_dataset("runs/bert_cpu.parquet", statistic="p10")
result = train_predictor(ds, "xgboost", seed=0)
save_trained(result, "predictors/bert_cpu_xgb")
print(result.metrics["test"])
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.models.cost import DTYPE_BYTES
from latbench.predictors.base import Prediction, Predictor, PredictorConfig, create_predictor
from latbench.predictors.card import ModelCard
from latbench.predictors.data import STATISTIC_COLUMNS, Dataset, dataset_kind, load_dataset, row_workloads
from latbench.predictors.features import FeatureSpec, parse_archs
from latbench.predictors.metrics import Metrics, compute_metrics
from latbench.predictors.split import Split, grouped_split

PREDICTION_COLUMNS: tuple[str, ...] = ("predicted_ms", "predicted_low_ms", "predicted_high_ms")


def default_feature_spec(dataset: Dataset) -> FeatureSpec:
    """The feature set for a data set: its columns (tables), or architecture features (stores).

    Per-layer columns are added when some architecture's layers differ (a uniform
    space needs only the aggregates). The roofline features use the attainable peaks
    stored with the environment fingerprint when the profiler measured them.
    """
    if dataset.kind == "table":
        return FeatureSpec.for_table(dataset.feature_columns)
    archs = list(parse_archs(np.unique(dataset.frame["arch"].astype(str).to_numpy()).tolist()).values())
    first = archs[0]
    if any(a.extras != first.extras for a in archs):
        raise LatbenchError(dataset.path, "architectures with different family settings (vocabulary, image size ...)")
    max_layers = 0 if all(a.uniform for a in archs) else max(a.n_layers for a in archs)
    deploy = dataset.validity.deploy
    precision = str(deploy.get("precision", "fp32"))
    precision = precision if precision in DTYPE_BYTES else "fp32"
    device = str(deploy.get("device", "cpu"))
    key = _peaks_key(deploy, f"{device}/{precision}")
    peaks = None
    for env in dataset.fingerprints.values():
        p = (env.get("peaks") or {}).get(key) if isinstance(env, Mapping) else None
        if p and p.get("peak_flops") and p.get("peak_bytes_per_s"):
            peaks = (float(p["peak_flops"]), float(p["peak_bytes_per_s"]))
            break
    return FeatureSpec.for_arch(
        first.family, precision=precision, max_layers=max_layers, device=device, peaks=peaks, extras=first.extras
    )


def _peaks_key(deploy: Mapping[str, Any], fallback: str) -> str:
    """The fingerprint key of the deployment's peaks (its math mode included: fp32 on TF32 cores has its own)."""
    from latbench.profiling.config import DeployConfig
    from latbench.profiling.peaks import deploy_peaks_key

    try:
        return deploy_peaks_key(DeployConfig.from_dict(deploy))
    except (LatbenchError, TypeError, ValueError):
        return fallback


def _check_kind(predictor: Predictor, dataset: Dataset) -> None:
    spec = predictor.features
    if spec is None:
        return
    if spec.kind == "table" and dataset.kind != "table":
        raise LatbenchError(dataset.path, "is a result store, but the predictor was trained on an imported table")
    if spec.kind != "table" and dataset.kind == "table":
        raise LatbenchError(
            dataset.path, "is an imported table, but the predictor computes features from architectures"
        )


@dataclass(frozen=True, eq=False)
class TrainResult:
    """A trained predictor, its split, its metrics per part and its card."""

    predictor: Predictor
    dataset: Dataset
    split: Split
    metrics: dict[str, Metrics]
    card: ModelCard
    test_measured_ms: np.ndarray
    test_predicted_ms: np.ndarray


def train_predictor(
    dataset: Dataset,
    model: str = "xgboost",
    seed: int = 0,
    config: PredictorConfig | Mapping[str, Any] | None = None,
    lut: str | os.PathLike[str] | Any | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    max_train_archs: int | None = None,
    max_test_archs: int | None = None,
    features: FeatureSpec | None = None,
    force: bool = False,
    command: str | None = None,
    test_data: Dataset | None = None,
) -> TrainResult:
    """Split a data set by architecture, fit a predictor on log latency, and judge it.

    Args:
        dataset: From :func:`~latbench.predictors.data.load_dataset`.
        model: ``xgboost``, ``mlp``, ``lut-sum`` or ``roofline-linear`` (or any registered name).
        seed: Seeds the split and the model: same data and seed, same predictor.
        config: The model's config (or a dict of its fields).
        lut: The look-up table for ``lut-sum`` (a ``latbench-lut`` file or a LookupTable).
        fractions: Shares of architectures for train, validation (early stopping) and test.
        max_train_archs, max_test_archs: Caps on the architectures of those parts.
        features: The feature set (default: :func:`default_feature_spec`).
        force: Use a look-up table measured elsewhere than the data (lut-sum).
        command: The command that rebuilds the predictor, for its card.
        test_data: Judge on these rows (other architectures, other workloads: a held-out store)
            instead of a test part of ``dataset`` (whose test fraction must then be 0). Its rows at
            workloads beyond those trained on are judged per workload (flagged ``extrapolation``)
            but left out of the ``test`` metrics.
    """
    from latbench import __version__

    if model == "lut-sum":
        if dataset.kind != "store":
            raise LatbenchError("--model", "lut-sum needs architectures (a result store), not an imported table")
        if lut is None:
            raise LatbenchError("--lut", "the lut-sum predictor needs a look-up table (--lut FILE)")
        predictor = create_predictor(model, config)
        predictor.set_lut(lut)  # type: ignore[attr-defined]
        predictor.check_lut(dataset.validity, force=force)  # type: ignore[attr-defined]
    else:
        if lut is not None:
            raise LatbenchError("--lut", f"only the lut-sum predictor uses a look-up table, not {model}")
        predictor = create_predictor(model, config, features or default_feature_spec(dataset))
    if test_data is not None:
        if fractions[2] > 0:
            raise LatbenchError("--test-data", "judges on another data set: give --split with a test share of 0")
        _check_kind(predictor, test_data)
        shared = np.intersect1d(np.unique(dataset.groups), np.unique(test_data.groups))
        if shared.size:
            raise LatbenchError("--test-data", f"shares {shared.size} architecture(s) with the training data")
        from dataclasses import replace

        problems = dataset.validity.mismatches(replace(test_data.validity, workload={}))
        if problems and not force:
            raise LatbenchError("--test-data", f"{problems[0]}; use --force to judge on it anyway")
    split = grouped_split(dataset.groups, seed, fractions, max_train_archs, max_test_archs)
    if split.train.size == 0:
        raise LatbenchError(dataset.path, "no training rows after the split")
    x = predictor.featurize(dataset.frame)
    y = dataset.target_ms
    start = time.perf_counter()
    predictor.fit(x[split.train], y[split.train], x[split.val], y[split.val], seed=seed)
    fit_seconds = time.perf_counter() - start
    predictor.validity = dataset.validity
    predictor.statistic = dataset.statistic

    metrics: dict[str, Metrics] = {}
    test_pred = np.zeros(0)
    test_frame, test_y = dataset.frame.iloc[split.test], y[split.test]
    for part in ("train", "val", "test"):
        idx = getattr(split, part)
        if idx.size:
            pred = predictor.predict(x[idx])
            metrics[part] = compute_metrics(pred, y[idx])
            if part == "test":
                test_pred = pred
    by_workload = None
    if test_data is not None:
        test_frame, test_y = test_data.frame, test_data.target_ms
        all_pred = predictor.predict(predictor.featurize(test_frame))
        kinds = workload_kinds(dataset.validity, test_frame)
        inside = kinds != "extrapolation"
        if inside.any():
            metrics["test"] = compute_metrics(all_pred[inside], test_y[inside])
        test_pred, test_y = all_pred[inside], test_y[inside]
        by_workload = workload_metrics(dataset.validity, test_frame, all_pred, test_data.target_ms)
    elif split.test.size:
        by_workload = workload_metrics(dataset.validity, test_frame, test_pred, test_y)
    if by_workload is not None and len(by_workload) < 2 and test_data is None:
        by_workload = None  # one workload: the test metrics say it all
    card = ModelCard(
        model=predictor.name,
        config=predictor.config.to_dict(),
        seed=seed,
        features=predictor.features.to_dict(),  # type: ignore[union-attr]
        statistic=dataset.statistic,
        training_data={
            "path": dataset.path,
            "sha256": dataset.sha256,
            "kind": dataset.kind,
            "rows": len(dataset),
            "architectures": dataset.n_groups,
            "target": STATISTIC_COLUMNS.get(dataset.statistic, "target") if dataset.kind == "store" else "latency_ms",
            "drift_correction": dataset.drift_correction,
            **({"reference_workload": _reference_of(dataset)} if dataset.drift_correction else {}),
        },
        validity=dataset.validity.to_dict(),
        split={
            "method": "grouped by architecture, shuffled with the seed",
            "fractions": list(fractions),
            "max_train_archs": max_train_archs,
            "max_test_archs": max_test_archs,
            "rows": split.sizes(),
            "architectures": {
                p: int(np.unique(dataset.groups[getattr(split, p)]).size) for p in ("train", "val", "test")
            },
        },
        metrics={k: v.to_dict() for k, v in metrics.items()},
        fit_seconds=round(fit_seconds, 3),
        latbench_version=__version__,
        command=command,
        workload_metrics=by_workload,
    )
    if test_data is not None:
        card.split["test_data"] = {
            "path": test_data.path,
            "sha256": test_data.sha256,
            "rows": len(test_data),
            "architectures": test_data.n_groups,
        }
    return TrainResult(
        predictor=predictor,
        dataset=dataset,
        split=split,
        metrics=metrics,
        card=card,
        test_measured_ms=test_y,
        test_predicted_ms=test_pred,
    )


def workload_kinds(validity: Any, frame: Any) -> np.ndarray:
    """Per row of ``frame``: ``trained``, ``interpolation`` or ``extrapolation`` (:meth:`Validity.workload_kind`)."""
    return np.array([validity.workload_kind(b, q) for b, q in row_workloads(frame)], dtype=object)


def workload_metrics(validity: Any, frame: Any, predicted_ms: Any, measured_ms: Any) -> list[dict[str, Any]]:
    """Metrics per workload (batch, seq_len) of the rows of ``frame``, each with its kind relative to ``validity``."""
    pred, meas = np.asarray(predicted_ms), np.asarray(measured_ms)
    keys = row_workloads(frame)
    out = []
    for key in sorted(set(keys), key=lambda k: (k[0] or 0, k[1] or 0)):
        idx = np.array([k == key for k in keys])
        out.append(
            {
                "batch": key[0],
                "seq_len": key[1],
                "kind": validity.workload_kind(*key),
                "architectures": int(idx.sum()),
                "metrics": compute_metrics(pred[idx], meas[idx]).to_dict(),
            }
        )
    return out


def save_trained(result: TrainResult, directory: str | os.PathLike[str], plot: bool = True) -> Path:
    """Write the predictor, its card and (with matplotlib) the test set's predicted-vs-measured plot."""
    from latbench.predictors.persist import PLOT_FILE, save_predictor
    from latbench.predictors.plot import plot_predicted_vs_measured

    def add_plot(tmp: Path) -> None:
        if plot and result.test_measured_ms.size:
            title = f"{result.predictor.name} on {Path(result.dataset.path).name} (test)"
            plot_predicted_vs_measured(result.test_measured_ms, result.test_predicted_ms, tmp / PLOT_FILE, title)

    return save_predictor(result.predictor, directory, card=result.card, extra=add_plot)


# ------------------------------------------------------------- using one
def check_data(predictor: Predictor, dataset: Dataset, force: bool = False) -> list[str]:
    """Refuse data from another device, deployment, workload or statistic than the predictor's, unless ``force``.

    Returns:
        The mismatches that ``force`` let through (empty when none).
    """
    _check_kind(predictor, dataset)
    problems = [] if predictor.validity is None else predictor.validity.mismatches(dataset.validity)
    if predictor.statistic is not None and dataset.statistic != predictor.statistic:
        problems.append(
            f"the predictor predicts the {predictor.statistic}, the data's target is the {dataset.statistic}"
        )
    if problems and not force:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise LatbenchError(dataset.path, f"{problems[0]}{more}; use --force to use it anyway")
    return problems


def load_dataset_for(
    predictor: Predictor,
    path: str | os.PathLike[str],
    statistic: str | None = None,
    deployment: str | None = None,
    drift_correction: float = 0.0,
) -> Dataset:
    """Load data to judge ``predictor`` on: a store's target defaults to the statistic the predictor predicts."""
    if statistic is None and dataset_kind(path) == "store":
        statistic = predictor.statistic if predictor.statistic in STATISTIC_COLUMNS else "median"
    return load_dataset(path, statistic, deployment, drift_correction)


def evaluate_predictor(predictor: Predictor, dataset: Dataset, force: bool = False) -> tuple[Metrics, Prediction]:
    """Metrics of ``predictor`` on all rows of ``dataset`` (checked with :func:`check_data`)."""
    check_data(predictor, dataset, force)
    pred = predictor.predict_frame(dataset.frame)
    return compute_metrics(pred.ms, dataset.target_ms), pred


def predict_dataset(predictor: Predictor, dataset: Dataset, force: bool = False) -> Any:
    """The data set's rows plus ``predicted_ms``, ``predicted_low_ms`` and ``predicted_high_ms``."""
    check_data(predictor, dataset, force)
    pred = predictor.predict_frame(dataset.frame)
    out = dataset.frame.copy()
    for name, values in zip(PREDICTION_COLUMNS, (pred.ms, pred.low_ms, pred.high_ms)):
        out[name] = values
    return out


def _reference_of(dataset: Dataset) -> str:
    """The reference workload whose times the drift correction divided by (one per store: see load_store_dataset)."""
    from latbench.profiling.reference import row_reference

    protocol = dataset.frame["protocol"].iloc[0] if "protocol" in dataset.frame else None
    return row_reference({"protocol": protocol})
