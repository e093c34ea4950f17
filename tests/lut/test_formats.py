"""Foreign formats: NViT's latency_head.json (both ways), HAT CSV, AutoTinyBERT lat.tmp, OFA YAML."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator

from latbench.errors import LatbenchError
from latbench.lut import (
    LookupTable,
    load_table,
    read_autotinybert_lat,
    read_hat_csv,
    read_nvit,
    read_ofa_yaml,
    to_nvit,
    with_nvit_conventions,
    write_nvit,
)
from latbench.lut.formats import HAT_FEATURES, HAT_LATENCY_COLUMNS
from latbench.space import Arch
from latbench.space.formats import nvit_block_key, to_autotinybert
from tests.lut.helpers import assert_names_file


def key_tree(d):
    """Keys in order at every level, so nesting and order are compared, not only content."""
    return {k: key_tree(v) for k, v in d.items()} if isinstance(d, dict) else None


# --------------------------------------------------------------------- NViT
def test_nvit_reads_the_real_table(nvit_path):
    table = read_nvit(nvit_path)
    assert table.axis_names == ("emb", "heads", "qk_dim", "v_dim", "mlp")
    assert table.shape == (3, 5, 5, 5, 25) and table.size == 9375
    assert table.axis("mlp").values == (1, *range(128, 3072 + 1, 128))
    assert table.meta.unit == "unknown" and "V100" in table.meta.unit_note
    raw = json.loads(nvit_path.read_text())
    assert table.lookup(emb=512, heads=6, qk_dim=32, v_dim=48, mlp=640) == raw["EMB_512"]["QK_6_32"]["V_48"]["MLP_640"]
    assert table.coverage().missing == 0


def test_nvit_round_trip_keys_nesting_and_values_exact(nvit_path, tmp_path):
    raw = json.loads(nvit_path.read_text())
    table = read_nvit(nvit_path)
    back = to_nvit(table)
    assert key_tree(back) == key_tree(raw)
    assert json.dumps(key_tree(back)) == json.dumps(key_tree(raw))  # same order at every level
    assert back == raw  # same values, bit for bit
    # Through a latbench file and back: the very same bytes as NViT's file.
    p = table.save(tmp_path / "lut.json")
    out = write_nvit(LookupTable.load(p), tmp_path / "latency_head.json")
    assert out.read_bytes() == nvit_path.read_bytes()


def test_nvit_with_seconds_converts_to_ms_and_back(nvit_path):
    raw = json.loads(nvit_path.read_text())
    table = read_nvit(nvit_path, unit="s")
    assert table.meta.unit == "ms"
    assert table.lookup(emb=768, heads=12, qk_dim=64, v_dim=64, mlp=3072) == pytest.approx(
        1e3 * raw["EMB_768"]["QK_12_64"]["V_64"]["MLP_3072"], rel=1e-15
    )
    back = to_nvit(table, unit="s")
    assert key_tree(back) == key_tree(raw)
    flat = lambda d: [x for a in d.values() for b in a.values() for c in b.values() for x in c.values()]  # noqa: E731
    np.testing.assert_allclose(flat(back), flat(raw), rtol=1e-15)
    with pytest.raises(LatbenchError, match="unit is unknown"):
        to_nvit(read_nvit(nvit_path), unit="s")
    with pytest.raises(LatbenchError, match="unknown unit 'h'"):
        read_nvit(nvit_path, unit="h")


def test_interpolation_on_nvit_table_equals_scipy(nvit_path):
    table = read_nvit(nvit_path)
    ref = RegularGridInterpolator([np.array(a.values, float) for a in table.axes], table.values)
    rng = np.random.default_rng(0)
    pts = np.stack([rng.uniform(a.lo, a.hi, 2000) for a in table.axes], axis=1)
    np.testing.assert_allclose(table.interpolate(pts).values, ref(pts), rtol=1e-12)


def nvit_reference_interpolator(raw: dict) -> RegularGridInterpolator:
    """The interpolator NViT builds (pruning_engine_general.py): zero row at EMB 0, MLP 0 read from MLP_1."""
    emb = np.arange(4) * 256
    heads = np.array([1, 3, 6, 9, 12])
    dims = np.array([1, 16, 32, 48, 64])
    mlp = np.arange(25) * 128
    data = np.zeros([4, 5, 5, 5, 25])
    for i in range(1, 4):
        for j, h in enumerate(heads):
            for k, q in enumerate(dims):
                for v_i, v in enumerate(dims):
                    for m_i, m in enumerate(mlp):
                        data[i, j, k, v_i, m_i] = raw[f"EMB_{emb[i]}"][f"QK_{h}_{q}"][f"V_{v}"][f"MLP_{m or 1}"]
    return RegularGridInterpolator((emb, heads, dims, dims, mlp), data)


def test_nvit_conventions_reproduce_nvits_numbers(nvit_path):
    raw = json.loads(nvit_path.read_text())
    ref = nvit_reference_interpolator(raw)
    table = read_nvit(nvit_path, nvit_conventions=True)
    assert table.axis("emb").values == (0, 256, 512, 768) and table.axis("mlp").lo == 0
    assert table.meta.grid_conventions == "nvit"
    rng = np.random.default_rng(1)
    lo = [0, 1, 1, 1, 0]
    hi = [768, 12, 64, 64, 3072]
    pts = np.stack([rng.uniform(a, b, 3000) for a, b in zip(lo, hi)], axis=1)
    pts = np.round(pts)  # NViT queries integer channel counts
    np.testing.assert_allclose(table.interpolate(pts).values, ref(pts), rtol=1e-12, atol=0)
    # NViT's reference latency: DeiT-B = 12 identical blocks, interp([768, 12, 64, 64, 3072]) * 12.
    deit_b = Arch.uniform_arch("vit", 768, 12, 12, 64, 3072)
    assert table.arch_latency(deit_b).total == pytest.approx(float(ref(np.array([768, 12, 64, 64, 3072]))[0]) * 12)
    # Below the lowest measured width NViT interpolates towards the zero row.
    small = table.interpolate({"emb": 128, "heads": 12, "qk_dim": 64, "v_dim": 64, "mlp": 3072}).value
    assert small == pytest.approx(raw["EMB_256"]["QK_12_64"]["V_64"]["MLP_3072"] / 2)
    # The file's MLP_1 value sits at mlp=0.
    assert table.lookup(emb=256, heads=1, qk_dim=1, v_dim=1, mlp=0) == raw["EMB_256"]["QK_1_1"]["V_1"]["MLP_1"]
    # And the conventions are undone on the way back out.
    assert to_nvit(table) == raw
    assert with_nvit_conventions(table) is table


def test_nvit_block_keys_match_the_table(nvit_path):
    raw = json.loads(nvit_path.read_text())
    table = read_nvit(nvit_path)
    arch = Arch.uniform_arch("vit", 512, 2, 6, 32, 1024, v_dim=48)
    e, qk, v, m = nvit_block_key(arch, 1)
    assert table.arch_latency(arch).blocks[1] == raw[e][qk][v][m]


NVIT_BAD = [
    ("[1, 2]", "missing level, expected an object of EMB_e keys, got list"),
    ('{"EMB_256": {"QK_1_1": 3}}', "EMB_256 → QK_1_1: missing level, expected an object of V_d keys, got a number"),
    ('{"EMB_256": {"QK_1_1": {"V_1": {"MLP_1": "fast"}}}}', "EMB_256 → QK_1_1 → V_1 → MLP_1: non-numeric value 'fast'"),
    ('{"EMB_256": {"QK_1_1": {"V_1": {"MLP_1": -0.5}}}}', "MLP_1: latency must be a finite non-negative number"),
    ('{"EMB_256": {"QK_1_1": {"V_1": {"MLP_1": {"x": 1}}}}}', "one level too many"),
    ('{"EMB_256": {"Q_1_1": {"V_1": {"MLP_1": 1}}}}', "unexpected key 'Q_1_1', expected QK_h_d"),
    (
        '{"EMB_256": {"QK_1_1": {"V_1": {"MLP_1": 1, "MLP_2": 1}}, "QK_2_1": {"V_1": {"MLP_1": 1}}}}',
        "not a full grid: EMB_256 → QK_2_1 → V_1 → MLP_2 is missing (3 of 4 values)",
    ),
    ('{"EMB_256": {}}', "EMB_256: empty object"),
]


@pytest.mark.parametrize(("text", "fragment"), NVIT_BAD)
def test_malformed_nvit_file_gives_one_line_naming_it(tmp_path, text, fragment):
    p = tmp_path / "latency_head.json"
    p.write_text(text)
    with pytest.raises(LatbenchError) as exc:
        read_nvit(p)
    assert_names_file(exc, p, fragment)


def test_nvit_bad_json(tmp_path):
    p = tmp_path / "latency_head.json"
    p.write_text('{"EMB_256": {"QK_1_1": ')
    with pytest.raises(LatbenchError) as exc:
        read_nvit(p)
    assert_names_file(exc, p, "malformed JSON")


def test_to_nvit_refuses_gaps_and_other_axes(nvit_path):
    table = read_nvit(nvit_path)
    values = np.array(table.values)
    values[0, 0, 0, 0, 3] = np.nan
    holed = LookupTable(axes=table.axes, values=values, meta=table.meta)
    with pytest.raises(LatbenchError, match=r"no gaps.*1 points are missing.*mlp=384"):
        to_nvit(holed)
    with pytest.raises(LatbenchError, match="NViT's format needs axes"):
        to_nvit(LookupTable(axes=table.axes[:1], values=np.ones(3)))


def test_load_table_detects_the_format(nvit_path, tmp_path):
    table = load_table(nvit_path)
    assert table == read_nvit(nvit_path)
    p = table.save(tmp_path / "lut.json")
    assert load_table(p) == table
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(LatbenchError) as exc:
        load_table(other)
    assert_names_file(exc, other, "not a known table format")


# ---------------------------------------------------------------------- HAT
def test_hat_real_fixtures(hat_dir):
    files = sorted(hat_dir.glob("*.csv"))
    assert len(files) == 3
    for f in files:
        df = read_hat_csv(f)
        assert len(df) == 2000
        assert list(df.columns) == [*HAT_FEATURES, *HAT_LATENCY_COLUMNS, "latency_ms"]
        np.testing.assert_array_equal(df["latency_ms"], df["latency_mean_encoder"] + df["latency_mean_decoder"])
        assert (df["latency_ms"] > 0).all() and df.attrs["unit"] == "ms" and df.attrs["source"] == str(f)
    first = read_hat_csv(hat_dir / "iwslt14deen_gpu_titanxp_all.csv").iloc[0]
    assert first["encoder_embed_dim"] == 640 and first["latency_ms"] == pytest.approx(
        5.495997965335846 + 124.5498161315918
    )


HAT_HEADER = ",".join((*HAT_FEATURES, *HAT_LATENCY_COLUMNS))
HAT_ROW = "640,6,1962.6,6.0,512,4,1920.0,2.5,5.5,1.5,5.49,124.5,0.05,0.44"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            HAT_HEADER.replace("latency_mean_decoder", "lat_dec") + "\n" + HAT_ROW,
            "missing column 'latency_mean_decoder'",
        ),
        (HAT_HEADER + ",extra\n" + HAT_ROW + ",1", "unexpected column 'extra'"),
        (
            HAT_HEADER + "\n" + HAT_ROW.replace("5.49", "abc"),
            "line 2: column latency_mean_encoder: non-numeric value 'abc'",
        ),
        (
            HAT_HEADER + "\n" + HAT_ROW + "\n" + HAT_ROW.replace("124.5", "-1"),
            "line 3: column latency_mean_decoder: negative",
        ),
        (HAT_HEADER + "\n", "no rows"),
        ("", "empty file"),
    ],
)
def test_malformed_hat_csv(tmp_path, text, fragment):
    p = tmp_path / "hat.csv"
    p.write_text(text)
    with pytest.raises(LatbenchError) as exc:
        read_hat_csv(p)
    assert_names_file(exc, p, fragment)


# ------------------------------------------------------------- AutoTinyBERT
def atb_line(arch: Arch, ms: float) -> str:
    # Exactly what AutoTinyBERT's inference_time_evaluation.py appends: f'{arch}\t{aver_time}\n'.
    return f"{to_autotinybert(arch)}\t{ms}\n"


def test_autotinybert_lat_tmp(tmp_path):
    a = Arch.uniform_arch("bert", 384, 4, 6, 64, 1536)
    b = Arch.uniform_arch("bert", 768, 12, 12, 64, 3072)
    p = tmp_path / "lat.tmp"
    # Its scripts print the dict in their own key order; that order must not matter.
    reordered = (
        "{'sample_layer_num': 2, 'sample_num_attention_heads': [5, 5], 'sample_hidden_size': 320, "
        "'sample_intermediate_sizes': [512, 512], 'sample_qkv_sizes': [320, 320]}\t3.25\n"
    )
    p.write_text(atb_line(a, 12.5) + "\n" + atb_line(b, 101.75) + reordered)
    df = read_autotinybert_lat(p)
    assert list(df.columns) == ["arch", "hidden", "n_layers", "heads_mean", "qkv_mean", "mlp_mean", "latency_ms"]
    assert len(df) == 3 and list(df["latency_ms"]) == [12.5, 101.75, 3.25]
    assert Arch.from_json(df["arch"][1]) == b
    assert df.iloc[2][["hidden", "n_layers", "heads_mean", "qkv_mean", "mlp_mean"]].tolist() == [320, 2, 5, 320, 512]


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{'sample_layer_num': 1} 3.0", "expected '<arch dict><TAB><ms>', got 0 tabs"),
        (None, "non-numeric latency 'slow'"),
        (None, "latency must be a finite non-negative number"),
        ("{'sample_layer_num': 1}\t3.0", "missing key 'sample_num_attention_heads'"),
        ("not a dict\t3.0", "not an AutoTinyBERT arch dict"),
    ],
)
def test_malformed_autotinybert_lines_name_file_and_line(tmp_path, line, fragment):
    good = atb_line(Arch.uniform_arch("bert", 384, 4, 6, 64, 1536), 1.0)
    if line is None:
        bad_ms = "slow" if "non-numeric" in fragment else "-2"
        line = good.split("\t")[0] + "\t" + bad_ms
    p = tmp_path / "lat.tmp"
    p.write_text(good + line + "\n")
    with pytest.raises(LatbenchError) as exc:
        read_autotinybert_lat(p)
    assert_names_file(exc, p, f"{p}:2", fragment)


# ---------------------------------------------------------------------- OFA
# The shape of once-for-all's tutorial/checkpoints/latency_table@note10/<res>_lookup_table.yaml.
OFA_BLOCK = """\
AvgPool2D-input:5x5x1152-output:1x1x1152:
  count: 491
  mean: 0.0085
  std: 0.00067
