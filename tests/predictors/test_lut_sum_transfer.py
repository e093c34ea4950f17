"""lut-sum (wrapping latbench.lut) and few-shot transfer to another device."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.lut import Axis, LookupTable, TableMeta
from latbench.models.cost import block_cost
from latbench.predictors import load_dataset, load_predictor, save_predictor, save_trained, train_predictor
from latbench.predictors.transfer import adapt, fewshot_evaluation
from latbench.space import Arch
from tests.predictors.conftest import FAST, write_synthetic_store

DEPLOY = {"backend": "torch", "device": "cpu", "mode": "eager", "precision": "fp32", "threads": 1, "cache": "warm"}


def _bert_lut(path, device: str = "Test CPU") -> LookupTable:
    """Block latencies of bert blocks at batch 1, seq 128 on the synthetic store's roofline."""
    axes = (
        Axis("hidden", (128, 256, 512, 768)),
        Axis("heads", (1, 4, 8, 12)),
        Axis("qk_dim", (1, 16, 32, 64)),
        Axis("mlp", (128, 1024, 2048, 3072)),
    )
    values = np.zeros(tuple(len(a) for a in axes))
    for idx in itertools.product(*(range(len(a)) for a in axes)):
        h, a, d, f = (ax.values[i] for ax, i in zip(axes, idx))
        c = block_cost(Arch.uniform_arch("bert", hidden=h, n_layers=1, heads=a, qk_dim=d, mlp=f), 0, 1, 128)
        values[idx] = 1e3 * (c.flops / 5e10 + c.bytes / 1e10)
    meta = TableMeta(family="bert", unit="ms", device=device, deploy=DEPLOY, workload={"batch": 1, "seq_len": 128})
    table = LookupTable(axes=axes, values=values, meta=meta)
    table.save(path)
    return table


@pytest.fixture(scope="module")
def lut_store(tmp_path_factory):
    return write_synthetic_store(tmp_path_factory.mktemp("lutstore") / "s.parquet", n_archs=60, seq_lens=(128,))


def test_lut_sum_trains_from_a_lut_file_and_round_trips(lut_store, tmp_path):
    _bert_lut(tmp_path / "lut.json")
    ds = load_dataset(lut_store)
    result = train_predictor(ds, "lut-sum", seed=0, lut=tmp_path / "lut.json")
    assert result.predictor.features.kind == "lut"
    # The table holds blocks only; the synthetic model adds an MLM head that grows with the width,
    # which a sum of blocks plus a per-block overhead cannot see: the ranking survives, not the scale.
    assert result.metrics["test"].kendall_tau > 0.5 and result.metrics["train"].mape < 30
    out = save_trained(result, tmp_path / "pred")
    assert (out / "lut.json").exists() and (out / "lut_sum.json").exists()
    back = load_predictor(out)
    a, b = result.predictor.predict_frame(ds.frame), back.predict_frame(ds.frame)
    np.testing.assert_array_equal(a.ms, b.ms)
    assert np.all(a.low_ms <= a.ms) and np.all(a.ms <= a.high_ms)
    arch = Arch.from_json(ds.frame["arch"].iloc[0])
    assert back.predict_archs([arch], batch=1, seq_len=128).ms[0] == pytest.approx(a.ms[0])
    with pytest.raises(LatbenchError, match="seq_len=128 only"):
        back.predict_archs([arch], batch=1, seq_len=64)


def test_lut_sum_with_the_non_block_term_sees_the_mlm_head(lut_store, tmp_path):
    _bert_lut(tmp_path / "lut.json")
    ds = load_dataset(lut_store)
    result = train_predictor(ds, "lut-sum", seed=0, lut=tmp_path / "lut.json")
    assert result.predictor.features.columns == ("lut_sum_ms", "n_blocks", "rest_gflop")
    model = result.predictor.model
    assert not model.report.fixed_d and model.d > 0
    # The synthetic latency is a roofline of the whole model (MLM head included) plus 1% noise:
    # with the head priced, the held-out error is at the noise, far below the overhead alone's.
    assert result_mape(result) < 3.0 < model.report.without_d.mape
    out = save_trained(result, tmp_path / "pred")
    back = load_predictor(out)
    np.testing.assert_allclose(back.predict_frame(ds.frame).ms, result.predictor.predict_frame(ds.frame).ms)
    arch = Arch.from_json(ds.frame["arch"].iloc[0])
    row = ds.frame.iloc[[0]]
    assert back.predict_archs([arch], batch=1, seq_len=128).ms[0] == pytest.approx(back.predict_frame(row).ms[0])


def result_mape(result) -> float:
    return float(result.metrics["test"].mape)


