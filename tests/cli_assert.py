"""What every test of a refused input checks: one ``latbench: error:`` line, exit code 2, no traceback."""

from __future__ import annotations


def assert_one_line_error(result, *fragments: str) -> None:
    """``result`` (a CliRunner result) is one error line on stderr holding every fragment, exit 2."""
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("latbench: error: "), lines[0]
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in result.output
