"""``latbench lut`` end to end through CliRunner, on an app built here (registration is the lead's)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from latbench.cli import lut
from latbench.cli._app import make_app
from latbench.lut import Axis, LookupTable, LutSumModel, TableMeta
from latbench.space import Arch

app = make_app("test app")
app.add_typer(lut.app, name="lut")
runner = CliRunner()

DEIT_B_BLOCK = '{"EMB": 768, "blocks": [{"heads": 12, "QK": 64, "V": 64, "MLP": 3072}]}'


def run(*args: str):
    return runner.invoke(app, ["lut", *args])


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("latbench: error: ")
    for f in fragments:
        assert f in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_convert_nvit_to_latbench_and_back_is_exact(nvit_path, tmp_path):
    lat = tmp_path / "lut.json"
    r = run("convert", str(nvit_path), "--to", "latbench", "--out", str(lat))
    assert r.exit_code == 0, r.output
    assert json.loads(lat.read_text())["format"] == "latbench-lut"
    back = tmp_path / "latency_head.json"
    r = run("convert", str(lat), "--to", "nvit", "--out", str(back))
    assert r.exit_code == 0, r.output
    assert json.loads(back.read_text()) == json.loads(nvit_path.read_text())
    assert back.read_bytes() == nvit_path.read_bytes()


def test_convert_with_unit_round_trips_through_ms(nvit_path, tmp_path):
    lat = tmp_path / "lut_ms.json"
    assert run("convert", str(nvit_path), "--to", "latbench", "--unit", "s", "--out", str(lat)).exit_code == 0
    table = LookupTable.load(lat)
    assert table.meta.unit == "ms"
    back = tmp_path / "nvit_s.json"
    assert run("convert", str(lat), "--to", "nvit", "--unit", "s", "--out", str(back)).exit_code == 0
    a, b = json.loads(back.read_text()), json.loads(nvit_path.read_text())
    assert a["EMB_768"]["QK_12_64"]["V_64"]["MLP_3072"] == pytest.approx(b["EMB_768"]["QK_12_64"]["V_64"]["MLP_3072"])
    r = run("convert", str(lat), "--to", "latbench", "--unit", "s", "--out", str(tmp_path / "x.json"))
    assert_one_line_error(r, "--unit")
    assert_one_line_error(run("convert", str(lat), "--to", "onnx", "--out", str(tmp_path / "x")), "--to", "onnx")


def test_show_prints_axes_coverage_and_metadata(nvit_path, tmp_path):
    r = run("show", str(nvit_path))
    assert r.exit_code == 0, r.output
    for fragment in ("emb: 256, 512, 768 (3)", "9375 measured", "0 missing", "unit        unknown", "V100"):
        assert fragment in r.stdout
    values = np.ones((2, 3))
    values[1, 2] = np.nan
    table = LookupTable(
        axes=(Axis("hidden", (128, 256)), Axis("mlp", (1, 2, 3))),
        values=values,
        meta=TableMeta(family="bert", device="cpu", deploy={"backend": "torch_cpu", "threads": 1}),
        unstable=np.eye(2, 3, dtype=bool),
    )
    p = table.save(tmp_path / "lut.json")
    r = run("show", str(p))
    assert r.exit_code == 0, r.output
    assert "5 measured (3 stable, 2 unstable), 1 missing" in r.stdout
    assert "missing     hidden=256, mlp=3" in r.stdout and "backend=torch_cpu, threads=1" in r.stdout
    data = json.loads(run("show", str(p), "--json").stdout)
    assert data["coverage"]["missing"] == 1 and data["meta"]["device"] == "cpu"


def test_query_prints_the_sum_of_blocks(nvit_path, tmp_path):
    lat = tmp_path / "lut_ms.json"
    run("convert", str(nvit_path), "--to", "latbench", "--unit", "s", "--out", str(lat))
    table = LookupTable.load(lat)
    arch = Arch.uniform_arch("vit", 768, 12, 12, 64, 3072)
    r = run("query", str(lat), "--arch", arch.to_json())
    assert r.exit_code == 0, r.output
    expected = table.arch_latency_ms(arch)
    assert f"{expected:.6g} ms (sum of 12 blocks)" in r.stdout
    data = json.loads(run("query", str(lat), "--arch", arch.to_json(), "--json").stdout)
    assert data["sum_of_blocks"] == pytest.approx(expected) and len(data["blocks"]) == 12
    # NViT's unit-less table answers in its own numbers, and says so.
    r = run("query", str(nvit_path), "--arch", DEIT_B_BLOCK)
    assert r.exit_code == 0 and "unit unknown" in r.stdout
    # With NViT's conventions a narrower-than-grid embedding is answered as NViT does.
    narrow = '{"EMB": 128, "blocks": [{"heads": 12, "QK": 64, "V": 64, "MLP": 3072}]}'
    assert_one_line_error(run("query", str(nvit_path), "--arch", narrow), "emb=128", "256..768")
    assert run("query", str(nvit_path), "--arch", narrow, "--nvit-conventions").exit_code == 0
    # The overhead model adds a·Σ + b·n + c.
    model = LutSumModel(a=1.0, b=0.5, c=2.0).save(tmp_path / "overhead.json")
    r = run("query", str(lat), "--arch", arch.to_json(), "--overhead", str(model), "--json")
    assert json.loads(r.stdout)["end_to_end_ms"] == pytest.approx(expected + 6.0 + 2.0)


def test_query_outside_grid_extrapolate_and_force(nvit_path):
    wide = '{"EMB": 1024, "blocks": [{"heads": 12, "QK": 64, "V": 64, "MLP": 3072}]}'
    assert_one_line_error(run("query", str(nvit_path), "--arch", wide), "emb=1024", "256..768", "--extrapolate")
    r = run("query", str(nvit_path), "--arch", wide, "--extrapolate")
    assert r.exit_code == 0 and "EXTRAPOLATED" in r.stdout
    data = json.loads(run("query", str(nvit_path), "--arch", wide, "--extrapolate", "--json").stdout)
    assert data["extrapolated"] == [True]
    assert_one_line_error(run("query", str(nvit_path), "--arch", DEIT_B_BLOCK, "--device", "cpu"), "not recorded")
    assert run("query", str(nvit_path), "--arch", DEIT_B_BLOCK, "--device", "cpu", "--force").exit_code == 0
    bert = Arch.uniform_arch("bert", 768, 1, 12, 64, 3072).to_json()
    assert_one_line_error(run("query", str(nvit_path), "--arch", bert), "holds vit blocks")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"EMB_256": {"QK_1_1": 3}}', "missing level"),
        ('{"EMB_256": ', "malformed JSON"),
        ('{"format": "latbench-lut", "schema_version": 7}', "schema_version 7"),
        ('{"weights": [1, 2]}', "not a known table format"),
    ],
)
def test_bad_file_is_one_line_and_exit_2(tmp_path, text, fragment):
    p = tmp_path / "bad.json"
    p.write_text(text)
    for args in (("show", str(p)), ("query", str(p), "--arch", DEIT_B_BLOCK)):
        assert_one_line_error(run(*args), str(p), fragment)
    assert_one_line_error(run("convert", str(p), "--to", "nvit", "--out", str(tmp_path / "o.json")), fragment)
    assert_one_line_error(run("show", str(tmp_path / "nope.json")), "no such file")
