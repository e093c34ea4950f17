"""``latbench.runs``: names under runs/, finding the most recent store or predictor, the listing."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from latbench import runs
from latbench.errors import LatbenchError
from latbench.profiling.config import DeployConfig
from tests.predictors.conftest import FAST, write_synthetic_store

SHIPPED = Path(__file__).resolve().parents[1] / "predictors"


def _train(store: Path, out: Path, model: str = "xgboost") -> Path:
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor

    save_trained(train_predictor(load_dataset(store), model, seed=0, config=FAST[model]), out, plot=False)
    return out


def _touch(path: Path, t: float) -> None:
    os.utime(path, (t, t))


def test_store_names_say_space_device_and_deployment(tmp_path):
    deploy = DeployConfig(backend="torch", device="cpu", threads=1, batch=1, seq_len=128)
    assert runs.store_path("bert", deploy, tmp_path).name == "bert_cpu_torch-eager-fp32-t1_b1_s128.parquet"
    design = [(b, s) for b in (1, 4, 32) for s in (64, 512)]
    assert runs.store_path("bert", deploy, tmp_path, workloads=design).name.endswith("_b1-32_s64-512.parquet")
    gpu = DeployConfig(backend="torch", device="cuda:1", precision="fp16", batch=8)
    assert runs.store_path("vit", gpu).as_posix() == "runs/vit_cuda1_torch-graph-fp16_b8.parquet"
    assert runs.predictor_path(tmp_path / "s.parquet", "mlp") == tmp_path / "s_mlp"


def test_fresh_dirs_count_up(tmp_path):
    assert runs.fresh_dir("search", tmp_path).name == "search_001"
    (tmp_path / "search_001").mkdir()
    (tmp_path / "search_007").mkdir()
    assert runs.fresh_dir("search", tmp_path).name == "search_008"


def test_default_samples_per_device_and_the_test_variable(monkeypatch):
    monkeypatch.delenv(runs.SAMPLES_ENV, raising=False)
    assert runs.default_samples("cpu") == runs.DEFAULT_SAMPLES["cpu"]
    assert runs.default_samples("cuda:0") == runs.DEFAULT_SAMPLES["cuda"]
    monkeypatch.setenv(runs.SAMPLES_ENV, "3")
    assert runs.default_samples("cpu") == 3
    monkeypatch.setenv(runs.SAMPLES_ENV, "x")
    with pytest.raises(LatbenchError, match=runs.SAMPLES_ENV):
        runs.default_samples("cpu")
    assert runs.default_seq("bert") == 128 and runs.default_seq("vit") is None
    assert runs.default_seq("gpt", max_seq_len=64) == 64  # a space's shorter limit


def test_latest_store_and_predictor_and_the_listing(tmp_path):
    root = tmp_path / "runs"
    with pytest.raises(LatbenchError, match="latbench profile"):
        runs.latest_store(root)
    old = write_synthetic_store(root / "old.parquet", n_archs=30, seq_lens=(128,))
    new = write_synthetic_store(root / "deeper" / "new.parquet", n_archs=30, seq_lens=(128,))
    _touch(old, 1000)
    _touch(new, 2000)
    (root / "notes.json").write_text("{}")  # neither a store nor a table: not listed
    assert runs.latest_store(root) == new and runs.is_latest("store", new, root)
    pred = _train(new, root / "new_xgboost")
    assert runs.find_predictor("bert", runs=root, shipped=tmp_path / "none") == pred
    # a newer predictor over a design of workloads is taken where its ranges hold, passed over beyond them
    design = write_synthetic_store(root / "design.parquet", n_archs=30, batches=(2, 8), seq_lens=(64, 256))
    wide = _train(design, root / "design_xgboost")
    _touch(wide / "card.json", 3000)
    _touch(wide, 3000)
    assert runs.find_predictor("bert", 4, 128, runs=root, shipped=tmp_path / "none") == wide
    assert runs.find_predictor("bert", 1, 128, runs=root, shipped=tmp_path / "none") == pred
    shutil.rmtree(wide)
    design.unlink()
    search = root / "search_001"
    search.mkdir()
    (search / "result.json").write_text(
        json.dumps(
            {
                "best": {"predicted_ms": 10.0},
                "reference": {"latency_ms": 70.0, "source": "measured"},
                "constraint": {"speedup": 7.0, "target_ms": 10.0},
            }
        )
    )
    (root / "prune_001").mkdir()
    (root / "prune_001" / "job.json").write_text("{}")
    entries = runs.list_runs(root)
    assert [(e.kind, e.path) for e in entries] == [
        ("store", old),
        ("store", new),
        ("predictor", pred),
        ("search", search),
        ("prune", root / "prune_001"),
    ]
    figures = {e.kind: e.figure for e in entries}
    assert figures["store"].startswith("30 rows (30 models, 0 blocks) over 30 architectures")
    assert figures["predictor"].startswith("xgboost, test MAPE") and "Test CPU" in figures["predictor"]
    assert figures["search"] == "7x: predicted 10 ms, 7x over 70 ms (measured)"
    assert figures["prune"].startswith("not finished")


def test_a_shipped_predictor_is_taken_only_where_its_card_holds(tmp_path, monkeypatch):
    if not (SHIPPED / "bert_cpu_b1_s128" / "card.json").is_file():
        pytest.skip("no shipped predictor in this tree")
    shipped = tmp_path / "predictors"
    shutil.copytree(SHIPPED / "bert_cpu_b1_s128", shipped / "bert_cpu_b1_s128")
    card = json.loads((shipped / "bert_cpu_b1_s128" / "card.json").read_text())
    import latbench.lut.build as build

    monkeypatch.setattr(build, "hardware_name", lambda device, env=None: "Another CPU")
    with pytest.raises(LatbenchError) as exc:
        runs.find_predictor("bert", 1, 128, runs=tmp_path / "runs", shipped=shipped)
    assert "bert_cpu_b1_s128 does not hold here" in exc.value.what and "Another CPU" in exc.value.what
    monkeypatch.setattr(build, "hardware_name", lambda device, env=None: card["validity"]["device"])
    assert runs.find_predictor("bert", 1, 128, runs=tmp_path / "runs", shipped=shipped).name == "bert_cpu_b1_s128"
    with pytest.raises(LatbenchError, match="seq_len"):  # another workload
        runs.find_predictor("bert", 1, 64, runs=tmp_path / "runs", shipped=shipped)


def test_of_the_shipped_predictors_the_one_trained_at_the_workload_comes_first(tmp_path, monkeypatch):
    names = ("bert_cpu-xeon_workloads", "bert_cpu-xeon_b1_s128")
    if not all((SHIPPED / n / "card.json").is_file() for n in names):
        pytest.skip("no shipped predictors in this tree")
    shipped = tmp_path / "predictors"
    shutil.copytree(SHIPPED / names[0], shipped / names[0])
    shutil.copytree(SHIPPED / names[1], shipped / "z_b1_s128")  # listed after the predictor over workloads
    device = json.loads((shipped / names[0] / "card.json").read_text())["validity"]["device"]
    import latbench.lut.build as build

    monkeypatch.setattr(build, "hardware_name", lambda device_, env=None: device)
    none = tmp_path / "runs"
    # batch 1, seq 128: both hold, the one trained on it alone is taken, though listed last.
    assert runs.find_predictor("bert", 1, 128, runs=none, shipped=shipped).name == "z_b1_s128"
    # Other workloads: only the predictor over workloads holds (trained at 4x128, interpolating 3x96).
    assert runs.find_predictor("bert", 4, 128, runs=none, shipped=shipped).name == "bert_cpu-xeon_workloads"
    assert runs.find_predictor("bert", 3, 96, runs=none, shipped=shipped).name == "bert_cpu-xeon_workloads"
    with pytest.raises(LatbenchError, match="batch"):  # beyond every shipped predictor
        runs.find_predictor("bert", 64, 64, runs=none, shipped=shipped)
