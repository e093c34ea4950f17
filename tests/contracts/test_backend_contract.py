"""Every registered backend through one lifecycle: get_backend -> prepare -> time_calls -> measure -> close.

A backend whose library or hardware is missing here is skipped with its one-line
reason, never dropped: the cases below must cover every registry entry.
"""

from __future__ import annotations

import math

import pytest
import torch

from latbench.errors import MissingDependencyError
from latbench.profiling.base import REGISTRY, Prepared, get_backend
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.protocol import measure

CASES: list[DeployConfig] = [
    DeployConfig(backend="torch", threads=1, batch=2),
    DeployConfig(backend="torch", threads=1, batch=2, precision="int8"),
    DeployConfig(backend="onnxruntime", threads=1, batch=2),
    DeployConfig(backend="onnxruntime", threads=1, batch=2, precision="int8"),
    DeployConfig(backend="torch", device="cuda", mode="eager", batch=2),
    DeployConfig(backend="torch", device="cuda", mode="graph", batch=2, precision="fp16"),
    DeployConfig(backend="torch", device="cuda", mode="compile", batch=2, precision="bf16"),
    DeployConfig(backend="onnxruntime", device="cuda", batch=2),
    DeployConfig(backend="onnxruntime", device="cuda", mode="tensorrt", batch=2, precision="fp16"),
    DeployConfig(backend="tensorrt", device="cuda", batch=2, precision="fp16"),
]

QUICK = ProtocolConfig(warmup_calls=3, warmup_s=0.01, min_samples=10, budget_s=0.2)


def test_the_cases_cover_every_registered_backend() -> None:
    assert set(REGISTRY) <= {(c.backend, c.device_type) for c in CASES}


@pytest.mark.parametrize("config", CASES, ids=[c.label() for c in CASES])
def test_backend_lifecycle(config: DeployConfig) -> None:
    try:
        backend = get_backend(config)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16))
    prepared = backend.prepare(model, (torch.randn(config.batch, 16),))
    assert isinstance(prepared, Prepared) and prepared.config == config
    try:
        assert prepared.build_ms >= 0 and prepared.runtime
        timings = prepared.time_calls(4)
        assert len(timings) == 4 and all(math.isfinite(t) and t > 0 for t in timings)
        m = measure(prepared, QUICK)
        assert m.stats.n == len(m.samples_ms) >= QUICK.min_samples
        assert m.stats.p10_ms <= m.stats.median_ms <= m.stats.p90_ms
        assert m.config == config and m.to_row()["n"] == m.stats.n
    finally:
        prepared.close()
    assert prepared.closed
