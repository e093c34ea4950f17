"""Search spaces: integer domains per dimension, presets, sampling, mutation, crossover.

A space is plain data and serialises to JSON; randomness always comes from an
explicit :class:`numpy.random.Generator` (or a seed), so the same seed gives the
same architectures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.space.arch import FAMILIES, FAMILY_EXTRAS, Arch, LayerSpec

RngLike = np.random.Generator | int | None


def as_rng(rng: RngLike) -> np.random.Generator:
    """A Generator from a Generator or a seed; ``None`` is refused (no hidden randomness)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise LatbenchError("seed", "an explicit integer seed or numpy Generator is required")


@dataclass(frozen=True)
class IntDomain:
    """The integers ``low, low + step, ..., high``, or an explicit sorted set of choices."""

    low: int
    high: int
    step: int = 1
    choices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.choices is not None:
            vals = tuple(sorted(set(int(c) for c in self.choices)))
            if not vals or vals[0] < 1:
                raise LatbenchError("choices", "must be a non-empty list of positive integers")
            object.__setattr__(self, "choices", vals)
            object.__setattr__(self, "low", vals[0])
            object.__setattr__(self, "high", vals[-1])
            object.__setattr__(self, "step", 1)
            return
        if self.low < 1:
            raise LatbenchError("min", f"must be >= 1, got {self.low}")
        if self.high < self.low:
            raise LatbenchError("max", f"{self.high} is below min {self.low}")
        if self.step < 1:
            raise LatbenchError("step", f"must be >= 1, got {self.step}")

    @property
    def size(self) -> int:
        if self.choices is not None:
            return len(self.choices)
        return (self.high - self.low) // self.step + 1

    def values(self) -> tuple[int, ...]:
        if self.choices is not None:
            return self.choices
        return tuple(range(self.low, self.high + 1, self.step))

    @property
    def max(self) -> int:
        return self.choices[-1] if self.choices is not None else self.low + (self.size - 1) * self.step

    @property
    def min(self) -> int:
        return self.low

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
            return False
        if self.choices is not None:
            return int(value) in self.choices
        return self.low <= value <= self.high and (value - self.low) % self.step == 0

    def sample(self, rng: np.random.Generator) -> int:
        if self.choices is not None:
            return int(self.choices[int(rng.integers(len(self.choices)))])
        return int(self.low + self.step * int(rng.integers(self.size)))

    def describe(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(map(str, self.choices)) + "}"
        if self.low == self.max:
            return str(self.low)
        return f"{self.low}..{self.max}" + (f" step {self.step}" if self.step != 1 else "")

    def to_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"min": self.low, "max": self.high, "step": self.step}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> IntDomain:
        if isinstance(data, int) and not isinstance(data, bool):
            data = {"min": data, "max": data}
        if isinstance(data, list):
            data = {"choices": data}
        if not isinstance(data, Mapping):
            raise LatbenchError(where, "expected {min, max[, step]}, {choices: [...]}, a list or an integer")
        unknown = sorted(set(data) - {"min", "max", "step", "choices"})
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        for key, value in data.items():
            vals = value if key == "choices" else [value]
            if not isinstance(vals, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in vals):
                raise LatbenchError(f"{where}.{key}", f"expected integers, got {value!r}")
        try:
            if "choices" in data:
                if set(data) != {"choices"}:
                    raise LatbenchError("choices", "cannot be combined with min/max/step")
                return cls(low=1, high=1, choices=tuple(data["choices"]))
            if "min" not in data or "max" not in data:
                raise LatbenchError("", "needs both 'min' and 'max'")
            return cls(low=data["min"], high=data["max"], step=data.get("step", 1))
        except LatbenchError as exc:
            raise LatbenchError(f"{where}.{exc.where}" if exc.where else where, exc.what) from None


_DIMENSIONS = ("n_layers", "hidden", "heads", "qk_dim", "v_dim", "mlp", "qkv")


