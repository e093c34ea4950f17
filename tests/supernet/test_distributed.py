"""torch.distributed: 2 gloo processes on the same global batch give the single-process weights."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from latbench.supernet.train import load_trained, train_supernet
from tests.supernet.helpers import tiny_config

#: Gradients are summed in another order over two processes: weights agree to float rounding, amplified a
#: little by Adam's normalisation over a few steps.
ATOL = 1e-5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, corpus: str, out: str) -> None:
    # What torchrun sets: train_supernet joins (and leaves) the process group itself.
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    torch.set_num_threads(1)
    train_supernet(tiny_config("gpt", Path(corpus), inplace_distill=True), out)


def _assert_close_weights(a: Path, b: Path) -> None:
    wa, wb = load_trained(a).model.state_dict(), load_trained(b).model.state_dict()
    assert wa.keys() == wb.keys()
    worst = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    assert worst <= ATOL, worst


def test_two_gloo_processes_equal_one_process_on_the_same_global_batch(corpus, tmp_path) -> None:
    train_supernet(tiny_config("gpt", corpus, inplace_distill=True), tmp_path / "single")
    # Forked, not spawned: the children inherit the imported torch and latbench (seconds saved per process).
    mp.start_processes(
        _worker, args=(2, _free_port(), str(corpus), str(tmp_path / "ddp")), nprocs=2, join=True, start_method="fork"
    )
    ddp = load_trained(tmp_path / "ddp")
    assert ddp.step == 4
    _assert_close_weights(tmp_path / "single", tmp_path / "ddp")


def test_a_batch_that_does_not_split_is_refused(corpus, tmp_path) -> None:
    from latbench.errors import LatbenchError
    from latbench.supernet.train import _Group, _train

    with pytest.raises(LatbenchError, match="does not split over 3 processes"):
        _train(tiny_config("gpt", corpus), tmp_path, torch.device("cpu"), _Group(0, 3), None, None)


@pytest.mark.slow
def test_torchrun_cli_two_processes_equal_one(corpus, tmp_path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this python")
    space = tmp_path / "space.json"
    import json

    from tests.supernet.helpers import SPACE_DICTS

    space.write_text(json.dumps(SPACE_DICTS["gpt"]))
    common = ["--space", str(space), "--data", str(corpus), "--steps", "4", "--batch-size", "8", "--threads", "1"]
    code = "from latbench.cli.supernet import train_supernet; import typer; typer.run(train_supernet)"
    script = tmp_path / "train.py"
    script.write_text(code + "\n")
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path / "one"), *common], check=True, env=env)
    subprocess.run(
        [torchrun, "--nproc_per_node", "2", str(script), "--out", str(tmp_path / "two"), *common], check=True, env=env
    )
    _assert_close_weights(tmp_path / "one", tmp_path / "two")
