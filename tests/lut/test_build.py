"""``latbench build-lut``: a grid profiled point by point (resumable), or a table from a store's block rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.lut.table import LookupTable
from latbench.profiling.store import read_store
from tests.cli_assert import assert_one_line_error

runner = CliRunner()
VIT_EXTRAS = {"image_size": 16, "patch_size": 8, "in_channels": 1, "num_classes": 10}
GRID = {
    "family": "vit",
    "axes": {"emb": [16, 32], "heads": [1, 2], "qk_dim": [4, 8], "v_dim": [4], "mlp": [16, 32]},
    "extras": VIT_EXTRAS,
}
FAST = ["--threads", "1", "--budget-s", "0.1", "--min-samples", "5"]


@pytest.fixture
def grid_file(tmp_path: Path) -> Path:
    p = tmp_path / "grid.json"
    p.write_text(json.dumps(GRID))
    return p


def test_build_lut_from_grid_resumes_and_queries(grid_file, tmp_path):
    out = tmp_path / "lut.json"
    result = runner.invoke(app, ["build-lut", "--grid", str(grid_file), "--out", str(out), *FAST])
    assert result.exit_code == 0, result.output
    table = LookupTable.load(out)
    assert [a.name for a in table.axes] == ["emb", "heads", "qk_dim", "v_dim", "mlp"]
    assert table.coverage().missing == 0 and table.coverage().total == 16
    assert table.meta.unit == "ms" and table.meta.deploy["backend"] == "torch" and table.meta.env_id
    assert table.meta.workload == {"batch": 1, "image_size": 16, "patch_size": 8}
    store = out.with_suffix(".parquet")
    rows = read_store(store)
    assert len(rows) == 16 and (rows.scope == "block").all()
    # the grid's values are the store's medians, point by point
    r = rows.iloc[0]
    arch = json.loads(r.arch)
    layer = arch["layers"][0]
    point = {"emb": arch["hidden"], "heads": layer["heads"], "qk_dim": layer["qk_dim"], "v_dim": 4, "mlp": layer["mlp"]}
    assert table.lookup(**point) == pytest.approx(r.median_ms)
    # same command again: nothing re-measured, same table
    again = runner.invoke(app, ["build-lut", "--grid", str(grid_file), "--out", str(out), *FAST])
    assert again.exit_code == 0, again.output
    assert len(read_store(store)) == 16 and LookupTable.load(out).lookup(**point) == pytest.approx(r.median_ms)
    q = {"family": "vit", "hidden": 24, "layers": [{"heads": 1, "qk_dim": 6, "v_dim": 4, "mlp": 24}], **VIT_EXTRAS}
    result = runner.invoke(app, ["lut", "query", str(out), "--arch", json.dumps(q), "--device", "cpu"])
    assert result.exit_code == 0, result.output and "ms" in result.stdout


def test_build_lut_from_a_profile_store(tmp_path):
    space = {
        "name": "tiny-bert",
        "family": "bert",
        "n_layers": {"min": 1, "max": 2},
        "hidden": {"min": 16, "max": 32, "step": 16},
        "heads": {"min": 1, "max": 2},
        "qk_dim": {"min": 8, "max": 8},
        "mlp": {"min": 16, "max": 32, "step": 16},
        "extras": {"vocab_size": 50, "max_seq_len": 16},
    }
    sp = tmp_path / "space.json"
    sp.write_text(json.dumps(space))
    store = tmp_path / "runs.parquet"
    args = ["profile", "--space", str(sp), "--samples", "4", "--seq", "8", "--out", str(store), *FAST]
    assert runner.invoke(app, args).exit_code == 0
    out = tmp_path / "lut.json"
    result = runner.invoke(app, ["build-lut", "--from", str(store), "--out", str(out), "--statistic", "p10"])
    assert result.exit_code == 0, result.output
    table = LookupTable.load(out)
    assert [a.name for a in table.axes] == ["hidden", "heads", "qk_dim", "mlp"] and table.meta.statistic == "p10"
    blocks = read_store(store).query("scope == 'block'")
    measured: dict[tuple[int, ...], list[float]] = {}
    for arch_json, idx, p10 in zip(blocks.arch, blocks.block_index, blocks.p10_ms):
        arch = json.loads(arch_json)
        layer = arch["layers"][idx]
        point = (arch["hidden"], layer["heads"], layer["qk_dim"], layer["mlp"])
        measured.setdefault(point, []).append(p10)
    assert table.coverage().measured == len(measured)
    for (h, a, d, m), values in measured.items():
        # a block met in several architectures: the table keeps one of its measurements
        assert min(abs(table.lookup(hidden=h, heads=a, qk_dim=d, mlp=m) - v) for v in values) < 1e-9


def test_bad_grid_files_are_one_line_errors(grid_file, tmp_path):
    out = str(tmp_path / "lut.json")
    for mutate, fragment in (
        (lambda g: g["axes"].update(mlp=[32, 16]), "strictly increasing"),
        (lambda g: g["axes"].pop("heads"), "missing axis 'heads'"),
        (lambda g: g["axes"].update(hidden=[1]), "not an axis"),
        (lambda g: g.update(family="cnn"), "family"),
        (lambda g: g["axes"].update(emb=[0, 16]), ">= 1"),
    ):
        g = json.loads(json.dumps(GRID))
        mutate(g)
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(g))
        assert_one_line_error(runner.invoke(app, ["build-lut", "--grid", str(bad), "--out", out]), str(bad), fragment)
    assert_one_line_error(runner.invoke(app, ["build-lut", "--out", out]), "--grid/--from")
    assert not Path(out).exists()
