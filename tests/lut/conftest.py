"""Helpers shared by the lut tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def nvit_path(fixtures_dir: Path) -> Path:
    p = fixtures_dir / "nvit" / "latency_head.json"
    if not p.is_file():
        pytest.skip(f"NViT fixture not found at {p}")
    return p


@pytest.fixture
def hat_dir(fixtures_dir: Path) -> Path:
    p = fixtures_dir / "hat"
    if not any(p.glob("*.csv")):
        pytest.skip(f"HAT fixtures not found in {p}")
    return p