@dataclass(frozen=True)
class SearchSpace:
    """Which architectures of one family a search may visit.

    Attributes:
        name: Preset name or the user's label.
        family: Model family of every member.
        n_layers, hidden, heads, qk_dim, mlp: Domains of the number of blocks, the
            model width, heads per block, Q/K width per head and MLP width.
        v_dim: Domain of the V width per head; ``None`` ties it to ``qk_dim``.
        qkv: Optional domain of the *total* attention width ``heads * qk_dim``
            (AutoTinyBERT searches ``qkv_size`` and splits it over the heads).
        uniform_layers: Every layer of a member has the same spec (AutoTinyBERT,
            whittle); otherwise each block is free (NViT).
        extras: Family settings shared by every member (vocabulary, image size ...).
        reference: The model a speed-up is measured against (BERT-base, DeiT-B,
            the largest GPT); it need not lie inside the space. Default: the
            space's largest member.
        description: Where the space comes from.
    """

    name: str
    family: str
    n_layers: IntDomain
    hidden: IntDomain
    heads: IntDomain
    qk_dim: IntDomain
    mlp: IntDomain
    reference: Arch | None = None
    v_dim: IntDomain | None = None
    qkv: IntDomain | None = None
    uniform_layers: bool = False
    extras: tuple[tuple[str, int], ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        where = f"space {self.name!r}"
        if self.family not in FAMILIES:
            raise LatbenchError(where, f"unknown family {self.family!r} (expected one of {', '.join(FAMILIES)})")
        extras = dict(self.extras)
        unknown = sorted(set(extras) - set(FAMILY_EXTRAS[self.family]))
        if unknown:
            raise LatbenchError(where, f"{unknown[0]!r} is not a setting of family {self.family!r}")
        object.__setattr__(self, "extras", tuple(sorted(extras.items())))
        if not self._attention_choices():
            raise LatbenchError(where, "no (heads, qk_dim) pair satisfies the qkv domain")
        if self.reference is None:
            object.__setattr__(self, "reference", self.max_arch())
        if self.reference.family != self.family:
            raise LatbenchError(where, f"reference is a {self.reference.family!r} model, space is {self.family!r}")
        for key, value in self.extras:
            if getattr(self.reference, key) != value:
                raise LatbenchError(
                    where, f"reference {key} {getattr(self.reference, key)} differs from the space's {value}"
                )

    # -------------------------------------------------------------- attention
    def attention_choices(self) -> tuple[tuple[int, int], ...]:
        """Valid (heads, qk_dim) pairs: those whose product lies in ``qkv`` when it couples them."""
        return self._attention_choices()

    def _attention_choices(self) -> tuple[tuple[int, int], ...]:
        """Valid (heads, qk_dim) pairs when ``qkv`` couples them; else all pairs."""
        pairs = []
        for h in self.heads.values():
            for d in self.qk_dim.values():
                if self.qkv is None or h * d in self.qkv:
                    pairs.append((h, d))
        return tuple(pairs)

    def _sample_layer(self, rng: np.random.Generator) -> LayerSpec:
        if self.qkv is not None:
            # AutoTinyBERT draws the head count, then a total qkv size it divides.
            while True:
                h = self.heads.sample(rng)
                widths = [q for q in self.qkv.values() if q % h == 0 and q // h in self.qk_dim]
                if widths:
                    d = widths[int(rng.integers(len(widths)))] // h
                    break
        else:
            h = self.heads.sample(rng)
            d = self.qk_dim.sample(rng)
        v = d if self.v_dim is None else self.v_dim.sample(rng)
        return LayerSpec(heads=h, qk_dim=d, v_dim=v, mlp=self.mlp.sample(rng))

    # -------------------------------------------------------------- members
    def _arch(self, hidden: int, layers: list[LayerSpec] | tuple[LayerSpec, ...]) -> Arch:
        return Arch(family=self.family, hidden=hidden, layers=tuple(layers), **dict(self.extras))

    def sample(self, rng: RngLike, n: int | None = None) -> Arch | list[Arch]:
        """Draw one architecture (or a list of ``n``) uniformly per dimension."""
        gen = as_rng(rng)
        if n is not None:
            return [self._sample_one(gen) for _ in range(n)]
        return self._sample_one(gen)

    def _sample_one(self, rng: np.random.Generator) -> Arch:
        n_layers = self.n_layers.sample(rng)
        hidden = self.hidden.sample(rng)
        if self.uniform_layers:
            layers = [self._sample_layer(rng)] * n_layers
        else:
            layers = [self._sample_layer(rng) for _ in range(n_layers)]
        return self._arch(hidden, layers)

    def max_arch(self) -> Arch:
        """The largest member in every dimension: the super-net's shape."""
        heads = self.heads.max
        qk = max(d for h, d in self._attention_choices())
        v = qk if self.v_dim is None else self.v_dim.max
        spec = LayerSpec(heads=heads, qk_dim=qk, v_dim=v, mlp=self.mlp.max)
        return self._arch(self.hidden.max, [spec] * self.n_layers.max)

    def min_arch(self) -> Arch:
        """The smallest member (the bottom of a sandwich)."""
        h, d = min(self._attention_choices(), key=lambda p: (p[0] * p[1], p[0]))
        v = d if self.v_dim is None else self.v_dim.min
        spec = LayerSpec(heads=h, qk_dim=d, v_dim=v, mlp=self.mlp.min)
        return self._arch(self.hidden.min, [spec] * self.n_layers.min)

    def supernet_arch(self) -> Arch:
        """Smallest shape holding every member *and* the reference (for shared weights)."""
        m, r = self.max_arch(), self.reference
        n = max(m.n_layers, r.n_layers)

        def layer(i: int) -> LayerSpec:
            a = m.layers[min(i, m.n_layers - 1)]
            b = r.layers[i] if i < r.n_layers else a
            return LayerSpec(max(a.heads, b.heads), max(a.qk_dim, b.qk_dim), max(a.v_dim, b.v_dim), max(a.mlp, b.mlp))

        return self._arch(max(m.hidden, r.hidden), [layer(i) for i in range(n)])

    def check(self, arch: Arch, where: str = "arch") -> None:
        """Raise a one-line error naming the first dimension of ``arch`` outside the space."""
        label = f"space {self.name!r}"
        if arch.family != self.family:
            raise LatbenchError(where, f"family {arch.family!r} does not belong to {label} ({self.family})")
        for key, value in self.extras:
            if getattr(arch, key) != value:
                raise LatbenchError(where, f"{key} {getattr(arch, key)} differs from {label}'s {value}")
        if arch.n_layers not in self.n_layers:
            raise LatbenchError(where, f"{arch.n_layers} layers outside {label} ({self.n_layers.describe()})")
        if arch.hidden not in self.hidden:
            raise LatbenchError(where, f"hidden {arch.hidden} outside {label} ({self.hidden.describe()})")
        if self.uniform_layers and not arch.uniform:
            raise LatbenchError(where, f"{label} requires the same spec in every layer")
        for i, s in enumerate(arch.layers):
            w = f"{where}: layer {i}"
            if s.heads not in self.heads:
                raise LatbenchError(w, f"heads {s.heads} outside {label} ({self.heads.describe()})")
            if s.qk_dim not in self.qk_dim:
                raise LatbenchError(w, f"qk_dim {s.qk_dim} per head outside {label} ({self.qk_dim.describe()})")
            if self.qkv is not None and s.qk_size not in self.qkv:
                raise LatbenchError(w, f"qkv size {s.qk_size} outside {label} ({self.qkv.describe()})")
            if self.v_dim is None and s.v_dim != s.qk_dim:
                raise LatbenchError(w, f"v_dim {s.v_dim} must equal qk_dim {s.qk_dim} in {label}")
            if self.v_dim is not None and s.v_dim not in self.v_dim:
                raise LatbenchError(w, f"v_dim {s.v_dim} per head outside {label} ({self.v_dim.describe()})")
            if s.mlp not in self.mlp:
                raise LatbenchError(w, f"mlp {s.mlp} outside {label} ({self.mlp.describe()})")

    def contains(self, arch: Arch) -> bool:
        try:
            self.check(arch)
        except LatbenchError:
            return False
        return True

    # ---------------------------------------------------- evolution operators
    def mutate(self, arch: Arch, rng: RngLike, prob: float = 0.3) -> Arch:
        """Redraw each gene with probability ``prob`` (HAT/AutoTinyBERT style).

        Genes: the layer count, the width, and per layer (once, for uniform
        spaces) the attention shape and the MLP width. New layers copy the last one.
        """
        self.check(arch)
        gen = as_rng(rng)
        n_layers = self.n_layers.sample(gen) if gen.random() < prob else arch.n_layers
        hidden = self.hidden.sample(gen) if gen.random() < prob else arch.hidden
        old = list(arch.layers[:n_layers]) + [arch.layers[-1]] * max(0, n_layers - arch.n_layers)
        genes = old[:1] if self.uniform_layers else old
        new: list[LayerSpec] = []
        for s in genes:
            if gen.random() < prob:
                fresh = self._sample_layer(gen)
                s = LayerSpec(fresh.heads, fresh.qk_dim, fresh.v_dim, s.mlp)
            if gen.random() < prob:
                s = replace(s, mlp=self.mlp.sample(gen))
            new.append(s)
        layers = new * n_layers if self.uniform_layers else new
        return self._arch(hidden, layers)

    def crossover(self, a: Arch, b: Arch, rng: RngLike) -> Arch:
        """Each gene from one parent or the other with equal odds (HAT style)."""
        self.check(a, "parent a")
        self.check(b, "parent b")
        gen = as_rng(rng)
        n_layers = a.n_layers if gen.random() < 0.5 else b.n_layers
        hidden = a.hidden if gen.random() < 0.5 else b.hidden

        def pick(i: int) -> LayerSpec:
            la = a.layers[min(i, a.n_layers - 1)]
            lb = b.layers[min(i, b.n_layers - 1)]
            attn = la if gen.random() < 0.5 else lb
            mlp = la.mlp if gen.random() < 0.5 else lb.mlp
            return LayerSpec(attn.heads, attn.qk_dim, attn.v_dim, mlp)

        if self.uniform_layers:
            return self._arch(hidden, [pick(0)] * n_layers)
        return self._arch(hidden, [pick(i) for i in range(n_layers)])

    # ----------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "family": self.family}
        for dim in _DIMENSIONS:
            dom = getattr(self, dim)
            if dom is not None:
                out[dim] = dom.to_dict()
        out["uniform_layers"] = self.uniform_layers
        out["extras"] = dict(self.extras)
        out["reference"] = self.reference.to_dict()
        if self.description:
            out["description"] = self.description
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "space") -> SearchSpace:
        if not isinstance(data, Mapping):
            raise LatbenchError(where, f"expected a JSON object, got {type(data).__name__}")
        allowed = {"name", "family", *_DIMENSIONS, "uniform_layers", "extras", "reference", "description"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        family = data.get("family")
        if family not in FAMILIES:
            raise LatbenchError(where, f"unknown or missing family {family!r} (expected one of {', '.join(FAMILIES)})")
        for key in ("n_layers", "hidden", "heads", "qk_dim", "mlp"):
            if key not in data:
                raise LatbenchError(where, f"missing key {key!r}")
        doms = {k: IntDomain.from_dict(data[k], f"{where}.{k}") for k in _DIMENSIONS if data.get(k) is not None}
        extras = data.get("extras", {})
        if not isinstance(extras, Mapping):
            raise LatbenchError(f"{where}.extras", "expected an object")
        uniform = data.get("uniform_layers", False)
        if not isinstance(uniform, bool):
            raise LatbenchError(f"{where}.uniform_layers", f"expected true or false, got {uniform!r}")
        name = str(data.get("name", "custom"))
        reference = Arch.from_dict(data["reference"], f"{where}.reference") if "reference" in data else None
        try:
            return cls(
                name=name,
                family=family,
                reference=reference,
                uniform_layers=uniform,
                extras=tuple(extras.items()),
                description=str(data.get("description", "")),
                **doms,
            )
        except LatbenchError as exc:
            raise LatbenchError(f"{where}: {exc.where}" if exc.where else where, exc.what) from None


# ------------------------------------------------------------------ presets
def _bert() -> SearchSpace:
    base = Arch.uniform_arch("bert", hidden=768, n_layers=12, heads=12, qk_dim=64, mlp=3072)
    return SearchSpace(
        name="bert",
        family="bert",
        n_layers=IntDomain(1, 8),
        hidden=IntDomain(128, 768, 16),
        heads=IntDomain(1, 12),
        qk_dim=IntDomain(1, 64),
        qkv=IntDomain(180, 768, 12),
        mlp=IntDomain(128, 3072, 32),
        uniform_layers=True,
        reference=base,
        description=(
            "AutoTinyBERT's space (searcher.py defaults: layers 1-8, hidden 128-768 step 16, qkv size "
            "180-768 step 12, heads 1-12, FFN 128-3072 step 32), with the per-head width capped at "
            "BERT-base's 64 so one 12x64 super-net holds every member (so 1-2 heads cannot reach qkv 180). "
            "Reference: BERT-base."
        ),
    )


def _vit() -> SearchSpace:
    deit_b = Arch.uniform_arch("vit", hidden=768, n_layers=12, heads=12, qk_dim=64, mlp=3072)
    return SearchSpace(
        name="vit",
        family="vit",
        n_layers=IntDomain(12, 12),
        hidden=IntDomain(64, 768),
        heads=IntDomain(1, 12),
        qk_dim=IntDomain(1, 64),
        v_dim=IntDomain(1, 64),
        mlp=IntDomain(1, 3072),
        uniform_layers=False,
        reference=deit_b,
        description=(
            "DeiT-B as NViT prunes it: 12 blocks, a shared embedding up to 768, and per block heads 1-12, "
            "QK and V width per head 1-64, MLP 1-3072, each block free. Reference: DeiT-B/16 at 224 px."
        ),
    )


def _gpt() -> SearchSpace:
    largest = Arch.uniform_arch("gpt", hidden=768, n_layers=12, heads=12, qk_dim=64, mlp=3072)
    return SearchSpace(
        name="gpt",
        family="gpt",
        n_layers=IntDomain(1, 12),
        hidden=IntDomain(128, 768, 64),
        heads=IntDomain(1, 12),
        qk_dim=IntDomain(16, 64, 16),
        mlp=IntDomain(128, 3072, 128),
        uniform_layers=True,
        reference=largest,
        description=(
            "A whittle-style space over a Pythia-160m-shaped GPT-NeoX (parallel residual, rotary on a "
            "quarter of each head): layers 1-12, width 128-768 step 64, heads 1-12, head size 16-64 "
            "step 16, MLP 128-3072 step 128, same spec in every layer. Reference: the largest member."
        ),
    )


PRESETS = {"bert": _bert, "vit": _vit, "gpt": _gpt}


def get_space(name_or_path: str | os.PathLike[str]) -> SearchSpace:
    """A preset by name (``bert``, ``vit``, ``gpt``) or a user space from a JSON file."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]()
    if key.endswith(".json") or os.path.sep in key or os.path.exists(key):
        from latbench.io import read_json

        return SearchSpace.from_dict(read_json(key), where=key)
    raise LatbenchError("--space", f"unknown space {key!r} (presets: {', '.join(PRESETS)}; or a JSON file)")
