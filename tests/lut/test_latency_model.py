"""LUT-sum latency model: the overhead fit recovers known coefficients and reports its accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.lut import Axis, LookupTable, LutSumModel, TableMeta, accuracy, block_sums
from latbench.space import Arch


def synthetic(seed: int = 0, n: int = 60, noise: float = 0.0):
    rng = np.random.default_rng(seed)
    n_blocks = rng.integers(2, 13, size=n)
    sums = n_blocks * rng.uniform(0.2, 1.5, size=n)
    a, b, c = 1.08, 0.031, 0.42
    measured = a * sums + b * n_blocks + c
    measured = measured * (1 + noise * rng.standard_normal(n))
    return sums, n_blocks, measured, (a, b, c)


def test_fit_recovers_known_coefficients():
    sums, counts, measured, (a, b, c) = synthetic()
    model = LutSumModel.fit(sums, counts, measured, device="cpu", deploy={"backend": "torch_cpu", "threads": 1})
    assert (model.a, model.b, model.c) == pytest.approx((a, b, c), rel=1e-9)
    assert model.report is not None and not model.report.fixed_b
    assert model.report.fitted.mape == pytest.approx(0.0, abs=1e-9)
    assert model.report.fitted.within_10pct == 1.0
    # The plain sum misses the overhead: worse than the fit.
    assert model.report.plain_sum.mape > 5.0
    assert model.predict(2.0, 4) == pytest.approx(a * 2.0 + b * 4 + c)


def test_fit_with_noise_is_close_and_better_than_the_plain_sum():
    sums, counts, measured, (a, _, _) = synthetic(seed=1, n=400, noise=0.01)
    model = LutSumModel.fit(sums, counts, measured)
    assert model.a == pytest.approx(a, rel=0.02)
    assert model.report.fitted.mape < model.report.plain_sum.mape
    assert model.report.fitted.within_10pct >= model.report.plain_sum.within_10pct
    held_out = synthetic(seed=2, n=100, noise=0.01)
    rep = model.evaluate(*held_out[:3])
    assert rep.fitted.mape < 2.0 < rep.plain_sum.mape


def test_same_block_count_fixes_b():
    rng = np.random.default_rng(4)
    sums = rng.uniform(1, 10, size=20)
    measured = 1.1 * sums + 0.5
    model = LutSumModel.fit(sums, 12, measured)
    assert model.report.fixed_b and model.b == 0.0
    assert (model.a, model.c) == pytest.approx((1.1, 0.5))


def test_fit_input_checks():
    with pytest.raises(LatbenchError, match="at least 3"):
        LutSumModel.fit([1.0, 2.0], [2, 3], [1.1, 2.2])
    with pytest.raises(LatbenchError, match="3 block sums but 2 measured"):
        LutSumModel.fit([1.0, 2.0, 3.0], [2, 3, 4], [1.1, 2.2])
    with pytest.raises(LatbenchError, match="positive"):
        LutSumModel.fit([1.0, 2.0, 3.0], [2, 3, 4], [1.1, 0.0, 2.0])
    with pytest.raises(LatbenchError, match="rank-deficient"):
        LutSumModel.fit([1.0, 1.0, 1.0], [2, 2, 2], [1.0, 1.1, 1.2])


def test_accuracy_metrics():
    acc = accuracy([1.0, 2.2, 2.7], [1.0, 2.0, 3.0])
    assert acc.n == 3 and acc.mape == pytest.approx(100 * (0 + 0.1 + 0.1) / 3)
    assert acc.within_10pct == 1.0 and acc.max_ape == pytest.approx(10.0)
    assert accuracy([1.2], [1.0]).within_10pct == 0.0


def test_save_load_round_trip(tmp_path):
    sums, counts, measured, _ = synthetic()
    model = LutSumModel.fit(sums, counts, measured, device="cpu", deploy={"threads": 1}, workload={"seq_len": 128})
    p = model.save(tmp_path / "lut_sum.json")
    assert LutSumModel.load(p) == model
    data = json.loads(p.read_text())
    assert data["format"] == "latbench-lut-sum" and data["schema_version"] == 1
    data["a"] = "big"
    p.write_text(json.dumps(data))
    with pytest.raises(LatbenchError) as exc:
        LutSumModel.load(p)
    assert str(exc.value).startswith(str(p)) and "finite number" in str(exc.value)
    p.write_text("{}")
    with pytest.raises(LatbenchError, match="not a LUT-sum model"):
        LutSumModel.load(p)


def test_predict_arch_from_a_table():
    axes = (Axis("hidden", (128, 256)), Axis("heads", (2, 4)), Axis("qk_dim", (32, 64)), Axis("mlp", (256, 512)))
    table = LookupTable(axes=axes, values=np.full((2, 2, 2, 2), 0.5), meta=TableMeta(family="bert"))
    archs = [Arch.uniform_arch("bert", 128, n, 2, 32, 256) for n in (2, 3, 4, 6)]
    sums, counts = block_sums(table, archs)
    np.testing.assert_allclose(sums, [1.0, 1.5, 2.0, 3.0])
    np.testing.assert_array_equal(counts, [2, 3, 4, 6])
    model = LutSumModel(a=1.0, b=0.1, c=0.2)
    assert model.predict_arch(table, archs[1]) == pytest.approx(1.5 + 0.3 + 0.2)
