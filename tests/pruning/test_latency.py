"""The latency regulariser: LUT differences, NViT's table and conventions, coverage errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latbench.errors import LatbenchError
from latbench.models.build import build_model
from latbench.pruning.config import PruneConfig
from latbench.pruning.importance import Importance
from latbench.pruning.latency import LatencyCost, load_lut
from latbench.pruning.pruner import Pruner
from latbench.space.arch import Arch, LayerSpec

from .helpers import linear_lut, tiny_vit


@pytest.fixture
def nvit_path(fixtures_dir):
    p = fixtures_dir / "nvit" / "latency_head.json"
    if not p.is_file():
        pytest.skip(f"NViT fixture not found at {p}")
    return p


class ZeroImportance(Importance):
    name = "zero"
    needs_grad = False

    def __call__(self, group):
        return torch.zeros(group.size, dtype=torch.float64)


def _lut_total(table, arch: Arch) -> float:
    return table.arch_latency(arch).total  # the table's own path, independent of LatencyCost


def _one_smaller(arch: Arch, kind: str, block: int | None) -> Arch:
    """``arch`` with the group ``(kind, block)`` one unit smaller."""
    if kind == "emb":
        return arch.with_hidden(arch.hidden - 1)
    s = arch.layers[block]
    dims = {"heads": s.heads, "qk_dim": s.qk_dim, "v_dim": s.v_dim, "mlp": s.mlp}
    dims[{"qk": "qk_dim", "v": "v_dim"}.get(kind, kind)] -= 1
    layers = list(arch.layers)
    layers[block] = LayerSpec(**dims)
    return arch.with_layers(layers)


def test_gain_is_the_lut_difference_for_every_group_kind():
    arch = tiny_vit(layers=2)
    table = linear_lut(arch)
    cost = LatencyCost(table, arch)
    pruned = arch.with_layers([LayerSpec(3, 5, 4, 20), LayerSpec(2, 7, 6, 11)]).with_hidden(13)
    keys = [("emb", None)] + [(k, b) for b in range(2) for k in ("heads", "qk", "v", "mlp")]
    gains = cost.gains(pruned, keys)
    for kind, block in keys:
        smaller = _one_smaller(pruned, kind, block)
        expected = _lut_total(table, pruned) - _lut_total(table, smaller)
        assert gains[(kind, block)] == pytest.approx(expected, rel=1e-12), (kind, block)
    assert cost.latency(pruned) == pytest.approx(_lut_total(table, pruned))
    assert cost.ratio(arch) == pytest.approx(1.0)


def test_the_penalty_is_lambda_times_the_gain_and_ranks_the_biggest_saving_first():
    arch = tiny_vit(layers=2)
    cost = LatencyCost(linear_lut(arch), arch)
    lam = 3.0
    cfg = PruneConfig(latency_target=0.01, latency_regularization=lam, prune_per_iter=1, interval_prune=1)
    pruner = Pruner(build_model(arch), cfg, cost, importance=ZeroImportance())
    pruner.accumulate()
    actions = list(pruner.iter_step())
    assert len(actions) == 1
    keys = [(g.kind, g.block) for g in pruner.groups]
    gains = cost.gains(arch, keys)
    best = max(gains, key=gains.get)
    a = actions[0]
    assert (a.group.kind, a.group.block) == best
    assert a.latency_gain == pytest.approx(gains[best])
    assert a.score == pytest.approx(-lam * gains[best])


def _nvit_interpolator(path):
    """NViT's own construction (pruning_engine_general.py, pytorch_pruning.__init__), with scipy."""
    from scipy.interpolate import RegularGridInterpolator

    m = json.loads(path.read_text())
    emb, head, qk, v, mlp = np.arange(4) * 256, [1, 3, 6, 9, 12], [1, 16, 32, 48, 64], [1, 16, 32, 48, 64], None
    mlp = np.arange(25) * 128
    data = np.zeros([4, 5, 5, 5, 25])
    for i in range(3):
        for j in range(5):
            for k1 in range(5):
                for k2 in range(5):
                    for n in range(25):
                        h = mlp[n] if mlp[n] else 1
                        data[i + 1, j, k1, k2, n] = m[f"EMB_{emb[i + 1]}"][f"QK_{head[j]}_{qk[k1]}"][f"V_{v[k2]}"][
                            f"MLP_{h}"
                        ]
    interp = RegularGridInterpolator((emb, head, qk, v, mlp), data)
    return lambda *p: float(interp(np.array(p))[0])


