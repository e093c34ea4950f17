"""The predictor commands end to end through CliRunner, on a local app built from their functions."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from latbench.cli import predictors as cli
from latbench.cli._app import make_app
from latbench.space import get_space
from tests.cli_assert import assert_one_line_error

runner = CliRunner()


def _app():
    app = make_app("predictor commands under test")
    app.add_typer(cli.import_app, name="import")
    app.command("train-predictor")(cli.train_predictor)
    app.command("predict")(cli.predict)
    app.command("evaluate-predictor")(cli.evaluate_predictor)
    return app


APP = _app()


def run(*args: str):
    return runner.invoke(APP, [str(a) for a in args])


def test_import_train_predict_evaluate_on_hat(hat_dir, tmp_path):
    data = tmp_path / "hat.parquet"
    r = run("import", "hat", hat_dir / "wmt14ende_cpu_xeon_all.csv", "--out", data)
    assert r.exit_code == 0, r.output
    assert "2000 rows" in r.stdout and "Intel Xeon E5-2640" in r.stdout
    r = run(
        "train-predictor", "--data", data, "--model", "xgboost", "--out", tmp_path / "p", "--param", "n_estimators=100"
    )
    assert r.exit_code == 0, r.output
    assert "test" in r.stdout and "MAPE" in r.stdout
    card = json.loads((tmp_path / "p" / "card.json").read_text())
    assert card["command"].startswith("latbench train-predictor --data") and card["config"]["n_estimators"] == 100
    r = run("predict", "--predictor", tmp_path / "p", "--data", data, "--out", tmp_path / "preds.csv")
    assert r.exit_code == 0, r.output
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert len(preds) == 2000 and {"latency_ms", "predicted_ms", "predicted_low_ms", "predicted_high_ms"} <= set(preds)
    assert (preds["predicted_low_ms"] <= preds["predicted_ms"]).all()
    r = run("evaluate-predictor", "--predictor", tmp_path / "p", "--data", data, "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 2000


def test_device_mismatch_refused_then_forced(hat_dir, tmp_path):
    cpu, gpu = tmp_path / "cpu.parquet", tmp_path / "gpu.parquet"
    run("import", "hat", hat_dir / "wmt14ende_cpu_xeon_all.csv", "--out", cpu)
    run("import", "hat", hat_dir / "wmt14ende_gpu_titanxp_all.csv", "--out", gpu)
    assert run("train-predictor", "--data", cpu, "--model", "roofline-linear", "--out", tmp_path / "p").exit_code == 0
    r = run("evaluate-predictor", "--predictor", tmp_path / "p", "--data", gpu)
    assert_one_line_error(r, "Intel Xeon E5-2640", "NVIDIA Titan Xp", "--force")
    r = run("predict", "--predictor", tmp_path / "p", "--data", gpu, "--out", tmp_path / "x.csv")
    assert_one_line_error(r, "--force")
    assert not (tmp_path / "x.csv").exists()
    r = run("evaluate-predictor", "--predictor", tmp_path / "p", "--data", gpu, "--force")
    assert r.exit_code == 0 and "warning: forced" in r.stderr


def test_store_train_and_predict_one_arch(store_path, tmp_path):
    r = run(
        "train-predictor",
        "--data",
        store_path,
        "--model",
        "mlp",
        "--out",
        tmp_path / "m",
        "--statistic",
        "p10",
        "--param",
        "hidden=8",
        "--param",
        "max_epochs=5",
    )
    assert r.exit_code == 0, r.output
    arch = get_space("bert").sample(7, n=1)[0].to_json()
    r = run("predict", "--predictor", tmp_path / "m", "--arch", arch, "--seq", "128")
    assert r.exit_code == 0, r.output
    assert " ms (interval " in r.stdout and "batch 1, seq 128" in r.stdout
    assert_one_line_error(run("predict", "--predictor", tmp_path / "m", "--arch", arch), "--seq", "64..128")
    assert_one_line_error(run("predict", "--predictor", tmp_path / "m", "--arch", arch, "--seq", "256"), "outside")
    assert run("predict", "--predictor", tmp_path / "m", "--arch", arch, "--seq", "256", "--force").exit_code == 0
    # An architecture wider than any the predictor was trained on is an extrapolation: refused unless forced.
    wide = get_space("bert").sample(7, n=1)[0].with_hidden(2048).to_json()
    args = ["predict", "--predictor", tmp_path / "m", "--arch", wide, "--seq", "128"]
    assert_one_line_error(run(*args), "--arch", "hidden 2048 lies outside the training architectures'", "--force")
    assert run(*args, "--force").exit_code == 0
    # The store's median is not what a p10 predictor predicts, unless asked.
    r = run("evaluate-predictor", "--predictor", tmp_path / "m", "--data", store_path, "--statistic", "median")
    assert_one_line_error(r, "predicts the p10")
    assert run("evaluate-predictor", "--predictor", tmp_path / "m", "--data", store_path).exit_code == 0


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["train-predictor", "--data", "{store}", "--model", "svm", "--out", "{tmp}/x"], ["unknown predictor 'svm'"]),
        (["train-predictor", "--data", "{store}", "--param", "depth", "--out", "{tmp}/x"], ["--param", "KEY=VALUE"]),
        (["train-predictor", "--data", "{store}", "--param", "max_depth=x", "--out", "{tmp}/x"], ["expected int"]),
        (["train-predictor", "--data", "{tmp}/none.parquet", "--out", "{tmp}/x"], ["no such file"]),
        (["train-predictor", "--data", "{store}", "--statistic", "p95", "--out", "{tmp}/x"], ["--statistic"]),
        (["train-predictor", "--data", "{store}", "--model", "lut-sum", "--out", "{tmp}/x"], ["--lut"]),
        (["train-predictor", "--data", "{store}", "--split", "0.5,0.5", "--out", "{tmp}/x"], ["--split"]),
        (["predict", "--predictor", "{tmp}/none"], ["--data", "--arch"]),
        (["predict", "--predictor", "{tmp}/none", "--arch", "{{}}"], ["no such predictor directory"]),
        (["evaluate-predictor", "--predictor", "{tmp}", "--data", "{store}"], ["not a predictor directory"]),
        (["import", "hat", "{store}", "--out", "{tmp}/h.parquet"], ["not a UTF-8 text file"]),
    ],
)
def test_bad_inputs_exit_2_with_one_line(store_path, tmp_path, args, fragments):
    r = run(*[a.format(store=store_path, tmp=tmp_path) for a in args])
    assert_one_line_error(r, *fragments)


def test_train_and_evaluate_with_drift_correction(tmp_path):
    from tests.predictors.conftest import write_synthetic_store

    store = write_synthetic_store(tmp_path / "d.parquet", n_archs=60, seq_lens=(128,), drift=0.05)
    out = tmp_path / "p"
    r = run(
        "train-predictor",
        "--data",
        store,
        "--model",
        "roofline-linear",
        "--out",
        out,
        "--drift-correction",
        1,
        "--split",
        "0.7,0.1,0.2",
        "--max-train-archs",
        30,
    )
    assert r.exit_code == 0, r.output
    card = json.loads((out / "card.json").read_text())
    assert card["training_data"]["drift_correction"] == 1.0 and "--drift-correction 1" in card["command"]
    assert card["training_data"]["reference_workload"] == "matmul"  # synthetic rows name no reference: legacy
    # the card's command rebuilds the same predictor
    assert "--split 0.7,0.1,0.2" in card["command"] and "--max-train-archs 30" in card["command"]
    r = run("evaluate-predictor", "--predictor", out, "--data", store, "--drift-correction", 1, "--json")
    corrected = json.loads(r.stdout)["mape"]
    r = run("evaluate-predictor", "--predictor", out, "--data", store, "--json")
    assert corrected < json.loads(r.stdout)["mape"]
    r = run("train-predictor", "--data", store, "--model", "xgboost", "--out", tmp_path / "x", "--drift-correction", 3)
    assert r.exit_code == 2 and "--drift-correction" in r.stderr


def test_train_predictor_prints_the_lut_sum_fit_and_warns_on_few_architectures(tmp_path):
    from tests.predictors.conftest import write_synthetic_store
    from tests.predictors.test_lut_sum_transfer import _bert_lut

    store = write_synthetic_store(tmp_path / "s.parquet", n_archs=60, seq_lens=(128,))
    _bert_lut(tmp_path / "lut.json")
    r = run("train-predictor", "--data", store, "--model", "lut-sum", "--lut", tmp_path / "lut.json", "--out",
            tmp_path / "p")  # fmt: skip
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "lut-sum fit e2e =" in text and "plain sum of blocks MAPE" in text and "a·Σ+b·n+c MAPE" in text
    assert "fitted MAPE" in text and "warning" not in text
    small = write_synthetic_store(tmp_path / "small.parquet", n_archs=8, seq_lens=(128,))
    r = run("train-predictor", "--data", small, "--model", "roofline-linear", "--out", tmp_path / "q")
    assert r.exit_code == 0, r.output
    assert "warning: only 6 training architecture(s)" in " ".join(r.stdout.split())
