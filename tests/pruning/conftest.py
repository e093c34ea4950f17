"""Pruning tests run single-threaded: tiny models gain nothing from threads, and lose a lot on a busy machine."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the root conftest restores the previous count after each test
    yield
