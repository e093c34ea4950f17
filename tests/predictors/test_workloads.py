"""One predictor over batch size and sequence length: trained on a design over workloads, judged per
workload (trained, between the trained ones, beyond them), refused beyond them without --force."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.predictors.card import ModelCard
from latbench.predictors.data import load_dataset
from latbench.space import get_space
from tests.cli_assert import assert_one_line_error
from tests.predictors.conftest import FAST, synthetic_latency_ms, write_synthetic_store

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    d = tmp_path_factory.mktemp("workloads")
    train = write_synthetic_store(d / "train.parquet", n_archs=80, batches=(1, 4, 16), seq_lens=(32, 128), seed=0)
    # other architectures: at trained workloads, between them (batch 8, seq 64) and beyond them (batch 32)
    held = write_synthetic_store(d / "held.parquet", n_archs=20, batches=(4, 8, 32), seq_lens=(64, 128), seed=1)
    out = d / "pred"
    params = [f"--param={k}={v}" for k, v in FAST["xgboost"].items()]
    r = run("train-predictor", "--data", train, "--test-data", held, "--out", out, "--seed", 0, *params)
    assert r.exit_code == 0, r.output
    return train, held, out, r.output


def test_the_card_records_the_workloads_and_judges_each_kind(design):
    _, held, out, output = design
    card = ModelCard.load(out / "card.json")
    v = card.validity_obj()
    assert v.workload == {"batch": [1, 16], "seq_len": [32, 128]}
    assert set(v.workloads) == {(b, s) for b in (1, 4, 16) for s in (32, 128)}
    kinds = {(w["batch"], w["seq_len"]): w["kind"] for w in card.workload_metrics}
    assert kinds == {
        (4, 128): "trained",
        (4, 64): "interpolation",
        (8, 64): "interpolation",
        (8, 128): "interpolation",
        (32, 64): "extrapolation",
        (32, 128): "extrapolation",
    }
    held_rows = load_dataset(held)
    inside = int((held_rows.frame["batch"] < 32).sum())
    assert card.metrics["test"]["n"] == inside  # extrapolation is reported, not averaged in
    assert card.split["test_data"]["architectures"] == held_rows.n_groups and "--test-data" in card.command
    assert all(w["metrics"]["mape"] < 15 for w in card.workload_metrics if w["kind"] != "extrapolation")
    assert "interpolation" in output and "extrapolation" in output  # the per-workload table is printed


def test_predict_and_search_inside_the_ranges_and_refuse_beyond_without_force(design, tmp_path):
    _, _, out, _ = design
    arch = get_space("bert").sample(7)
    arch_json = arch.to_json()
    r = run("predict", "--predictor", out, "--arch", arch_json, "--batch", 8, "--seq", 64)
    assert r.exit_code == 0, r.output
    assert "between the workloads trained on" in r.stdout
    predicted = float(r.stdout.split(" ms")[0])
    assert predicted == pytest.approx(synthetic_latency_ms(arch, 8, 64), rel=0.25)
    r = run("predict", "--predictor", out, "--arch", arch_json, "--batch", 4, "--seq", 128)
    assert r.exit_code == 0 and "between" not in r.stdout
    beyond = run("predict", "--predictor", out, "--arch", arch_json, "--batch", 32, "--seq", 64)
    assert_one_line_error(beyond, "batch 32", "extrapolation", "--force")
    forced = run("predict", "--predictor", out, "--arch", arch_json, "--batch", 32, "--seq", 64, "--force")
    assert forced.exit_code == 0 and "extrapolation, forced" in forced.stdout
    assert_one_line_error(run("predict", "--predictor", out, "--arch", arch_json), "--batch", "1..16")
    search = ["search", "--predictor", out, "--latency-ms", 500, "--budget", 40, "--method", "random"]
    assert_one_line_error(
        run(*search, "--batch", 32, "--seq", 64, "--out", tmp_path / "s0"), "--batch", "extrapolation"
    )
    r = run(*search, "--batch", 8, "--seq", 64, "--out", tmp_path / "s1")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s1" / "result.json").read_text())["workload"] == {"batch": 8, "seq_len": 64}


def test_evaluate_reports_per_workload_and_test_data_is_checked(design, tmp_path):
    train, held, out, _ = design
    r = run("evaluate-predictor", "--predictor", out, "--data", held)
    assert_one_line_error(r, str(held), "extrapolation", "--force")
    r = run("evaluate-predictor", "--predictor", out, "--data", held, "--force", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {(w["batch"], w["kind"]) for w in doc["workloads"]} >= {(4, "trained"), (8, "interpolation")}
    same = run("train-predictor", "--data", train, "--test-data", train, "--out", tmp_path / "p")
    assert_one_line_error(same, "--test-data", "architecture")
    split = run(
        "train-predictor", "--data", train, "--test-data", held, "--split", "0.8,0.1,0.1", "--out", tmp_path / "q"
    )
    assert_one_line_error(split, "--test-data", "test share of 0")