Conv-input:160x160x3-output:80x80x24:
  count: 498
  mean: 0.4956
  std: 0.0102
Logits-input:1x1x1536-output:1000:
  count: 499
  mean: 0.6564
  std: 0.0773
expanded_conv-input:40x40x32-output:20x20x48-expand:128-kernel:3-stride:2-idskip:0-se:1-hs:0:
  count: 72
  mean: 0.7005
  std: 0.0160
"""

# Flow style with var, as the tables written by ProxylessNAS-era tools look.
OFA_FLOW = """\
# latency table, ms
Conv-input:224x224x3-output:112x112x32: {count: 100, mean: 1.5, var: 0.04}
expanded_conv-input:112x112x32-output:112x112x16-expand:1-kernel:3-stride:1-idskip:0: {count: 50, mean: 2.25, var: 0.01}
"""


def test_ofa_block_style(tmp_path):
    p = tmp_path / "160_lookup_table.yaml"
    p.write_text(OFA_BLOCK)
    df = read_ofa_yaml(p)
    assert len(df) == 4
    assert list(df["op"]) == ["AvgPool2D", "Conv", "Logits", "expanded_conv"]
    row = df.iloc[3]
    assert row["input"] == "40x40x32" and row["output"] == "20x20x48"
    assert (row["expand"], row["kernel"], row["stride"], row["idskip"], row["se"], row["hs"]) == (128, 3, 2, 0, 1, 0)
    assert row["count"] == 72 and row["mean_ms"] == 0.7005 and row["std_ms"] == 0.0160
    assert df.iloc[2]["output"] == "1000" and df["kernel"].isna().sum() == 3
    assert df.attrs["unit"] == "ms"


def test_ofa_flow_style_with_var(tmp_path):
    p = tmp_path / "224_lookup_table.yaml"
    p.write_text(OFA_FLOW)
    df = read_ofa_yaml(p)
    assert len(df) == 2 and list(df["mean_ms"]) == [1.5, 2.25]
    assert df["std_ms"].tolist() == pytest.approx([0.2, 0.1])
    assert df["stride"].isna().tolist() == [True, False]
    assert df.iloc[1]["expand"] == 1


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("Conv-input:1x1x1-output:1x1x1:\n  count: 3\n  mean: fast\n", ":3: mean: non-numeric value 'fast'"),
        ("Conv-input:1x1x1-output:1x1x1:\n  count: 3\n  mean: -1\n", "mean: must be a finite non-negative number"),
        ("Conv-input:1x1x1-output:1x1x1:\n  count: 3\n", "entry 'Conv-input:1x1x1-output:1x1x1' has no mean"),
        ("  count: 3\n", ":1: indented line before any table key"),
        ("Conv: {count: 1, mean: 1, median: 2}\n", "unknown field 'median'"),
        ("Conv: {count: 1, mean: 1}\nConv: {count: 1, mean: 2}\n", ":2: key 'Conv' appears twice"),
        ("just some text\n", ":1: expected 'key:'"),
        ("", "no entries"),
        ("Conv-foo:1: {count: 1, mean: 1}\n", "unknown piece 'foo'"),
    ],
)
def test_malformed_ofa_yaml(tmp_path, text, fragment):
    p = tmp_path / "lut.yaml"
    p.write_text(text)
    with pytest.raises(LatbenchError) as exc:
        read_ofa_yaml(p)
    assert_names_file(exc, p, fragment)
