"""Sub-network latency in evaluate: the predicted one is the predictor's own, a measured store row keeps its
statistics, and what does not fit is refused in one line."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.supernet.config import DataConfig
from latbench.supernet.evaluate import latency_workload, measured_subnet_latency, predict_subnet_latency
from tests.supernet.helpers import fit_predictor, tiny_space


def test_the_workload_is_the_run_s_sequence_length_and_none_for_images() -> None:
    assert latency_workload(DataConfig("gpt", seq_len=24), 3) == (3, 24)
    assert latency_workload(DataConfig("vit"), 1) == (1, None)
    with pytest.raises(LatbenchError, match="--batch"):
        latency_workload(DataConfig("vit"), 0)


def test_a_vit_predictor_predicts_without_a_sequence_length(tmp_path) -> None:
    pred = fit_predictor(tmp_path / "p", family="vit", batch=(1, 2))
    arch = tiny_space("vit").sample(5)
    got = predict_subnet_latency(pred, arch, batch=2)
    direct = pred.predict_archs([arch], batch=2)
    assert got.source == "predicted" and got.seq_len is None and got.ms == float(direct.ms[0])
    assert got.low_ms <= got.ms <= got.high_ms
    with pytest.raises(LatbenchError, match="the predictor is for vit models; this super-net is gpt"):
        predict_subnet_latency(pred, tiny_space("gpt").sample(5))
    with pytest.raises(LatbenchError, match=r"batch 3 lies outside the predictor's 1\.\.2"):
        predict_subnet_latency(pred, arch, batch=3)
    assert predict_subnet_latency(pred, arch, batch=3, force=True).batch == 3


def test_a_measured_row_keeps_its_statistics() -> None:
    row = {
        "median_ms": 1.5,
        "ci_low_ms": 1.4,
        "ci_high_ms": 1.7,
        "batch": np.int64(1),
        "seq_len": math.nan,  # a ViT row read through pandas
        "n": np.int64(120),
        "unstable": np.bool_(False),
        "env_id": "abc123",
        "backend": "torch",
        "device": "cpu",
        "mode": "eager",
        "precision": "fp32",
        "threads": math.nan,
    }
    got = measured_subnet_latency(row)
    assert (got.ms, got.low_ms, got.high_ms, got.n, got.unstable) == (1.5, 1.4, 1.7, 120, False)
    assert got.seq_len is None and got.env_id == "abc123"
    assert got.detail == "backend torch, device cpu, mode eager, precision fp32"
    assert got.to_dict()["source"] == "measured"
