"""Bad input found only when something runs: a model's inputs (``measure --input``), a training
``--device``, a fleet store that is not there. Each is one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from latbench.cli import app
from latbench.errors import LatbenchError
from latbench.profiling.base import normalise_inputs
from latbench.profiling.config import DeployConfig
from tests.cli_assert import assert_one_line_error

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------ measure --input

MODELS = """
import torch


class Conv(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x)


class Dense(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


def conv():
    return Conv()


def dense():
    return Dense()
"""

FAST = ["--budget-s", "1", "--min-samples", "3", "--max-samples", "3"]


@pytest.fixture
def models(tmp_path: Path) -> Path:
    path = tmp_path / "bad_input_models.py"
    path.write_text(MODELS)
    return path


@pytest.mark.parametrize("extra", [[], ["--mode", "compile"], ["--precision", "bf16"]])
def test_measure_an_input_name_forward_does_not_take(models: Path, extra: list[str]) -> None:
    result = run("measure", f"{models}:conv", "--input", "y:1x3x8x8", *FAST, *extra)
    assert_one_line_error(result, "forward(x) does not take inputs y:1x3x8x8:float32", "--input")
    assert "torch.compile failed" not in result.stderr


def test_measure_a_shape_the_model_refuses(models: Path) -> None:
    result = run("measure", f"{models}:conv", "--input", "x:1x4x8x8", *FAST)
    assert_one_line_error(
        result,
        "backend 'torch' mode 'eager': the model's untimed first call failed with inputs x:1x4x8x8:float32",
        "RuntimeError: ",
        "channels",
        "--input",
    )


def test_measure_int8_blames_the_inputs_not_the_quantisation(models: Path) -> None:
    result = run("measure", f"{models}:dense", "--input", "x:1x5", "--precision", "int8", *FAST)
    assert_one_line_error(result, "untimed first call failed with inputs x:1x5:float32", "RuntimeError")
    assert "quantised" not in result.stderr


def test_measure_with_good_inputs_still_measures(models: Path) -> None:
    result = run("measure", f"{models}:conv", "--input", "x:1x3x8x8", *FAST, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n"] >= 3


class _Raises(torch.nn.Module):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


def test_torch_cuda_first_call_failure_is_one_line_but_out_of_memory_is_left_alone() -> None:
    from latbench.profiling.backends.torch_cuda import _eager

    config = DeployConfig(backend="torch", device="cuda", mode="eager", batch=2)
    inputs = normalise_inputs(torch.randn(2, 4), config)
    # stream None: torch.cuda.stream(None) does nothing, so the wrapping runs without a GPU
    with pytest.raises(LatbenchError, match=r"^backend 'torch' mode 'eager': the model's untimed first call failed"):
        _eager(_Raises(RuntimeError("mat1 and mat2 shapes cannot be multiplied\nmore")), inputs, None)  # type: ignore[arg-type]
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _eager(_Raises(torch.cuda.OutOfMemoryError("CUDA out of memory")), inputs, None)  # type: ignore[arg-type]


def test_torch_cuda_checks_input_names_before_touching_the_gpu() -> None:
    from latbench.profiling.backends.torch_cuda import TorchCUDABackend

    config = DeployConfig(backend="torch", device="cuda", batch=1)
    with pytest.raises(LatbenchError, match=r"^backend 'torch' mode 'graph': the model's forward\(x\) does not take"):
        TorchCUDABackend(config).prepare(_Raises(RuntimeError()), {"y": torch.randn(1, 4)})


# ------------------------------------------------------------ train-supernet --device


# ids without "gpu": the suite's conftest skips tests with that keyword where no GPU is visible
@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu:0"], ids=["a-word", "a-bad-index", "another-kind"])
def test_train_supernet_refuses_an_unknown_device_before_any_work(device: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run("train-supernet", "--space", "bert", "--steps", "1", "--out", out, "--device", device)
    assert_one_line_error(result, "--device", "expected cpu, cuda or cuda:N", repr(device))
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_train_supernet_on_cuda_without_cuda_is_one_line(device: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run("train-supernet", "--space", "bert", "--steps", "1", "--out", out, "--device", device)
    assert_one_line_error(result, "--device", "needs a CUDA build of torch and an NVIDIA GPU")
    assert not out.exists()


def test_check_device_keeps_what_torch_was_given() -> None:
    from latbench.supernet.train import check_device

    assert check_device("cpu") == torch.device("cpu")
    assert check_device(" CPU ") == torch.device("cpu")
    with pytest.raises(LatbenchError, match=r"^--device: expected cpu, cuda or cuda:N, got 'gpu'$"):
        check_device("gpu")
    if torch.cuda.is_available():
        assert check_device("cuda") == torch.device("cuda")
        assert check_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(LatbenchError, match="GPU"):
            check_device(f"cuda:{torch.cuda.device_count()}")


# --------------------------------------------------------------------- fleet status


def test_fleet_status_of_a_store_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "nonexistent.parquet"
    result = run("fleet", "status", "--out", missing)
    assert_one_line_error(result, str(missing), "no such result store")
    assert "rows" not in result.stdout
    assert_one_line_error(run("fleet", "status", "--out", missing, "--json"), "no such result store")


def test_fleet_status_of_a_planned_run_with_no_rows_yet(tmp_path: Path) -> None:
    from latbench.fleet import parse_targets, profile_plan
    from latbench.fleet.plan import write_plan
    from latbench.space import SearchSpace
    from tests.fleet.conftest import FAST as FLEET_FAST
    from tests.fleet.conftest import TINY_SPACE, two_targets

    store = tmp_path / "fleet.parquet"
    plan = profile_plan(SearchSpace.from_dict(TINY_SPACE), 3, parse_targets(two_targets()), FLEET_FAST, seq_len=8)
    write_plan(store, plan)
    result = run("fleet", "status", "--out", store)
    assert result.exit_code == 0, result.output
    assert f"dev-a [cpu_dev_a]: 0/{len(plan.keys(plan.targets[0]))} rows" in result.stdout
