"""The super-net commands end to end through CliRunner on a local app (the lead registers them on the real one)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from latbench.cli._app import make_app
from latbench.cli.supernet import compress, evaluate, extract, train_supernet
from tests.cli_assert import assert_one_line_error
from tests.supernet.helpers import SPACE_DICTS, fit_predictor

app = make_app("test app")
app.command("train-supernet")(train_supernet)
app.command("evaluate")(evaluate)
app.command("extract")(extract)
app.command("compress")(compress)
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    import torch

    threads = torch.get_num_threads()
    base = tmp_path_factory.mktemp("cli")
    space = base / "space.json"
    space.write_text(json.dumps(SPACE_DICTS["gpt"]))
    args = ["--space", space, "--data", corpus, "--steps", 4, "--batch-size", 8, "--out", base / "run", "--threads", 1]
    result = run("train-supernet", *args)
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    assert "done: 4 steps" in result.stdout and "max" in result.stdout
    again = run("train-supernet", *args)  # the same command on a finished run: resumes at the end
    assert again.exit_code == 0 and "resuming" in again.stdout
    return base / "run"


SMALL = json.dumps({"family": "gpt", "hidden": 16, "layers": [{"heads": 2, "qk_dim": 8, "v_dim": 8, "mlp": 32}]})


def test_evaluate_prints_quality_and_latency(run_dir) -> None:
    result = run("evaluate", "--supernet", run_dir, "--arch", SMALL, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["objective"] == "causal-lm" and out["loss"] > 0 and out["perplexity"] > 1 and out["latency_ms"] > 0
    assert out["arch"]["vocab_size"] == 260  # the short arch adopted the super-net's settings
    assert out["predicted"] is None and out["measured"] is None
    text = run("evaluate", "--supernet", run_dir)
    assert text.exit_code == 0 and "perplexity" in text.stdout and "latency" in text.stdout


def test_evaluate_predicts_the_latency_with_a_predictor(run_dir, tmp_path) -> None:
    from latbench.space.formats import load_arch
    from latbench.supernet.setup import adopt_extras
    from latbench.supernet.train import load_trained

    pred = fit_predictor(tmp_path / "pred")
    result = run("evaluate", "--supernet", run_dir, "--arch", SMALL, "--predictor", tmp_path / "pred", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)["predicted"]
    arch = adopt_extras(load_arch(SMALL), load_trained(run_dir).config.supernet)
    direct = pred.predict_archs([arch], batch=1, seq_len=16)
    assert out["source"] == "predicted" and out["batch"] == 1 and out["seq_len"] == 16
    assert out["ms"] == pytest.approx(float(direct.ms[0]), rel=1e-12)
    assert out["low_ms"] <= out["ms"] <= out["high_ms"]
    assert "roofline-linear predictor of the median on test CPU" in out["detail"]
    text = run("evaluate", "--supernet", run_dir, "--predictor", tmp_path / "pred", "--batch", 2)
    assert text.exit_code == 0, text.output
    assert "predicted " in text.stdout and "at batch 2, seq 16" in text.stdout and "interval" in text.stdout


def test_evaluate_refuses_a_predictor_that_does_not_fit_in_one_line(run_dir, tmp_path) -> None:
    fit_predictor(tmp_path / "vit", family="vit")
    assert_one_line_error(
        run("evaluate", "--supernet", run_dir, "--predictor", tmp_path / "vit"),
        "--predictor",
        "the predictor is for vit models; this super-net is gpt",
    )
    fit_predictor(tmp_path / "full", extras={"vocab_size": 50304, "max_seq_len": 2048})
    assert_one_line_error(
        run("evaluate", "--supernet", run_dir, "--predictor", tmp_path / "full"),
        "features assume vocab_size 50304; this sub-network has vocab_size 260",
    )
    fit_predictor(tmp_path / "gpt", batch=(1, 4))
    assert_one_line_error(
        run("evaluate", "--supernet", run_dir, "--predictor", tmp_path / "gpt", "--batch", 32),
        "batch 32 lies outside the predictor's 1..4",
    )
    forced = run("evaluate", "--supernet", run_dir, "--predictor", tmp_path / "gpt", "--batch", 32, "--force")
    assert forced.exit_code == 0 and "at batch 32" in forced.stdout
    assert_one_line_error(run("evaluate", "--supernet", run_dir, "--predictor", run_dir), "not a predictor directory")
    assert_one_line_error(run("evaluate", "--supernet", run_dir, "--precision", "fp16"), "add --device")


def test_evaluate_measures_the_latency_on_the_cpu(run_dir) -> None:
    quick = ["--budget-s", 0.2, "--min-samples", 5, "--max-samples", 30, "--calls-per-round", 5, "--threads", 1]
    args = ["evaluate", "--supernet", run_dir, "--arch", SMALL, "--device", "cpu", *quick]
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    m = out["measured"]
    assert m["source"] == "measured" and m["batch"] == 1 and m["seq_len"] == 16
    assert 0 < m["low_ms"] <= m["ms"] <= m["high_ms"] and 5 <= m["n"] <= 30
    assert m["env_id"] and "backend torch" in m["detail"] and "device cpu" in m["detail"] and "threads 1" in m["detail"]
    assert out["predicted"] is None and out["loss"] > 0
    text = run(*args, "--batch", 2)
    assert text.exit_code == 0, text.output
    assert "measured " in text.stdout and "95% CI" in text.stdout and "at batch 2, seq 16" in text.stdout
    assert_one_line_error(run(*args, "--device", "tpu"), "--device")


def test_evaluate_refuses_a_prediction_for_another_target_than_the_measurement(run_dir, tmp_path) -> None:
    fit_predictor(tmp_path / "pred")  # measured on "test CPU", eager fp32, 1 thread
    quick = ["--budget-s", 0.1, "--min-samples", 5, "--max-samples", 10, "--calls-per-round", 5]
    args = ["evaluate", "--supernet", run_dir, "--arch", SMALL, "--predictor", tmp_path / "pred", "--device", "cpu"]
    assert_one_line_error(run(*args, "--threads", 1, *quick), "--predictor", "test CPU", "--force")
    forced = run(*args, "--threads", 1, *quick, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    out = json.loads(forced.stdout)
    assert out["predicted"]["ms"] > 0 and out["measured"]["ms"] > 0


@pytest.mark.parametrize("fmt", ["safetensors", "onnx", "hf", "litgpt"])
def test_extract_writes_each_format(run_dir, tmp_path, fmt) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra: onnx)")
    if fmt == "hf":
        pytest.importorskip("transformers", reason="transformers is not installed (extra: hf)")
    if fmt == "litgpt":
        pytest.importorskip("litgpt", reason="litgpt is not installed (extra: litgpt)")
    result = run("extract", "--supernet", run_dir, "--arch", SMALL, "--out", tmp_path / fmt, "--format", fmt)
    assert result.exit_code == 0, result.output
    assert f"as {fmt}" in result.stdout and (tmp_path / fmt / "latbench_model.json").is_file()


def test_further_train_and_compress(run_dir, tmp_path) -> None:
    assert run("extract", "--supernet", run_dir, "--arch", SMALL, "--out", tmp_path / "export").exit_code == 0
    result = run(
        "train-supernet",
        "--further-train",
        tmp_path / "export",
        "--steps",
        2,
        "--batch-size",
        4,
        "--out",
        tmp_path / "ft",
    )
    assert result.exit_code == 0, result.output
    assert "training dense model" in result.stdout
    result = run("compress", tmp_path / "ft", "--out", tmp_path / "ft.safetensors")
    assert result.exit_code == 0, result.output
    assert "model weights at" in result.stdout and "rel err" in result.stdout
    result = run("compress", tmp_path / "ft", "--out", tmp_path / "ft2.safetensors", "--json", "--keep", "*embeddings*")
    report = json.loads(result.stdout)
    assert {t["name"]: t["kind"] for t in report["tensors"]}["model/embeddings.weight"] == "raw"


def test_bad_inputs_are_one_line_errors(run_dir, corpus, tmp_path) -> None:
    too_big = json.dumps({"family": "gpt", "hidden": 64, "layers": [{"heads": 2, "qk_dim": 8, "v_dim": 8, "mlp": 32}]})
    assert_one_line_error(run("evaluate", "--supernet", run_dir, "--arch", too_big), "hidden 64 exceeds")
    assert_one_line_error(run("evaluate", "--supernet", tmp_path), "not a training run")
    assert_one_line_error(run("evaluate", "--supernet", run_dir, "--split", "train"), "--split")
    assert_one_line_error(
        run("extract", "--supernet", run_dir, "--out", tmp_path / "y", "--format", "tflite"), "unknown format"
    )
    assert_one_line_error(
        run("train-supernet", "--space", "gpt", "--strategy", "zigzag", "--out", tmp_path / "z"), "unknown strategy"
    )
    assert_one_line_error(
        run("train-supernet", "--space", "vit", "--data", corpus, "--out", tmp_path / "z"), "--data is for text"
    )
    assert_one_line_error(run("train-supernet", "--space", "nope", "--out", tmp_path / "z"), "unknown space")
    assert_one_line_error(
        run("train-supernet", "--space", "gpt", "--data", tmp_path / "missing", "--out", tmp_path / "z"), "no such file"
    )
    assert_one_line_error(run("train-supernet", "--space", "gpt", "--scale", 3, "--out", tmp_path / "z"), "--scale")
    assert_one_line_error(run("compress", tmp_path / "none.pt", "--out", tmp_path / "c.safetensors"), "no such file")


def test_extract_into_a_folder_holding_another_format_is_refused_and_leaves_it_as_it_was(run_dir, tmp_path) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra: onnx)")
    out = tmp_path / "export"
    first = run("extract", "--supernet", run_dir, "--arch", SMALL, "--out", out, "--format", "safetensors")
    assert first.exit_code == 0, first.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = run("extract", "--supernet", run_dir, "--arch", SMALL, "--out", out, "--format", "safetensors")
    assert again.exit_code == 0, again.output  # the same format is overwritten in place
    other = run("extract", "--supernet", run_dir, "--arch", SMALL, "--out", out, "--format", "onnx")
    assert_one_line_error(other, str(out), "safetensors export")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_extract_litgpt_of_an_unfit_arch_says_why_in_one_line(run_dir, tmp_path) -> None:
    mixed = json.dumps(
        {
            "family": "gpt",
            "hidden": 16,
            "layers": [
                {"heads": 2, "qk_dim": 8, "v_dim": 8, "mlp": 32},
                {"heads": 1, "qk_dim": 8, "v_dim": 8, "mlp": 64},
            ],
        }
    )
    result = run("extract", "--supernet", run_dir, "--arch", mixed, "--out", tmp_path / "x", "--format", "litgpt")
    assert_one_line_error(result, "--format litgpt", "one n_head/head_size/intermediate_size for every layer")


def test_further_train_from_a_litgpt_export(run_dir, tmp_path) -> None:
    pytest.importorskip("litgpt", reason="litgpt is not installed (extra: litgpt)")
    exported = run("extract", "--supernet", run_dir, "--arch", SMALL, "--out", tmp_path / "lit", "--format", "litgpt")
    assert exported.exit_code == 0, exported.output
    args = ["--further-train", tmp_path / "lit", "--steps", 1, "--batch-size", 4, "--out", tmp_path / "ft"]
    result = run("train-supernet", *args)
    assert result.exit_code == 0, result.output
    assert "training dense model" in result.stdout


def test_extract_hf_of_an_unfit_arch_says_why_in_one_line(run_dir, tmp_path) -> None:
    pytest.importorskip("transformers", reason="transformers is not installed (extra: hf)")
    odd = json.dumps({"family": "gpt", "hidden": 32, "layers": [{"heads": 1, "qk_dim": 8, "v_dim": 8, "mlp": 32}]})
    result = run("extract", "--supernet", run_dir, "--arch", odd, "--out", tmp_path / "x", "--format", "hf")
    assert_one_line_error(result, "1 x 8 = 8 != hidden 32")
