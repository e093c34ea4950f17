"""Shared data for the predictor tests: HAT's real files and a synthetic result store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from latbench.models.cost import model_cost
from latbench.profiling.config import DeployConfig
from latbench.profiling.store import ResultStore
from latbench.space import get_space

#: Small, fast model settings: the tests check behaviour, not accuracy.
FAST: dict[str, dict[str, Any]] = {
    "xgboost": {"n_estimators": 150, "early_stopping_rounds": 20, "rounds_without_validation": 50, "n_jobs": 2},
    "mlp": {"hidden": (16, 16), "max_epochs": 15, "patience": 5, "epochs_without_validation": 10, "batch_size": 32},
    "roofline-linear": {},
}


def fake_fingerprint(cpu_model: str, env_id: str) -> dict[str, Any]:
    return {"cpu": {"model": cpu_model, "logical_cores": 2}, "threads": 1, "gpus": [], "env_id": env_id}


def synthetic_latency_ms(arch: Any, batch: int, seq_len: int, scale: float = 1.0) -> float:
    """A roofline-shaped latency with a per-block overhead: what a real CPU profile roughly looks like."""
    c = model_cost(arch, batch, seq_len).total
    return scale * (1e3 * (c.flops / 5e10 + c.bytes / 1e10) + 0.05 * arch.n_layers + 0.1)


def write_synthetic_store(
    path: Path,
    n_archs: int = 120,
    seq_lens: tuple[int, ...] = (64, 128),
    cpu_model: str = "Test CPU",
    env_id: str = "envtest00001",
    scale: float = 1.0,
    seed: int = 0,
    precision: str = "fp32",
    space: Any = "bert",
    drift: float = 0.0,
    batches: tuple[int, ...] = (1,),
) -> Path:
    """A result store of whole-model rows of architectures of ``space`` (a name or a SearchSpace)
    with a synthetic latency and 1% noise."""
    rng = np.random.default_rng(seed)
    sp = get_space(space) if isinstance(space, str) else space
    archs = list({a.to_json(): a for a in sp.sample(seed, n=n_archs)}.values())  # small spaces repeat draws
    rows = []
    for arch, batch, seq in ((a, b, s) for a in archs for b in batches for s in seq_lens):
        deploy = DeployConfig(
            backend="torch", device="cpu", mode="eager", precision=precision, threads=1, batch=batch, seq_len=seq
        )
        speed = float(np.exp(rng.normal(0, drift))) if drift else 1.0  # the machine's slowdown at this row
        ms = synthetic_latency_ms(arch, batch, seq, scale) * float(np.exp(rng.normal(0, 0.01))) * speed
        cost = model_cost(arch, batch, seq).total
        rows.append(
            {
                "arch": arch.to_json(),
                "space": sp.name,
                "scope": "model",
                "block_index": -1,
                "deploy_key": deploy.key(),
                "backend": "torch",
                "mode": "eager",
                "precision": precision,
                "device": "cpu",
                "threads": 1,
                "batch": batch,
                "seq_len": seq,
                "median_ms": ms,
                "mean_ms": ms * 1.01,
                "min_ms": ms * 0.97,
                "p10_ms": ms * 0.98,
                "p90_ms": ms * 1.03,
                "ci_low_ms": ms * 0.995,
                "ci_high_ms": ms * 1.005,
                "n": 50,
                "unstable": False,
                "build_ms": 1.0,
                "env_id": env_id,
                "flops": cost.flops,
                "params": cost.params,
                "roofline_ms": None,
                **({"ref_ms": 8.0 * speed} if drift else {}),
            }
        )
    with ResultStore(path) as store:
        store.append(rows, {env_id: fake_fingerprint(cpu_model, env_id)})
    return path


@pytest.fixture(scope="session")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_store(tmp_path_factory.mktemp("store") / "cpu.parquet")


@pytest.fixture(scope="session")
def other_device_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same architectures on another CPU, 1.7x slower."""
    return write_synthetic_store(
        tmp_path_factory.mktemp("store_b") / "other.parquet", cpu_model="Other CPU", env_id="envtest00002", scale=1.7
    )


@pytest.fixture(scope="session")
def hat_dir() -> Path:
    from tests.conftest import FIXTURES

    d = FIXTURES / "hat"
    if not d.is_dir():
        pytest.skip(f"HAT fixtures not found at {d}")
    return d


@pytest.fixture(scope="session")
def hat_gpu(hat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from latbench.predictors import import_hat

    out = tmp_path_factory.mktemp("hat") / "wmt14ende_gpu.parquet"
    import_hat(hat_dir / "wmt14ende_gpu_titanxp_all.csv", out)
    return out


@pytest.fixture(scope="session")
def hat_cpu(hat_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from latbench.predictors import import_hat

    out = tmp_path_factory.mktemp("hat") / "wmt14ende_cpu.parquet"
    import_hat(hat_dir / "wmt14ende_cpu_xeon_all.csv", out)
    return out
