from __future__ import annotations

import json

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.space import Arch, IntDomain, LayerSpec, get_space


@pytest.mark.parametrize("name", ["bert", "vit", "gpt"])
def test_same_seed_same_archs_and_all_inside(name):
    space = get_space(name)
    a = space.sample(123, n=30)
    b = space.sample(np.random.default_rng(123), n=30)
    assert a == b
    assert a != space.sample(124, n=30)
    for arch in a:
        space.check(arch)


def test_sampling_needs_an_explicit_seed():
    with pytest.raises(LatbenchError, match="seed"):
        get_space("bert").sample(None)


def test_bert_space_is_autotinyberts():
    s = get_space("bert")
    assert (s.n_layers.min, s.n_layers.max) == (1, 8)
    assert (s.hidden.min, s.hidden.max, s.hidden.step) == (128, 768, 16)
    assert (s.qkv.min, s.qkv.max, s.qkv.step) == (180, 768, 12)
    assert (s.mlp.min, s.mlp.max) == (128, 3072)
    assert (s.heads.min, s.heads.max) == (1, 12)
    ref = s.reference
    assert (ref.n_layers, ref.hidden, ref.layers[0]) == (12, 768, LayerSpec(12, 64, 64, 3072))
    for arch in s.sample(0, n=50):
        assert arch.uniform
        assert 180 <= arch.layers[0].qk_size <= 768 and arch.layers[0].qk_size % 12 == 0


def test_vit_space_is_nvits_and_free_per_block():
    s = get_space("vit")
    assert s.reference == s.max_arch()
    assert s.reference.num_tokens() == 197 and s.reference.num_classes == 1000
    archs = s.sample(0, n=10)
    assert all(a.n_layers == 12 for a in archs)
    assert any(not a.uniform for a in archs)
    assert any(layer.qk_dim != layer.v_dim for a in archs for layer in a.layers)


@pytest.mark.parametrize("name", ["bert", "vit", "gpt"])
def test_mutation_and_crossover_are_seeded_and_stay_inside(name):
    space = get_space(name)
    parents = space.sample(5, n=10)
    kids = [space.mutate(p, 9, prob=0.5) for p in parents]
    assert kids == [space.mutate(p, 9, prob=0.5) for p in parents]
    assert any(k != p for k, p in zip(kids, parents))
    for k in kids:
        space.check(k)
    for a, b in zip(parents, kids):
        c = space.crossover(a, b, 3)
        assert c == space.crossover(a, b, 3)
        space.check(c)


def test_check_names_the_dimension():
    s = get_space("bert")
    bad = Arch.uniform_arch("bert", hidden=384, n_layers=4, heads=6, qk_dim=64, mlp=4000)
    with pytest.raises(LatbenchError, match="mlp 4000 outside space 'bert'"):
        s.check(bad)
    with pytest.raises(LatbenchError, match="9 layers"):
        s.check(Arch.uniform_arch("bert", hidden=384, n_layers=9, heads=6, qk_dim=64, mlp=1536))
    assert not s.contains(s.reference)  # BERT-base has 12 layers; AutoTinyBERT searches 1-8


def test_space_json_round_trip(tmp_path):
    for name in ("bert", "vit", "gpt"):
        s = get_space(name)
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(s.to_dict()))
        assert get_space(str(p)) == s


def test_user_space_from_json_defaults_reference_to_largest(tmp_path):
    p = tmp_path / "tiny.json"
    p.write_text(
        json.dumps(
            {
                "name": "tiny",
                "family": "gpt",
                "n_layers": {"min": 1, "max": 3},
                "hidden": [64, 128],
                "heads": {"min": 1, "max": 4},
                "qk_dim": 16,
                "mlp": {"min": 64, "max": 256, "step": 64},
                "extras": {"vocab_size": 512, "max_seq_len": 64},
            }
        )
    )
    s = get_space(str(p))
    assert s.reference == s.max_arch()
    assert s.reference.vocab_size == 512 and s.reference.n_layers == 3 and s.reference.layers[0].heads == 4
    for a in s.sample(0, n=20):
        s.check(a)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"family": "gpt", "n_layers": 2, "hidden": 64, "heads": 2, "qk_dim": 8}, "missing key 'mlp'"),
        (
            {"family": "gpt", "n_layers": {"min": 3, "max": 1}, "hidden": 64, "heads": 2, "qk_dim": 8, "mlp": 8},
            "below min",
        ),
        ({"family": "gpt", "n_layers": 2, "hidden": 64, "heads": 2, "qk_dim": 8, "mlp": "big"}, "mlp"),
        ({"family": "cnn", "n_layers": 2, "hidden": 64, "heads": 2, "qk_dim": 8, "mlp": 8}, "family"),
        (
            {"family": "gpt", "n_layers": 2, "hidden": 64, "heads": 2, "qk_dim": 8, "mlp": 8, "depth": 3},
            "unknown key 'depth'",
        ),
        (
            {
                "family": "gpt",
                "n_layers": 2,
                "hidden": 64,
                "heads": 2,
                "qk_dim": 8,
                "mlp": 8,
                "extras": {"image_size": 32},
            },
            "image_size",
        ),
        (
            {
                "family": "bert",
                "n_layers": 2,
                "hidden": 64,
                "heads": 5,
                "qk_dim": 8,
                "mlp": 8,
                "qkv": {"min": 12, "max": 12},
            },
            "qkv",
        ),
    ],
)
def test_bad_space_file(tmp_path, payload, message):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(payload))
    with pytest.raises(LatbenchError, match=message) as info:
        get_space(str(p))
    assert str(p) in str(info.value) and "\n" not in str(info.value)


def test_bad_space_name_and_malformed_file(tmp_path):
    with pytest.raises(LatbenchError, match="unknown space 'resnet'"):
        get_space("resnet")
    p = tmp_path / "x.json"
    p.write_text("{nope")
    with pytest.raises(LatbenchError, match="malformed JSON"):
        get_space(str(p))


def test_int_domain():
    d = IntDomain(180, 768, 12)
    assert 180 in d and 768 in d and 181 not in d and True not in d
    assert d.values()[:3] == (180, 192, 204) and d.size == 50
    assert IntDomain.from_dict([3, 1, 2], "x").values() == (1, 2, 3)


def test_supernet_arch_holds_space_and_reference():
    s = get_space("bert")
    big = s.supernet_arch()
    assert big.n_layers == 12 and big.hidden == 768
    for a in [*s.sample(1, n=50), s.reference]:
        assert a.n_layers <= big.n_layers and a.hidden <= big.hidden
        for small, large in zip(a.layers, big.layers):
            assert all(getattr(small, k) <= getattr(large, k) for k in ("heads", "qk_dim", "v_dim", "mlp"))
