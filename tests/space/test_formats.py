from __future__ import annotations

import json

import pytest

from latbench.errors import LatbenchError
from latbench.space import Arch, LayerSpec, get_space
from latbench.space.formats import (
    convert,
    from_autotinybert,
    from_nvit,
    from_whittle,
    load_arch,
    nvit_block_key,
    parse_arch_text,
    to_autotinybert,
    to_nvit,
    to_whittle,
)

# Exactly as AutoTinyBERT's scripts print an architecture (str of a dict).
ATB = (
    "{'sample_layer_num': 4, 'sample_num_attention_heads': [6, 6, 6, 6], 'sample_qkv_sizes': [384, 384, 384, 384], "
    "'sample_hidden_size': 384, 'sample_intermediate_sizes': [1536, 1536, 1536, 1536]}"
)


def test_autotinybert_string_round_trips_exactly():
    arch = from_autotinybert(ATB)
    assert arch == Arch.uniform_arch("bert", hidden=384, n_layers=4, heads=6, qk_dim=64, mlp=1536)
    assert to_autotinybert(arch) == ATB
    assert parse_arch_text(ATB) == arch


def test_autotinybert_kd_mode_splits_qkv_over_twelve_heads():
    text = (
        "{'sample_layer_num': 2, 'sample_num_attention_heads': [12, 12], 'sample_qkv_sizes': [180, 180], "
        "'sample_hidden_size': 256, 'sample_intermediate_sizes': [480, 480]}"
    )
    arch = from_autotinybert(text)
    assert arch.layers[0] == LayerSpec(12, 15, 15, 480)
    assert to_autotinybert(arch) == text
    get_space("bert").check(arch)


def test_sampled_bert_archs_round_trip_through_every_format():
    for arch in get_space("bert").sample(0, n=20):
        assert from_autotinybert(to_autotinybert(arch)) == arch
        assert from_nvit(to_nvit(arch), family="bert") == arch
        assert from_whittle(to_whittle(arch), family="bert") == arch
        assert parse_arch_text(convert(arch, "latbench")) == arch


def test_nvit_round_trip_heterogeneous_and_lut_keys():
    for arch in get_space("vit").sample(1, n=10):
        assert from_nvit(json.loads(convert(arch, "nvit"))) == arch
    deit = get_space("vit").reference
    assert nvit_block_key(deit, 0) == ("EMB_768", "QK_12_64", "V_64", "MLP_3072")


def test_whittle_scalars_lists_and_default_head_size():
    uniform = Arch.uniform_arch("gpt", hidden=256, n_layers=3, heads=4, qk_dim=64, mlp=1024)
    cfg = to_whittle(uniform)
    assert cfg == {
        "sub_network_n_embd": 256,
        "sub_network_intermediate_size": 1024,
        "sub_network_num_heads": 4,
        "sub_network_n_layers": 3,
        "sub_network_head_size": 64,
        "sub_network_query_groups": 4,
    }
    assert from_whittle(cfg) == uniform
    hetero = uniform.with_layers([LayerSpec(4, 64, 64, 1024), LayerSpec(2, 64, 64, 512), LayerSpec(4, 64, 64, 256)])
    cfg = to_whittle(hetero)
    assert cfg["sub_network_intermediate_size"] == [1024, 512, 256]
    assert from_whittle(cfg) == hetero
    no_head_size = {k: v for k, v in to_whittle(uniform).items() if k != "sub_network_head_size"}
    assert from_whittle(no_head_size) == uniform  # 256 // 4 = 64


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{'sample_layer_num': 2, 'sample_num_attention_heads': [5, 5], 'sample_qkv_sizes': [384, 384], "
            "'sample_hidden_size': 384, 'sample_intermediate_sizes': [1536, 1536]}",
            "not divisible by 5 heads",
        ),
        (
            "{'sample_layer_num': 3, 'sample_num_attention_heads': [6, 6], 'sample_qkv_sizes': [384, 384], "
            "'sample_hidden_size': 384, 'sample_intermediate_sizes': [1536, 1536]}",
            "2 entries for 3 layers",
        ),
        ("{'sample_layer_num': 2, 'sample_hidden_size': 384}", "missing key"),
        ('{"EMB": 768, "blocks": [{"heads": 0, "QK": 64, "V": 64, "MLP": 3072}]}', "heads"),
        (
            '{"sub_network_n_embd": 100, "sub_network_intermediate_size": 64, "sub_network_num_heads": 3, '
            '"sub_network_n_layers": 1}',
            "not divisible",
        ),
        ('{"what": 1}', "not a known architecture format"),
        ("[1, 2]", "expected a JSON object"),
        ("{'a': ", "malformed JSON"),
    ],
)
def test_bad_foreign_input(text, message):
    with pytest.raises(LatbenchError, match=message) as info:
        parse_arch_text(text)
    assert "\n" not in str(info.value)


def test_formats_refuse_what_they_cannot_say():
    vit = get_space("vit").sample(0)
    with pytest.raises(LatbenchError, match="AutoTinyBERT describes BERT"):
        to_autotinybert(vit)
    odd = Arch(family="bert", hidden=64, layers=(LayerSpec(2, 16, 8, 64),))
    with pytest.raises(LatbenchError, match="qk_dim 16 != v_dim 8"):
        to_autotinybert(odd)
    with pytest.raises(LatbenchError, match="unknown format"):
        convert(odd, "onnx")


def test_load_arch_from_file_and_missing_file(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text(ATB + "\n")
    assert load_arch(str(p)) == from_autotinybert(ATB)
    with pytest.raises(LatbenchError, match="neither an architecture"):
        load_arch(str(tmp_path / "missing.json"))
