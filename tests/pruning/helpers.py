"""Tiny models, data and latency tables shared by the pruning tests."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from latbench.lut.table import Axis, LookupTable, TableMeta
from latbench.models.build import build_model
from latbench.space.arch import Arch, LayerSpec

DIGITS = {"image_size": 8, "patch_size": 2, "in_channels": 1, "num_classes": 10}


def tiny_vit(hidden: int = 16, layers: int = 2, heads: int = 4, qk: int = 8, v: int = 6, mlp: int = 32) -> Arch:
    return Arch.uniform_arch("vit", hidden, layers, heads, qk, mlp, v_dim=v, **DIGITS)


def tiny_bert(hidden: int = 16, layers: int = 2) -> Arch:
    spec = LayerSpec(heads=4, qk_dim=8, v_dim=6, mlp=32)
    return Arch(family="bert", hidden=hidden, layers=(spec,) * layers, vocab_size=40, max_seq_len=12)


def perturbed_model(arch: Arch, seed: int = 0) -> torch.nn.Module:
    """A model whose LayerNorms and biases are not at their init values (so masking bugs show)."""
    model = build_model(arch, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model


def vit_inputs(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def vit_data(n: int = 64, seed: int = 0) -> TensorDataset:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=gen)
    y = (x.mean(dim=(1, 2, 3)) > 0).long() + 2 * (x[:, 0, :4].mean(dim=(1, 2)) > 0).long()
    return TensorDataset(x, y)


def block_cost(emb: float, heads: float, qk: float, v: float, mlp: float) -> float:
    """A multilinear stand-in for a block's latency (FLOP-like), so interpolation on any grid is exact."""
    return 0.05 + 1e-3 * emb * heads * (2 * qk + 2 * v) + 2e-3 * emb * mlp + 1e-4 * heads * (qk + v)


def linear_lut(arch: Arch, lo: int = 1, meta: TableMeta | None = None) -> LookupTable:
    """A latbench LUT over ``[lo, max]`` of every axis of ``arch`` with :func:`block_cost` values."""
    s = arch.layers[0]
    axes = (
        Axis("emb", (lo, arch.hidden)),
        Axis("heads", (1, s.heads)),
        Axis("qk_dim", (lo, s.qk_dim)),
        Axis("v_dim", (lo, s.v_dim)),
        Axis("mlp", (lo, s.mlp)),
    )
    grid = np.meshgrid(*(np.array(a.values, dtype=float) for a in axes), indexing="ij")
    values = np.vectorize(block_cost)(*grid)
    return LookupTable(axes=axes, values=values, meta=meta or TableMeta(family="vit"), origin="linear lut")