def test_nvit_table_reproduces_nvits_latency_and_gains(nvit_path):
    nvit = _nvit_interpolator(nvit_path)
    deit_b = Arch.uniform_arch("vit", 768, 12, 12, 64, 3072)
    cost = LatencyCost(load_lut(nvit_path), deit_b)
    assert cost.original == pytest.approx(nvit(768, 12, 64, 64, 3072) * 12, rel=1e-12)
    assert cost.unit == "unknown"
    pruned = Arch.uniform_arch("vit", 700, 12, 9, 40, 2000, v_dim=50)
    assert cost.latency(pruned) == pytest.approx(12 * nvit(700, 9, 40, 50, 2000), rel=1e-12)
    gains = cost.gains(pruned, [("emb", None), ("heads", 3), ("qk", 3), ("v", 3), ("mlp", 3)])
    base = nvit(700, 9, 40, 50, 2000)
    assert gains[("emb", None)] == pytest.approx(12 * (base - nvit(699, 9, 40, 50, 2000)), rel=1e-9)
    assert gains[("heads", 3)] == pytest.approx(base - nvit(700, 8, 40, 50, 2000), rel=1e-9)
    assert gains[("qk", 3)] == pytest.approx(base - nvit(700, 9, 39, 50, 2000), rel=1e-9)
    assert gains[("v", 3)] == pytest.approx(base - nvit(700, 9, 40, 49, 2000), rel=1e-9)
    assert gains[("mlp", 3)] == pytest.approx(base - nvit(700, 9, 40, 50, 1999), rel=1e-9)
    # NViT's conventions: EMB reaches 0, MLP's 0 point is MLP_1; heads and dims keep their 1.
    assert [cost.floor(k) for k in ("emb", "heads", "qk", "v", "mlp")] == [1, 1, 1, 1, 1]


def test_nvit_table_refuses_another_workload_unless_forced(nvit_path):
    digits = tiny_vit(hidden=64)
    with pytest.raises(LatbenchError, match="force"):
        LatencyCost(load_lut(nvit_path), digits)
    assert LatencyCost(load_lut(nvit_path), digits, force=True).original > 0


def test_a_table_that_does_not_cover_the_model_is_refused_in_one_line():
    arch = tiny_vit(mlp=32)
    small = linear_lut(tiny_vit(mlp=16))
    with pytest.raises(LatbenchError) as exc:
        LatencyCost(small, arch)
    assert "does not cover the model" in str(exc.value) and "mlp" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_lut_floors_follow_the_grid():
    arch = tiny_vit()
    assert LatencyCost(linear_lut(arch, lo=4), arch).floor("qk") == 4


def test_load_lut_detects_formats_and_refuses_others(tmp_path):
    arch = tiny_vit()
    linear_lut(arch).save(tmp_path / "lut.json")
    assert load_lut(tmp_path / "lut.json").axis_names == ("emb", "heads", "qk_dim", "v_dim", "mlp")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(LatbenchError, match="not a latency table"):
        load_lut(tmp_path / "other.json")
    with pytest.raises(LatbenchError, match="no such file"):
        load_lut(tmp_path / "missing.json")


def test_a_table_without_a_v_axis_prices_v_through_the_projection_width():
    from latbench.lut.table import Axis, LookupTable, TableMeta

    arch = Arch(family="bert", hidden=16, layers=(LayerSpec(4, 8, 6, 32),), vocab_size=40, max_seq_len=12)
    axes = (Axis("hidden", (1, 16)), Axis("heads", (1, 4)), Axis("qk_dim", (1, 8)), Axis("mlp", (1, 32)))
    grid = np.meshgrid(*(np.array(a.values, float) for a in axes), indexing="ij")
    table = LookupTable(axes=axes, values=grid[0] * grid[1] * grid[2] + grid[3], meta=TableMeta(family="bert"))
    cost = LatencyCost(table, arch)
    g = cost.gains(arch, [("qk", 0), ("v", 0)])
    assert g[("qk", 0)] == pytest.approx(2 * g[("v", 0)])  # Q and K shrink for a qk unit, only V for a v unit


# ------------------------------------------------------------------ whole-model pricing (--overhead)
def _overhead(a=1.2, b=0.05, c=0.4, d=3.0, batch=4):
    from latbench.lut.latency_model import LutSumModel

    return LutSumModel(a=a, b=b, c=c, d=d, workload={"batch": batch})


