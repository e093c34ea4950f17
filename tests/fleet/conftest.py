"""A local Ray cluster standing for a fleet: two single-unit CPU "devices" and one resource with two units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from latbench.profiling.config import ProtocolConfig

TINY_SPACE: dict[str, Any] = {
    "name": "tiny-bert",
    "family": "bert",
    "n_layers": {"min": 1, "max": 2},
    "hidden": {"min": 32, "max": 64, "step": 32},
    "heads": {"min": 1, "max": 2},
    "qk_dim": {"min": 8, "max": 16, "step": 8},
    "mlp": {"min": 32, "max": 64, "step": 32},
    "extras": {"vocab_size": 100, "max_seq_len": 8},
}

TINY_GRID: dict[str, Any] = {
    "family": "bert",
    "axes": {"hidden": [32, 64], "heads": [1, 2], "qk_dim": [8], "mlp": [32, 64]},
    "extras": {"vocab_size": 100, "max_seq_len": 8},
}

#: Budgets small enough for CI; the rows are structurally complete, their numbers are not worth much.
FAST = ProtocolConfig(budget_s=0.1, min_samples=5, warmup_calls=1, warmup_s=0.0)

#: The cluster's custom resources: two one-unit "devices", and a "pair" of identical ones.
RESOURCES = {"cpu_dev_a": 1.0, "cpu_dev_b": 1.0, "cpu_pair": 2.0}


def target_entry(label: str, resource: str, threads: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "label": label,
        "resource": resource,
        "device": "cpu",
        "deploy": {"backend": "torch", "threads": threads},
        **extra,
    }


def two_targets() -> dict[str, Any]:
    return {"targets": [target_entry("dev-a", "cpu_dev_a"), target_entry("dev-b", "cpu_dev_b")]}


@pytest.fixture
def space_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.json"
    p.write_text(json.dumps(TINY_SPACE))
    return p


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    p = tmp_path / "grid.json"
    p.write_text(json.dumps(TINY_GRID))
    return p


@pytest.fixture
def targets_file(tmp_path: Path) -> Path:
    p = tmp_path / "targets.json"
    p.write_text(json.dumps(two_targets()))
    return p


@pytest.fixture(scope="package")
def ray_cluster() -> Any:
    """One local Ray cluster for the fleet tests (starting one takes seconds), stopped after the last of them."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'latbench[ray]')")
    import logging

    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",  # a cluster of our own, never one another process started on this machine
            num_cpus=2,
            resources=RESOURCES,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    yield ray
    if started:
        ray.shutdown()
