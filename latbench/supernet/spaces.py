"""The search space a super-net trains over: a preset or user space fitted to the data and optionally shrunk.

Presets describe full-size models (BERT-base's vocabulary, 224 px images); the
super-nets here train on small local data, so the family settings come from the
data (byte vocabulary, ``seq_len`` positions, 8x8 digits) and ``--scale`` or
``--max-*`` caps shrink the dimensions for a quick CPU run.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from latbench.errors import LatbenchError
from latbench.space.arch import Arch
from latbench.space.spaces import IntDomain, SearchSpace
from latbench.supernet.data import TEXT_VOCAB_SIZE, digits_vit_extras

__all__ = ["SpaceCaps", "data_extras", "shrink_space", "training_space"]


@dataclass(frozen=True)
class SpaceCaps:
    """Upper bounds on a space's dimensions (``None``: no bound).

    Attributes:
        scale: Multiplies the space's largest layers, width, heads and MLP width (``qk_dim`` stays)
            to give the bounds not set explicitly; 1.0 keeps the space as it is.
        max_layers, max_hidden, max_heads, max_qk_dim, max_mlp: Explicit bounds.
    """

    scale: float = 1.0
    max_layers: int | None = None
    max_hidden: int | None = None
    max_heads: int | None = None
    max_qk_dim: int | None = None
    max_mlp: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not 0.0 < self.scale <= 1.0:
            raise LatbenchError("--scale", f"must lie in (0, 1], got {self.scale!r}")
        for name in ("max_layers", "max_hidden", "max_heads", "max_qk_dim", "max_mlp"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise LatbenchError(f"--{name.replace('_', '-')}", f"expected a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> SpaceCaps:
        if not isinstance(data, Mapping) or set(data) - {f.name for f in fields(cls)}:
            raise LatbenchError("caps", f"expected an object with {', '.join(f.name for f in fields(cls))}")
        return cls(**data)

    @property
    def active(self) -> bool:
        """Whether these caps change anything."""
        return self.scale != 1.0 or any(
            getattr(self, n) is not None for n in ("max_layers", "max_hidden", "max_heads", "max_qk_dim", "max_mlp")
        )


def data_extras(family: str, seq_len: int) -> dict[str, int]:
    """The family settings the local data needs: byte vocabulary and ``seq_len`` positions, or the digits."""
    if family == "vit":
        return digits_vit_extras()
    extras = {"vocab_size": TEXT_VOCAB_SIZE, "max_seq_len": seq_len}
    if family == "bert":
        extras["type_vocab_size"] = 2
    return extras


def _cap(dom: IntDomain, cap: int | None) -> IntDomain:
    if cap is None:
        return dom
    values = [v for v in dom.values() if v <= cap]
    if not values:  # the whole domain lies above the cap: keep the cap itself
        return IntDomain(cap, cap)
    if dom.choices is not None:
        return IntDomain(1, 1, choices=tuple(values))
    return IntDomain(dom.low, values[-1], dom.step)


def shrink_space(space: SearchSpace, caps: SpaceCaps) -> SearchSpace:
    """``space`` with every dimension bounded by ``caps`` (its reference dropped: it need not fit any more)."""
    if not caps.active:
        return space
    big = space.max_arch()
    spec = big.layers[0]

    def bound(explicit: int | None, largest: int) -> int:
        return explicit if explicit is not None else max(1, round(largest * caps.scale))

    heads = _cap(space.heads, bound(caps.max_heads, spec.heads))
    qk_dim = _cap(space.qk_dim, caps.max_qk_dim)
    qkv = space.qkv
    if qkv is not None:
        widest = heads.max * qk_dim.max
        fits = [q for q in qkv.values() if q <= widest and any(q % h == 0 and q // h in qk_dim for h in heads.values())]
        # AutoTinyBERT's total-width domain may lie wholly above a small cap; then heads x qk_dim is free.
        qkv = IntDomain(1, 1, choices=tuple(fits)) if fits else None
    return replace(
        space,
        name=f"{space.name}-shrunk",
        n_layers=_cap(space.n_layers, bound(caps.max_layers, big.n_layers)),
        hidden=_cap(space.hidden, bound(caps.max_hidden, big.hidden)),
        heads=heads,
        qk_dim=qk_dim,
        v_dim=None if space.v_dim is None else _cap(space.v_dim, caps.max_qk_dim),
        qkv=qkv,
        mlp=_cap(space.mlp, bound(caps.max_mlp, spec.mlp)),
        reference=None,
    )


def training_space(space: SearchSpace, seq_len: int, caps: SpaceCaps | None = None) -> SearchSpace:
    """``space`` fitted to the local data of its family, then shrunk by ``caps``.

    Settings the space leaves open take the data's values; settings it fixes
    must be compatible (a vocabulary of at least 260 byte tokens, at least
    ``seq_len`` positions, the digits' image shape and classes).

    Raises:
        LatbenchError: A setting of the space does not fit the data.
    """
    wanted = data_extras(space.family, seq_len)
    given = dict(space.extras)
    where = f"space {space.name!r}"
    for key, value in given.items():
        need = wanted[key]
        if key == "vocab_size" and value < need:
            raise LatbenchError(where, f"vocab_size {value} is below the byte tokenizer's {need}")
        if key == "max_seq_len" and value < need:
            raise LatbenchError(where, f"max_seq_len {value} is below --seq-len {need}")
        if key not in ("vocab_size", "max_seq_len") and value != need:
            raise LatbenchError(where, f"{key} {value} does not fit the data, which needs {need}")
    extras = {**wanted, **given}
    ref = space.reference
    reference = Arch(family=ref.family, hidden=ref.hidden, layers=ref.layers, **extras)
    fitted = replace(space, extras=tuple(extras.items()), reference=reference)
    return shrink_space(fitted, caps or SpaceCaps())
