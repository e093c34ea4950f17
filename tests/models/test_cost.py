"""Analytic parameter counts against the real blocks, and one-line errors from the cost functions."""

from __future__ import annotations

import pytest

from latbench.errors import LatbenchError
from latbench.models import block_cost, block_params, build_block
from tests.models.helpers import FAMILIES, hetero_arch


@pytest.mark.parametrize("family", FAMILIES)
def test_block_params_equal_the_real_block(family: str) -> None:
    arch = hetero_arch(family)
    for i in range(arch.n_layers):
        assert sum(p.numel() for p in build_block(arch, i).parameters()) == block_params(arch, i)


def test_block_cost_refuses_an_unknown_precision_in_one_line() -> None:
    with pytest.raises(LatbenchError, match="unknown precision 'fp8'"):
        block_cost(hetero_arch("gpt"), 0, 1, 8, dtype="fp8")
