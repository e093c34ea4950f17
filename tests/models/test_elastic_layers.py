"""Whittle-style equivalences at the layer level: a sliced elastic layer equals a fresh torch layer with the slice."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latbench.errors import LatbenchError
from latbench.models import (
    ElasticConv2d,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticModuleList,
    ElasticTable,
)
from tests.models.helpers import randomise


def fresh_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(weight)
        if bias is not None:
            layer.bias.copy_(bias)
    return layer


@pytest.mark.parametrize("bias", [True, False])
def test_sliced_linear_equals_fresh_linear(bias: bool) -> None:
    big = ElasticLinear(10, 12, bias=bias)
    randomise(big)
    big.set_sub_network(7, 5)
    small = fresh_linear(big.weight[:5, :7], big.bias[:5] if bias else None)
    x = torch.randn(3, 7)
    torch.testing.assert_close(big(x), small(x), rtol=0, atol=0)


def test_head_layout_keeps_first_heads_and_first_dims_of_each() -> None:
    heads, width = 4, 6
    q = ElasticLinear(10, heads * width, out_heads=heads)
    o = ElasticLinear(heads * width, 10, in_heads=heads)
    randomise(q, 1)
    randomise(o, 2)
    q.set_sub_network(8, 3 * 4, out_heads=3)
    o.set_sub_network(3 * 4, 9, in_heads=3)
    rows = [h * width + j for h in range(3) for j in range(4)]
    x = torch.randn(2, 5, 8)
    q_ref = fresh_linear(q.weight[rows, :8], q.bias[rows])
    torch.testing.assert_close(q(x), q_ref(x), rtol=0, atol=0)
    o_ref = fresh_linear(o.weight[:9][:, rows], o.bias[:9])
    y = torch.randn(2, 5, 12)
    torch.testing.assert_close(o(y), o_ref(y), rtol=0, atol=0)
    torch.testing.assert_close(q.sub_parameter("weight"), q.weight[rows, :8], rtol=0, atol=0)


def test_reset_restores_the_whole_layer() -> None:
    layer = ElasticLinear(6, 8, out_heads=2)
    randomise(layer)
    layer.set_sub_network(3, 4, out_heads=1)
    layer.reset_super_network()
    x = torch.randn(4, 6)
    torch.testing.assert_close(layer(x), fresh_linear(layer.weight, layer.bias)(x), rtol=0, atol=0)


def test_gradient_reaches_only_the_active_slice() -> None:
    layer = ElasticLinear(6, 8, out_heads=2)
    layer.set_sub_network(4, 6, out_heads=2)  # heads of 3 rows out of 4, first 4 inputs
    layer(torch.randn(5, 4)).sum().backward()
    grad = layer.weight.grad.view(2, 4, 6)
    assert grad[:, :3, :4].abs().sum() > 0
    assert grad[:, 3:, :].abs().sum() == 0 and grad[:, :, 4:].abs().sum() == 0


def test_layernorm_normalises_over_the_active_width() -> None:
    big = ElasticLayerNorm(12, eps=1e-6)
    randomise(big)
    big.set_sub_network(7)
    small = nn.LayerNorm(7, eps=1e-6)
    with torch.no_grad():
        small.weight.copy_(big.weight[:7])
        small.bias.copy_(big.bias[:7])
    x = torch.randn(3, 4, 7)
    torch.testing.assert_close(big(x), small(x), rtol=0, atol=0)


def test_embedding_conv_and_table_slice_their_width() -> None:
    emb = ElasticEmbedding(11, 8)
    conv = ElasticConv2d(3, 8, 4, 4)
    table = ElasticTable(5, 8)
    for i, m in enumerate((emb, conv, table)):
        randomise(m, i)
    emb.set_sub_network(5)
    conv.set_sub_network(5)
    table.set_sub_network(5)
    ids = torch.tensor([[0, 3, 10]])
    torch.testing.assert_close(emb(ids), nn.functional.embedding(ids, emb.weight[:, :5]), rtol=0, atol=0)
    small_conv = nn.Conv2d(3, 5, 4, 4)
    with torch.no_grad():
        small_conv.weight.copy_(conv.weight[:5])
        small_conv.bias.copy_(conv.bias[:5])
    img = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(conv(img), small_conv(img), rtol=0, atol=0)
    torch.testing.assert_close(table(), table.weight[:, :5], rtol=0, atol=0)


def test_module_list_iterates_the_active_prefix_but_keeps_every_module() -> None:
    blocks = ElasticModuleList(nn.Linear(2, 2) for _ in range(4))
    blocks.set_sub_network(2)
    assert list(blocks) == [blocks[0], blocks[1]]
    assert len(blocks) == 4 and len(list(blocks.parameters())) == 8
    blocks.reset_super_network()
    assert len(list(blocks)) == 4


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: ElasticLinear(4, 6).set_sub_network(5, 6), "in_features"),
        (lambda: ElasticLinear(4, 6).set_sub_network(4, 7), "out_features"),
        (lambda: ElasticLinear(4, 8, out_heads=2).set_sub_network(4, 6, out_heads=3), "out_heads"),
        (lambda: ElasticLinear(4, 8, out_heads=2).set_sub_network(4, 10, out_heads=2), "out_features"),
        (lambda: ElasticLinear(4, 8, out_heads=2).set_sub_network(4, 3, out_heads=2), "out_heads"),
        (lambda: ElasticLayerNorm(4).set_sub_network(5), "features"),
        (lambda: ElasticEmbedding(3, 4).set_sub_network(0), "embedding_dim"),
        (lambda: ElasticModuleList([nn.Linear(1, 1)]).set_sub_network(2), "depth"),
    ],
)
def test_a_slice_that_does_not_fit_is_refused(call, fragment: str) -> None:
    with pytest.raises(LatbenchError, match=fragment):
        call()
