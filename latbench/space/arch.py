"""Architectures as plain data: a model-wide family and width, and one spec per layer.

An :class:`Arch` imports no torch: it is what a search space samples, what a
result store keys rows by, and what a model builder realises.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from latbench.errors import LatbenchError

FAMILIES: tuple[str, ...] = ("bert", "vit", "gpt")

#: Family-wide settings that are not searched, with their defaults.
#: bert: BERT-base's vocabulary, positions and segment types; vit: DeiT-B on
#: ImageNet (224 px, 16 px patches); gpt: Pythia's padded vocabulary and context.
FAMILY_EXTRAS: dict[str, dict[str, int]] = {
    "bert": {"vocab_size": 30522, "max_seq_len": 512, "type_vocab_size": 2},
    "vit": {"image_size": 224, "patch_size": 16, "in_channels": 3, "num_classes": 1000},
    "gpt": {"vocab_size": 50304, "max_seq_len": 2048},
}
EXTRA_NAMES: tuple[str, ...] = (
    "vocab_size",
    "max_seq_len",
    "type_vocab_size",
    "image_size",
    "patch_size",
    "in_channels",
    "num_classes",
)
LAYER_KEYS: tuple[str, ...] = ("heads", "qk_dim", "v_dim", "mlp")


def _check_int(value: Any, where: str, minimum: int = 1) -> int:
    # bool is an int subclass; `true` as a size is a typo, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise LatbenchError(where, f"expected an integer, got {value!r}")
    if value < minimum:
        raise LatbenchError(where, f"must be >= {minimum}, got {value}")
    return value


@dataclass(frozen=True)
class LayerSpec:
    """One transformer block: attention heads, per-head Q/K and V widths, MLP width."""

    heads: int
    qk_dim: int
    v_dim: int
    mlp: int

    def __post_init__(self) -> None:
        for name in LAYER_KEYS:
            _check_int(getattr(self, name), name)

    @property
    def qk_size(self) -> int:
        """Total width of the query (and key) projection, ``heads * qk_dim``."""
        return self.heads * self.qk_dim

    @property
    def v_size(self) -> int:
        """Total width of the value projection, ``heads * v_dim``."""
        return self.heads * self.v_dim

    def to_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in LAYER_KEYS}

    @classmethod
    def from_dict(cls, data: Any, where: str = "layer") -> LayerSpec:
        if not isinstance(data, Mapping):
            raise LatbenchError(where, f"expected an object with {', '.join(LAYER_KEYS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(LAYER_KEYS))
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r} (expected {', '.join(LAYER_KEYS)})")
        missing = [k for k in LAYER_KEYS if k not in data]
        if missing:
            raise LatbenchError(where, f"missing key {missing[0]!r}")
        return cls(**{k: _check_int(data[k], f"{where}.{k}") for k in LAYER_KEYS})


@dataclass(frozen=True)
class Arch:
    """A transformer architecture of one family, layer by layer.

    Attributes:
        family: ``bert`` (encoder with an MLM head), ``vit`` (image classifier) or
            ``gpt`` (causal LM).
        hidden: Model-wide embedding width, shared by every block.
        layers: One :class:`LayerSpec` per block; layers may differ.
        vocab_size, max_seq_len, type_vocab_size: Text families' settings.
        image_size, patch_size, in_channels, num_classes: ``vit`` settings.

    Family settings left as ``None`` take the family's defaults
    (:data:`FAMILY_EXTRAS`); settings of another family must stay ``None``.
    """

    family: str
    hidden: int
    layers: tuple[LayerSpec, ...]
    vocab_size: int | None = None
    max_seq_len: int | None = None
    type_vocab_size: int | None = None
    image_size: int | None = None
    patch_size: int | None = None
    in_channels: int | None = None
    num_classes: int | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise LatbenchError("family", f"unknown family {self.family!r} (expected one of {', '.join(FAMILIES)})")
        _check_int(self.hidden, "hidden")
        layers = tuple(self.layers) if isinstance(self.layers, Iterable) else self.layers
        if not isinstance(layers, tuple) or not layers:
            raise LatbenchError("layers", "an architecture needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise LatbenchError(f"layers[{i}]", f"expected a LayerSpec, got {type(layer).__name__}")
        object.__setattr__(self, "layers", layers)
        defaults = FAMILY_EXTRAS[self.family]
        for name in EXTRA_NAMES:
            value = getattr(self, name)
            if name in defaults:
                if value is None:
                    object.__setattr__(self, name, defaults[name])
                else:
                    _check_int(value, name)
            elif value is not None:
                raise LatbenchError(name, f"is not a setting of family {self.family!r}")
        if self.family == "vit" and self.image_size % self.patch_size:  # type: ignore[operator]
            raise LatbenchError("image_size", f"{self.image_size} is not a multiple of patch_size {self.patch_size}")

    # ----------------------------------------------------------------- views
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def uniform(self) -> bool:
        """Whether every layer has the same spec."""
        return all(layer == self.layers[0] for layer in self.layers)

    @property
    def extras(self) -> dict[str, int]:
        """The family settings, in canonical order."""
        return {name: getattr(self, name) for name in FAMILY_EXTRAS[self.family]}

    def num_tokens(self, seq_len: int | None = None) -> int:
        """Tokens a block sees: ``seq_len`` for text, patches + class token for ``vit``."""
        if self.family == "vit":
            return (self.image_size // self.patch_size) ** 2 + 1  # type: ignore[operator]
        if seq_len is None:
            raise LatbenchError("seq_len", f"family {self.family!r} needs a sequence length")
        return seq_len

    def with_layers(self, layers: Iterable[LayerSpec]) -> Arch:
        """A copy with other layers (same family, width and settings)."""
        return Arch(family=self.family, hidden=self.hidden, layers=tuple(layers), **self.extras)

    def with_hidden(self, hidden: int) -> Arch:
        return Arch(family=self.family, hidden=hidden, layers=self.layers, **self.extras)

    def describe(self) -> str:
        """A short human label, e.g. ``bert L4 H384 [6x64/64 F1536]x4``."""
        parts: list[str] = []
        i = 0
        while i < len(self.layers):
            j = i
            while j + 1 < len(self.layers) and self.layers[j + 1] == self.layers[i]:
                j += 1
            s = self.layers[i]
            tag = f"{s.heads}x{s.qk_dim}/{s.v_dim} F{s.mlp}"
            parts.append(f"[{tag}]x{j - i + 1}" if j > i else f"[{tag}]")
            i = j + 1
        return f"{self.family} L{self.n_layers} H{self.hidden} " + " ".join(parts)

    # ----------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """Canonical dict: ``family``, ``hidden``, ``layers``, then the family settings."""
        out: dict[str, Any] = {
            "family": self.family,
            "hidden": self.hidden,
            "layers": [layer.to_dict() for layer in self.layers],
        }
        out.update(self.extras)
        return out

    def to_json(self) -> str:
        """Canonical one-line JSON; equal architectures give equal strings."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: Any, where: str = "arch") -> Arch:
        """Build from the canonical dict, naming ``where`` in any error."""
        if not isinstance(data, Mapping):
            raise LatbenchError(where, f"expected a JSON object, got {type(data).__name__}")
        for key in ("family", "hidden", "layers"):
            if key not in data:
                raise LatbenchError(where, f"missing key {key!r}")
        family = data["family"]
        if family not in FAMILIES:
            raise LatbenchError(where, f"unknown family {family!r} (expected one of {', '.join(FAMILIES)})")
        allowed = {"family", "hidden", "layers", *FAMILY_EXTRAS[family]}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r} for family {family!r}")
        raw_layers = data["layers"]
        if not isinstance(raw_layers, list) or not raw_layers:
            raise LatbenchError(f"{where}.layers", "expected a non-empty list of layers")
        layers = tuple(LayerSpec.from_dict(x, f"{where}.layers[{i}]") for i, x in enumerate(raw_layers))
        extras = {k: _check_int(data[k], f"{where}.{k}") for k in FAMILY_EXTRAS[family] if k in data}
        try:
            return cls(family=family, hidden=_check_int(data["hidden"], f"{where}.hidden"), layers=layers, **extras)
        except LatbenchError as exc:
            raise LatbenchError(f"{where}.{exc.where}", exc.what) from None

    @classmethod
    def from_json(cls, text: str, where: str = "arch") -> Arch:
        from latbench.io import parse_json

        return cls.from_dict(parse_json(text, where), where)

    @classmethod
    def uniform_arch(
        cls,
        family: str,
        hidden: int,
        n_layers: int,
        heads: int,
        qk_dim: int,
        mlp: int,
        v_dim: int | None = None,
        **extras: int,
    ) -> Arch:
        """An architecture whose ``n_layers`` layers are all the same."""
        spec = LayerSpec(heads=heads, qk_dim=qk_dim, v_dim=qk_dim if v_dim is None else v_dim, mlp=mlp)
        return cls(family=family, hidden=hidden, layers=(spec,) * n_layers, **extras)
