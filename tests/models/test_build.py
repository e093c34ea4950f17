"""Dense models, single blocks and their inputs: determinism, shapes, and the families' semantics."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import latbench.models as models
from latbench.errors import LatbenchError
from latbench.models import (
    Attention,
    apply_rotary,
    block_inputs,
    build_block,
    build_model,
    build_supernet,
    distinct_blocks,
    example_inputs,
    rotary_ndims,
    rotary_tables,
)
from latbench.space.arch import Arch, LayerSpec
from tests.models.helpers import BATCH, FAMILIES, SEQ_LEN, hetero_arch, randomise


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_weights(family: str) -> None:
    arch = hetero_arch(family)
    assert same_state(build_model(arch, seed=3), build_model(arch, seed=3))
    assert not same_state(build_model(arch, seed=3), build_model(arch, seed=4))
    # The dense model is the full extraction of a super-net of its own shape.
    assert same_state(build_model(arch, seed=3), build_supernet(arch, seed=3).extract())


@pytest.mark.parametrize("family", FAMILIES)
def test_a_block_alone_equals_that_block_of_the_model(family: str) -> None:
    arch = hetero_arch(family)
    model = build_model(arch, seed=5)
    for i in range(arch.n_layers):
        block = build_block(arch, i, seed=5)
        assert type(block) is type(model.blocks[i])
        assert same_state(block, model.blocks[i])
        (x,) = block_inputs(arch, BATCH, SEQ_LEN, seed=i)
        assert x.shape == (BATCH, arch.num_tokens(SEQ_LEN), arch.hidden)
        with torch.no_grad():
            y = block(x)
        assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_example_inputs(family: str) -> None:
    arch = hetero_arch(family)
    (x,) = example_inputs(arch, 3, SEQ_LEN, seed=1)
    assert torch.equal(x, example_inputs(arch, 3, SEQ_LEN, seed=1)[0])
    if family == "vit":
        assert x.dtype == torch.float32 and x.shape == (3, 3, 32, 32)
        assert example_inputs(arch, 3, 999)[0].shape == x.shape  # seq_len is ignored
    else:
        assert x.dtype == torch.int64 and x.shape == (3, SEQ_LEN)
        assert 0 <= x.min() and x.max() < arch.vocab_size
        with pytest.raises(LatbenchError, match="max_seq_len"):
            example_inputs(arch, 1, arch.max_seq_len + 1)
        with pytest.raises(LatbenchError, match="seq_len"):
            example_inputs(arch, 1, None)
    logits = build_model(arch)(x)
    assert logits.shape == ((3, arch.num_classes) if family == "vit" else (3, SEQ_LEN, arch.vocab_size))


def test_distinct_blocks() -> None:
    a, b, c = LayerSpec(2, 8, 8, 16), LayerSpec(2, 8, 8, 32), LayerSpec(1, 8, 4, 16)
    arch = Arch(family="vit", hidden=16, layers=(a, b, a, c, b, c))
    assert distinct_blocks(arch) == [0, 1, 3]
    assert distinct_blocks(Arch.uniform_arch("gpt", 16, 4, 2, 8, 32)) == [0]


def test_bad_block_index_and_batch_are_refused() -> None:
    arch = hetero_arch("bert")
    with pytest.raises(LatbenchError, match="index"):
        build_block(arch, arch.n_layers)
    with pytest.raises(LatbenchError, match="batch"):
        block_inputs(arch, 0, SEQ_LEN)


def test_gpt_is_causal() -> None:
    arch = hetero_arch("gpt")
    model = build_model(arch, seed=2)
    randomise(model, seed=2)
    (ids,) = example_inputs(arch, BATCH, SEQ_LEN)
    changed = ids.clone()
    changed[:, 10] = (changed[:, 10] + 1) % arch.vocab_size
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(after[:, :10], before[:, :10], rtol=0, atol=1e-6)
    assert (after[:, 10:] - before[:, 10:]).abs().max() > 1e-3


def test_bert_attention_mask_hides_padding() -> None:
    arch = hetero_arch("bert")
    model = build_model(arch, seed=2)
    randomise(model, seed=2)
    (ids,) = example_inputs(arch, BATCH, SEQ_LEN)
    mask = torch.ones_like(ids)
    mask[:, 11:] = 0
    with torch.no_grad():
        padded = model(ids, mask)
        short = model(ids[:, :11])
    torch.testing.assert_close(padded[:, :11], short, rtol=0, atol=1e-5)
    # Without the mask the padding is attended to and changes the real tokens' logits.
    with torch.no_grad():
        assert (model(ids)[:, :11] - short).abs().max() > 1e-3


def test_bert_token_types_default_to_zero() -> None:
    arch = hetero_arch("bert")
    model = build_model(arch)
    randomise(model)
    (ids,) = example_inputs(arch, BATCH, SEQ_LEN)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids, None, torch.zeros_like(ids)), rtol=0, atol=0)
        assert (model(ids, None, torch.ones_like(ids)) - model(ids)).abs().max() > 1e-3


@pytest.mark.parametrize(("qk_dim", "ndims"), [(64, 16), (32, 8), (16, 4), (12, 2), (8, 2), (7, 0), (3, 0)])
def test_rotary_width_is_a_quarter_of_the_head_rounded_down_to_even(qk_dim: int, ndims: int) -> None:
    assert rotary_ndims(qk_dim) == ndims


def test_rotary_matches_a_complex_rotation_of_half_pairs() -> None:
    # GPT-NeoX rotate_half: dim i pairs with dim i + n/2 and turns by position * 10000^(-2i/n).
    ndims, head, seq = 8, 12, 5
    x = torch.randn(2, 3, seq, head, dtype=torch.float64)
    cos, sin = rotary_tables(seq, ndims, dtype=torch.float64)
    y = apply_rotary(x, cos, sin)
    half = ndims // 2
    theta = 10000.0 ** (-2.0 * torch.arange(half, dtype=torch.float64) / ndims)
    turn = torch.polar(torch.ones(seq, half, dtype=torch.float64), torch.arange(seq)[:, None] * theta)
    z = torch.complex(x[..., :half], x[..., half:ndims]) * turn
    expected = torch.cat((z.real, z.imag, x[..., ndims:]), dim=-1)
    torch.testing.assert_close(y, expected)


def test_attention_matches_a_per_head_reference() -> None:
    # Rows h*qk_dim + j of Q/K belong to head h; V likewise with v_dim; scale 1/sqrt(qk_dim).
    spec, hidden, seq = LayerSpec(heads=3, qk_dim=5, v_dim=7, mlp=4), 10, 6
    attn = Attention(hidden, spec)
    randomise(attn)
    x = torch.randn(2, seq, hidden)
    mask = torch.zeros(2, 1, 1, seq)
    mask[1, ..., 4:] = torch.finfo(torch.float32).min
    heads = []
    for h in range(spec.heads):
        qk_rows, v_rows = slice(h * 5, h * 5 + 5), slice(h * 7, h * 7 + 7)
        q = x @ attn.q.weight[qk_rows].T + attn.q.bias[qk_rows]
        k = x @ attn.k.weight[qk_rows].T + attn.k.bias[qk_rows]
        v = x @ attn.v.weight[v_rows].T + attn.v.bias[v_rows]
        scores = q @ k.transpose(-1, -2) / math.sqrt(spec.qk_dim) + mask[:, 0]
        heads.append(scores.softmax(-1) @ v)
    expected = attn.o(torch.cat(heads, dim=-1))
    with torch.no_grad():
        torch.testing.assert_close(attn(x, mask), expected, rtol=1e-5, atol=1e-5)


def test_cost_stays_torch_free_and_the_package_exports_resolve() -> None:
    code = "import sys, latbench.models, latbench.models.cost; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
    for name in models.__all__:
        assert getattr(models, name) is not None, name
