"""The README's fleet example: its targets file parses, and the commented cluster entries do too."""

from __future__ import annotations

from pathlib import Path

import pytest

from latbench.fleet.targets import parse_targets, read_targets

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fleet_targets.yaml"


def test_the_example_targets_file_parses_as_written_and_uncommented() -> None:
    yaml = pytest.importorskip("yaml")
    (t,) = read_targets(EXAMPLE)
    assert t.label == "cpu-1t" and t.resource == "cpu_worker" and t.local_units == 2 and t.deploy.threads == 1
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("#  - label:"))
    uncommented = "\n".join(lines[:start] + [ln[1:] if ln.startswith("#  ") else ln for ln in lines[start:]])
    labels = [x.label for x in parse_targets(yaml.safe_load(uncommented), str(EXAMPLE))]
    assert labels == ["cpu-1t", "h100-graph-fp16", "xeon-ort-1t"]
