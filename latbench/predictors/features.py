"""Features of an architecture + workload + deployment, vectorised over many architectures.

A predictor sees a matrix of features, one row per (architecture, workload). Two
kinds of feature sets exist, recorded in a :class:`FeatureSpec` saved with the
predictor:

- ``arch``: computed from an :class:`~latbench.space.arch.Arch`, a batch and a
  sequence length: model-wide and per-layer dimensions and their aggregates
  (sum, mean, max, min over layers), the analytic FLOPs, bytes and parameters of
  :mod:`latbench.models.cost` (blocks and whole model), roofline-ish times and the
  number of blocks. :class:`ArchArrays` holds many architectures as padded numpy
  arrays so that featurising 10^6 of them is a few array operations, not a Python
  loop per architecture.
- ``table``: the given numeric columns of an imported data set (HAT's 10 columns).
- ``lut``: the sum of block latencies from a look-up table and the block count
  (computed by the ``lut-sum`` predictor, which holds the table).

The same arithmetic runs on numpy arrays and on torch tensors
(:func:`torch_arch_features`), so a gradient searcher can differentiate latency
through the features with respect to continuous architecture dimensions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.models.cost import DTYPE_BYTES
from latbench.space.arch import FAMILIES, FAMILY_EXTRAS, Arch

FEATURE_KINDS: tuple[str, ...] = ("arch", "table", "lut")

#: Features of the ``lut`` kind: the sum of an architecture's block latencies read from a
#: look-up table, and its number of blocks (what :class:`latbench.lut.LutSumModel` fits).
LUT_FEATURES: tuple[str, ...] = ("lut_sum_ms", "n_blocks", "rest_gflop")
#: The lut feature set of predictors saved before the non-block (embeddings + head) term.
LEGACY_LUT_FEATURES: tuple[str, ...] = ("lut_sum_ms", "n_blocks")

#: Per-layer quantities whose aggregates over layers are features.
LAYER_QUANTITIES: tuple[str, ...] = ("heads", "qk_size", "v_size", "mlp")
AGGREGATES: tuple[str, ...] = ("sum", "mean", "max", "min")

#: Model-wide features of the ``arch`` kind, in column order (per-layer columns follow).
ARCH_BASE_FEATURES: tuple[str, ...] = (
    "batch",
    "seq_len",
    "tokens",
    "n_blocks",
    "hidden",
    *(f"{q}_{a}" for q in LAYER_QUANTITIES for a in AGGREGATES),
    "qk_dim_mean",
    "v_dim_mean",
    "flops",
    "block_flops",
    "attn_flops",
    "bytes",
    "block_bytes",
    "params",
    "block_params",
    "compute_ms",
    "memory_ms",
    "roofline_ms",
    "intensity",
)

#: Nominal attainable peaks (FLOP/s, bytes/s) for the roofline features when the
#: device's measured peaks are unknown. A tree or MLP learns any scale; what the
#: roofline terms add is which bound applies, so the ratio matters more than the level.
NOMINAL_PEAKS: dict[str, tuple[float, float]] = {
    "cpu": (1.0e11, 2.0e10),
    "cuda": (5.0e13, 2.0e12),
}


def per_layer_columns(max_layers: int) -> tuple[str, ...]:
    """Names of the per-layer feature columns for ``max_layers`` layers."""
    return tuple(f"l{i}_{q}" for i in range(max_layers) for q in LAYER_QUANTITIES)


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a predictor was trained on; saved with it, so predictions use the same.

    Attributes:
        kind: ``arch`` (computed from architectures), ``table`` (given columns) or ``lut``.
        columns: Feature names, in the order of the feature matrix's columns.
        family: Model family of the architectures (``arch`` kind).
        precision: Precision whose bytes per value the byte counts use (``arch`` kind).
        max_layers: Number of per-layer column groups (0: aggregates only).
        peak_flops: FLOP/s for the roofline features.
        peak_bytes_per_s: Bytes/s for the roofline features.
        extras: The family settings (vocabulary, image size ...) the features were computed with.
    """

    kind: str
    columns: tuple[str, ...]
    family: str | None = None
    precision: str = "fp32"
    max_layers: int = 0
    peak_flops: float = NOMINAL_PEAKS["cpu"][0]
    peak_bytes_per_s: float = NOMINAL_PEAKS["cpu"][1]
    extras: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise LatbenchError("features.kind", f"expected one of {', '.join(FEATURE_KINDS)}, got {self.kind!r}")
        cols = tuple(self.columns)
        if not cols or not all(isinstance(c, str) and c for c in cols):
            raise LatbenchError("features.columns", "expected a non-empty list of column names")
        if len(set(cols)) != len(cols):
            raise LatbenchError("features.columns", "duplicate column names")
        object.__setattr__(self, "columns", cols)
        if self.kind == "lut":
            if self.family not in FAMILIES:
                raise LatbenchError("features.family", f"expected one of {', '.join(FAMILIES)}, got {self.family!r}")
            if cols not in (LUT_FEATURES, LEGACY_LUT_FEATURES):
                raise LatbenchError("features.columns", f"a lut feature set has columns {', '.join(LUT_FEATURES)}")
        if self.kind == "arch":
            if self.family not in FAMILIES:
                raise LatbenchError("features.family", f"expected one of {', '.join(FAMILIES)}, got {self.family!r}")
            if self.precision not in DTYPE_BYTES:
                raise LatbenchError(
                    "features.precision", f"expected one of {', '.join(DTYPE_BYTES)}, got {self.precision!r}"
                )
            if isinstance(self.max_layers, bool) or not isinstance(self.max_layers, int) or self.max_layers < 0:
                raise LatbenchError("features.max_layers", f"expected an integer >= 0, got {self.max_layers!r}")
            expected = ARCH_BASE_FEATURES + per_layer_columns(self.max_layers)
            if cols != expected:
                raise LatbenchError("features.columns", "do not match the arch feature set of this latbench")
            for name in ("peak_flops", "peak_bytes_per_s"):
                value = getattr(self, name)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                    raise LatbenchError(f"features.{name}", f"expected a positive number, got {value!r}")
                object.__setattr__(self, name, float(value))
            extras = dict(self.extras)
            unknown = sorted(set(extras) - set(FAMILY_EXTRAS[self.family]))  # type: ignore[index]
            if unknown:
                raise LatbenchError("features.extras", f"{unknown[0]!r} is not a setting of family {self.family!r}")
            object.__setattr__(self, "extras", {**FAMILY_EXTRAS[self.family], **extras})  # type: ignore[index]

    @property
    def n_features(self) -> int:
        return len(self.columns)

    @classmethod
    def for_arch(
        cls,
        family: str,
        precision: str = "fp32",
        max_layers: int = 0,
        device: str = "cpu",
        peaks: tuple[float, float] | None = None,
        extras: Mapping[str, int] | None = None,
    ) -> FeatureSpec:
        """The ``arch`` feature set for a family, precision and per-layer depth.

        Args:
            family: ``bert``, ``vit`` or ``gpt``.
            precision: Bytes per value for the byte counts (``fp32``, ``fp16`` ...).
            max_layers: Per-layer columns for this many layers (0 for aggregates only;
                worth it when layers differ within an architecture).
            device: ``cpu`` or ``cuda...``: picks nominal peaks when ``peaks`` is not given.
            peaks: Measured attainable (FLOP/s, bytes/s).
            extras: Family settings (defaults: :data:`~latbench.space.arch.FAMILY_EXTRAS`).
        """
        nominal = NOMINAL_PEAKS["cuda" if str(device).startswith("cuda") else "cpu"]
        pf, pb = peaks if peaks is not None else nominal
        return cls(
            kind="arch",
            columns=ARCH_BASE_FEATURES + per_layer_columns(max_layers),
            family=family,
            precision=precision,
            max_layers=max_layers,
            peak_flops=pf,
            peak_bytes_per_s=pb,
            extras=dict(extras or {}),
        )

    @classmethod
    def for_lut(cls, family: str) -> FeatureSpec:
        """The ``lut`` feature set (block-latency sum from a table, block count) for a family."""
        return cls(kind="lut", columns=LUT_FEATURES, family=family)

    @classmethod
    def for_table(cls, columns: Sequence[str]) -> FeatureSpec:
        """The ``table`` feature set: these numeric columns, as given."""
        return cls(kind="table", columns=tuple(columns))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "columns": list(self.columns)}
        if self.kind == "lut":
            out["family"] = self.family
        if self.kind == "arch":
            out.update(
                family=self.family,
                precision=self.precision,
                max_layers=self.max_layers,
                peak_flops=self.peak_flops,
                peak_bytes_per_s=self.peak_bytes_per_s,
                extras=dict(self.extras),
            )
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str = "features") -> FeatureSpec:
        if not isinstance(data, Mapping):
            raise LatbenchError(where, f"expected an object, got {type(data).__name__}")
        allowed = {"kind", "columns", "family", "precision", "max_layers", "peak_flops", "peak_bytes_per_s", "extras"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        if "kind" not in data or "columns" not in data:
            raise LatbenchError(where, "missing key 'kind' or 'columns'")
        if not isinstance(data["columns"], list):
            raise LatbenchError(where, "columns: expected a list of names")
        if not isinstance(data.get("extras", {}), Mapping):
            raise LatbenchError(where, "extras: expected an object")
        kwargs = dict(data)
        kwargs["columns"] = tuple(data["columns"])
        try:
            return cls(**kwargs)
        except LatbenchError as exc:
            raise LatbenchError(where, f"{exc.where}: {exc.what}") from None


# ------------------------------------------------------------------ arrays
@dataclass(frozen=True)
class ArchArrays:
    """Many architectures of one family as arrays: the fast input of the feature computation.

    Per-layer dimensions come in one of two layouts:

    - ``(N, L)``: one column per layer, zero-padded beyond an architecture's ``n_layers``;
    - ``(N,)`` (*compact*): every architecture repeats one layer spec ``n_layers`` times
      (uniform spaces such as ``bert`` and ``gpt``). Features of this layout need no
      reduction over layers, which is what makes 10^6 architectures a second cheap.

    Attributes:
        family: The architectures' family.
        hidden: ``(N,)`` model widths.
        n_layers: ``(N,)`` block counts.
        heads, qk_dim, v_dim, mlp: Per-layer dimensions, ``(N, L)`` or ``(N,)``.
        extras: The family settings shared by all (vocabulary, image size ...).
    """

    family: str
    hidden: np.ndarray
    n_layers: np.ndarray
    heads: np.ndarray
    qk_dim: np.ndarray
    v_dim: np.ndarray
    mlp: np.ndarray
    extras: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise LatbenchError("family", f"unknown family {self.family!r}")
        n = np.shape(self.hidden)[0] if np.ndim(self.hidden) == 1 else -1
        if n < 0 or np.shape(self.n_layers) != (n,):
            raise LatbenchError("arch arrays", "hidden and n_layers must be 1-d arrays of equal length")
        shape = np.shape(self.heads)
        if len(shape) not in (1, 2) or shape[0] != n:
            raise LatbenchError("arch arrays", f"per-layer arrays must have shape (N, L) or (N,), N={n}")
        for name in ("qk_dim", "v_dim", "mlp"):
            if np.shape(getattr(self, name)) != shape:
                raise LatbenchError(
                    "arch arrays", f"{name} has shape {np.shape(getattr(self, name))}, expected {shape}"
                )
        if n and not (np.all(self.n_layers >= 1) and (self.compact or np.all(self.n_layers <= shape[1]))):
            raise LatbenchError("arch arrays", "n_layers must be >= 1 and fit the per-layer arrays")
        object.__setattr__(self, "extras", {**FAMILY_EXTRAS[self.family], **dict(self.extras)})

    def __len__(self) -> int:
        return int(np.shape(self.hidden)[0])

    @property
    def compact(self) -> bool:
        """Whether the per-layer arrays are ``(N,)``: one spec repeated in every layer."""
        return np.ndim(self.heads) == 1

    @property
    def max_layers(self) -> int:
        """The deepest architecture's block count (compact) or the per-layer arrays' width."""
        if self.compact:
            return int(self.n_layers.max()) if len(self) else 0
        return int(np.shape(self.heads)[1])

    @property
    def uniform(self) -> bool:
        """Whether every architecture has the same spec in all its layers."""
        if self.compact:
            return True
        mask = np.arange(self.max_layers)[None, :] < self.n_layers[:, None]
        for name in ("heads", "qk_dim", "v_dim", "mlp"):
            a = getattr(self, name)
            if np.any((a != a[:, :1]) & mask):
                return False
        return True

    @classmethod
    def from_archs(cls, archs: Sequence[Arch], compact: bool | None = None) -> ArchArrays:
        """Pack architectures (one family, same settings) into arrays.

        Args:
            archs: The architectures.
            compact: Use the ``(N,)`` layout (needs uniform architectures); default: when all are uniform.
        """
        archs = list(archs)
        if not archs:
            raise LatbenchError("archs", "no architectures")
        first = archs[0]
        for a in archs:
            if a.family != first.family or a.extras != first.extras:
                raise LatbenchError(
                    "archs", f"mixed families or settings ({first.describe()} vs {a.describe()}); featurise each apart"
                )
        all_uniform = all(a.uniform for a in archs)
        if compact and not all_uniform:
            raise LatbenchError("archs", "the compact layout needs architectures whose layers are all the same")
        hidden = np.array([a.hidden for a in archs], dtype=np.float64)
        n_layers = np.array([a.n_layers for a in archs], dtype=np.float64)
        if compact or (compact is None and all_uniform):
            dims = np.array(
                [(a.layers[0].heads, a.layers[0].qk_dim, a.layers[0].v_dim, a.layers[0].mlp) for a in archs],
                dtype=np.float64,
            ).T
        else:
            dims = np.zeros((4, len(archs), max(a.n_layers for a in archs)), dtype=np.float64)
            for i, a in enumerate(archs):
                for j, s in enumerate(a.layers):
                    dims[0, i, j], dims[1, i, j], dims[2, i, j], dims[3, i, j] = s.heads, s.qk_dim, s.v_dim, s.mlp
        return cls(
            family=first.family,
            hidden=hidden,
            n_layers=n_layers,
            heads=dims[0],
            qk_dim=dims[1],
            v_dim=dims[2],
            mlp=dims[3],
            extras=first.extras,
        )

    @classmethod
    def uniform_from_dims(
        cls,
        family: str,
        hidden: Any,
        n_layers: Any,
        heads: Any,
        qk_dim: Any,
        mlp: Any,
        v_dim: Any | None = None,
        extras: Mapping[str, int] | None = None,
    ) -> ArchArrays:
        """Uniform-layer architectures straight from 1-d arrays of their dimensions (compact layout).

        This is the fast path for a search that keeps its population as arrays: no Arch objects.
        """

        def arr(x: Any) -> np.ndarray:
            return np.asarray(x, dtype=np.float64)

        return cls(
            family=family,
            hidden=arr(hidden),
            n_layers=arr(n_layers),
            heads=arr(heads),
            qk_dim=arr(qk_dim),
            v_dim=arr(qk_dim if v_dim is None else v_dim),
            mlp=arr(mlp),
            extras=dict(extras or {}),
        )

    def take(self, index: Any) -> ArchArrays:
        """The architectures at ``index`` (an integer array or a slice)."""
        return ArchArrays(
            family=self.family,
            hidden=self.hidden[index],
            n_layers=self.n_layers[index],
            heads=self.heads[index],
            qk_dim=self.qk_dim[index],
            v_dim=self.v_dim[index],
            mlp=self.mlp[index],
            extras=self.extras,
        )


# ---------------------------------------------------------- the arithmetic
def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _amax(x: Any) -> Any:
    return x.amax(-1) if _is_torch(x) else x.max(-1)


def _amin(x: Any) -> Any:
    return x.amin(-1) if _is_torch(x) else x.min(-1)


def _maximum(a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch

        return torch.maximum(a, b)
    return np.maximum(a, b)


def _where(cond: Any, a: Any, b: Any) -> Any:
    if _is_torch(a):
        import torch

        return torch.where(cond, a, torch.as_tensor(b, dtype=a.dtype))
    return np.where(cond, a, b)


def _stack(cols: list[Any]) -> Any:
    if _is_torch(cols[0]):
        import torch

        return torch.stack([c if c.dim() == 1 else c.expand(cols[0].shape) for c in cols], dim=-1)
    n = max(np.shape(c)[0] for c in cols if np.ndim(c))
    out = np.empty((n, len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        out[:, j] = c
    return out


def _family_costs(
    family: str, extras: Mapping[str, int], hidden: Any, b: Any, t: Any, el: float
) -> tuple[Any, Any, Any, Any, Any, Any]:
    """Embedding and head (params, flops, bytes) as in :func:`latbench.models.cost.model_cost`."""
    h = hidden
    bt = b * t
    if family == "bert":
        v, pos, types = extras["vocab_size"], extras["max_seq_len"], extras["type_vocab_size"]
        e_params = (v + pos + types) * h + 2 * h
        e_flops = 0.0 * h
        e_bytes = el * (3 * bt * h + 2 * h + 2 * bt * h) + 16 * bt
        h_params = h * h + h + 2 * h + v
        h_flops = 2 * bt * h * h + 2 * bt * h * v
        h_bytes = el * (h_params + v * h + bt * h + bt * v)
    elif family == "vit":
        p, c, img, k = extras["patch_size"], extras["in_channels"], extras["image_size"], extras["num_classes"]
        n_patch = (img // p) ** 2
        e_params = c * p * p * h + h + h + t * h
        e_flops = 2 * b * n_patch * c * p * p * h
        e_bytes = el * (e_params + b * c * img * img + bt * h)
        h_params = 2 * h + h * k + k
        h_flops = 2 * b * h * k
        h_bytes = el * (h_params + bt * h + b * k)
    else:
        v = extras["vocab_size"]
        e_params = v * h
        e_flops = 0.0 * h
        e_bytes = el * 2 * bt * h + 8 * bt
        h_params = 2 * h + h * v
        h_flops = 2 * bt * h * v
        h_bytes = el * (h_params + bt * h + bt * v)
    return e_params, e_flops, e_bytes, h_params, h_flops, h_bytes


def _arch_feature_columns(
    spec: FeatureSpec,
    hidden: Any,
    n_layers: Any,
    heads: Any,
    qk_dim: Any,
    v_dim: Any,
    mlp: Any,
    mask: Any,
    batch: Any,
    tokens: Any,
) -> list[Any]:
    """Every ``arch`` feature as a column (numpy arrays or torch tensors); see :data:`ARCH_BASE_FEATURES`.

    ``hidden``, ``n_layers``, ``batch`` and ``tokens`` are ``(N,)``. The per-layer
    dimensions are ``(N, L)`` with ``mask`` saying which layers exist, or, for
    uniform architectures (``mask`` None), ``(N,)``: one spec repeated ``n_layers``
    times, which makes the aggregates a multiplication instead of a reduction.
    Formulas follow :mod:`latbench.models.cost` (MEASUREMENT.md): matmul FLOPs
    ``2·B·S·(H·(2·A·d_qk + A·d_v) + A·d_v·H + 2·H·F) + 2·B·A·S²·(d_qk + d_v)``,
    bytes = every weight once plus the block's input and output activations.
    """
    el = float(DTYPE_BYTES[spec.precision])
    compact = mask is None
    if compact:
        h, b, t, maskf = hidden, batch, tokens, 1.0
    else:
        h, b, t, maskf = hidden[:, None], batch[:, None], tokens[:, None], mask * 1.0
    qk = heads * qk_dim
    vs = heads * v_dim
    bt = b * t
    attn = (2 * t) * bt * (qk + vs)
    blk_flops = (2 * bt) * (h * (2 * qk + 2 * vs + 2 * mlp)) + attn
    blk_params = (2 * h + 2) * qk + (2 * h + 1) * vs + (2 * h + 1) * mlp + 6 * h
    if not compact:
        blk_params = blk_params * maskf
    blk_bytes = el * (blk_params + 2 * bt * h * maskf)
    pf, pb = spec.peak_flops, spec.peak_bytes_per_s
    blk_roof = 1e3 * _maximum(blk_flops / pf, blk_bytes / pb)

    def total(q: Any) -> Any:
        return q * n_layers if compact else (q * maskf).sum(-1)

    e_params, e_flops, e_bytes, h_params, h_flops, h_bytes = _family_costs(
        spec.family,  # type: ignore[arg-type]
        spec.extras,
        hidden,
        batch,
        tokens,
        el,
    )
    block_flops = total(blk_flops)
    block_bytes = total(blk_bytes)
    block_params = total(blk_params)
    flops = block_flops + e_flops + h_flops
    nbytes = block_bytes + e_bytes + h_bytes
    params = block_params + e_params + h_params
    roofline = total(blk_roof) + 1e3 * _maximum(e_flops / pf, e_bytes / pb) + 1e3 * _maximum(h_flops / pf, h_bytes / pb)

    # seq_len is the tokens a block sees (for vit: patches + class token); "tokens" is all tokens of the batch.
    cols: list[Any] = [batch, tokens, batch * tokens, n_layers, hidden]
    sums = []
    for q in (heads, qk, vs, mlp):
        if compact:
            s = q * n_layers
            cols += [s, q, q, q]
        else:
            s = q.sum(-1)
            cols += [s, s / n_layers, _amax(q), _amin(_where(mask, q, float("inf")))]
        sums.append(s)
    cols += [
        sums[1] / sums[0],
        sums[2] / sums[0],
        flops,
        block_flops,
        total(attn),
        nbytes,
        block_bytes,
        params,
        block_params,
        (1e3 / pf) * flops,
        (1e3 / pb) * nbytes,
        roofline,
        flops / nbytes,
    ]
    width = 0 if compact else heads.shape[-1]
    for i in range(spec.max_layers):
        if compact:
            on = (n_layers > i) * 1.0
            cols += [heads * on, qk * on, vs * on, mlp * on]
        elif i < width:
            cols += [heads[:, i], qk[:, i], vs[:, i], mlp[:, i]]
        else:
            zero = hidden * 0.0
            cols += [zero, zero, zero, zero]
    return cols


def _workload_arrays(n: int, batch: Any, seq_len: Any, family: str, extras: Mapping[str, int]) -> tuple[Any, Any]:
    b = np.broadcast_to(np.asarray(batch, dtype=np.float64), (n,))
    if family == "vit":
        tokens = (extras["image_size"] // extras["patch_size"]) ** 2 + 1
        return b, np.full(n, float(tokens))
    if seq_len is None:
        raise LatbenchError("--seq", f"family {family!r} needs a sequence length")
    s = np.broadcast_to(np.asarray(seq_len, dtype=np.float64), (n,))
    if not (np.isfinite(s).all() and (s >= 1).all()):
        raise LatbenchError("--seq", "sequence lengths must be >= 1")
    if (s > extras["max_seq_len"]).any():
        raise LatbenchError("--seq", f"a sequence length exceeds the model's max_seq_len {extras['max_seq_len']}")
    return b, s


def arch_features(arrays: ArchArrays, batch: Any, seq_len: Any, spec: FeatureSpec) -> np.ndarray:
    """The ``arch`` feature matrix ``(N, spec.n_features)`` of many architectures, vectorised.

    Args:
        arrays: The architectures (:meth:`ArchArrays.from_archs` or :meth:`ArchArrays.uniform_from_dims`).
        batch: One batch size, or one per architecture.
        seq_len: One sequence length, or one per architecture (ignored for ``vit``: its tokens
            follow from the image and patch size).
        spec: An ``arch`` feature spec of the same family and settings.
    """
    if spec.kind != "arch":
        raise LatbenchError("features", f"a {spec.kind!r} feature set is not computed from architectures")
    if arrays.family != spec.family:
        raise LatbenchError("features", f"the predictor is for {spec.family} models, got {arrays.family}")
    if arrays.extras != spec.extras:
        diff = next(k for k in spec.extras if arrays.extras.get(k) != spec.extras[k])
        raise LatbenchError(
            "features", f"the architectures' {diff} is {arrays.extras.get(diff)}, the predictor's {spec.extras[diff]}"
        )
    n = len(arrays)
    b, tokens = _workload_arrays(n, batch, seq_len, arrays.family, arrays.extras)
    if not (np.isfinite(b).all() and (b >= 1).all()):
        raise LatbenchError("--batch", "batch sizes must be >= 1")
    mask = None if arrays.compact else np.arange(arrays.max_layers)[None, :] < arrays.n_layers[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = _arch_feature_columns(
            spec, arrays.hidden, arrays.n_layers, arrays.heads, arrays.qk_dim, arrays.v_dim, arrays.mlp, mask, b, tokens
        )
        return _stack(cols)


def torch_arch_features(
    spec: FeatureSpec,
    hidden: Any,
    n_layers: Any,
    heads: Any,
    qk_dim: Any,
    v_dim: Any,
    mlp: Any,
    batch: float,
    seq_len: float | None = None,
) -> Any:
    """The ``arch`` features as a differentiable torch function of (continuous) dimensions.

    For a gradient searcher: relax the dimensions to float tensors (``requires_grad``),
    compute the features here and feed them to
    :meth:`latbench.predictors.mlp.MLPPredictor.torch_forward`.

    Args:
        spec: An ``arch`` feature spec.
        hidden: ``(N,)`` widths.
        n_layers: ``(N,)`` block counts (a layer exists where its index is below it).
        heads, qk_dim, v_dim, mlp: ``(N, L)`` per-layer dimensions, or ``(N,)`` for one spec
            repeated in every layer (the compact layout of :class:`ArchArrays`).
        batch, seq_len: The workload (seq_len ignored for ``vit``).

    Returns:
        A ``(N, spec.n_features)`` tensor.
    """
    import torch

    hidden = torch.as_tensor(hidden, dtype=torch.float64) if not torch.is_tensor(hidden) else hidden
    dtype = hidden.dtype
    n = hidden.shape[0]
    n_layers = torch.as_tensor(n_layers, dtype=dtype)
    dims = [torch.as_tensor(x, dtype=dtype) for x in (heads, qk_dim, v_dim, mlp)]
    mask = None
    if dims[0].dim() == 2:
        mask = torch.arange(dims[0].shape[-1])[None, :] < n_layers[:, None]
        dims = [d * mask.to(dtype) for d in dims]
    heads, qk_dim, v_dim, mlp = dims
    b_np, t_np = _workload_arrays(n, batch, seq_len, spec.family, spec.extras)  # type: ignore[arg-type]
    b = torch.as_tensor(np.ascontiguousarray(b_np), dtype=dtype)
    t = torch.as_tensor(np.ascontiguousarray(t_np), dtype=dtype)
    cols = _arch_feature_columns(spec, hidden, n_layers, heads, qk_dim, v_dim, mlp, mask, b, t)
    return _stack(cols)


# ---------------------------------------------------------------- frames
def parse_archs(texts: Iterable[str], where: str = "arch") -> dict[str, Arch]:
    """Parse distinct architecture JSON strings once each: ``text -> Arch``."""
    out: dict[str, Arch] = {}
    for text in texts:
        if text not in out:
            try:
                out[text] = Arch.from_dict(json.loads(text), where)
            except json.JSONDecodeError as exc:
                raise LatbenchError(where, f"malformed architecture JSON ({exc.msg})") from None
    return out


def frame_arch_features(frame: Any, spec: FeatureSpec) -> np.ndarray:
    """``arch`` features of a DataFrame's rows (columns ``arch``, ``batch``, ``seq_len``).

    Each distinct architecture is parsed and packed once; rows index into them.
    """
    import pandas as pd

    for col in ("arch", "batch"):
        if col not in frame.columns:
            raise LatbenchError("data", f"missing column {col!r} (needed for architecture features)")
    texts = frame["arch"].astype(str).to_numpy()
    uniq, inverse = np.unique(texts, return_inverse=True)
    archs = parse_archs(uniq.tolist())
    arrays = ArchArrays.from_archs([archs[u] for u in uniq]).take(inverse)
    seq = None
    if spec.family != "vit":
        if "seq_len" not in frame.columns:
            raise LatbenchError("data", "missing column 'seq_len'")
        seq_series = pd.to_numeric(frame["seq_len"], errors="coerce")
        if seq_series.isna().any():
            raise LatbenchError("data", f"column 'seq_len' has missing values for {spec.family} models")
        seq = seq_series.to_numpy(dtype=np.float64)
    batch = pd.to_numeric(frame["batch"], errors="coerce").to_numpy(dtype=np.float64)
    return arch_features(arrays, batch, seq, spec)


def frame_table_features(frame: Any, spec: FeatureSpec) -> np.ndarray:
    """``table`` features: the spec's columns of a DataFrame, as float64, checked finite."""
    import pandas as pd

    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise LatbenchError("data", f"missing feature column {missing[0]!r} (the predictor uses {len(spec.columns)})")
    x = frame[list(spec.columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        row, col = np.argwhere(~np.isfinite(x))[0]
        raise LatbenchError("data", f"row {row}: feature {spec.columns[col]!r} is not a finite number")
    return x


def frame_features(frame: Any, spec: FeatureSpec) -> np.ndarray:
    """The feature matrix of a DataFrame's rows for an ``arch`` or ``table`` spec."""
    if spec.kind == "table":
        return frame_table_features(frame, spec)
    if spec.kind == "lut":
        raise LatbenchError("features", "lut features come from a look-up table: use the lut-sum predictor's featurize")
    return frame_arch_features(frame, spec)
