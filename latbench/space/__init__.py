"""Architectures, search spaces and foreign architecture formats (no torch here)."""

from __future__ import annotations

from latbench.space.arch import FAMILIES, FAMILY_EXTRAS, Arch, LayerSpec
from latbench.space.spaces import PRESETS, IntDomain, SearchSpace, as_rng, get_space

__all__ = [
    "FAMILIES",
    "FAMILY_EXTRAS",
    "PRESETS",
    "Arch",
    "IntDomain",
    "LayerSpec",
    "SearchSpace",
    "as_rng",
    "get_space",
]
