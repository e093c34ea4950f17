from __future__ import annotations

import json

import pytest

from latbench.errors import LatbenchError
from latbench.space import Arch, LayerSpec, get_space


def test_canonical_json_shape_and_round_trip():
    a = Arch.uniform_arch("bert", hidden=768, n_layers=2, heads=12, qk_dim=64, mlp=3072)
    text = a.to_json()
    assert text.startswith(
        '{"family": "bert", "hidden": 768, "layers": [{"heads": 12, "qk_dim": 64, "v_dim": 64, "mlp": 3072}'
    )
    assert Arch.from_json(text) == a
    assert Arch.from_json(text).to_json() == text
    assert list(json.loads(text)) == ["family", "hidden", "layers", "vocab_size", "max_seq_len", "type_vocab_size"]


@pytest.mark.parametrize("family", ["bert", "vit", "gpt"])
def test_round_trip_of_sampled_heterogeneous_archs(family):
    from dataclasses import replace

    space = replace(get_space(family), uniform_layers=False)
    for a in space.sample(7, n=25):
        assert Arch.from_json(a.to_json()) == a
        assert Arch.from_json(a.to_json()).to_json() == a.to_json()
    assert any(not a.uniform for a in space.sample(7, n=25))


def test_family_defaults_and_foreign_settings():
    vit = Arch(family="vit", hidden=64, layers=(LayerSpec(2, 8, 4, 32),))
    assert vit.extras == {"image_size": 224, "patch_size": 16, "in_channels": 3, "num_classes": 1000}
    assert vit.num_tokens() == 197
    with pytest.raises(LatbenchError, match="vocab_size"):
        Arch(family="vit", hidden=64, layers=(LayerSpec(2, 8, 4, 32),), vocab_size=10)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"family": "bert", "hidden": 0, "layers": [{"heads": 1, "qk_dim": 1, "v_dim": 1, "mlp": 1}]}, "hidden"),
        ({"family": "bert", "hidden": 8, "layers": [{"heads": -2, "qk_dim": 1, "v_dim": 1, "mlp": 1}]}, "heads"),
        ({"family": "bert", "hidden": 8, "layers": []}, "non-empty"),
        ({"family": "resnet", "hidden": 8, "layers": []}, "unknown family"),
        ({"family": "bert", "hidden": 8}, "missing key 'layers'"),
        ({"family": "bert", "hidden": 8, "layers": [{"heads": 1, "qk_dim": 1, "mlp": 1}]}, "missing key 'v_dim'"),
        ({"family": "bert", "hidden": 8.5, "layers": [{"heads": 1, "qk_dim": 1, "v_dim": 1, "mlp": 1}]}, "integer"),
        ({"family": "bert", "hidden": True, "layers": [{"heads": 1, "qk_dim": 1, "v_dim": 1, "mlp": 1}]}, "integer"),
        ({"family": "bert", "hidden": 8, "layers": [{"heads": 1, "qk_dim": 1, "v_dim": 1, "mlp": 1}], "x": 1}, "'x'"),
        (
            {
                "family": "vit",
                "hidden": 8,
                "layers": [{"heads": 1, "qk_dim": 1, "v_dim": 1, "mlp": 1}],
                "image_size": 30,
                "patch_size": 16,
            },
            "multiple",
        ),
    ],
)
def test_bad_arch_gets_one_line_naming_the_problem(payload, message):
    with pytest.raises(LatbenchError, match=message) as info:
        Arch.from_dict(payload)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("arch")


def test_malformed_json():
    with pytest.raises(LatbenchError, match="malformed JSON"):
        Arch.from_json('{"family": "bert",')
