"""The analytic FLOP formulas of latbench.models.cost against a count taken from the real modules."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from latbench.models import block_cost, block_inputs, build_block, build_model, example_inputs, model_cost
from tests.models.helpers import BATCH, FAMILIES, SEQ_LEN, hetero_arch


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def counter() -> FlopCounterMode:
    # On the CPU, scaled_dot_product_attention with equal Q/K and V widths runs a fused kernel that torch's
    # counter has no formula for (it counts the GPU kernels and the bmm fallback); give it torch's own SDPA
    # formula, QK^T plus AV, which is also what the analytic attention term counts.
    flash_cpu = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    return FlopCounterMode(display=False, custom_mapping={flash_cpu: _cpu_flash_attention_flops})


@pytest.mark.parametrize("family", FAMILIES)
def test_block_flops_equal_the_formula(family: str) -> None:
    # Elementwise work (GELU, softmax, LayerNorm, rotary, residual adds) is neither counted by the counter
    # nor by the formula; causal attention is counted in full by both (the masked half is computed too).
    arch = hetero_arch(family)
    for i in range(arch.n_layers):
        block = build_block(arch, i)
        with counter() as fc, torch.no_grad():
            block(*block_inputs(arch, BATCH, SEQ_LEN))
        assert fc.get_total_flops() == block_cost(arch, i, BATCH, SEQ_LEN).flops, f"block {i}"


@pytest.mark.parametrize("family", FAMILIES)
def test_model_flops_equal_the_formula(family: str) -> None:
    # Includes the head (MLM dense + decoder, classifier, LM head) and vit's patch convolution;
    # embedding gathers are not FLOPs for either.
    arch = hetero_arch(family)
    with counter() as fc, torch.no_grad():
        build_model(arch)(*example_inputs(arch, BATCH, SEQ_LEN))
    assert fc.get_total_flops() == model_cost(arch, BATCH, SEQ_LEN).total.flops
