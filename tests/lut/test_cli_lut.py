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
from tests.cli_assert import assert_one_line_error

app = make_app("test app")
app.add_typer(lut.app, name="lut")
runner = CliRunner()

DEIT_B_BLOCK = '{"EMB": 768, "blocks": [{"heads": 12, "QK": 64, "V": 64, "MLP": 3072}]}'


def run(*args: str):
    return runner.invoke(app, ["lut", *args])


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


# ------------------------------------------------------------- heat maps
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_show_plot_writes_a_heat_map_of_the_chosen_slice(nvit_path, tmp_path):
    pytest.importorskip("matplotlib", reason="the plot extra (matplotlib) is not installed")
    png = tmp_path / "slice.png"
    r = run(
        "show", str(nvit_path), "--unit", "s", "--plot", str(png), "--x", "mlp", "--y", "QK", "--at", "emb=512,v=32"
    )
    assert r.exit_code == 0, r.output
    width, height = _png_size(png)
    assert width >= 300 and height >= 200
    # The slice is printed: the named axes, the given values, and the largest grid value elsewhere.
    assert "slice       y=qk_dim, x=mlp; at emb=512, heads=12, v_dim=32" in r.stdout
    # Defaults: mlp along x, heads along y, every other axis at its largest value (the full-size block).
    default = tmp_path / "default.png"
    data = json.loads(run("show", str(nvit_path), "--plot", str(default), "--json").stdout)
    assert data["plot"] == {
        "file": str(default),
        "x": "mlp",
        "y": "heads",
        "at": {"emb": 768, "qk_dim": 64, "v_dim": 64},
    }
    assert _png_size(default)[0] >= 300


def test_table_slice_values_are_the_table_values(nvit_path):
    from latbench.lut import load_table
    from latbench.lut.plot import table_slice

    table = load_table(nvit_path, unit="s")
    sl = table_slice(table, x="heads", y="emb", at={"qk": 32, "v_dim": 16, "MLP": 1536})
    assert sl.values.shape == (3, 5) and sl.unit == "ms"
    for i, emb in enumerate(sl.y.values):
        for j, heads in enumerate(sl.x.values):
            expected = table.lookup(emb=emb, heads=heads, qk_dim=32, v_dim=16, mlp=1536)
            assert sl.values[i, j] == expected


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--x", "depth"], ["--x", "no axis 'depth'", "emb, heads, qk_dim, v_dim, mlp"]),
        (["--y", "nope"], ["--y", "no axis 'nope'"]),
        (["--x", "heads", "--y", "heads"], ["--y", "same axis"]),
        (["--x", "heads", "--y", "qk", "--at", "mlp=100"], ["--at", "mlp=100 is not a grid value of mlp"]),
        (["--at", "emb=1024"], ["--at", "emb=1024 is outside the grid (256..768)"]),
        (["--at", "width=9"], ["--at", "emb=9 is outside the grid"]),
        (["--at", "heads=3"], ["--at", "heads is the --y axis"]),
        (["--at", "qk_dim"], ["--at", "AXIS=VALUE"]),
        (["--at", "qk_dim=big"], ["--at", "expected a number"]),
        (["--at", "qk=16,qk_dim=32"], ["--at", "qk_dim is given twice"]),
    ],
)
def test_show_plot_bad_options_are_one_line(nvit_path, tmp_path, args, fragments):
    png = tmp_path / "bad.png"
    assert_one_line_error(run("show", str(nvit_path), "--plot", str(png), *args), *fragments)
    assert not png.exists()


def test_slice_options_need_plot_and_plot_needs_matplotlib(nvit_path, tmp_path, monkeypatch):
    assert_one_line_error(run("show", str(nvit_path), "--x", "mlp"), "--x", "--plot")
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    png = tmp_path / "x.png"
    assert_one_line_error(run("show", str(nvit_path), "--plot", str(png)), "pip install 'latbench[plot]'")
    assert not png.exists()


def test_query_overhead_with_the_non_block_term(tmp_path):
    from latbench.lut import non_block_gflop

    axes = (Axis("hidden", (128, 256)), Axis("heads", (2, 4)), Axis("qk_dim", (32, 64)), Axis("mlp", (256, 512)))
    meta = TableMeta(family="bert", unit="ms", workload={"batch": 1, "seq_len": 128})
    lat = LookupTable(axes=axes, values=np.full((2, 2, 2, 2), 0.5), meta=meta).save(tmp_path / "lut.json")
    arch = Arch.uniform_arch("bert", 256, 4, 2, 32, 256)
    model = LutSumModel(a=1.0, b=0.5, c=2.0, d=3.0, workload={"batch": 1, "seq_len": 128})
    path = model.save(tmp_path / "overhead.json")
    r = run("query", str(lat), "--arch", arch.to_json(), "--overhead", str(path), "--json")
    assert r.exit_code == 0, r.output
    expected = 2.0 + 4 * 0.5 + 2.0 + 3.0 * non_block_gflop(arch, 1, 128)
    assert json.loads(r.stdout)["end_to_end_ms"] == pytest.approx(expected)
