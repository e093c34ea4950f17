"""Every trainable predictor: seeded determinism, save/load round trip, intervals; the MLP's gradient."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.predictors import (
    create_predictor,
    load_card,
    load_dataset,
    load_predictor,
    save_trained,
    train_predictor,
)
from latbench.predictors.features import ArchArrays, torch_arch_features
from latbench.space import Arch
from tests.predictors.conftest import FAST

MODELS = ["xgboost", "mlp", "roofline-linear"]


@pytest.fixture(scope="module")
def dataset(store_path):
    return load_dataset(store_path)


@pytest.fixture(scope="module")
def trained(dataset):
    return {m: train_predictor(dataset, m, seed=0, config=FAST[m]) for m in MODELS}


@pytest.mark.parametrize("model", MODELS)
def test_same_seed_same_predictor(dataset, trained, model):
    again = train_predictor(dataset, model, seed=0, config=FAST[model])
    x = trained[model].predictor.featurize(dataset.frame)
    np.testing.assert_array_equal(trained[model].predictor.predict(x), again.predictor.predict(x))
    assert np.array_equal(trained[model].split.test, again.split.test)


@pytest.mark.parametrize("model", MODELS)
def test_save_load_round_trip_gives_identical_predictions(dataset, trained, model, tmp_path):
    result = trained[model]
    out = save_trained(result, tmp_path / "pred")
    back = load_predictor(out)
    assert type(back) is type(result.predictor) and back.validity == result.predictor.validity
    a, b = result.predictor.predict_frame(dataset.frame), back.predict_frame(dataset.frame)
    for name in ("ms", "low_ms", "high_ms"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    card = load_card(out)
    assert card.model == model and card.training_data["sha256"] == dataset.sha256
    assert card.validity["device"] == "Test CPU" and card.validity["deploy"]["backend"] == "torch"
    assert card.metrics_of("test").n == result.split.test.size
    assert set(json.loads((out / "card.json").read_text())) >= {"latbench_version", "schema_version", "features"}


@pytest.mark.parametrize("model", MODELS)
def test_interval_contains_the_point_and_metrics_are_sane(dataset, trained, model):
    result = trained[model]
    p = result.predictor.predict_frame(dataset.frame)
    assert np.all(p.low_ms <= p.ms) and np.all(p.ms <= p.high_ms) and np.all(p.low_ms > 0)
    assert np.all(np.isfinite(p.ms))
    test = result.metrics["test"]
    assert test.n == result.split.test.size and 0 <= test.within_10pct <= 1
    assert test.kendall_tau > 0.5  # a 1%-noise roofline is easy to rank, even for tiny models


def test_predict_archs_and_arrays_agree_with_frame_rows(dataset, trained):
    pred = trained["xgboost"].predictor
    row = dataset.frame.iloc[:1]
    arch = Arch.from_json(row["arch"].iloc[0])
    by_frame = pred.predict_frame(row).ms
    by_arch = pred.predict_archs([arch], batch=1, seq_len=int(row["seq_len"].iloc[0])).ms
    np.testing.assert_array_equal(by_frame, by_arch)


def test_mlp_torch_forward_is_differentiable_and_matches_predict(dataset, trained):
    pred = trained["mlp"].predictor
    x = pred.featurize(dataset.frame.iloc[:8])
    xt = torch.tensor(x, requires_grad=True)
    ms = pred.torch_forward(xt)
    np.testing.assert_allclose(ms.detach().numpy(), pred.predict(x), rtol=1e-5)
    ms.sum().backward()
    assert xt.grad is not None and torch.count_nonzero(xt.grad) > 0
    # End to end from relaxed dimensions: d(latency)/d(mlp width) through the features.
    archs = [Arch.from_json(a) for a in dataset.frame["arch"].iloc[:4]]
    arrays = ArchArrays.from_archs(archs)
    mlp = torch.tensor(arrays.mlp, requires_grad=True)
    feats = torch_arch_features(
        pred.features, arrays.hidden, arrays.n_layers, arrays.heads, arrays.qk_dim, arrays.v_dim, mlp, 1, 128
    )
    pred.torch_forward(feats).sum().backward()
    assert torch.count_nonzero(mlp.grad) > 0


def test_missing_xgboost_names_the_extra(monkeypatch, dataset):
    monkeypatch.setitem(sys.modules, "xgboost", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'latbench\[xgboost\]'"):
        train_predictor(dataset, "xgboost", config=FAST["xgboost"])


def test_unknown_model_and_bad_config_are_one_line_errors(dataset):
    with pytest.raises(LatbenchError, match="unknown predictor 'svm'"):
        train_predictor(dataset, "svm")
    with pytest.raises(LatbenchError, match="unknown parameter 'depth'"):
        create_predictor("xgboost", {"depth": 3})
    with pytest.raises(LatbenchError, match="expected int"):
        create_predictor("xgboost", {"max_depth": "deep"})
    assert create_predictor("mlp", {"hidden": "8,4"}).config.hidden == (8, 4)


def test_loading_a_bad_predictor_directory_names_the_file(trained, tmp_path):
    out = save_trained(trained["roofline-linear"], tmp_path / "p")
    doc = json.loads((out / "predictor.json").read_text())
    (out / "predictor.json").write_text(json.dumps({**doc, "schema_version": 99}))
    with pytest.raises(LatbenchError, match=r"predictor\.json: unsupported schema_version 99"):
        load_predictor(out)
    (out / "predictor.json").write_text("{")
    with pytest.raises(LatbenchError, match="malformed JSON"):
        load_predictor(out)
    with pytest.raises(LatbenchError, match="not a predictor directory"):
        load_predictor(tmp_path)
    out = save_trained(trained["xgboost"], tmp_path / "x")
    (out / "model.ubj").write_bytes(b"garbage")
    with pytest.raises(LatbenchError, match=r"model\.ubj: not an xgboost model"):
        load_predictor(out)


def test_save_refuses_to_replace_a_foreign_directory(trained, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(LatbenchError, match="holds no predictor"):
        save_trained(trained["roofline-linear"], tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    out = save_trained(trained["roofline-linear"], tmp_path / "p")
    save_trained(trained["mlp"], out)  # replacing a predictor is fine
    assert load_predictor(out).name == "mlp" and not (out / "model.ubj").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_plot_is_skipped_without_matplotlib(monkeypatch, trained, tmp_path):
    from latbench.predictors.plot import plot_predicted_vs_measured

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_predicted_vs_measured([1.0, 2.0], [1.1, 1.9], tmp_path / "p.png") is None
    out = save_trained(trained["roofline-linear"], tmp_path / "pred")
    assert not (out / "predicted_vs_measured.png").exists() and (out / "card.json").exists()


def test_monotone_trees_never_add_latency_for_less_work(tmp_path):
    """With ``monotone`` the trees (what xgboost adds to its log-linear base) never fall as a feature that
    counts work grows, every other feature fixed; unconstrained trees on the same noisy data do. Bagged
    trees (``num_parallel_tree``) save and load like any other."""
    from tests.predictors.conftest import write_synthetic_store

    ds = load_dataset(write_synthetic_store(tmp_path / "noisy.parquet", drift=0.05))
    config = {"rounds_without_validation": 300, "max_depth": 6, "n_jobs": 1, "num_parallel_tree": 3, "subsample": 0.7}
    config["objective"] = "squared"  # monotone needs it
    x = None
    drops = {}
    for mono in (False, True):
        result = train_predictor(ds, "xgboost", seed=0, fractions=(1.0, 0.0, 0.0), config={**config, "monotone": mono})
        pred = result.predictor
        x = pred.featurize(ds.frame)[:200]
        trees = pred._log_point(x) - pred._margin(x)
        n = 0
        for j, col in enumerate(pred.features.columns):
            if col == "intensity":
                continue
            up = x.copy()
            up[:, j] = up[:, j] * 1.3 + 1
            n += int(((pred._log_point(up) - pred._margin(up)) < trees - 1e-5).sum())  # float32 sums
        drops[mono] = n
    assert drops[True] == 0 and drops[False] > 0, drops
    save_trained(result, tmp_path / "p")
    again = load_predictor(tmp_path / "p")
    assert again.config.monotone is True and again.config.num_parallel_tree == 3
    np.testing.assert_allclose(again.predict(x), pred.predict(x))
    with pytest.raises(LatbenchError, match="monotone"):
        create_predictor("xgboost", {"monotone": "sometimes"})
    with pytest.raises(LatbenchError, match="objective=squared"):
        create_predictor("xgboost", {"monotone": True})
    with pytest.raises(LatbenchError, match="num_parallel_tree"):
        create_predictor("xgboost", {"num_parallel_tree": 0})
