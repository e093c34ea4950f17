"""LUT-sum latency model: the overhead and non-block fit recovers known coefficients and reports its accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.lut import (
    Axis,
    LookupTable,
    LutSumModel,
    TableMeta,
    accuracy,
    block_sums,
    lut_features,
    non_block_gflop,
)
from latbench.models.cost import model_cost
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
    assert data["format"] == "latbench-lut-sum" and data["schema_version"] == 2 and data["d"] == 0.0
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


# ----------------------------------------------------------- the non-block term
def synthetic_with_rest(seed: int = 0, n: int = 60, noise: float = 0.0):
    """Block sums, counts and non-block GFLOPs of bert-like models, and e2e = a·Σ + b·n + c + d·rest."""
    rng = np.random.default_rng(seed)
    n_blocks = rng.integers(2, 13, size=n)
    hidden = rng.choice([128, 256, 384, 512, 768], size=n)
    sums = n_blocks * rng.uniform(0.2, 1.5, size=n) * hidden / 768
    rest = 2 * 128 * hidden * (hidden + 30522) / 1e9
    a, b, c, d = 1.08, 0.031, 0.42, 0.9
    measured = (a * sums + b * n_blocks + c + d * rest) * (1 + noise * rng.standard_normal(n))
    return sums, n_blocks, rest, measured, (a, b, c, d)


def test_fit_recovers_the_non_block_coefficient():
    sums, counts, rest, measured, coef = synthetic_with_rest()
    model = LutSumModel.fit(sums, counts, measured, rest, device="cpu", workload={"batch": 1, "seq_len": 128})
    assert (model.a, model.b, model.c, model.d) == pytest.approx(coef, rel=1e-9)
    rep = model.report
    assert rep is not None and not rep.fixed_b and not rep.fixed_d
    assert rep.fitted.mape == pytest.approx(0.0, abs=1e-9) and rep.fitted.within_10pct == 1.0
    # The overhead alone cannot follow a head that grows with the width.
    assert rep.without_d is not None and rep.without_d.mape > 5.0 and rep.plain_sum.mape > rep.without_d.mape
    assert model.predict(2.0, 4, 0.5) == pytest.approx(coef[0] * 2.0 + coef[1] * 4 + coef[2] + coef[3] * 0.5)
    with pytest.raises(LatbenchError, match="non-block term"):
        model.predict(2.0, 4)


def test_non_block_fit_with_noise_transfers_to_held_out_models():
    sums, counts, rest, measured, (a, _, _, d) = synthetic_with_rest(seed=1, n=400, noise=0.01)
    model = LutSumModel.fit(sums, counts, measured, rest)
    assert model.a == pytest.approx(a, rel=0.05) and model.d == pytest.approx(d, rel=0.05)
    held = synthetic_with_rest(seed=2, n=100, noise=0.01)
    with_d = model.evaluate(held[0], held[1], held[3], held[2])
    without_d = LutSumModel.fit(sums, counts, measured).evaluate(held[0], held[1], held[3])
    assert with_d.fitted.mape < 2.0 < without_d.fitted.mape


def test_constant_non_block_cost_fixes_d():
    sums, counts, _, measured, _ = synthetic_with_rest()
    model = LutSumModel.fit(sums, counts, measured, np.full(len(sums), 3.5))
    assert model.d == 0.0 and model.report.fixed_d and model.report.without_d is None
    assert model.predict(1.0, 2) == pytest.approx(model.a + 2 * model.b + model.c)
    with pytest.raises(LatbenchError, match="non-block costs"):
        LutSumModel.fit(sums, counts, measured, [1.0, 2.0])


def test_non_block_gflop_is_the_model_minus_its_blocks():
    for arch, seq in (
        (Arch.uniform_arch("bert", 256, 4, 4, 64, 1024), 128),
        (Arch.uniform_arch("gpt", 256, 2, 4, 64, 1024, vocab_size=1000, max_seq_len=64), 64),
        (Arch.uniform_arch("vit", 192, 3, 3, 64, 768), None),
    ):
        cost = model_cost(arch, 2, seq)
        blocks = sum(b.flops for b in cost.blocks)
        assert non_block_gflop(arch, 2, seq) == pytest.approx((cost.total.flops - blocks) / 1e9)
    bert = Arch.uniform_arch("bert", 768, 12, 12, 64, 3072)
    # BERT's MLM head at seq 128 costs as much as several of its blocks: not an overhead to ignore.
    assert non_block_gflop(bert, 1, 128) > 3 * model_cost(bert, 1, 128).blocks[0].flops / 1e9


def test_version_1_files_load_as_the_overhead_alone(tmp_path):
    v1 = {"format": "latbench-lut-sum", "schema_version": 1, "a": 1.1, "b": 0.2, "c": 0.3, "device": "cpu"}
    p = tmp_path / "old.json"
    p.write_text(json.dumps(v1))
    model = LutSumModel.load(p)
    assert (model.a, model.b, model.c, model.d) == (1.1, 0.2, 0.3, 0.0) and not model.has_rest_term
    assert model.predict(2.0, 3) == pytest.approx(1.1 * 2 + 0.2 * 3 + 0.3)
    v1["report"] = {
        "plain_sum": {"n": 3, "mape": 9.0, "within_10pct": 0.5, "max_ape": 12.0},
        "fitted": {"n": 3, "mape": 1.0, "within_10pct": 1.0, "max_ape": 2.0},
        "fixed_b": False,
    }
    p.write_text(json.dumps(v1))
    assert LutSumModel.load(p).report.fixed_d
    p.write_text(json.dumps({**v1, "d": 1.0}))
    with pytest.raises(LatbenchError, match="unknown key 'd'"):
        LutSumModel.load(p)
    p.write_text(json.dumps({**v1, "schema_version": 2}))
    with pytest.raises(LatbenchError) as exc:
        LutSumModel.load(p)
    assert str(exc.value) == f"{p}: missing key 'd'"
    p.write_text(json.dumps({**v1, "schema_version": 3}))
    with pytest.raises(LatbenchError, match=r"schema_version 3 \(this latbench reads 1..2\)"):
        LutSumModel.load(p)


def test_predict_arch_prices_the_head_at_the_fit_workload():
    axes = (Axis("hidden", (128, 256)), Axis("heads", (2, 4)), Axis("qk_dim", (32, 64)), Axis("mlp", (256, 512)))
    meta = TableMeta(family="bert", workload={"batch": 1, "seq_len": 128})
    table = LookupTable(axes=axes, values=np.full((2, 2, 2, 2), 0.5), meta=meta)
    arch = Arch.uniform_arch("bert", 256, 3, 2, 32, 256)
    model = LutSumModel(a=1.0, b=0.1, c=0.2, d=2.0, workload={"batch": 1, "seq_len": 128})
    expected = 1.5 + 0.3 + 0.2 + 2.0 * non_block_gflop(arch, 1, 128)
    assert model.predict_arch(table, arch) == pytest.approx(expected)
    sums, counts, rest = lut_features(table, [arch])
    assert model.predict(sums, counts, rest)[0] == pytest.approx(expected)
    other = table.with_meta(workload={"batch": 1, "seq_len": 64})
    with pytest.raises(LatbenchError, match="seq_len is 64, the LUT-sum model was fitted at 128"):
        model.predict_arch(other, arch)
    with pytest.raises(LatbenchError, match="does not record its batch"):
        lut_features(table.with_meta(workload={}), [arch])


# --------------------------------------------- a real store: tiny berts on this CPU
def tiny_berts() -> list[Arch]:
    """Tiny blocks and BERT's full 30522-word vocabulary: the MLM head dominates, as in small real BERTs.

    Four block shapes at each of three widths, so a model left out never takes its width with it.
    """
    shapes = ((1, 1, 8, 64), (2, 2, 16, 256), (3, 2, 8, 128), (4, 4, 16, 512))
    return [
        Arch.uniform_arch("bert", hidden, n, heads, qk, mlp, vocab_size=30522, max_seq_len=32)
        for hidden in (64, 96, 128)
        for n, heads, qk, mlp in shapes
    ]


@pytest.fixture(scope="module")
def tiny_bert_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from latbench.profiling.config import DeployConfig, ProtocolConfig
    from latbench.profiling.job import profile_items, work_items

    store = tmp_path_factory.mktemp("tinybert") / "runs.parquet"
    deploy = DeployConfig(backend="torch", device="cpu", threads=1, batch=1, seq_len=32)
    protocol = ProtocolConfig(budget_s=0.1, min_samples=5)
    profile_items(work_items(tiny_berts(), blocks=True), "tiny-bert", deploy, protocol, store, peaks=False)
    return store


def _leave_one_out_mape(sums, counts, rest, measured) -> float:
    errors = []
    for i in range(len(measured)):
        keep = np.arange(len(measured)) != i
        model = LutSumModel.fit(sums[keep], counts[keep], measured[keep], None if rest is None else rest[keep])
        pred = model.predict(sums[i], counts[i], None if rest is None else rest[i])
        errors.append(abs(pred - measured[i]) / measured[i])
    return 100 * float(np.mean(errors))


def test_non_block_term_is_more_accurate_on_measured_tiny_berts(tiny_bert_store, tmp_path):
    from latbench.lut.build import lut_from_store
    from latbench.profiling.store import read_store

    # p10 rather than the median, table and models alike: this 2-core machine shares a core with a benchmark.
    table = lut_from_store(tiny_bert_store, tmp_path / "lut.json", statistic="p10")
    rows = read_store(tiny_bert_store).query("scope == 'model'")
    archs = [Arch.from_json(a) for a in rows.arch]
    measured = rows.p10_ms.to_numpy()
    assert len(archs) == len(tiny_berts())
    model = LutSumModel.fit_archs(table, archs, measured)
    rep = model.report
    assert not rep.fixed_d and model.d > 0 and model.workload == {"batch": 1, "seq_len": 32}
    assert rep.fitted.mape < rep.without_d.mape < rep.plain_sum.mape
    # Held out (leave one out), not only in sample: the head term predicts models it was not fitted on.
    sums, counts, rest = lut_features(table, archs)
    with_d = _leave_one_out_mape(sums, counts, rest, measured)
    without_d = _leave_one_out_mape(sums, counts, None, measured)
    assert with_d < without_d, (with_d, without_d)
    assert LutSumModel.fit_archs(table, archs, measured, rest_term=False).report.fixed_d