def test_lut_sum_refusals(lut_store, store_path, hat_gpu, tmp_path):
    _bert_lut(tmp_path / "other.json", device="Another CPU")
    ds = load_dataset(lut_store)
    with pytest.raises(LatbenchError, match="needs a look-up table"):
        train_predictor(ds, "lut-sum")
    with pytest.raises(LatbenchError, match="'Another CPU', not 'Test CPU'; use --force"):
        train_predictor(ds, "lut-sum", lut=tmp_path / "other.json")
    assert train_predictor(ds, "lut-sum", lut=tmp_path / "other.json", force=True).predictor.fitted
    with pytest.raises(LatbenchError, match="one workload"):
        train_predictor(load_dataset(store_path), "lut-sum", lut=tmp_path / "other.json", force=True)
    with pytest.raises(LatbenchError, match="not an imported table"):
        train_predictor(load_dataset(hat_gpu), "lut-sum", lut=tmp_path / "other.json")


def test_recalibration_transfers_to_a_slower_device(store_path, other_device_store, tmp_path):
    src = train_predictor(load_dataset(store_path), "xgboost", seed=0, config=FAST["xgboost"]).predictor
    target = load_dataset(other_device_store)
    x = src.featurize(target.frame)
    rng = np.random.default_rng(0)
    k = rng.choice(len(target), size=5, replace=False)
    adapted = adapt(src, x[k], target.target_ms[k], validity=target.validity, statistic="median")
    before = np.abs(src.predict(x) / target.target_ms - 1).mean()
    after = np.abs(adapted.predict(x) / target.target_ms - 1).mean()
    assert before > 0.3 and after < 0.1
    p = adapted.predict_interval(x)
    assert np.all(p.low_ms <= p.ms) and np.all(p.ms <= p.high_ms)
    out = save_predictor(adapted, tmp_path / "adapted")
    back = load_predictor(out)
    np.testing.assert_array_equal(back.predict(x), adapted.predict(x))
    assert back.validity.device == "Other CPU"
    residual = adapt(src, x[:20], target.target_ms[:20], method="residual-xgboost", seed=0)
    np.testing.assert_array_equal(
        load_predictor(save_predictor(residual, tmp_path / "r")).predict(x), residual.predict(x)
    )


def test_mlp_finetune_and_fewshot_table(store_path, other_device_store):
    src = train_predictor(load_dataset(store_path), "mlp", seed=0, config=FAST["mlp"]).predictor
    target = load_dataset(other_device_store)
    rows = fewshot_evaluation(
        src, target, ks=(5, 10), methods=("recalibrate", "finetune", "scratch"), repeats=2, seed=0
    )
    assert [(r.method, r.k) for r in rows][:2] == [("source", 0), ("recalibrate", 5)]
    assert len(rows) == 1 + 2 * 3
    by = {(r.method, r.k): r for r in rows}
    assert by[("recalibrate", 10)].within_10pct > by[("source", 0)].within_10pct
    assert all(0 <= r.within_10pct <= 1 and -1 <= r.kendall_tau <= 1 for r in rows)
    with pytest.raises(LatbenchError, match="mlp source"):
        adapt(
            train_predictor(load_dataset(store_path), "roofline-linear").predictor, np.ones((2, 34)), [1, 2], "finetune"
        )


def test_pruning_prices_a_model_as_the_lut_sum_predictor_does(lut_store, tmp_path):
    """``prune --overhead DIR``: the pruner's whole-model price is the lut-sum predictor's prediction."""
    from latbench.pruning.latency import LatencyCost, load_overhead

    table = _bert_lut(tmp_path / "lut.json")
    result = train_predictor(load_dataset(lut_store), "lut-sum", seed=0, lut=tmp_path / "lut.json")
    out = save_trained(result, tmp_path / "pred")
    assert result.predictor.model.has_rest_term
    base = Arch.uniform_arch("bert", hidden=768, n_layers=4, heads=12, qk_dim=64, mlp=3072)
    cost = LatencyCost(table, base, overhead=load_overhead(out))
    pruned = Arch.uniform_arch("bert", hidden=384, n_layers=4, heads=6, qk_dim=32, mlp=1000)
    for arch in (base, pruned):
        predicted = load_predictor(out).predict_archs([arch], batch=1, seq_len=128).ms[0]
        assert cost.latency(arch) == pytest.approx(predicted, rel=1e-9)
    with pytest.raises(LatbenchError, match="a xgboost predictor, not a lut-sum one"):
        train = train_predictor(load_dataset(lut_store), "xgboost", seed=0, config=FAST["xgboost"])
        load_overhead(save_trained(train, tmp_path / "xgb"))


def test_lut_sum_outside_its_table_names_the_setting_that_extrapolates(lut_store, tmp_path):
    table = _bert_lut(tmp_path / "lut.json")
    narrow = LookupTable(axes=(Axis("hidden", (512, 768)), *table.axes[1:]), values=table.values[2:], meta=table.meta)
    narrow.save(tmp_path / "narrow.json")
    ds = load_dataset(lut_store)
    with pytest.raises(LatbenchError, match=r"outside the grid.*--param extrapolate=true") as exc:
        train_predictor(ds, "lut-sum", seed=0, lut=tmp_path / "narrow.json")
    assert "--extrapolate /" not in exc.value.what  # lut query's flag, not this command's
    result = train_predictor(ds, "lut-sum", seed=0, lut=tmp_path / "narrow.json", config={"extrapolate": True})
    assert result.metrics["test"].n > 0
