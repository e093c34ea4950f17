"""LookupTable: interpolation equal to scipy, grid bounds, coverage, compatibility, JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from latbench.errors import LatbenchError
from latbench.lut import Axis, LookupTable, TableMeta
from latbench.space import Arch, LayerSpec
from tests.lut.helpers import assert_names_file


def random_table(rng: np.random.Generator, sizes: tuple[int, ...]) -> LookupTable:
    axes = []
    for k, n in enumerate(sizes):
        # Uneven spacing: the interpolation must not assume a uniform grid.
        steps = rng.uniform(0.5, 3.0, size=n)
        axes.append(Axis(f"x{k}", tuple(np.round(np.cumsum(steps) + rng.uniform(-2, 2), 6))))
    values = rng.uniform(0.1, 5.0, size=sizes)
    return LookupTable(axes=tuple(axes), values=values)


def scipy_ref(table: LookupTable, **kw) -> RegularGridInterpolator:
    return RegularGridInterpolator([np.array(a.values, float) for a in table.axes], table.values, method="linear", **kw)


def inside_points(rng: np.random.Generator, table: LookupTable, n: int) -> np.ndarray:
    return np.stack([rng.uniform(a.lo, a.hi, size=n) for a in table.axes], axis=1)


@pytest.mark.parametrize("sizes", [(7,), (4, 6), (3, 5, 4), (2, 3, 4, 5), (3, 2, 4, 2, 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_interpolation_equals_scipy_on_random_grids(sizes, seed):
    rng = np.random.default_rng(seed)
    table = random_table(rng, sizes)
    pts = inside_points(rng, table, 500)
    # Grid points, edges and corners too, where cell choice differs from scipy's.
    grid_pts = np.array([[rng.choice(a.values) for a in table.axes] for _ in range(50)])
    corners = np.array([[a.lo for a in table.axes], [a.hi for a in table.axes]])
    pts = np.concatenate([pts, grid_pts, corners])
    res = table.interpolate(pts)
    np.testing.assert_allclose(res.values, scipy_ref(table)(pts), rtol=1e-12, atol=0)
    assert not res.any_extrapolated and res.extrapolated.shape == (len(pts),)


def test_extrapolation_equals_scipy_and_is_flagged():
    rng = np.random.default_rng(3)
    table = random_table(rng, (4, 5, 3))
    lo = np.array([a.lo for a in table.axes])
    hi = np.array([a.hi for a in table.axes])
    span = hi - lo
    pts = lo + rng.uniform(-0.5, 1.5, size=(400, 3)) * span
    res = table.interpolate(pts, extrapolate=True)
    ref = scipy_ref(table, bounds_error=False, fill_value=None)(pts)
    np.testing.assert_allclose(res.values, ref, rtol=1e-10, atol=1e-12)
    outside = ((pts < lo) | (pts > hi)).any(axis=1)
    assert outside.any() and (~outside).any()
    np.testing.assert_array_equal(res.extrapolated, outside)


def test_out_of_grid_names_axis_and_bounds():
    table = LookupTable(axes=(Axis("emb", (256, 512, 768)), Axis("mlp", (0, 3072))), values=np.ones((3, 2)))
    with pytest.raises(LatbenchError) as exc:
        table.interpolate({"emb": 1024, "mlp": 100})
    msg = str(exc.value)
    assert "emb=1024" in msg and "256..768" in msg and "extrapolate" in msg
    with pytest.raises(LatbenchError, match=r"mlp=-1 .*0\.\.3072"):
        table.interpolate([300, -1])
    res = table.interpolate({"emb": 1024, "mlp": 100}, extrapolate=True)
    assert res.any_extrapolated and res.value == pytest.approx(1.0)


def test_single_point_query_forms_agree():
    rng = np.random.default_rng(5)
    table = random_table(rng, (3, 4))
    p = {"x0": float(np.mean(table.axes[0].values)), "x1": float(np.mean(table.axes[1].values))}
    a = table.interpolate(p).value
    assert table.interpolate([p["x0"], p["x1"]]).value == a
    assert float(table.interpolate([p])) == a
    assert len(table.interpolate([p, p])) == 2
    with pytest.raises(LatbenchError, match="2 points"):
        _ = table.interpolate([p, p]).value
    with pytest.raises(LatbenchError, match="lacks axis 'x1'"):
        table.interpolate({"x0": 1.0})
    with pytest.raises(LatbenchError, match="no axis 'nope'"):
        table.interpolate({"x0": 1.0, "x1": 1.0, "nope": 2})


def test_missing_cell_in_interpolation_names_the_grid_point():
    values = np.arange(12, dtype=float).reshape(3, 4) + 1
    values[1, 2] = np.nan
    table = LookupTable(axes=(Axis("emb", (1, 2, 3)), Axis("mlp", (10, 20, 30, 40))), values=values)
    with pytest.raises(LatbenchError) as exc:
        table.interpolate({"emb": 1.5, "mlp": 25})
    assert "emb=2, mlp=30 is not measured" in str(exc.value)
    # A grid point next to the hole needs no weight from it.
    assert table.interpolate({"emb": 2, "mlp": 20}).value == values[1, 1]
    assert table.interpolate({"emb": 2, "mlp": 15}).value == pytest.approx((values[1, 0] + values[1, 1]) / 2)
    with pytest.raises(LatbenchError, match="emb=2, mlp=30 is not measured"):
        table.lookup(emb=2, mlp=30)


def test_lookup_at_grid_points_only():
    table = LookupTable(axes=(Axis("a", (1, 2)), Axis("b", (5,))), values=np.array([[3.0], [4.0]]))
    assert table.lookup(a=2, b=5) == 4.0
    with pytest.raises(LatbenchError, match=r"a=1\.5 is not a grid value"):
        table.lookup(a=1.5, b=5)
    # A single-valued axis interpolates only at its value, and cannot extrapolate.
    assert table.interpolate({"a": 1.5, "b": 5}).value == pytest.approx(3.5)
    with pytest.raises(LatbenchError, match="single value 5"):
        table.interpolate({"a": 1.5, "b": 6}, extrapolate=True)


@pytest.mark.parametrize(
    ("axes", "values", "fragment"),
    [
        ((Axis("a", (1, 2)),), np.ones(3), "shape"),
        ((Axis("a", (1, 2)),), np.array([1.0, -2.0]), "negative latency"),
        ((Axis("a", (1, 2)),), np.array([1.0, np.inf]), "finite"),
        ((Axis("a", (1, 2)), Axis("a", (1,))), np.ones((2, 1)), "appears twice"),
    ],
)
def test_construction_is_validated(axes, values, fragment):
    with pytest.raises(LatbenchError, match=fragment):
        LookupTable(axes=axes, values=values)


def test_axis_values_must_increase():
    with pytest.raises(LatbenchError, match="strictly increasing, got 512 then 256"):
        Axis("emb", (256, 512, 256))
    with pytest.raises(LatbenchError, match="identifier"):
        Axis("not a name", (1,))


def test_values_are_read_only():
    table = LookupTable(axes=(Axis("a", (1, 2)),), values=np.array([1.0, 2.0]))
    with pytest.raises(ValueError):
        table.values[0] = 5.0


def test_coverage_counts():
    values = np.ones((2, 3))
    values[0, 1] = np.nan
    values[1, 2] = np.nan
    unstable = np.zeros((2, 3), bool)
    unstable[0, 0] = True
    unstable[0, 1] = True  # flagged but missing: counts as missing, not unstable
    table = LookupTable(axes=(Axis("h", (128, 256)), Axis("m", (1, 2, 3))), values=values, unstable=unstable)
    cov = table.coverage()
    assert (cov.total, cov.measured, cov.stable, cov.unstable, cov.missing) == (6, 4, 3, 1, 2)
    assert cov.missing_points == ({"h": 128, "m": 2}, {"h": 256, "m": 3})
    full = LookupTable(axes=(Axis("h", (1,)),), values=np.ones(1)).coverage()
    assert (full.measured, full.stable, full.unstable, full.missing) == (1, 1, 0, 0)


# ----------------------------------------------------------- compatibility
def measured_table() -> LookupTable:
    meta = TableMeta(
        family="bert",
        device="NVIDIA H100 80GB HBM3",
        deploy={"backend": "torch_cuda", "mode": "graph", "precision": "fp16"},
        workload={"batch": 1, "seq_len": 128},
        env_id="abc123def456",
        latbench_version="0.1.0",
        statistic="median",
        source="latbench build-lut --space bert",
    )
    axes = (Axis("hidden", (256, 512)), Axis("heads", (4, 8)), Axis("qk_dim", (32, 64)), Axis("mlp", (512, 1024)))
    rng = np.random.default_rng(0)
    return LookupTable(axes=axes, values=rng.uniform(0.1, 1.0, size=(2, 2, 2, 2)), meta=meta)


def test_refuses_another_device_or_deployment_unless_forced():
    table = measured_table()
    assert table.check_compatible(device="nvidia h100 80gb hbm3", deploy={"mode": "graph"}) == []
    with pytest.raises(LatbenchError, match=r"measured on 'NVIDIA H100 80GB HBM3', not 'cpu'.*force"):
        table.check_compatible(device="cpu")
    with pytest.raises(LatbenchError, match=r"deploy\.precision is 'fp16', not 'fp32'"):
        table.check_compatible(deploy={"precision": "fp32"})
    with pytest.raises(LatbenchError, match="does not record threads"):
        table.check_compatible(deploy={"threads": 2})
    with pytest.raises(LatbenchError, match=r"workload\.batch is 1, not 32"):
        table.check_compatible(workload={"batch": 32})
    problems = table.check_compatible(device="cpu", workload={"batch": 32}, force=True)
    assert len(problems) == 2
    arch = Arch.uniform_arch("bert", 384, 2, 6, 48, 768)
    with pytest.raises(LatbenchError, match="not 'cpu'"):
        table.arch_latency(arch, device="cpu")
    assert table.arch_latency(arch, device="cpu", force=True).n_blocks == 2
    unknown = LookupTable(axes=(Axis("hidden", (1,)),), values=np.ones(1), meta=TableMeta(device=None))
    with pytest.raises(LatbenchError, match="not recorded"):
        unknown.check_compatible(device="cpu")


def test_arch_latency_sums_blocks_and_checks_family():
    table = measured_table()
    arch = Arch(
        family="bert",
        hidden=384,
        layers=(LayerSpec(6, 48, 48, 768), LayerSpec(4, 32, 32, 512), LayerSpec(8, 64, 64, 1024)),
    )
    blocks = [table.block_latency_ms(arch, i) for i in range(3)]
    assert blocks[1] == table.interpolate({"hidden": 384, "heads": 4, "qk_dim": 32, "mlp": 512}).value
    grid_arch = Arch.uniform_arch("bert", 512, 1, 8, 64, 1024)
    assert table.block_latency_ms(grid_arch, 0) == table.lookup(hidden=512, heads=8, qk_dim=64, mlp=1024)
    assert table.arch_latency_ms(arch) == pytest.approx(sum(blocks))
    detail = table.arch_latency(arch)
    assert detail.blocks == pytest.approx(tuple(blocks)) and detail.extrapolated == (False,) * 3
    vit = Arch.uniform_arch("vit", 384, 1, 6, 48, 768)
    with pytest.raises(LatbenchError, match="holds bert blocks"):
        table.arch_latency_ms(vit)
    odd = Arch(family="bert", hidden=384, layers=(LayerSpec(6, 48, 32, 768),))
    with pytest.raises(LatbenchError, match="v_dim 32 != qk_dim 48"):
        table.arch_latency_ms(odd)
    wide = Arch.uniform_arch("bert", 1024, 2, 6, 48, 768)
    with pytest.raises(LatbenchError, match=r"hidden=1024 is outside the grid: hidden spans 256\.\.512"):
        table.arch_latency_ms(wide)
    res = table.arch_latency(wide, extrapolate=True)
    assert res.any_extrapolated and res.extrapolated == (True, True)


def test_ms_answers_need_a_known_unit():
    table = LookupTable(axes=(Axis("hidden", (1, 2)),), values=np.ones(2), meta=TableMeta(unit="unknown"))
    arch = Arch.uniform_arch("gpt", 2, 1, 1, 1, 1)
    with pytest.raises(LatbenchError, match="unknown unit"):
        table.arch_latency_ms(arch)
    with pytest.raises(LatbenchError, match="no counterpart"):
        LookupTable(axes=(Axis("seq_len", (1, 2)),), values=np.ones(2)).arch_latency(arch)


def test_from_records_builds_a_partial_grid():
    axes = (Axis("hidden", (128, 256)), Axis("mlp", (512, 1024)))
    records = [
        {"hidden": 128, "mlp": 512, "latency_ms": 1.0, "unstable": False},
        {"hidden": 256, "mlp": 1024, "latency_ms": 3.0, "unstable": True},
    ]
    table = LookupTable.from_records(axes, records)
    cov = table.coverage()
    assert (cov.measured, cov.unstable, cov.missing) == (2, 1, 2)
    with pytest.raises(LatbenchError, match="two records"):
        LookupTable.from_records(axes, records + records[:1])


# ------------------------------------------------------------------- JSON
def test_json_round_trip_keeps_values_holes_flags_and_metadata(tmp_path):
    table = measured_table()
    values = np.array(table.values)
    values[0, 1, 0, 1] = np.nan
    unstable = np.zeros(values.shape, bool)
    unstable[1, 1, 1, 1] = True
    table = LookupTable(axes=table.axes, values=values, meta=table.meta, unstable=unstable)
    p = table.save(tmp_path / "lut.json")
    back = LookupTable.load(p)
    assert back == table
    assert back.meta.device == "NVIDIA H100 80GB HBM3" and back.meta.deploy["mode"] == "graph"
    assert back.origin == str(p)
    data = json.loads(p.read_text())
    assert data["format"] == "latbench-lut" and data["schema_version"] == 1
    assert data["values"].count(None) == 1
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temp file
    assert table != LookupTable(axes=table.axes, values=values, meta=table.meta)


def good_dict() -> dict:
    return {
        "format": "latbench-lut",
        "schema_version": 1,
        "axes": [{"name": "hidden", "values": [128, 256]}, {"name": "mlp", "values": [512]}],
        "values": [1.0, 2.0],
        "unstable": None,
        "meta": TableMeta(family="bert").to_dict(),
    }


@pytest.mark.parametrize(
    ("mutate", "fragments"),
    [
        (lambda d: d.update(format="other"), ("not a latbench lookup table",)),
        (lambda d: d.update(schema_version=99), ("schema_version 99 is newer",)),
        (lambda d: d.pop("axes"), ("missing key 'axes'",)),
        (lambda d: d["axes"][0].update(values=[256, 128]), ("axes[0]", "strictly increasing")),
        (lambda d: d.update(values=[1.0]), ("1 entries", "grid of 2 points")),
        (lambda d: d.update(values=[1.0, -2.0]), ("hidden=256, mlp=512", "non-negative", "-2.0")),
        (lambda d: d.update(values=[1.0, "fast"]), ("'fast'",)),
        (lambda d: d.update(unstable=[True]), ("unstable",)),
        (lambda d: d["meta"].update(unit="furlongs"), ("meta.unit", "furlongs")),
        (lambda d: d["meta"].update(colour="red"), ("unknown key 'colour'",)),
    ],
)
def test_malformed_latbench_file_gives_one_line_naming_it(tmp_path, mutate, fragments):
    data = good_dict()
    mutate(data)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(LatbenchError) as exc:
        LookupTable.load(p)
    assert_names_file(exc, p, *fragments)


def test_bad_json_and_missing_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text('{"format": "latbench-lut", ')
    with pytest.raises(LatbenchError) as exc:
        LookupTable.load(p)
    assert_names_file(exc, p, "malformed JSON")
    with pytest.raises(LatbenchError) as exc:
        LookupTable.load(tmp_path / "nope.json")
    assert_names_file(exc, tmp_path / "nope.json", "no such file")
    LookupTable.from_dict(good_dict())  # the template itself is valid
