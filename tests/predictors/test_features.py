"""Features: the vectorised arithmetic equals latbench.models.cost; arrays, torch and spec round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latbench.errors import LatbenchError
from latbench.models.cost import model_cost
from latbench.predictors.features import (
    ARCH_BASE_FEATURES,
    ArchArrays,
    FeatureSpec,
    arch_features,
    frame_features,
    torch_arch_features,
)
from latbench.space import Arch, LayerSpec, get_space


def _col(spec: FeatureSpec, x: np.ndarray, name: str) -> np.ndarray:
    return x[:, spec.columns.index(name)]


@pytest.mark.parametrize("family", ["bert", "vit", "gpt"])
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_flops_bytes_params_equal_the_analytic_cost(family, precision):
    archs = get_space(family).sample(3, n=6)
    seq = None if family == "vit" else 96
    spec = FeatureSpec.for_arch(family, precision=precision, max_layers=12)
    x = arch_features(ArchArrays.from_archs(archs), 2, seq, spec)
    for i, a in enumerate(archs):
        mc = model_cost(a, 2, seq, precision)
        assert _col(spec, x, "flops")[i] == pytest.approx(mc.total.flops, rel=1e-12)
        assert _col(spec, x, "bytes")[i] == pytest.approx(mc.total.bytes, rel=1e-12)
        assert _col(spec, x, "params")[i] == pytest.approx(mc.total.params, rel=1e-12)
        assert _col(spec, x, "block_flops")[i] == pytest.approx(sum(b.flops for b in mc.blocks), rel=1e-12)
        assert _col(spec, x, "n_blocks")[i] == a.n_layers


def test_aggregates_and_per_layer_columns_of_a_non_uniform_arch():
    layers = (LayerSpec(2, 16, 32, 100), LayerSpec(6, 8, 8, 300), LayerSpec(4, 64, 64, 50))
    a = Arch(family="vit", hidden=96, layers=layers)
    deeper = a.with_layers((*layers, LayerSpec(1, 1, 1, 1)))  # pads a's arrays to 4 layers
    spec = FeatureSpec.for_arch("vit", max_layers=4)
    x = arch_features(ArchArrays.from_archs([a, deeper]), 1, None, spec)
    assert _col(spec, x, "heads_sum")[0] == 12
    assert _col(spec, x, "heads_mean")[0] == 4
    assert _col(spec, x, "heads_max")[0] == 6 and _col(spec, x, "heads_min")[0] == 2
    assert _col(spec, x, "qk_size_min")[0] == 32  # 2x16; a padded 4th layer must not count as 0
    assert _col(spec, x, "mlp_mean")[0] == pytest.approx(150)
    assert _col(spec, x, "seq_len")[0] == 197  # (224 / 16)^2 patches + the class token
    assert list(x[0, -16:]) == [2, 32, 64, 100, 6, 48, 48, 300, 4, 256, 256, 50, 0, 0, 0, 0]
    assert _col(spec, x, "heads_min")[1] == 1 and _col(spec, x, "n_blocks")[1] == 4
    assert spec.n_features == len(ARCH_BASE_FEATURES) + 16


@pytest.mark.parametrize("max_layers", [0, 8])
def test_compact_layout_equals_padded_layout(max_layers):
    archs = get_space("bert").sample(5, n=50)
    spec = FeatureSpec.for_arch("bert", max_layers=max_layers)
    padded = ArchArrays.from_archs(archs, compact=False)
    assert not padded.compact and padded.uniform
    from_objects = arch_features(padded, np.arange(50) % 3 + 1, 128, spec)
    arrays = ArchArrays.uniform_from_dims(
        "bert",
        hidden=[a.hidden for a in archs],
        n_layers=[a.n_layers for a in archs],
        heads=[a.layers[0].heads for a in archs],
        qk_dim=[a.layers[0].qk_dim for a in archs],
        mlp=[a.layers[0].mlp for a in archs],
    )
    assert arrays.compact and arrays.uniform
    np.testing.assert_allclose(arch_features(arrays, np.arange(50) % 3 + 1, 128, spec), from_objects, rtol=1e-14)
    np.testing.assert_array_equal(arch_features(ArchArrays.from_archs(archs), 1, 128, spec)[:, 0], 1)


def test_workload_per_row_and_frame_features():
    import pandas as pd

    archs = get_space("gpt").sample(1, n=3)
    spec = FeatureSpec.for_arch("gpt")
    frame = pd.DataFrame({"arch": [a.to_json() for a in archs], "batch": [1, 2, 4], "seq_len": [32, 64, 128]})
    x = frame_features(frame, spec)
    direct = arch_features(ArchArrays.from_archs(archs), np.array([1, 2, 4]), np.array([32, 64, 128]), spec)
    np.testing.assert_array_equal(x, direct)
    assert list(_col(spec, x, "tokens")) == [32, 128, 512]


@pytest.mark.parametrize("family", ["bert", "vit"])
def test_torch_features_equal_numpy_and_are_differentiable(family):
    archs = get_space(family).sample(2, n=4)
    spec = FeatureSpec.for_arch(family, max_layers=12)
    arrays = ArchArrays.from_archs(archs)
    assert arrays.compact == (family == "bert")
    seq = None if family == "vit" else 128
    ref = arch_features(arrays, 1, seq, spec)
    hidden = torch.tensor(arrays.hidden, requires_grad=True)
    mlp = torch.tensor(arrays.mlp, requires_grad=True)
    x = torch_arch_features(
        spec, hidden, arrays.n_layers, arrays.heads, arrays.qk_dim, arrays.v_dim, mlp, batch=1, seq_len=seq
    )
    np.testing.assert_allclose(x.detach().numpy(), ref, rtol=1e-12)
    x[:, spec.columns.index("flops")].sum().backward()
    assert torch.all(hidden.grad > 0) and torch.all(mlp.grad[torch.as_tensor(arrays.heads) > 0] > 0)


def test_spec_round_trip_and_refusals():
    spec = FeatureSpec.for_arch("bert", precision="fp16", max_layers=3, peaks=(1e12, 1e11))
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    table = FeatureSpec.for_table(["a", "b"])
    assert FeatureSpec.from_dict(table.to_dict()) == table
    with pytest.raises(LatbenchError, match="do not match"):
        FeatureSpec.from_dict({**spec.to_dict(), "columns": ["flops"]})
    with pytest.raises(LatbenchError, match="unknown key"):
        FeatureSpec.from_dict({**spec.to_dict(), "bogus": 1})
    with pytest.raises(LatbenchError, match="for bert models"):
        arch_features(ArchArrays.from_archs(get_space("gpt").sample(0, n=1)), 1, 64, spec)
    with pytest.raises(LatbenchError, match="max_seq_len"):
        arch_features(ArchArrays.from_archs(get_space("bert").sample(0, n=1)), 1, 4096, spec)
