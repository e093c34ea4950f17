"""``latbench prune`` and ``latbench finetune`` end to end through CliRunner (the lead registers them; built here)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from latbench.cli._app import make_app
from latbench.cli.prune import finetune, prune
from latbench.models.build import build_model
from latbench.pruning.checkpoint import load_model, save_model
from latbench.pruning.digits import digits_arch
from latbench.space.arch import Arch
from tests.cli_assert import assert_one_line_error

from .helpers import linear_lut, tiny_bert, tiny_vit

app = make_app("test app")
app.command("prune")(prune)
app.command("finetune")(finetune)
runner = CliRunner()

QUICK = ["--baseline-steps", "10", "--batch-size", "32", "--no-measure", "--threads", "1"]


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lut") / "lut.json"
    linear_lut(digits_arch(), lo=4).save(path)
    return path


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory, lut_file) -> Path:
    out = tmp_path_factory.mktemp("job") / "job"
    torch.set_num_threads(1)
    r = run(
        "prune", "--model", "vit-digits", "--out", out, "--lut", lut_file, "--latency-target", "0.6",
        "--latency-regularization", "1", "--normalize", "--prune-per-iter", "48", "--interval-prune", "2",
        "--steps", "60", "--round-to", "4", "--granularity", "heads=1,mlp=2", *QUICK,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    return out


def test_prune_from_the_cli_writes_a_small_dense_model(pruned_dir):
    report = json.loads((pruned_dir / "prune_report.json").read_text())
    assert report["reached"] and report["reason"] == "latency target reached"
    assert report["latency_ratio"] <= 0.6
    arch = Arch.from_json((pruned_dir / "arch.json").read_text())
    dense, _ = load_model(pruned_dir / "pruned.pt")
    assert dense.arch == arch and arch.to_dict() == report["arch"]
    assert arch.hidden % 4 == 0 and all(s.mlp % 4 == 0 for s in arch.layers)  # --round-to 4
    assert report["bytes_dense"] < report["bytes_masked"]
    masked, meta = load_model(pruned_dir / "masked.pt")
    assert masked.arch == digits_arch() and set(meta["masks"]) >= {"emb", "blocks.0.heads"}
    assert (pruned_dir / "baseline.pt").exists() and (pruned_dir / "prune.run").exists()


def test_finetune_from_the_cli(pruned_dir):
    r = run("finetune", pruned_dir, "--steps", "4", "--batch-size", "32")
    assert r.exit_code == 0, r.output
    report = json.loads((pruned_dir / "finetune_report.json").read_text())
    assert report["steps"] == 4 and "test" in report["accuracy_after"]
    model, _ = load_model(pruned_dir / "finetuned.pt")
    assert model.arch == Arch.from_json((pruned_dir / "arch.json").read_text())


def test_a_finished_job_resumes_to_the_same_result_and_refuses_other_options(pruned_dir, lut_file):
    before = json.loads((pruned_dir / "prune_report.json").read_text())
    args = [
        "prune", "--model", "vit-digits", "--out", pruned_dir, "--lut", lut_file, "--latency-target", "0.6",
        "--latency-regularization", "1", "--normalize", "--prune-per-iter", "48", "--interval-prune", "2",
        "--steps", "60", "--round-to", "4", "--granularity", "heads=1,mlp=2", *QUICK,
    ]  # fmt: skip
    r = run(*args)
    assert r.exit_code == 0, r.output
    after = json.loads((pruned_dir / "prune_report.json").read_text())
    assert after["arch"] == before["arch"] and after["history"] == before["history"]
    changed = list(args)
    changed[changed.index("0.6")] = "0.7"
    assert_one_line_error(run(*changed), "holds a job with other options", "prune")


def test_nvit_config_and_nvit_table_from_a_model_file(pruned_dir, tmp_path, fixtures_dir):
    config = fixtures_dir / "nvit" / "group8_m23_m09.json"
    table = fixtures_dir / "nvit" / "latency_head.json"
    out = tmp_path / "nvit"
    r = run(
        "prune", "--model", pruned_dir / "baseline.pt", "--out", out, "--config", config, "--lut", table,
        "--force", "--latency-target", "0.8", "--latency-regularization", "0.001", "--interval-prune", "2",
        "--steps", "30", *QUICK,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "prune_report.json").read_text())
    job = json.loads((out / "job.json").read_text())
    assert job["prune"]["importance"] == "taylor23" and job["prune"]["momentum"] == pytest.approx(0.9)
    assert job["prune"]["granularity"] == {"emb": 16, "heads": 2, "qk": 8, "v": 8, "mlp": 16}
    assert report["lut"]["unit"] == "unknown" and report["latency_ratio"] <= 0.8
    arch = Arch.from_dict(report["arch"])
    assert arch.hidden % 16 == 0 and all(s.mlp % 16 == 0 for s in arch.layers)  # NViT's chunks


def test_an_overhead_fit_makes_the_target_hold_for_the_whole_model(pruned_dir, tmp_path, lut_file):
    from latbench.lut import LookupTable, LutSumModel
    from latbench.pruning.latency import LatencyCost

    table = LookupTable.load(lut_file)
    base = digits_arch()
    blocks = table.arch_latency(base).total
    LutSumModel(a=1.0, c=0.5 * blocks, d=0.0, workload={"batch": 32}).save(tmp_path / "fit.json")
    out = tmp_path / "whole"
    r = run(
        "prune", "--model", pruned_dir / "baseline.pt", "--out", out, "--lut", lut_file, "--latency-target", "0.6",
        "--overhead", tmp_path / "fit.json", "--prune-per-iter", "48", "--interval-prune", "2", "--steps", "60",
        *QUICK,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "prune_report.json").read_text())
    assert report["reached"] and report["lut"]["priced"] == "whole model" and report["latency_ratio"] <= 0.6
    # a third of the whole model cannot be pruned: the blocks alone went to 0.4 or below
    assert LatencyCost(table, base).ratio(Arch.from_dict(report["arch"])) <= 0.4 + 1e-9
    assert json.loads((out / "job.json").read_text())["overhead"] == str(tmp_path / "fit.json")
    assert_one_line_error(
        run("prune", "--model", "vit-digits", "--out", tmp_path / "x", "--params-target", "100", "--overhead",
            tmp_path / "fit.json", *QUICK),
        "--overhead", "give --lut too",
    )  # fmt: skip


def test_bad_inputs_give_one_line(tmp_path, lut_file, pruned_dir):
    base = ["prune", "--model", pruned_dir / "baseline.pt", "--out", tmp_path / "o", *QUICK]
    assert_one_line_error(run(*base, "--lut", lut_file, "--latency-target", "1.5"), "--latency-target", "between 0")
    assert_one_line_error(run(*base, "--lut", lut_file, "--latency-target", "0"), "--latency-target")
    assert_one_line_error(run(*base, "--lut", lut_file), "--latency-target", "--params-target")
    assert_one_line_error(run(*base, "--latency-target", "0.5"), "--lut")
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--nvit-unit", "h"), "--nvit-unit", "unknown unit 'h'"
    )
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--nvit-unit", "ms"), "--nvit-unit", "records its own"
    )
    assert_one_line_error(
        run(*base, "--lut", "measure", "--latency-target", "0.5", "--nvit-unit", "s"), "--nvit-unit", "NViT"
    )
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--importance", "fisher"), "--importance", "fisher"
    )
    small = tmp_path / "small.json"
    linear_lut(tiny_vit()).save(small)
    assert_one_line_error(run(*base, "--lut", small, "--latency-target", "0.5"), "does not cover the model", "emb=64")
    bad_config = tmp_path / "nvit.json"
    bad_config.write_text(json.dumps({"method": 23, "prune_per_iteration": 8, "warp": 1}))
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--config", bad_config), "unknown", "'warp'"
    )
    assert_one_line_error(
        run(*base[:2], tmp_path / "missing.pt", *base[3:], "--lut", lut_file, "--latency-target", "0.5"),
        "missing.pt",
        "no such file",
    )
    bert = tmp_path / "bert.pt"
    save_model(bert, build_model(tiny_bert()))
    assert_one_line_error(run(*base[:2], bert, *base[3:], "--lut", lut_file, "--latency-target", "0.5"), "vocab_size")
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--granularity", "emb=x"), "--granularity"
    )
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--round-to", "attn=8"), "--round-to", "'attn'"
    )
    assert_one_line_error(run("finetune", tmp_path / "empty"), "no pruned.pt")
    assert not (tmp_path / "o").exists()  # nothing was written for a refused job


@pytest.mark.slow
def test_prune_under_torchrun_with_two_processes_matches_one(tmp_path, lut_file, pruned_dir):
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    args = [
        "prune", "--model", pruned_dir / "baseline.pt", "--lut", lut_file, "--latency-target", "0.6",
        "--latency-regularization", "1", "--normalize", "--prune-per-iter", "48", "--interval-prune", "2",
        "--steps", "40", *QUICK,
    ]  # fmt: skip
    one = run(*args, "--out", tmp_path / "one")
    assert one.exit_code == 0, one.output
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517"]
    cmd += ["-m", "tests.pruning.cli_worker", *[str(a) for a in args], "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (tmp_path / "two" / "arch.json").read_text() == (tmp_path / "one" / "arch.json").read_text()
    a = json.loads((tmp_path / "one" / "prune_report.json").read_text())
    b = json.loads((tmp_path / "two" / "prune_report.json").read_text())
    assert [h["removed"] for h in a["history"]] == [h["removed"] for h in b["history"]]


def test_a_predictor_directory_prices_the_pruning(tmp_path):
    """``--lut`` takes what ``train-predictor`` wrote, as it comes: the predictor prices whole models."""
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor
    from latbench.space.spaces import SearchSpace
    from tests.predictors.conftest import FAST, write_synthetic_store

    base = digits_arch()
    space = SearchSpace.from_dict(
        {
            "name": "digits-vit",
            "family": "vit",
            "n_layers": {"min": 1, "max": base.n_layers},
            "hidden": {"min": 8, "max": base.hidden, "step": 8},
            "heads": {"min": 1, "max": base.layers[0].heads},
            "qk_dim": {"min": 4, "max": base.layers[0].qk_dim, "step": 4},
            "mlp": {"min": 8, "max": base.layers[0].mlp, "step": 8},
            "extras": base.extras,
        }
    )
    store = write_synthetic_store(tmp_path / "vit.parquet", n_archs=80, seq_lens=(None,), space=space)
    pred = tmp_path / "vit_xgboost"
    save_trained(train_predictor(load_dataset(store), "xgboost", seed=0, config=FAST["xgboost"]), pred, plot=False)
    out = tmp_path / "p"
    r = run(
        "prune", "--model", "vit-digits", "--out", out, "--lut", pred, "--latency-target", "0.8",
        "--latency-regularization", "1", "--prune-per-iter", "32", "--interval-prune", "2", "--steps", "40", *QUICK,
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    report = json.loads((out / "prune_report.json").read_text())
    assert report["lut"]["priced"] == "whole model" and report["lut"]["source"] == "xgboost predictor"
    assert report["lut"]["origin"] == str(pred) and report["params"] < report["original_params"]
