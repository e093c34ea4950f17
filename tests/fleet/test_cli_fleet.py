"""``latbench fleet`` through a local typer app: runs, status, warnings and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latbench.cli import fleet
from latbench.cli._app import make_app
from latbench.profiling.store import ResultStore, read_store
from tests.cli_assert import assert_one_line_error

app = make_app("test app with the fleet sub-app")
app.add_typer(fleet.app, name="fleet")
runner = CliRunner()

FAST = ["--budget-s", "0.1", "--min-samples", "5", "--seq", "8", "--no-peaks", "--group-size", "1"]


def profile_args(space_file: Path, targets: Path, out: Path, address: str = "auto", *extra: str) -> list[str]:
    return [
        "fleet",
        "profile",
        "--address",
        address,
        "--targets",
        str(targets),
        "--space",
        str(space_file),
        "--samples",
        "2",
        "--seed",
        "0",
        "--out",
        str(out),
        *FAST,
        *extra,
    ]


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch, space_file, targets_file, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    result = runner.invoke(app, profile_args(space_file, targets_file, tmp_path / "x.parquet"))
    assert_one_line_error(result, "Ray", "pip install 'latbench[ray]'")
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    ("address", "fragment"),
    [("ray://127.0.0.1:1", "cannot reach Ray at ray://127.0.0.1:1"), ("nowhere", "expected ray://HOST:PORT")],
)
def test_bad_address_is_one_line(address, fragment, space_file, targets_file, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'latbench[ray]')")
    result = runner.invoke(app, profile_args(space_file, targets_file, tmp_path / "x.parquet", address))
    assert_one_line_error(result, "--address", fragment)


def test_bad_targets_files_are_one_line(space_file, tmp_path):
    out = tmp_path / "x.parquet"
    assert_one_line_error(
        runner.invoke(app, profile_args(space_file, tmp_path / "absent.yaml", out)), "absent.yaml", "no such file"
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"targets": [{"label": "a", "resource": "r", "device": "cpu", "deploy": {"x": 1}}]}))
    assert_one_line_error(runner.invoke(app, profile_args(space_file, bad, out)), "bad.json", "target 'a'")
    assert_one_line_error(runner.invoke(app, ["fleet", "status", "--out", str(out), "--targets", str(bad)]), "bad.json")


def test_yaml_targets_without_pyyaml_is_one_line(monkeypatch, space_file, tmp_path):
    y = tmp_path / "targets.yaml"
    y.write_text("targets: []\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    result = runner.invoke(app, profile_args(space_file, y, tmp_path / "x.parquet"))
    assert_one_line_error(result, "PyYAML", "latbench[ray]", ".json")


def test_profile_then_status_then_a_differing_environment_warns(ray_cluster, space_file, targets_file, tmp_path):
    out = tmp_path / "runs" / "fleet.parquet"
    result = runner.invoke(app, profile_args(space_file, targets_file, out))
    assert result.exit_code == 0, result.output
    assert "dev-a:" in result.stdout and "dev-b:" in result.stdout and "warning" not in result.stdout
    df = read_store(out)
    requested = (df.target == "dev-a").sum()
    status = runner.invoke(app, ["fleet", "status", "--out", str(out), "--targets", str(targets_file)])
    assert status.exit_code == 0, status.output
    assert f"dev-a [cpu_dev_a]: {requested}/{requested} rows (100%)" in status.stdout
    assert "env " in status.stdout and "warning" not in status.stdout

    # A row of dev-a from a machine with another CPU, as another node behind the same label would give.
    with ResultStore(out) as st:
        fps = st.fingerprints()
        row = df[df.target == "dev-a"].iloc[0].to_dict()
        env_id = row["env_id"]
        other = {**fps[env_id], "env_id": "0ther0env0id", "cpu": {**fps[env_id]["cpu"], "model": "Another CPU"}}
        st.append([{**row, "arch": row["arch"] + " ", "env_id": "0ther0env0id"}], {"0ther0env0id": other})
    status = runner.invoke(app, ["fleet", "status", "--out", str(out), "--json"])
    d = json.loads(status.stdout)
    (warning,) = d["warnings"]
    assert "dev-a" in warning and "cpu.model" in warning and "Another CPU" in warning
    assert len(d["targets"][0]["envs"]) == 2 and len(d["targets"][1]["envs"]) == 1
    # The run reports it too (here with nothing left to measure).
    again = runner.invoke(app, profile_args(space_file, targets_file, out))
    assert again.exit_code == 0, again.output
    assert "warning: target 'dev-a' ran in 2 different environments" in again.stdout


def test_build_lut_cli_writes_tables(ray_cluster, grid_file, targets_file, tmp_path):
    out = tmp_path / "luts"
    args = ["fleet", "build-lut", "--address", "auto", "--targets", str(targets_file), "--grid", str(grid_file)]
    result = runner.invoke(app, [*args, "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    assert (out / "dev-a.json").is_file() and (out / "dev-b.json").is_file() and (out / "fleet.parquet").is_file()
    assert "8/8 measured" in result.stdout
    status = runner.invoke(app, ["fleet", "status", "--out", str(out / "fleet.parquet")])
    assert "(lut run)" in status.stdout and "8/8 rows" in status.stdout


CLI_SCRIPT = """
from latbench.cli import fleet
from latbench.cli._app import make_app
app = make_app("fleet")
app.add_typer(fleet.app, name="fleet")
app()
"""


@pytest.mark.slow
def test_driver_killed_9_then_rerun_ends_complete_without_duplicates(space_file, tmp_path):
    """A real driver process with its own local cluster, killed with SIGKILL once rows have landed."""
    import os
    import signal
    import subprocess
    import time

    pytest.importorskip("ray", reason="ray is not installed (pip install 'latbench[ray]')")
    targets = tmp_path / "t.json"
    targets.write_text(
        json.dumps(
            {
                "targets": [
                    {
                        "label": "pair",
                        "resource": "cpu_pair",
                        "device": "cpu",
                        "deploy": {"backend": "torch", "threads": 1},
                        "local_units": 2,
                    }
                ]
            }
        )
    )
    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT)
    out = tmp_path / "killed.parquet"
    args = [sys.executable, str(script), *profile_args(space_file, targets, out, "local")]
    args[args.index("--samples") + 1] = "8"
    args[args.index("--budget-s") + 1] = "0.3"
    proc = subprocess.Popen(
        [*args, "--flush-s", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and len(read_store(out)) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    partial = len(read_store(out))
    again = subprocess.run(
        [*args], capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2]
    )
    assert again.returncode == 0, again.stderr
    df = read_store(out)
    keys = list(zip(df.arch, df.scope, df.block_index, df.deploy_key))
    assert len(keys) == len(set(keys)) and len(df) > partial
    assert f"{len(df)}/{len(df)} rows" in again.stdout
