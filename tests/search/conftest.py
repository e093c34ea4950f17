"""Predictors trained on a synthetic result store, and the search problems built on them.

The store's latencies are roofline-shaped (tests/predictors/conftest.py), so the tests can
compare a searcher's predicted latencies with the truth without timing anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from latbench.search.constraint import Reference
from latbench.search.quality import get_quality
from latbench.search.run import make_problem
from latbench.space import get_space
from tests.predictors.conftest import FAST, synthetic_latency_ms, write_synthetic_store

SEQ = 128


@pytest.fixture(scope="session")
def search_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("search") / "bert.parquet", n_archs=240, seq_lens=(SEQ,))


def _train(store: Path, model: str, out: Path) -> Path:
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor

    result = train_predictor(load_dataset(store), model, seed=0, config=FAST[model])
    save_trained(result, out, plot=False)
    return out


@pytest.fixture(scope="session")
def xgb_dir(search_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("xgboost")
    return _train(search_store, "xgboost", tmp_path_factory.mktemp("pred") / "xgb")


@pytest.fixture(scope="session")
def mlp_dir(search_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(search_store, "mlp", tmp_path_factory.mktemp("pred") / "mlp")


@pytest.fixture(scope="session")
def mlp(mlp_dir: Path) -> Any:
    from latbench.predictors.persist import load_predictor

    return load_predictor(mlp_dir)


@pytest.fixture(scope="session")
def reference_ms() -> float:
    """BERT-base's true (synthetic) latency: what a measurement on the target would give."""
    return synthetic_latency_ms(get_space("bert").reference, 1, SEQ)


def problem_for(predictor: Any, reference_ms: float, speedup: float = 7.0, **kwargs: Any) -> Any:
    space = get_space("bert")
    ref = Reference(space.reference.to_json(), reference_ms, "given")
    problem, _ = make_problem(space, predictor, get_quality("proxy"), ref, speedup=speedup, seq_len=SEQ, **kwargs)
    return problem


@pytest.fixture()
def problem(mlp: Any, reference_ms: float) -> Any:
    return problem_for(mlp, reference_ms)
