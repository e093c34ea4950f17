"""Fixtures of the super-net tests: one torch thread (fast and reproducible on a shared 2-core CPU), a tiny corpus."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.supernet.helpers import write_corpus


@pytest.fixture(autouse=True)
def _one_thread():
    # The root conftest restores the thread count after each test.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))
