"""The four commands as a new user types them, in a fresh folder, one after the other.

``latbench profile --device cpu``, ``latbench train-predictor``, ``latbench search
--latency-constraint 7`` (and ``latbench profile --device cuda:0``, which on a machine
without a GPU is one line naming it). The sample is made small by ``LATBENCH_DEFAULT_SAMPLES``
and the protocol short by defaults given to the protocol options, so the chain takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.cli.options import ProtocolOptions
from latbench.profiling.store import read_store
from tests.cli_assert import assert_one_line_error

runner = CliRunner()
QUICK_PROTOCOL = {
    "budget_s": 0.02,
    "min_samples": 2,
    "max_samples": 2,
    "calls_per_round": 2,
    "warmup_calls": 1,
    "warmup_s": 0.0,
}


@pytest.fixture
def fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LATBENCH_DEFAULT_SAMPLES", "6")
    config = ProtocolOptions.config
    monkeypatch.setattr(ProtocolOptions, "config", lambda self, **d: config(self, **{**QUICK_PROTOCOL, **d}))
    # Six architectures teach a tree model little below the smallest of them, and two timings of
    # BERT-base on a shared machine move by 2x: the reference is measured (the path under test),
    # then scaled so that 7x is within the tiny predictor's reach whatever the machine did.
    import dataclasses

    import latbench.search.run as search_run

    measured = search_run.measured_reference

    def scaled(*args: object, **kwargs: object) -> object:
        ref = measured(*args, **kwargs)
        return dataclasses.replace(ref, latency_ms=10 * ref.latency_ms)

    monkeypatch.setattr(search_run, "measured_reference", scaled)
    return tmp_path


def typed(line: str):
    return runner.invoke(app, line.split()[1:])


def test_profile_train_predictor_search_as_typed(fresh_folder: Path) -> None:
    r = typed("latbench profile --device cpu")
    assert r.exit_code == 0, r.output
    (store,) = Path("runs").glob("*.parquet")
    assert store.name.startswith("bert_cpu_torch-eager-fp32-t") and store.name.endswith("_b1_s128.parquet")
    rows = read_store(store)
    assert (rows.scope == "model").sum() == 6 and (rows.seq_len == 128).all() and (rows.batch == 1).all()
    assert f"to {store}" in r.stdout and "next        latbench train-predictor\n" in r.stdout

    r = typed("latbench train-predictor")
    assert r.exit_code == 0, r.output
    predictor = store.with_name(store.stem + "_xgboost")
    assert (predictor / "card.json").is_file()
    assert f"data        {store}" in r.stdout and f"wrote {predictor}" in r.stdout
    assert "next        latbench search --latency-constraint 7\n" in r.stdout

    r = typed("latbench search --latency-constraint 7")
    assert r.exit_code == 0, r.output
    result = json.loads(Path("runs/search_001/result.json").read_text())
    assert result["reference"]["source"] == "measured"  # on the predictor's device: this machine
    assert result["predictor"]["path"] == str(predictor) and result["constraint"]["speedup"] == 7
    assert (
        f"predictor   {predictor}" in r.stdout and "next        latbench validate --search runs/search_001" in r.stdout
    )
    assert typed("latbench search --latency-constraint 7").exit_code == 0
    assert Path("runs/search_002/result.json").is_file()  # a fresh folder each time

    listing = typed("latbench runs")
    assert listing.exit_code == 0, listing.output
    for what in ("stores", "predictors", "searches", str(store), str(predictor), "runs/search_002", "test MAPE"):
        assert what in listing.stdout
    assert typed("latbench show").stdout == listing.stdout


def test_profile_on_a_gpu_this_machine_lacks_is_one_line(fresh_folder: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert_one_line_error(typed("latbench profile --device cuda:0"), "CUDA")
    assert not list(Path("runs").glob("*.parquet"))


def test_train_predictor_and_search_with_nothing_under_runs(
    fresh_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latbench import runs

    # no shipped predictor either (one shipped for this very CPU would be taken)
    monkeypatch.setattr(runs, "shipped_predictors_dir", lambda: fresh_folder / "no-predictors")
    assert_one_line_error(
        typed("latbench train-predictor"), "--data", "no result store under runs/", "latbench profile"
    )
    r = typed("latbench search --latency-constraint 7")
    assert_one_line_error(r, "--predictor", "no bert predictor under runs/", "latbench train-predictor")
