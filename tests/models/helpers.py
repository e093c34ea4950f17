"""Small architectures and random sub-networks shared by the model tests (kept tiny: the folder runs in seconds)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from latbench.space.arch import Arch, LayerSpec

SEQ_LEN = 16
BATCH = 2
EXTRAS: dict[str, dict[str, int]] = {
    "bert": {"vocab_size": 97, "max_seq_len": 32, "type_vocab_size": 2},
    "vit": {"image_size": 32, "patch_size": 8, "in_channels": 3, "num_classes": 10},
    "gpt": {"vocab_size": 97, "max_seq_len": 32},
}
FAMILIES = tuple(EXTRAS)


def super_arch(family: str) -> Arch:
    """A small super-net shape per family; vit's layers differ (NViT style), bert's V width differs from Q/K."""
    if family == "vit":
        layers = (LayerSpec(4, 16, 12, 96), LayerSpec(3, 8, 16, 64), LayerSpec(4, 16, 16, 128))
        return Arch(family="vit", hidden=48, layers=layers, **EXTRAS["vit"])
    if family == "bert":
        return Arch.uniform_arch("bert", hidden=48, n_layers=3, heads=4, qk_dim=12, v_dim=8, mlp=96, **EXTRAS["bert"])
    return Arch.uniform_arch("gpt", hidden=64, n_layers=3, heads=4, qk_dim=16, mlp=128, **EXTRAS["gpt"])


def hetero_arch(family: str) -> Arch:
    """A dense test shape with layers that differ, one with qk_dim == v_dim and one without."""
    layers = (LayerSpec(3, 16, 16, 70), LayerSpec(2, 9, 5, 33), LayerSpec(1, 8, 12, 20))
    return Arch(family=family, hidden=40, layers=layers, **EXTRAS[family])


def random_sub_arch(big: Arch, rng: np.random.Generator) -> Arch:
    """A sub-network of ``big``: any depth, width and per-layer shape that fits, layers drawn independently."""
    n_layers = int(rng.integers(1, big.n_layers + 1))
    hidden = int(rng.integers(1, big.hidden + 1))
    layers = []
    for spec in big.layers[:n_layers]:
        layers.append(
            LayerSpec(
                heads=int(rng.integers(1, spec.heads + 1)),
                qk_dim=int(rng.integers(1, spec.qk_dim + 1)),
                v_dim=int(rng.integers(1, spec.v_dim + 1)),
                mlp=int(rng.integers(1, spec.mlp + 1)),
            )
        )
    return Arch(family=big.family, hidden=hidden, layers=tuple(layers), **big.extras)


@torch.no_grad()
def randomise(module: nn.Module, seed: int = 0, std: float = 0.3) -> None:
    """Give every parameter (biases and LayerNorms included) random values, so slicing errors cannot hide."""
    gen = torch.Generator().manual_seed(seed)
    for param in module.parameters():
        param.copy_(torch.randn(param.shape, generator=gen) * std)


def n_params(module: nn.Module, exclude: set[int] | None = None) -> int:
    """Distinct parameters of ``module`` (tied ones once), leaving out those whose id is in ``exclude``."""
    exclude = exclude or set()
    return sum(p.numel() for p in module.parameters() if id(p) not in exclude)
