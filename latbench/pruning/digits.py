"""The digits ViT: a model and its data.

scikit-learn's 8x8 digits (no download; :mod:`latbench.supernet.data`) read by a
small ViT (2x2 patches: 16 patches + a class token). Its block LUT and the models'
latency are measured with :mod:`latbench.pruning.measure` (re-exported here).
"""

from __future__ import annotations

from typing import Any

from latbench.pruning.measure import lut_axes, measure_latency_ms, measure_lut
from latbench.space.arch import Arch

__all__ = [
    "DIGITS_MODEL",
    "digits_arch",
    "digits_data",
    "is_digits_arch",
    "lut_axes",
    "measure_latency_ms",
    "measure_lut",
]

#: The ``--model`` name of the digits ViT.
DIGITS_MODEL = "vit-digits"


def digits_arch(hidden: int = 64, n_layers: int = 4, heads: int = 4, qk_dim: int = 16, mlp: int = 128) -> Arch:
    """The digits ViT's architecture (default: 4 blocks of 4 heads x 16, MLP 128, width 64)."""
    from latbench.supernet.data import digits_vit_extras

    return Arch.uniform_arch("vit", hidden, n_layers, heads, qk_dim, mlp, **digits_vit_extras())


def is_digits_arch(arch: Arch) -> bool:
    """Whether ``arch`` reads the digits (8x8, one channel, 10 classes)."""
    from latbench.supernet.data import digits_vit_extras

    return arch.family == "vit" and arch.extras == digits_vit_extras()


def digits_data(seed: int = 0) -> tuple[Any, Any, Any]:
    """Train, validation and test splits of the digits (see :func:`latbench.supernet.data.digits_splits`)."""
    from latbench.supernet.data import digits_splits

    return digits_splits(seed=seed)
