"""``latbench profile`` / ``measure`` / ``show`` end to end: rows, resumption after kill -9, one-line errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.profiling.store import read_store
from latbench.space import get_space
from tests.cli_assert import assert_one_line_error

runner = CliRunner()

TINY_SPACE = {
    "name": "tiny-bert",
    "family": "bert",
    "n_layers": {"min": 1, "max": 3},
    "hidden": {"min": 32, "max": 64, "step": 32},
    "heads": {"min": 1, "max": 2},
    "qk_dim": {"min": 8, "max": 16, "step": 8},
    "mlp": {"min": 32, "max": 128, "step": 32},
    "extras": {"vocab_size": 100, "max_seq_len": 64},
}
FAST = ["--budget-s", "0.2", "--min-samples", "5", "--threads", "1", "--seq", "16"]


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(TINY_SPACE))
    return p


def profile_args(space_file: Path, out: Path, n: int = 3, *extra: str) -> list[str]:
    return ["profile", "--space", str(space_file), "--samples", str(n), "--seed", "0", "--out", str(out), *FAST, *extra]


def test_profile_writes_models_and_distinct_blocks_then_resumes(space_file, tmp_path):
    out = tmp_path / "runs" / "x.parquet"
    result = runner.invoke(app, profile_args(space_file, out))
    assert result.exit_code == 0, result.output
    df = read_store(out)
    archs = get_space(str(space_file)).sample(0, n=3)
    assert set(df[df.scope == "model"].arch) == {a.to_json() for a in archs}
    n_blocks = sum(len({layer for layer in a.layers}) for a in set(archs))
    assert (df.scope == "block").sum() == n_blocks
    assert (df.median_ms > 0).all() and (df.p90_ms >= df.median_ms).all() and (df.min_ms <= df.median_ms).all()
    assert (df.ci_low_ms <= df.median_ms).all() and (df.median_ms <= df.ci_high_ms).all()
    assert all(len(s) == n for s, n in zip(df.samples_ms, df.n))
    assert (df.flops > 0).all() and (df.roofline_ms > 0).all() and df.env_id.nunique() == 1
    assert (df.backend == "torch").all() and (df["mode"] == "eager").all() and (df.seq_len == 16).all()
    # Same command again: nothing left to measure, nothing duplicated.
    again = runner.invoke(app, profile_args(space_file, out))
    assert again.exit_code == 0 and "wrote 0 rows" in again.output
    assert len(read_store(out)) == len(df)
    shown = runner.invoke(app, ["show", str(out), "--json"])
    summary = json.loads(shown.stdout)
    assert summary["rows"] == len(df) and summary["models"] == 3
    # Every row timed the CPU reference workload; show gives the machine's speed over the run.
    (env,) = summary["envs"].values()
    assert (df.ref_ms > 0).all() and env["ref_ms"] == pytest.approx(float(df.ref_ms.median()))
    text = runner.invoke(app, ["show", str(out)])
    assert text.exit_code == 0 and "CPU reference workload" in text.stdout


def test_profile_no_blocks_and_seed_determinism(space_file, tmp_path):
    a, b = tmp_path / "a.parquet", tmp_path / "b.parquet"
    for out in (a, b):
        assert runner.invoke(app, profile_args(space_file, out, 2, "--no-blocks")).exit_code == 0
    da, db = read_store(a), read_store(b)
    assert (da.scope == "model").all() and list(da.arch) == list(db.arch)


def test_profile_killed_mid_run_resumes_to_exactly_the_requested_rows(space_file, tmp_path):
    out = tmp_path / "k.parquet"
    args = profile_args(space_file, out, 6)
    cmd = [sys.executable, "-c", "from latbench.cli import main; main()", *args]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and not out.exists():  # kill once the first group is written
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(read_store(out)) if out.exists() else 0
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    df = read_store(out)
    archs = set(get_space(str(space_file)).sample(0, n=6))
    expected = len(archs) + sum(len(set(a.layers)) for a in archs)
    assert len(df) == expected >= partial
    assert not df.duplicated(["arch", "scope", "block_index", "deploy_key"]).any()


def test_measure_a_user_factory_and_an_onnx_file(tmp_path):
    pytest.importorskip("onnxruntime")
    import torch

    src = tmp_path / "mymodel.py"
    src.write_text(
        "import torch\n"
        "def make():\n"
        "    return torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))\n"
    )
    fast = ["--budget-s", "0.2", "--min-samples", "5", "--threads", "1"]
    out = tmp_path / "m.parquet"
    result = runner.invoke(app, ["measure", f"{src}:make", "--input", "input:2x16", *fast, "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["median_ms"] > 0 and row["params"] == 16 * 32 + 32 + 32 * 4 + 4
    assert row["flops"] == 2 * 2 * (16 * 32 + 32 * 4)
    assert len(read_store(out)) == 1
    onnx_path = tmp_path / "m.onnx"
    model = torch.nn.Sequential(torch.nn.Linear(16, 4))
    torch.onnx.export(model, (torch.randn(2, 16),), str(onnx_path), input_names=["x"], dynamo=False)
    result = runner.invoke(app, ["measure", str(onnx_path), "--backend", "onnxruntime", "--input", "x:2x16", *fast])
    assert result.exit_code == 0, result.output
    assert "median" in result.stdout and "onnxruntime" in result.stdout


def test_bad_profile_and_measure_input_is_one_line(space_file, tmp_path):
    out = str(tmp_path / "x.parquet")
    base = ["profile", "--space", str(space_file), "--out", out, "--seq", "16"]
    assert_one_line_error(runner.invoke(app, [*base, "--mode", "graph"]), "--mode", "graph")
    assert_one_line_error(runner.invoke(app, [*base, "--backend", "tensorrt", "--device", "cuda:0"]), "tensorrt")
    assert_one_line_error(runner.invoke(app, [*base, "--option", "tensorrt.workspace_mb=64"]), "tensorrt")
    assert_one_line_error(runner.invoke(app, [*base, "--samples", "0"]), "--samples")
    too_long = ["profile", "--space", str(space_file), "--out", out, "--seq", "9999"]
    assert_one_line_error(runner.invoke(app, too_long), "seq_len", "max_seq_len 64")
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    assert_one_line_error(runner.invoke(app, ["show", str(bad)]), str(bad))
    assert_one_line_error(runner.invoke(app, ["measure", "nosuchmodule:make", "--input", "x:1x4"]), "nosuchmodule")
    assert_one_line_error(runner.invoke(app, ["measure", "m.py:f", "--input", "x:1xq"]), "--input")
    assert not Path(out).exists()


def test_profile_says_where_it_pins_and_normalises_drift_when_asked(space_file, tmp_path, monkeypatch):
    monkeypatch.setenv("LATBENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "n.parquet"
    result = runner.invoke(app, profile_args(space_file, out, 2, "--no-blocks", "--normalise-drift"))
    assert result.exit_code == 0, result.output
    assert "placement   1 thread pinned to cpu" in result.stdout or "not pinned" in result.stdout
    assert "median_ms_normalised" in result.stdout
    df = read_store(out)
    anchor = json.loads(next((tmp_path / "cache" / "reference").glob("*.json")).read_text())["ref_anchor_ms"]
    assert (df.ref_anchor_ms == anchor).all()
    assert (df.median_ms_normalised == df.median_ms * anchor / df.ref_ms).all()
    placement = json.loads(df.placement.iloc[0])
    assert placement["threads"] == 1 and json.loads(df.protocol.iloc[0])["min_rounds"] == 10
    shown = runner.invoke(app, ["show", str(out)])
    assert shown.exit_code == 0, shown.output
    assert f"placement   {placement['summary']} (2 rows)" in shown.stdout
    assert "steadiness  each row's rounds moved" in shown.stdout
    summary = json.loads(runner.invoke(app, ["show", str(out), "--json"]).stdout)
    assert summary["placements"] == {placement["summary"]: 2} and summary["round_spread"] >= 0
    # Without the option the rows carry no correction; --no-pin is recorded.
    plain = tmp_path / "p.parquet"
    result = runner.invoke(app, profile_args(space_file, plain, 1, "--no-blocks", "--no-pin"))
    assert result.exit_code == 0, result.output
    df = read_store(plain)
    assert "median_ms_normalised" not in df or df.median_ms_normalised.isna().all()
    assert json.loads(df.placement.iloc[0])["pinned"] is False


def test_profile_warns_with_the_figure_when_the_machine_was_busy(space_file, tmp_path, monkeypatch):
    import itertools

    import latbench.profiling.protocol as protocol

    speeds = itertools.cycle([5.0, 6.5])  # the machine's speed jumps between rounds (and groups)
    monkeypatch.setattr(protocol, "cpu_reference", lambda n, kind=None: [next(speeds)] * n)
    out = tmp_path / "b.parquet"
    result = runner.invoke(app, profile_args(space_file, out, 3, "--no-blocks", "--group-size", "1"))
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "machine busy:" in text and "the CPU reference workload" in text and "--normalise-drift" in text


def test_normalise_drift_is_refused_on_a_gpu_in_one_line(space_file, tmp_path):
    result = runner.invoke(
        app, profile_args(space_file, tmp_path / "g.parquet", 1, "--normalise-drift", "--device", "cuda:0")
    )
    assert_one_line_error(result, "--normalise-drift")


def test_workload_design_is_balanced_distinct_and_seeded():
    from collections import Counter

    from latbench.profiling.job import workload_design

    grid = [(b, s) for b in (1, 2, 4) for s in (16, 32)]
    design = workload_design(24, grid, 2, seed=5)
    assert all(len(set(w)) == 2 for w in design)  # two distinct workloads per architecture
    counts = Counter(w for ws in design for w in ws)
    assert set(counts) == set(grid) and set(counts.values()) == {8}  # 48 picks over 6 workloads, 8 each
    assert design == workload_design(24, grid, 2, seed=5) and design != workload_design(24, grid, 2, seed=6)
    assert all(ws == sorted(grid) for ws in workload_design(3, grid, 0, seed=0))  # 0: every workload


def test_profile_a_design_over_batch_and_seq_into_one_store(space_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["profile", "--space", str(space_file), "--samples", "4", "--seed", "0", "--no-blocks"]
    args += ["--budget-s", "0.2", "--min-samples", "5", "--threads", "1", "--rounds", "2", "--calls-per-round", "2"]
    args += ["--warmup-calls", "1", "--batch", "1,2", "--seq", "16,32", "--workloads-per-arch", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 of 4 per architecture" in result.output
    stores = list((tmp_path / "runs").glob("*.parquet"))
    assert [p.name for p in stores] == ["tiny-bert_cpu_torch-eager-fp32-t1_b1-2_s16-32.parquet"]
    rows = read_store(stores[0])
    assert len(rows) == 8 and rows.groupby("arch").size().eq(2).all()
    assert set(zip(rows["batch"], rows["seq_len"])) == {(1, 16), (1, 32), (2, 16), (2, 32)}
    assert all(f"batch={b}" in k and f"seq_len={s}" in k for k, b, s in zip(rows.deploy_key, rows.batch, rows.seq_len))
    assert json.loads(rows["protocol"].iloc[0])["warmup_calls"] == 1
    # the bigger workload is measured slower, the same architecture at both (a workload is not mislabelled)
    by = rows.set_index(["arch", "batch", "seq_len"])["flops"]
    assert all(by[a].max() > by[a].min() for a in rows["arch"].unique())
    again = runner.invoke(app, args)  # resumed: nothing left to measure
    assert again.exit_code == 0 and "wrote 0 rows" in again.output
    assert_one_line_error(runner.invoke(app, [*args[:3], "--batch", "1,x"]), "--batch")
    assert_one_line_error(runner.invoke(app, [*args[:3], "--seq", "16,0"]), "--seq")
