"""Assertions shared by the lut tests."""

from __future__ import annotations

from pathlib import Path

import pytest


def assert_names_file(exc_info: pytest.ExceptionInfo, path: Path, *fragments: str) -> None:
    """The error is one line, starts with the file and mentions each fragment."""
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    for f in fragments:
        assert f in msg, msg
