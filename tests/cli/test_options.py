"""The deployment and protocol options: declared once, the same on every measuring command."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from latbench.cli import app
from latbench.cli.options import DEPLOY_OPTIONS, PROTOCOL_OPTIONS, DeployOptions, ProtocolOptions
from latbench.profiling.config import DeployConfig, ProtocolConfig
from tests.cli_assert import assert_one_line_error

MEASURING = {
    ("profile",): True,
    ("measure",): True,
    ("build-lut",): True,
    ("search",): True,
    ("validate",): True,
    ("evaluate",): True,
    ("fleet", "profile"): False,
    ("fleet", "build-lut"): False,
}


def _command(path: tuple[str, ...]):
    cmd = typer.main.get_command(app)
    for name in path:
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    return cmd


@pytest.mark.parametrize("path", list(MEASURING))
def test_every_measuring_command_takes_the_shared_options(path):
    flags = {opt for p in _command(path).params for opt in p.opts}
    protocol = {d.option.param_decls[0].split("/")[0] for d in PROTOCOL_OPTIONS}
    assert protocol <= flags
    deploy = {d.option.param_decls[0] for d in DEPLOY_OPTIONS} | {"--device"}
    assert deploy <= flags if MEASURING[path] else not (deploy - {"--device"}) & flags


def test_options_not_given_leave_the_configs_defaults():
    assert ProtocolOptions({}).config() == ProtocolConfig()
    assert ProtocolOptions({"budget_s": 0.5, "min_samples": None}).config() == ProtocolConfig(budget_s=0.5)
    assert DeployOptions("cpu", {}).config(1, 128) == DeployConfig(backend="torch", batch=1, seq_len=128)
    # defaults (a predictor's deployment, say) fill what was not given; what was given wins
    cfg = DeployOptions(None, {"threads": 2}).config(1, 16, device="cpu", threads=1, precision="bf16")
    assert (cfg.threads, cfg.precision, cfg.device) == (2, "bf16", "cpu")


def test_protocol_help_prints_the_configs_defaults():
    text = " ".join(CliRunner().invoke(app, ["profile", "--help"]).stdout.split())
    assert f"Default: {ProtocolConfig().budget_s:g}" in text and f"Default: {ProtocolConfig().min_samples}" in text


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--budget-s", "0"], "--budget-s"),
        (["--rounds", "0"], "--rounds"),
        (["--target-ci", "-1"], "--target-ci"),
        (["--precision", "fp8"], "--precision"),
        (["--mode", "graph"], "--mode"),
        (["--option", "torch.nope=1"], "torch.nope"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(tmp_path, args, flag):
    # the deployment and protocol are checked before the grid is read
    r = CliRunner().invoke(
        app, ["build-lut", "--grid", str(tmp_path / "g.json"), "--out", str(tmp_path / "l.json"), *args]
    )
    assert_one_line_error(r, flag)
