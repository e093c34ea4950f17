"""Every registered predictor through one lifecycle: fit, predict with an interval, save, load, same predictions.

A predictor whose library is missing is skipped with the reason, never dropped.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from latbench.errors import MissingDependencyError
from latbench.predictors import predictor_names
from latbench.predictors.data import load_dataset
from latbench.predictors.persist import load_predictor, save_predictor
from latbench.predictors.train import train_predictor
from latbench.space import Arch
from tests.predictors.conftest import FAST, write_synthetic_store
from tests.predictors.test_lut_sum_transfer import _bert_lut


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("contract")
    store = write_synthetic_store(root / "a.parquet", n_archs=80, seq_lens=(128,))
    other = write_synthetic_store(
        root / "b.parquet", n_archs=80, seq_lens=(128,), cpu_model="Other CPU", env_id="envtest00002", scale=1.7
    )
    _bert_lut(root / "lut.json")
    return {"a": load_dataset(store), "b": load_dataset(other), "lut": root / "lut.json"}


def _fitted(name: str, data) -> object:
    ds = data["a"]
    try:
        if name in ("recalibrated", "residual-xgboost"):
            from latbench.predictors.transfer import adapt

            source = train_predictor(ds, "xgboost", seed=0, config=FAST["xgboost"]).predictor
            target = data["b"]
            k = 20
            method = "recalibrate" if name == "recalibrated" else name
            return adapt(
                source,
                source.featurize(target.frame.iloc[:k]),
                target.target_ms[:k],
                method=method,
                validity=target.validity,
                statistic=target.statistic,
            )
        return train_predictor(
            ds, name, seed=0, config=FAST.get(name), lut=data["lut"] if name == "lut-sum" else None
        ).predictor
    except MissingDependencyError as exc:
        pytest.skip(f"{name}: {exc}")


@pytest.mark.parametrize("name", predictor_names())
def test_predictor_lifecycle(name, data, tmp_path):
    pred = _fitted(name, data)
    ds = data["b"] if name in ("recalibrated", "residual-xgboost") else data["a"]
    frame = ds.frame.iloc[30:60]
    p = pred.predict_frame(frame)
    assert len(p) == len(frame) and np.all(np.isfinite(p.ms)) and np.all(p.ms > 0)
    assert np.all(p.low_ms <= p.ms) and np.all(p.ms <= p.high_ms)
    np.testing.assert_allclose(pred.predict(pred.featurize(frame)), p.ms, rtol=1e-6)
    # it learnt something: its predictions rank the held-out architectures like the truth does
    truth = ds.target_ms[30:60]
    assert np.corrcoef(np.log(p.ms), np.log(truth))[0, 1] > 0.5  # tiny fast fits: behaviour, not accuracy
    # saved and loaded, it predicts the same; pickled, too
    save_predictor(pred, tmp_path / "p")
    back = load_predictor(tmp_path / "p")
    assert back.name == pred.name
    np.testing.assert_allclose(back.predict_frame(frame).ms, p.ms, rtol=1e-6)
    np.testing.assert_allclose(pickle.loads(pickle.dumps(pred)).predict_frame(frame).ms, p.ms, rtol=1e-6)
    # architectures in, the same numbers out
    if pred.features is not None and pred.features.kind != "table":
        archs = [Arch.from_json(a) for a in frame["arch"]]
        np.testing.assert_allclose(pred.predict_archs(archs, batch=1, seq_len=128).ms, p.ms, rtol=1e-6)


def test_every_predictor_is_covered():
    assert set(predictor_names()) >= {"xgboost", "mlp", "lut-sum", "roofline-linear"}
    assert Path(__file__).name.startswith("test_")
