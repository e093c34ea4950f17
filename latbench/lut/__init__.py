"""Latency look-up tables: named grid axes, values in ms, metadata, interpolation, foreign formats."""

from __future__ import annotations

from latbench.lut.formats import (
    load_table,
    read_autotinybert_lat,
    read_hat_csv,
    read_nvit,
    read_ofa_yaml,
    to_nvit,
    with_nvit_conventions,
    without_nvit_conventions,
    write_nvit,
)
from latbench.lut.latency_model import (
    Accuracy,
    FitReport,
    LutSumModel,
    accuracy,
    block_sums,
    lut_features,
    non_block_gflop,
)
from latbench.lut.table import (
    BLOCK_AXES,
    ArchLatency,
    Axis,
    Coverage,
    Interpolation,
    LookupTable,
    TableMeta,
)

__all__ = [
    "BLOCK_AXES",
    "Accuracy",
    "ArchLatency",
    "Axis",
    "Coverage",
    "FitReport",
    "Interpolation",
    "LookupTable",
    "LutSumModel",
    "TableMeta",
    "accuracy",
    "block_sums",
    "load_table",
    "lut_features",
    "non_block_gflop",
    "read_autotinybert_lat",
    "read_hat_csv",
    "read_nvit",
    "read_ofa_yaml",
    "to_nvit",
    "with_nvit_conventions",
    "without_nvit_conventions",
    "write_nvit",
]
