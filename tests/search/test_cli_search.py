"""``latbench search`` and ``latbench validate`` end to end through CliRunner on the real app."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.space import Arch, IntDomain, SearchSpace
from tests.cli_assert import assert_one_line_error
from tests.predictors.conftest import FAST, synthetic_latency_ms, write_synthetic_store

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_search_writes_its_result(xgb_dir, reference_ms, tmp_path):
    out = tmp_path / "s"
    r = run(
        "search",
        "--predictor",
        xgb_dir,
        "--latency-constraint",
        7,
        "--reference-ms",
        reference_ms,
        "--out",
        out,
        "--budget",
        200,
        "--param",
        "population_size=50",
        "--param",
        "parent_size=10",
    )
    assert r.exit_code == 0, r.output
    assert "best" in r.output and "speed-up" in r.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["method"] == "evolutionary" and doc["evaluations"] == 200 and doc["config"]["population_size"] == 50
    assert doc["best"]["predicted_ms"] <= reference_ms / 7
    assert doc["reference"] == {**doc["reference"], "source": "given", "latency_ms": reference_ms}
    assert doc["workload"] == {"batch": 1, "seq_len": 128}  # the predictor's, by default
    assert "latbench search" in doc["command"]
    assert len(pd.read_parquet(out / "history.parquet")) == 200
    assert not (out / "pareto.json").exists()


def test_search_with_a_predicted_reference_warns(xgb_dir, tmp_path):
    r = run(
        "search",
        "--predictor",
        xgb_dir,
        "--latency-ms",
        80,
        "--out",
        tmp_path / "s",
        "--budget",
        50,
        "--method",
        "random",
    )
    assert r.exit_code == 0, r.output
    assert "warning: the reference latency is predicted" in r.stderr
    doc = json.loads((tmp_path / "s" / "result.json").read_text())
    assert doc["reference"]["source"] == "predicted" and doc["constraint"]["speedup"] is None
    assert doc["best"]["predicted_ms"] <= 80


def test_nsga2_writes_the_front(xgb_dir, reference_ms, tmp_path):
    out = tmp_path / "n"
    r = run(
        "search",
        "--predictor",
        xgb_dir,
        "--latency-constraint",
        7,
        "--reference-ms",
        reference_ms,
        "--out",
        out,
        "--budget",
        100,
        "--method",
        "nsga2",
        "--seed",
        3,
    )
    assert r.exit_code == 0, r.output
    assert json.loads((out / "pareto.json").read_text())["front"]
    assert (out / "pareto.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "extra, fragments",
    [
        ([], ("--latency-constraint", "exactly one")),
        (["--latency-constraint", 7, "--latency-ms", 5], ("exactly one",)),
        (["--latency-constraint", 7, "--method", "bayes"], ("--method", "unknown searcher 'bayes'")),
        (["--latency-constraint", 7, "--param", "population=3"], ("unknown parameter 'population'",)),
        (["--latency-constraint", 7, "--param", "mutation_prob=2"], ("mutation_prob",)),
        (["--latency-constraint", 7, "--window", "1.2,1.0"], ("--window",)),
        (["--latency-constraint", 1000], ("1000x is not reachable", "largest reachable speed-up")),
        (["--latency-ms", 0.001], ("--latency-ms", "not reachable")),
        (["--latency-constraint", 7, "--validate"], ("--validate", "--device")),
        (["--latency-constraint", 7, "--measure-top", 3], ("--measure-top", "--device")),
        (["--latency-constraint", 7, "--measure-top", -1], ("--measure-top", "must be >= 0")),
        (["--latency-constraint", 7, "--measure-margin", 0.6], ("--measure-margin", "fraction in [0, 0.5)")),
        (["--latency-constraint", 7, "--measure-margin", 0.03], ("--measure-margin", "--measure-top")),
        (["--latency-constraint", 7, "--method", "gradient"], ("differentiable predictor",)),
        (["--latency-constraint", 7, "--quality", "nomodule_xyz:f"], ("--quality", "cannot import")),
        (["--latency-constraint", 7, "--space", "vit"], ("--predictor", "bert models", "vit")),
        (["--latency-constraint", 7, "--budget", 0], ("--budget",)),
    ],
)
def test_bad_search_input_is_one_line(xgb_dir, reference_ms, tmp_path, extra, fragments):
    out = tmp_path / "bad"
    r = run("search", "--predictor", xgb_dir, "--reference-ms", reference_ms, "--out", out, *extra)
    assert_one_line_error(r, *fragments)
    assert not out.exists(), "a failed search left files behind"


def test_search_refuses_a_predictor_trained_on_a_table(tmp_path):
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor

    hat = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "hat" / "wmt14ende_cpu_xeon_all.csv"
    if not hat.is_file():
        pytest.skip(f"{hat} not found (shared/ beside the checkout)")
    run("import", "hat", hat, "--out", tmp_path / "hat.parquet")
    result = train_predictor(load_dataset(tmp_path / "hat.parquet"), "roofline-linear", seed=0)
    save_trained(result, tmp_path / "p", plot=False)
    r = run("search", "--predictor", tmp_path / "p", "--latency-constraint", 2, "--out", tmp_path / "o")
    assert_one_line_error(r, "--predictor", "imported table")


def test_search_refuses_a_directory_that_is_not_a_predictor(tmp_path):
    r = run("search", "--predictor", tmp_path, "--latency-constraint", 7, "--out", tmp_path / "o")
    assert r.exit_code == 2 and "Traceback" not in r.output


# ----------------------------------------------------------------------------- measured: a tiny space
TINY_SEQ = 16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """A tiny bert-family space (vocabulary 512) whose members run in well under a millisecond, and a predictor."""
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor

    ref = Arch.uniform_arch("bert", hidden=128, n_layers=4, heads=4, qk_dim=32, mlp=512, vocab_size=512)
    space = SearchSpace(
        name="tiny",
        family="bert",
        n_layers=IntDomain(1, 4),
        hidden=IntDomain(32, 128, 16),
        heads=IntDomain(1, 4),
        qk_dim=IntDomain(8, 32, 8),
        mlp=IntDomain(32, 512, 32),
        uniform_layers=True,
        reference=ref,
        extras=(("vocab_size", 512),),
    )
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.json").write_text(json.dumps(space.to_dict()))
    store = write_synthetic_store(root / "tiny.parquet", n_archs=150, seq_lens=(TINY_SEQ,), space=space)
    result = train_predictor(load_dataset(store), "xgboost", seed=0, config=FAST["xgboost"])
    save_trained(result, root / "pred", plot=False)
    return {"space": root / "tiny.json", "pred": root / "pred", "ref_ms": synthetic_latency_ms(ref, 1, TINY_SEQ)}


QUICK = ("--threads", 1, "--budget-s", 0.3, "--min-samples", 10)


def test_search_then_validate_by_measurement(tiny, tmp_path):
    out = tmp_path / "s"
    r = run(
        "search",
        "--predictor",
        tiny["pred"],
        "--space",
        tiny["space"],
        "--latency-constraint",
        3,
        "--reference-ms",
        tiny["ref_ms"],
        "--out",
        out,
        "--budget",
        100,
        "--method",
        "random",
    )
    assert r.exit_code == 0, r.output
    r = run("validate", "--search", out, "--device", "cpu", "--top", 3, *QUICK)
    assert r.exit_code == 0, r.output
    # the predictor was trained on synthetic latencies of "Test CPU": validation says so
    assert "does not speak for this target" in r.stderr
    doc = json.loads((out / "validate.json").read_text())
    result = json.loads((out / "result.json").read_text())
    assert doc["best"]["arch_json"] == result["best"]["arch_json"]
    assert 1 <= len(doc["architectures"]) <= 3
    ref_ms = doc["reference"]["measured_ms"]
    assert doc["constraint"]["measured_bound_ms"] == pytest.approx(ref_ms / 3)
    for a in doc["architectures"]:
        assert a["measured_ms"] > 0
        assert a["measured_speedup"] == pytest.approx(ref_ms / a["measured_ms"])
        assert a["constraint_holds"] == (a["measured_ms"] <= ref_ms / 3)
        assert a["prediction_error_pct"] == pytest.approx(100 * (a["predicted_ms"] / a["measured_ms"] - 1))
        assert a["speedup_within_10pct"] == (abs(a["measured_speedup"] / 3 - 1) <= 0.1)
    assert doc["predictor_mismatches"] and (out / "validate.parquet").is_file()


def test_search_measures_the_reference_on_the_device(tiny, tmp_path):
    args = (
        "search",
        "--predictor",
        tiny["pred"],
        "--space",
        tiny["space"],
        "--latency-constraint",
        2,
        "--out",
        tmp_path / "s",
        "--budget",
        30,
        "--method",
        "random",
        "--device",
        "cpu",
        *QUICK,
    )
    assert_one_line_error(run(*args), "--predictor", "Test CPU")  # measured elsewhere: refused ...
    r = run(*args, "--force", "--validate", "--measure-top", 4)  # ... unless forced
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "s" / "result.json").read_text())
    assert doc["reference"]["source"] == "measured" and doc["reference"]["latency_ms"] > 0
    assert doc["deploy_key"].startswith("backend=torch,device=cpu")
    m = doc["measured"]
    assert 1 <= len(m["candidates"]) <= 4 and m["bound_ms"] == pytest.approx(m["reference_ms"] / 2)
    for c in m["candidates"]:
        assert c["meets_constraint"] == (c["measured_ms"] <= m["bound_ms"])
    if m["chosen"] is None:
        assert doc["selected_by"] == "prediction" and "no measured candidate" in r.stderr
    else:
        chosen = m["candidates"][m["chosen"]]
        assert doc["selected_by"] == "measurement" and doc["best"]["arch_json"] == chosen["arch_json"]
        key = "confidently_meets" if any(c["confidently_meets"] for c in m["candidates"]) else "meets_constraint"
        assert chosen[key] and chosen["quality"] == min(c["quality"] for c in m["candidates"] if c[key])
    assert (tmp_path / "s" / "validate.json").is_file()


def test_validate_refuses_bad_input(tiny, tmp_path):
    assert_one_line_error(run("validate", "--search", tmp_path / "none"), "--search", "no such directory")
    assert_one_line_error(run("validate", "--search", tmp_path), "no result.json")
    out = tmp_path / "s"
    run(
        "search",
        "--predictor",
        tiny["pred"],
        "--space",
        tiny["space"],
        "--latency-constraint",
        2,
        "--reference-ms",
        tiny["ref_ms"],
        "--out",
        out,
        "--budget",
        10,
        "--method",
        "random",
    )
    assert_one_line_error(run("validate", "--search", out, "--top", -1), "--top")
    assert_one_line_error(run("validate", "--search", out, "--device", "cuda:7"))  # no such GPU here
    assert not (out / "validate.json").exists()


# ----------------------------------------------------------------------------- a super-net as the quality objective
@pytest.fixture(scope="module")
def supernet_run(tmp_path_factory) -> dict:
    """A tiny bert super-net (4 sandwich steps), and a predictor trained over its space at the default vocabulary."""
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor
    from latbench.search.quality import supernet_space
    from latbench.supernet.train import train_supernet
    from tests.supernet.helpers import tiny_config, write_corpus

    root = tmp_path_factory.mktemp("supernet")
    run_dir = root / "run"
    train_supernet(tiny_config("bert", write_corpus(root / "corpus")), run_dir)
    space = supernet_space(str(run_dir))
    store = write_synthetic_store(root / "s.parquet", n_archs=40, seq_lens=(TINY_SEQ,), space=space)
    result = train_predictor(load_dataset(store), "xgboost", seed=0, config=FAST["xgboost"])
    save_trained(result, root / "pred", plot=False)
    return {"run": run_dir, "pred": root / "pred", "space": space}


def test_search_judged_by_the_supernet(supernet_run, tmp_path):
    from latbench.search.quality import SupernetQuality
    from latbench.supernet.evaluate import evaluate_subnet

    run_dir, out = supernet_run["run"], tmp_path / "s"
    ref_ms = synthetic_latency_ms(supernet_run["space"].reference, 1, TINY_SEQ)
    r = run(
        "search",
        "--predictor",
        supernet_run["pred"],
        "--space",
        f"supernet:{run_dir}",
        "--quality",
        f"supernet:{run_dir}",
        "--latency-ms",
        ref_ms,
        "--reference-ms",
        ref_ms,
        "--out",
        out,
        "--budget",
        12,
        "--method",
        "random",
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((out / "result.json").read_text())
    assert doc["quality"]["objective"] == f"supernet:{run_dir}"
    best = Arch.from_json(doc["best"]["arch_json"])
    expect = evaluate_subnet(run_dir, SupernetQuality(str(run_dir)).adopt(best)).loss
    assert doc["best"]["quality"] == pytest.approx(expect)
    hist = pd.read_parquet(out / "history.parquet")
    assert doc["best"]["quality"] == pytest.approx(hist["quality"].min())
    # the preset bert space holds members the tiny super-net cannot run: refused, with the way out
    r = run(
        "search",
        "--predictor",
        supernet_run["pred"],
        "--quality",
        f"supernet:{run_dir}",
        "--latency-ms",
        50,
        "--reference-ms",
        100,
        "--out",
        tmp_path / "x",
    )
    assert_one_line_error(r, "--quality", "does not hold", f"--space supernet:{run_dir}")


def test_search_refuses_a_workload_outside_the_predictors_without_a_device(xgb_dir, reference_ms, tmp_path):
    args = ["search", "--predictor", xgb_dir, "--latency-ms", 80, "--budget", 20, "--method", "random"]
    assert_one_line_error(run(*args, "--seq", 64, "--out", tmp_path / "a"), "--seq", "seq_len 64", "--force")
    assert_one_line_error(run(*args, "--batch", 8, "--out", tmp_path / "b"), "--batch", "batch 8", "--force")
    assert not (tmp_path / "a").exists()
    forced = run(*args, "--seq", 64, "--force", "--out", tmp_path / "c")
    assert forced.exit_code == 0, forced.output
    assert json.loads((tmp_path / "c" / "result.json").read_text())["workload"]["seq_len"] == 64


def test_search_says_when_its_window_let_the_result_be_slower_than_asked(xgb_dir, reference_ms, tmp_path):
    args = ["search", "--predictor", xgb_dir, "--latency-constraint", 7, "--reference-ms", reference_ms, "--budget"]
    r = run(*args, 100, "--method", "candidate", "--window", "1.0,1.2", "--out", tmp_path / "w")
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.split())
    assert "slower than the 7x asked: inside the window 1,1.2 of the target" in text
    strict = run(*args, 100, "--method", "random", "--out", tmp_path / "s")
    assert strict.exit_code == 0 and "slower than the" not in strict.stdout


def test_search_warns_when_the_space_reaches_beyond_the_predictors_training_architectures(
    xgb_dir, reference_ms, tmp_path
):
    from latbench.io import atomic_write_text
    from latbench.space import get_space

    wide = get_space("bert").to_dict()
    wide["name"], wide["hidden"] = "wide", {"min": 128, "max": 1024, "step": 64}
    atomic_write_text(tmp_path / "wide.json", json.dumps(wide))
    args = ["search", "--predictor", xgb_dir, "--latency-constraint", 7, "--reference-ms", reference_ms]
    r = run(*args, "--space", tmp_path / "wide.json", "--budget", 50, "--method", "random", "--out", tmp_path / "w")
    assert r.exit_code == 0, r.output
    assert "warning: --predictor: space 'wide': hidden 128..1024 lies outside" in " ".join(r.stderr.split())
    same = run(*args, "--budget", 50, "--method", "random", "--out", tmp_path / "s")
    assert same.exit_code == 0 and "lies outside" not in same.stderr
