"""Training data: HAT's real files imported, result stores read, devices and deployments told apart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from latbench.errors import LatbenchError
from latbench.predictors import (
    check_data,
    evaluate_predictor,
    import_hat,
    load_dataset,
    shuffled_split,
    train_predictor,
)
from latbench.predictors.data import hat_source_info
from tests.predictors.conftest import FAST, write_synthetic_store


def test_hat_import_of_the_real_fixture(hat_dir, hat_gpu):
    ds = load_dataset(hat_gpu)
    raw = pd.read_csv(hat_dir / "wmt14ende_gpu_titanxp_all.csv")
    assert len(ds) == 2000 and ds.kind == "table" and len(ds.feature_columns) == 10
    np.testing.assert_allclose(ds.target_ms, raw["latency_mean_encoder"] + raw["latency_mean_decoder"])
    assert ds.validity.device == "NVIDIA Titan Xp" and ds.validity.task == "wmt14ende"
    assert ds.validity.source == "hat" and ds.statistic == "mean"
    assert hat_source_info("wmt14ende_cpu_xeon_all.csv") == ("wmt14ende", "Intel Xeon E5-2640")


def test_hat_import_needs_a_device_when_the_name_does_not_say(hat_dir, tmp_path):
    renamed = tmp_path / "latency.csv"
    renamed.write_text((hat_dir / "iwslt14deen_gpu_titanxp_all.csv").read_text())
    with pytest.raises(LatbenchError, match="give --device"):
        import_hat(renamed, tmp_path / "x.parquet")
    ds = import_hat(renamed, tmp_path / "x.parquet", device="My GPU")
    assert ds.validity.device == "My GPU"


def test_xgboost_on_hat_reaches_a_sane_error(hat_gpu):
    ds = load_dataset(hat_gpu)
    split = shuffled_split(len(ds), seed=0)
    result = train_predictor(ds, "xgboost", seed=0, config={"n_jobs": 2})
    assert result.metrics["test"].mape < 10.0  # HAT's own MLP reaches ~6%; noise floor ~5% (drift)
    assert result.metrics["test"].kendall_tau > 0.7
    assert split.sizes()["test"] == 200
    # The 90% interval, calibrated on the validation set, covers roughly 90% of unseen architectures.
    test = result.split.test
    p = result.predictor.predict_interval(result.predictor.featurize(ds.frame.iloc[test]))
    covered = np.mean((p.low_ms <= ds.target_ms[test]) & (ds.target_ms[test] <= p.high_ms))
    assert 0.75 <= covered <= 1.0


def test_store_dataset_statistics_and_validity(store_path):
    median = load_dataset(store_path)
    p10 = load_dataset(store_path, statistic="p10")
    assert median.kind == "store" and len(median) == 240 and median.n_groups == 120
    np.testing.assert_allclose(p10.target_ms, median.target_ms * 0.98)
    v = median.validity
    assert v.device == "Test CPU" and v.deploy["threads"] == 1 and v.workload == {"batch": [1, 1], "seq_len": [64, 128]}
    assert "samples_ms" not in median.frame.columns
    with pytest.raises(LatbenchError, match="--statistic"):
        load_dataset(store_path, statistic="p95")


def test_a_store_with_two_deployments_must_choose(tmp_path):
    path = write_synthetic_store(tmp_path / "two.parquet", n_archs=10, seq_lens=(64,))
    from latbench.profiling.store import ResultStore, read_store

    rows = read_store(path)
    rows["deploy_key"] = rows["deploy_key"].str.replace("precision=fp32", "precision=fp16")
    rows["precision"] = "fp16"
    with ResultStore(path) as store:
        store.append(rows, store.fingerprints())
    with pytest.raises(LatbenchError, match=r"2 deployments.*--deployment"):
        load_dataset(path)
    assert load_dataset(path, deployment="precision=fp16").validity.deploy["precision"] == "fp16"


def test_other_device_is_refused_unless_forced(store_path, other_device_store, hat_gpu, hat_cpu):
    pred = train_predictor(load_dataset(store_path), "roofline-linear", seed=0).predictor
    other = load_dataset(other_device_store)
    with pytest.raises(LatbenchError, match=r"'Test CPU', the data was measured on 'Other CPU'.*--force"):
        evaluate_predictor(pred, other)
    metrics, _ = evaluate_predictor(pred, other, force=True)
    assert metrics.mape > 30  # 1.7x slower: the refusal was right
    assert check_data(pred, load_dataset(store_path, statistic="p10"), force=True) == [
        "the predictor predicts the median, the data's target is the p10"
    ]
    hat = train_predictor(load_dataset(hat_gpu), "roofline-linear", seed=0).predictor
    with pytest.raises(LatbenchError, match="NVIDIA Titan Xp"):
        check_data(hat, load_dataset(hat_cpu))
    with pytest.raises(LatbenchError, match="imported table"):
        check_data(pred, load_dataset(hat_gpu), force=True)  # features cannot be computed: not forceable


def test_files_that_are_not_training_data(tmp_path, store_path):
    with pytest.raises(LatbenchError, match="no such file"):
        load_dataset(tmp_path / "none.parquet")
    (tmp_path / "x.parquet").write_text("not parquet")
    with pytest.raises(LatbenchError, match="not a parquet file"):
        load_dataset(tmp_path / "x.parquet")
    pd.DataFrame({"a": [1.0]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(LatbenchError, match="import foreign data first"):
        load_dataset(tmp_path / "plain.parquet")


def test_mlp_and_xgboost_train_on_a_table(hat_cpu):
    ds = load_dataset(hat_cpu).subset(np.arange(300))
    for model in ("mlp", "xgboost"):
        result = train_predictor(ds, model, seed=1, config=FAST[model])
        assert np.isfinite(result.metrics["test"].mape)


def test_drift_correction_brings_rows_to_one_machine_speed(tmp_path):
    import numpy as np

    from latbench.errors import LatbenchError
    from latbench.predictors.data import load_dataset
    from latbench.space import Arch
    from tests.predictors.conftest import synthetic_latency_ms, write_synthetic_store

    store = write_synthetic_store(tmp_path / "d.parquet", n_archs=60, seq_lens=(128,), drift=0.05)
    raw, fixed = load_dataset(store), load_dataset(store, drift_correction=1.0)
    truth = np.array([synthetic_latency_ms(Arch.from_json(a), 1, 128) for a in raw.frame["arch"]])
    spread = lambda y: float(np.std(np.log(y / truth)))  # noqa: E731
    assert spread(raw.target_ms) > 0.03 and spread(fixed.target_ms) < 0.015  # 5% drift gone, 1% noise left
    assert fixed.drift_correction == 1.0 and raw.drift_correction == 0.0
    half = load_dataset(store, drift_correction=0.5)
    assert spread(fixed.target_ms) < spread(half.target_ms) < spread(raw.target_ms)
    plain = write_synthetic_store(tmp_path / "p.parquet", n_archs=10, seq_lens=(128,))
    with pytest.raises(LatbenchError, match="lacks the machine-speed reference"):
        load_dataset(plain, drift_correction=1.0)
    with pytest.raises(LatbenchError, match=r"\[0, 1\]"):
        load_dataset(store, drift_correction=2.0)


def test_a_store_records_the_dimensions_it_holds_and_flags_what_lies_well_beyond(store_path):
    from latbench.predictors.data import Validity, arch_dim_ranges
    from latbench.space import Arch

    ds = load_dataset(store_path)
    dims = ds.validity.dims
    archs = [Arch.from_json(a) for a in set(ds.frame["arch"].astype(str))]
    assert dims == arch_dim_ranges(archs) and set(dims) == {"hidden", "layers", "heads", "qk_dim", "v_dim", "mlp"}
    back = Validity.from_dict(ds.validity.to_dict())
    assert back.dims == dims
    lo, hi = dims["hidden"]
    assert back.dim_problems({"hidden": [lo, hi]}) == []
    assert back.dim_problems({"hidden": [int(lo * 0.9), hi]}) == []  # within the 15% tolerance
    (problem,) = back.dim_problems({"hidden": [lo, int(hi * 1.5)]})
    assert f"hidden {lo}..{int(hi * 1.5)} lies outside the training architectures' {lo}..{hi}" in problem
    assert (
        Validity.from_dict({k: v for k, v in ds.validity.to_dict().items() if k != "dims"}).dim_problems(
            {"hidden": [1, 10**6]}
        )
        == []
    )  # a predictor saved before dims were recorded checks nothing
