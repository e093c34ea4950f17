"""Latency predictors: features, models (``xgboost``, ``mlp``, ``lut-sum``, ``roofline-linear``), metrics,
model cards, save/load, and few-shot transfer to a new device.

Importing this package loads neither xgboost nor torch: predictor classes are
imported when first created (:func:`create_predictor`, :func:`get_predictor_class`).
"""

from __future__ import annotations

from latbench.predictors.base import (
    TRAINABLE,
    Prediction,
    Predictor,
    PredictorConfig,
    create_predictor,
    get_predictor_class,
    predictor_names,
    register_predictor,
)
from latbench.predictors.card import ModelCard
from latbench.predictors.data import (
    STATISTIC_COLUMNS,
    Dataset,
    Validity,
    import_hat,
    load_dataset,
    write_table_dataset,
)
from latbench.predictors.features import (
    ARCH_BASE_FEATURES,
    ArchArrays,
    FeatureSpec,
    arch_features,
    frame_features,
    torch_arch_features,
)
from latbench.predictors.metrics import Metrics, NoiseCeiling, compute_metrics, label_noise_ceiling
from latbench.predictors.persist import load_card, load_predictor, save_predictor
from latbench.predictors.split import Split, grouped_split, shuffled_split
from latbench.predictors.train import (
    PREDICTION_COLUMNS,
    TrainResult,
    check_data,
    default_feature_spec,
    evaluate_predictor,
    load_dataset_for,
    predict_dataset,
    save_trained,
    train_predictor,
)

__all__ = [
    "ARCH_BASE_FEATURES",
    "PREDICTION_COLUMNS",
    "STATISTIC_COLUMNS",
    "TRAINABLE",
    "ArchArrays",
    "Dataset",
    "FeatureSpec",
    "Metrics",
    "ModelCard",
    "NoiseCeiling",
    "Prediction",
    "Predictor",
    "PredictorConfig",
    "Split",
    "TrainResult",
    "Validity",
    "arch_features",
    "check_data",
    "compute_metrics",
    "create_predictor",
    "default_feature_spec",
    "evaluate_predictor",
    "frame_features",
    "get_predictor_class",
    "grouped_split",
    "import_hat",
    "label_noise_ceiling",
    "load_card",
    "load_dataset",
    "load_dataset_for",
    "load_predictor",
    "predict_dataset",
    "predictor_names",
    "register_predictor",
    "save_predictor",
    "save_trained",
    "shuffled_split",
    "torch_arch_features",
    "train_predictor",
    "write_table_dataset",
]