def test_with_an_overhead_fit_the_price_and_the_gains_are_the_whole_models():
    from latbench.lut.latency_model import non_block_gflop

    arch = tiny_vit(layers=2)
    table = linear_lut(arch)
    oh = _overhead()
    cost = LatencyCost(table, arch, overhead=oh)
    pruned = arch.with_layers([LayerSpec(3, 5, 4, 20), LayerSpec(2, 7, 6, 11)]).with_hidden(13)

    def whole(a: Arch) -> float:  # the fit's formula, from the table's own path
        return oh.a * _lut_total(table, a) + oh.b * a.n_layers + oh.c + oh.d * non_block_gflop(a, 4, None)

    assert cost.latency(pruned) == pytest.approx(whole(pruned), rel=1e-12)
    assert cost.ratio(pruned) == pytest.approx(whole(pruned) / whole(arch), rel=1e-12)
    assert cost.ratio(arch) == pytest.approx(1.0)
    keys = [("emb", None)] + [(k, b) for b in range(2) for k in ("heads", "qk", "v", "mlp")]
    gains = cost.gains(pruned, keys)
    for kind, block in keys:
        smaller = _one_smaller(pruned, kind, block)
        assert gains[(kind, block)] == pytest.approx(whole(pruned) - whole(smaller), rel=1e-9), (kind, block)
    # the embedding width also saves in the head and embeddings: more than a times its blocks' saving
    plain = LatencyCost(table, arch).gains(pruned, [("emb", None)])[("emb", None)]
    assert gains[("emb", None)] > oh.a * plain > 0
    assert cost.describe()["priced"] == "whole model" and cost.describe()["overhead"]["c"] == oh.c


def test_a_fixed_overhead_makes_the_pruner_go_further_for_the_same_target():
    arch = tiny_vit(layers=2)
    table = linear_lut(arch)
    cfg = PruneConfig(latency_target=0.6, prune_per_iter=8, interval_prune=1)
    ratios = {}
    for name, oh in (("blocks", None), ("whole", _overhead(a=1.0, b=0.0, c=0.5 * _lut_total(table, arch), d=0.0))):
        cost = LatencyCost(table, arch, overhead=oh)
        pruner = Pruner(build_model(arch), cfg, cost, importance=ZeroImportance())
        while not pruner.finished:
            pruner.accumulate()
            list(pruner.iter_step())
        assert cost.ratio(pruner.arch) <= 0.6 + 1e-12  # the target holds for what is priced
        ratios[name] = LatencyCost(table, arch).ratio(pruner.arch)  # the blocks' own ratio at the stop
    # a third of the whole model is overhead that pruning cannot remove: the blocks must shrink to 0.4
    assert ratios["whole"] <= 0.4 + 1e-9 < ratios["blocks"]


def test_an_overhead_needs_a_table_in_ms_at_its_workload(nvit_path, tmp_path):
    from latbench.pruning.latency import load_overhead

    arch = tiny_vit(layers=2)
    nvit = load_lut(nvit_path)  # unit unknown
    base = Arch.uniform_arch("vit", 768, 12, 12, 64, 3072, v_dim=64, image_size=224, patch_size=16, num_classes=1000)
    with pytest.raises(LatbenchError, match="unknown unit; an overhead fit"):
        LatencyCost(nvit, base, force=True, overhead=_overhead())
    from latbench.lut.table import TableMeta

    table = linear_lut(arch, meta=TableMeta(family="vit", workload={"batch": 8}))
    with pytest.raises(LatbenchError, match=r"workload\.batch is 8, the LUT-sum model was fitted at 4"):
        LatencyCost(table, arch, overhead=_overhead(batch=4))
    assert LatencyCost(table, arch, overhead=_overhead(batch=4), force=True).ratio(arch) == pytest.approx(1.0)
    # load_overhead: the JSON, not a predictor directory of another kind, not garbage
    _overhead().save(tmp_path / "fit.json")
    assert load_overhead(tmp_path / "fit.json").c == pytest.approx(0.4)
    with pytest.raises(LatbenchError, match="not a predictor directory"):
        load_overhead(tmp_path)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(LatbenchError, match="not a LUT-sum model"):
        load_overhead(tmp_path / "bad.json")
