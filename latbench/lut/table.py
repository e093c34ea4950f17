"""A latency look-up table: named grid axes, one latency per grid point, and where it is valid.

A :class:`LookupTable` holds the latency of single transformer blocks measured on
a regular grid of block dimensions (ViT: ``emb, heads, qk_dim, v_dim, mlp``;
BERT/GPT: ``hidden, heads, qk_dim, mlp``). Values are in milliseconds; a grid
point that was not measured is NaN. The metadata says where the numbers hold
(device, deployment, workload, environment, statistic); a table asked about
another device or deployment refuses unless forced (:meth:`LookupTable.check_compatible`).

Between grid points the table interpolates multilinearly, exactly as
``scipy.interpolate.RegularGridInterpolator(method="linear")`` does; outside the
grid it refuses, naming the axis and its bounds, unless asked to extrapolate
(linearly from the edge cell, as ``RegularGridInterpolator(bounds_error=False,
fill_value=None)``), in which case every answer says whether it was extrapolated.

The file format (``format: latbench-lut``) stores the axes, the values in C
order (``null`` for a missing point), the optional per-point ``unstable`` flags
and the metadata, under a schema version; it is written atomically and
validated on read.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.space.arch import FAMILIES, Arch

#: Version of the ``latbench-lut`` JSON layout this module writes and reads.
SCHEMA_VERSION = 1
FORMAT_NAME = "latbench-lut"

#: Block axes of each family, in the order a table built for it uses.
BLOCK_AXES: dict[str, tuple[str, ...]] = {
    "vit": ("emb", "heads", "qk_dim", "v_dim", "mlp"),
    "bert": ("hidden", "heads", "qk_dim", "mlp"),
    "gpt": ("hidden", "heads", "qk_dim", "mlp"),
}
UNITS: tuple[str, ...] = ("ms", "unknown")
STATISTICS: tuple[str, ...] = ("median", "p10", "min", "mean", "unknown")
#: ``grid_conventions`` values: how the grid departs from plain measurements (see latbench.lut.formats).
CONVENTIONS: tuple[str, ...] = ("none", "nvit")


def _fmt(x: float) -> str:
    """A grid value as a person writes it: ``768``, not ``768.0``."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _point_str(names: Sequence[str], coords: Sequence[float]) -> str:
    return ", ".join(f"{n}={_fmt(c)}" for n, c in zip(names, coords))


# ------------------------------------------------------------------- pieces
@dataclass(frozen=True)
class Axis:
    """One grid axis: a name and its strictly increasing values."""

    name: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise LatbenchError("axis", f"axis name must be an identifier, got {self.name!r}")
        vals = tuple(self.values) if isinstance(self.values, Iterable) else self.values
        if not isinstance(vals, tuple) or not vals:
            raise LatbenchError(f"axis {self.name}", "needs at least one value")
        clean: list[float] = []
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise LatbenchError(f"axis {self.name}", f"values must be finite numbers, got {v!r}")
            clean.append(int(v) if float(v).is_integer() else float(v))
        for a, b in itertools.pairwise(clean):
            if not b > a:
                raise LatbenchError(
                    f"axis {self.name}", f"values must be strictly increasing, got {_fmt(a)} then {_fmt(b)}"
                )
        object.__setattr__(self, "values", tuple(clean))

    @property
    def lo(self) -> float:
        return self.values[0]

    @property
    def hi(self) -> float:
        return self.values[-1]

    def __len__(self) -> int:
        return len(self.values)

    def describe(self) -> str:
        return f"{self.name}: {', '.join(_fmt(v) for v in self.values)} ({len(self.values)})"


@dataclass(frozen=True)
class TableMeta:
    """Where a table's numbers hold, and how they were made.

    Attributes:
        family: Model family whose blocks were measured (``vit``, ``bert``, ``gpt``), or None.
        unit: ``ms``, or ``unknown`` for an imported table whose authors did not say.
        unit_note: What is known about an ``unknown`` unit (e.g. NViT's paper).
        device: The device measured on (e.g. ``NVIDIA H100 80GB HBM3``), or None when unknown.
        deploy: The deployment: backend, mode, precision, threads ...
        workload: Batch and sequence length (text) or image size (vit).
        env_id: Id of the environment fingerprint the measurements were taken in.
        env: The fingerprint itself, when stored with the table.
        latbench_version: Version of latbench that made the table.
        statistic: Which statistic of each point's samples the values are (median, p10, min, mean).
        source: How the table was made: the command, or what it was imported from.
        grid_conventions: ``none``, or ``nvit`` when NViT's zero EMB row and MLP 1 → 0 are applied.
    """

    family: str | None = None
    unit: str = "ms"
    unit_note: str | None = None
    device: str | None = None
    deploy: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, Any] = field(default_factory=dict)
    env_id: str | None = None
    env: dict[str, Any] | None = None
    latbench_version: str | None = None
    statistic: str = "median"
    source: str = ""
    grid_conventions: str = "none"

    def __post_init__(self) -> None:
        if self.family is not None and self.family not in FAMILIES:
            raise LatbenchError(
                "meta.family", f"unknown family {self.family!r} (expected one of {', '.join(FAMILIES)})"
            )
        if self.unit not in UNITS:
            raise LatbenchError("meta.unit", f"expected one of {', '.join(UNITS)}, got {self.unit!r}")
        if self.statistic not in STATISTICS:
            raise LatbenchError("meta.statistic", f"expected one of {', '.join(STATISTICS)}, got {self.statistic!r}")
        if self.grid_conventions not in CONVENTIONS:
            raise LatbenchError("meta.grid_conventions", f"expected one of {', '.join(CONVENTIONS)}")
        for name in ("deploy", "workload"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise LatbenchError(f"meta.{name}", f"expected an object, got {type(value).__name__}")
            for k, v in value.items():
                if not isinstance(k, str) or not (v is None or isinstance(v, (str, int, float, bool))):
                    raise LatbenchError(f"meta.{name}.{k}", f"expected a string, number or boolean, got {v!r}")
            object.__setattr__(self, name, dict(value))
        for name in ("unit_note", "device", "env_id", "latbench_version"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise LatbenchError(f"meta.{name}", f"expected a string, got {value!r}")
        if not isinstance(self.source, str):
            raise LatbenchError("meta.source", f"expected a string, got {self.source!r}")
        if self.env is not None and not isinstance(self.env, Mapping):
            raise LatbenchError("meta.env", "expected an environment fingerprint object")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "meta") -> TableMeta:
        """Build from :meth:`to_dict`'s output; errors name ``where`` (the file) and the field."""
        if not isinstance(data, Mapping):
            raise LatbenchError(where, f"meta: expected an object, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LatbenchError(where, f"meta: unknown key {unknown[0]!r}")
        try:
            return cls(**dict(data))
        except LatbenchError as exc:
            raise LatbenchError(where, f"{exc.where}: {exc.what}") from None
        except TypeError as exc:
            raise LatbenchError(where, f"meta: {exc}") from None


@dataclass(frozen=True)
class Interpolation:
    """Values at one or more query points, each flagged when it lies outside the grid.

    Attributes:
        values: One value per query point, in the table's unit.
        extrapolated: Per point, whether it lay outside the grid (extrapolated linearly).
        unit: The table's unit (``ms`` or ``unknown``).
    """

    values: np.ndarray
    extrapolated: np.ndarray
    unit: str = "ms"

    def __len__(self) -> int:
        return len(self.values)

    @property
    def value(self) -> float:
        """The single value of a one-point query."""
        if len(self.values) != 1:
            raise LatbenchError("interpolate", f"{len(self.values)} points were queried; use .values")
        return float(self.values[0])

    @property
    def any_extrapolated(self) -> bool:
        return bool(self.extrapolated.any())

    def __float__(self) -> float:
        return self.value


@dataclass(frozen=True)
class ArchLatency:
    """Latency of an architecture from a table: one value per block and their sum."""

    blocks: tuple[float, ...]
    extrapolated: tuple[bool, ...]
    unit: str = "ms"

    @property
    def total(self) -> float:
        return float(sum(self.blocks))

    @property
    def any_extrapolated(self) -> bool:
        return any(self.extrapolated)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)


@dataclass(frozen=True)
class Coverage:
    """Which grid points are measured, stable, unstable or missing."""

    total: int
    measured: int
    stable: int
    unstable: int
    missing: int
    missing_points: tuple[dict[str, float], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "measured": self.measured,
            "stable": self.stable,
            "unstable": self.unstable,
            "missing": self.missing,
            "missing_points": [dict(p) for p in self.missing_points],
        }


# -------------------------------------------------------------------- table
@dataclass(frozen=True, eq=False)
class LookupTable:
    """Block latencies on a regular grid, with the metadata that says where they hold.

    Attributes:
        axes: The grid axes, in the order of ``values``' dimensions.
        values: Latencies (``meta.unit``), shape ``tuple(len(a) for a in axes)``; NaN = not measured.
        meta: Device, deployment, workload, environment, statistic, source.
        unstable: Optional per-point flag (the profiler's ``unstable``), same shape as ``values``.
        origin: Name used in error messages (the file a table was read from); not part of equality.
    """

    axes: tuple[Axis, ...]
    values: np.ndarray
    meta: TableMeta = field(default_factory=TableMeta)
    unstable: np.ndarray | None = None
    origin: str = field(default="lookup table", compare=False)

    def __post_init__(self) -> None:
        axes = tuple(self.axes)
        if not axes or not all(isinstance(a, Axis) for a in axes):
            raise LatbenchError(self.origin, "a table needs at least one Axis")
        names = [a.name for a in axes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise LatbenchError(self.origin, f"axis {dup[0]!r} appears twice")
        shape = tuple(len(a) for a in axes)
        try:
            values = np.array(self.values, dtype=np.float64)
        except (TypeError, ValueError):
            raise LatbenchError(self.origin, "values must be numbers") from None
        if values.shape != shape:
            raise LatbenchError(self.origin, f"values have shape {values.shape}, the axes need {shape}")
        if np.isinf(values).any():
            raise LatbenchError(self.origin, "values must be finite (NaN marks a missing point)")
        negative = np.argwhere(values < 0)
        if len(negative):
            idx = tuple(negative[0])
            raise LatbenchError(
                self.origin, f"negative latency {values[idx]!r} at {_point_str(names, self._coords(axes, idx))}"
            )
        values.setflags(write=False)
        object.__setattr__(self, "axes", axes)
        object.__setattr__(self, "values", values)
        if self.unstable is not None:
            unstable = np.array(self.unstable, dtype=bool)
            if unstable.shape != shape:
                raise LatbenchError(self.origin, f"unstable mask has shape {unstable.shape}, the axes need {shape}")
            unstable.setflags(write=False)
            object.__setattr__(self, "unstable", unstable)
        if not isinstance(self.meta, TableMeta):
            raise LatbenchError(self.origin, "meta must be a TableMeta")

    @staticmethod
    def _coords(axes: Sequence[Axis], idx: Sequence[int]) -> list[float]:
        return [a.values[i] for a, i in zip(axes, idx)]

    # ------------------------------------------------------------ equality
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LookupTable):
            return NotImplemented
        if self.axes != other.axes or self.meta != other.meta:
            return False
        if not np.array_equal(self.values, other.values, equal_nan=True):
            return False
        if (self.unstable is None) != (other.unstable is None):
            return False
        return self.unstable is None or bool(np.array_equal(self.unstable, other.unstable))

    __hash__ = None  # type: ignore[assignment]

    # --------------------------------------------------------------- views
    @property
    def axis_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(a) for a in self.axes)

    @property
    def size(self) -> int:
        return int(self.values.size)

    def axis(self, name: str) -> Axis:
        for a in self.axes:
            if a.name == name:
                return a
        raise LatbenchError(self.origin, f"no axis {name!r} (axes: {', '.join(self.axis_names)})")

    def with_meta(self, **changes: Any) -> LookupTable:
        """A copy with some metadata fields changed."""
        return replace(self, meta=replace(self.meta, **changes))

    def points(self) -> Iterable[tuple[dict[str, float], float]]:
        """Every grid point as ``({axis: value}, latency)`` in C order (NaN where missing)."""
        names = self.axis_names
        for idx in itertools.product(*(range(n) for n in self.shape)):
            yield dict(zip(names, self._coords(self.axes, idx))), float(self.values[idx])

    # -------------------------------------------------------------- lookup
    def _index_of(self, point: Mapping[str, Any]) -> tuple[int, ...]:
        self._check_names(point)
        idx = []
        for a in self.axes:
            x = point[a.name]
            try:
                idx.append(a.values.index(x))
            except ValueError:
                raise LatbenchError(
                    self.origin,
                    f"{a.name}={x!r} is not a grid value of {a.describe()}; use interpolate() between grid points",
                ) from None
        return tuple(idx)

    def _check_names(self, point: Mapping[str, Any]) -> None:
        unknown = sorted(set(point) - set(self.axis_names))
        if unknown:
            raise LatbenchError(self.origin, f"no axis {unknown[0]!r} (axes: {', '.join(self.axis_names)})")
        missing = [n for n in self.axis_names if n not in point]
        if missing:
            raise LatbenchError(self.origin, f"query lacks axis {missing[0]!r} (axes: {', '.join(self.axis_names)})")

    def lookup(self, **point: float) -> float:
        """The value at a grid point, e.g. ``lookup(emb=768, heads=12, qk_dim=64, v_dim=64, mlp=3072)``."""
        idx = self._index_of(point)
        value = float(self.values[idx])
        if math.isnan(value):
            raise LatbenchError(
                self.origin, f"grid point {_point_str(self.axis_names, self._coords(self.axes, idx))} is not measured"
            )
        return value

    # -------------------------------------------------------- interpolate
    def _as_points(self, query: Any) -> np.ndarray:
        d = len(self.axes)
        if isinstance(query, Mapping):
            query = [query]
        if isinstance(query, Sequence) and not isinstance(query, str) and query and isinstance(query[0], Mapping):
            rows = []
            for p in query:
                if not isinstance(p, Mapping):
                    raise LatbenchError(self.origin, "mix of mappings and other points in one query")
                self._check_names(p)
                rows.append([p[n] for n in self.axis_names])
            query = rows
        try:
            pts = np.array(query, dtype=np.float64)
        except (TypeError, ValueError):
            raise LatbenchError(self.origin, "query points must be numbers") from None
        if pts.ndim == 1:
            pts = pts[None, :]
        if pts.ndim != 2 or pts.shape[1] != d:
            raise LatbenchError(
                self.origin, f"query points need {d} coordinates ({', '.join(self.axis_names)}), got shape {pts.shape}"
            )
        if not np.isfinite(pts).all():
            raise LatbenchError(self.origin, "query points must be finite")
        return pts

    def interpolate(self, points: Any, extrapolate: bool = False) -> Interpolation:
        """Multilinear interpolation, equal to ``RegularGridInterpolator(method="linear")``.

        Args:
            points: One point (``{axis: value}`` or a sequence in axis order), a list of
                such mappings, or an array of shape ``(n, len(axes))``.
            extrapolate: Outside the grid, extrapolate linearly from the edge cell and flag
                the point, instead of raising.

        Returns:
            An :class:`Interpolation`: one value per point and an ``extrapolated`` flag per point.

        Raises:
            LatbenchError: A point outside the grid (naming the axis and its bounds) without
                ``extrapolate``; a missing (NaN) grid point with a non-zero weight (naming it).
        """
        pts = self._as_points(points)
        n, d = pts.shape
        lower = np.zeros((n, d), dtype=np.intp)
        frac = np.zeros((n, d), dtype=np.float64)
        outside = np.zeros(n, dtype=bool)
        for k, a in enumerate(self.axes):
            x = pts[:, k]
            out = (x < a.lo) | (x > a.hi)
            if out.any():
                bad = float(x[np.argmax(out)])
                if not extrapolate:
                    raise LatbenchError(
                        self.origin,
                        f"{a.name}={_fmt(bad)} is outside the grid: {a.name} spans {_fmt(a.lo)}..{_fmt(a.hi)} "
                        "(--extrapolate / extrapolate=True to go beyond it, flagged)",
                    )
                if len(a) == 1:
                    raise LatbenchError(
                        self.origin,
                        f"{a.name}={_fmt(bad)}: axis {a.name} has the single value {_fmt(a.lo)}, "
                        "nothing to extrapolate from",
                    )
                outside |= out
            if len(a) == 1:
                continue
            g = np.asarray(a.values, dtype=np.float64)
            # Cell i holds x in [g[i], g[i+1]); the last cell is closed, and points
            # outside use the edge cell with a weight beyond [0, 1] (linear extrapolation).
            i = np.clip(np.searchsorted(g, x, side="right") - 1, 0, len(g) - 2)
            lower[:, k] = i
            frac[:, k] = (x - g[i]) / (g[i + 1] - g[i])
        result = np.zeros(n, dtype=np.float64)
        single = [len(a) == 1 for a in self.axes]
        for corner in itertools.product((0, 1), repeat=d):
            if any(c and s for c, s in zip(corner, single)):
                continue
            bits = np.array(corner, dtype=np.intp)
            weight = np.prod(np.where(bits.astype(bool), frac, 1.0 - frac), axis=1)
            idx = lower + bits
            vals = self.values[tuple(idx.T)]
            used = weight != 0.0
            missing = used & np.isnan(vals)
            if missing.any():
                j = int(np.argmax(missing))
                raise LatbenchError(
                    self.origin,
                    f"grid point {_point_str(self.axis_names, self._coords(self.axes, idx[j]))} is not measured "
                    f"(needed for {_point_str(self.axis_names, pts[j])})",
                )
            result += np.where(used, weight * np.nan_to_num(vals), 0.0)
        return Interpolation(values=result, extrapolated=outside, unit=self.meta.unit)

    # ------------------------------------------------------ compatibility
    def check_compatible(
        self,
        device: str | None = None,
        deploy: Mapping[str, Any] | None = None,
        workload: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> list[str]:
        """Refuse to answer for another device, deployment or workload unless forced.

        Only what the caller states is checked; a table that does not record a stated
        field cannot vouch for it and refuses too.

        Returns:
            The mismatches (empty when compatible); with ``force`` they are returned, not raised.

        Raises:
            LatbenchError: On the first mismatch, unless ``force``.
        """
        problems: list[str] = []
        if device is not None:
            if self.meta.device is None:
                problems.append(f"its device is not recorded, so it cannot vouch for {device!r}")
            elif self.meta.device.strip().lower() != device.strip().lower():
                problems.append(f"it was measured on {self.meta.device!r}, not {device!r}")
        for what, asked, have in (("deploy", deploy, self.meta.deploy), ("workload", workload, self.meta.workload)):
            for key, want in (asked or {}).items():
                if key not in have:
                    problems.append(f"its {what} does not record {key} (asked for {want!r})")
                elif have[key] != want:
                    problems.append(f"its {what}.{key} is {have[key]!r}, not {want!r}")
        if problems and not force:
            raise LatbenchError(self.origin, f"{problems[0]}; use --force (force=True in Python) to use it anyway")
        return problems

    def _check_arch(self, arch: Arch, force: bool) -> None:
        problems: list[str] = []
        if self.meta.family is not None and arch.family != self.meta.family:
            problems.append(f"it holds {self.meta.family} blocks, the architecture is {arch.family}")
        if arch.family == "vit":
            for key in ("image_size", "patch_size"):
                have = self.meta.workload.get(key)
                if have is not None and have != getattr(arch, key):
                    problems.append(f"its workload.{key} is {have}, the architecture's is {getattr(arch, key)}")
        if problems and not force:
            raise LatbenchError(self.origin, f"{problems[0]}; use --force (force=True in Python) to use it anyway")

    # ---------------------------------------------------------- coverage
    def coverage(self) -> Coverage:
        """Counts of measured, stable, unstable and missing grid points, and the missing ones."""
        measured_mask = ~np.isnan(self.values)
        unstable_mask = (self.unstable & measured_mask) if self.unstable is not None else np.zeros_like(measured_mask)
        measured = int(measured_mask.sum())
        unstable = int(unstable_mask.sum())
        missing_idx = np.argwhere(~measured_mask)
        names = self.axis_names
        missing_points = tuple(dict(zip(names, self._coords(self.axes, idx))) for idx in missing_idx)
        return Coverage(
            total=self.size,
            measured=measured,
            stable=measured - unstable,
            unstable=unstable,
            missing=self.size - measured,
            missing_points=missing_points,
        )

    # ------------------------------------------------------ architectures
    def block_point(self, arch: Arch, index: int) -> dict[str, float]:
        """The grid coordinates of block ``index`` of ``arch`` (axis name → dimension)."""
        if not 0 <= index < arch.n_layers:
            raise LatbenchError("block", f"index {index} out of range for {arch.n_layers} blocks")
        s = arch.layers[index]
        dims = {
            "emb": arch.hidden,
            "hidden": arch.hidden,
            "heads": s.heads,
            "qk_dim": s.qk_dim,
            "v_dim": s.v_dim,
            "mlp": s.mlp,
        }
        point: dict[str, float] = {}
        for name in self.axis_names:
            if name not in dims:
                raise LatbenchError(self.origin, f"axis {name!r} has no counterpart in an architecture")
            point[name] = dims[name]
        if "v_dim" not in point and s.v_dim != s.qk_dim:
            raise LatbenchError(
                self.origin, f"block {index}: v_dim {s.v_dim} != qk_dim {s.qk_dim}, and the table has no v_dim axis"
            )
        return point

    def arch_latency(
        self,
        arch: Arch,
        extrapolate: bool = False,
        device: str | None = None,
        deploy: Mapping[str, Any] | None = None,
        workload: Mapping[str, Any] | None = None,
        force: bool = False,
    ) -> ArchLatency:
        """Per-block latencies of ``arch`` (in the table's unit) and whether each was extrapolated.

        The architecture must be of the table's family and workload, and ``device``/``deploy``/
        ``workload``, when given, must match the table's, unless ``force``.
        """
        self.check_compatible(device=device, deploy=deploy, workload=workload, force=force)
        self._check_arch(arch, force)
        pts = [self.block_point(arch, i) for i in range(arch.n_layers)]
        res = self.interpolate(pts, extrapolate=extrapolate)
        return ArchLatency(
            blocks=tuple(float(v) for v in res.values),
            extrapolated=tuple(bool(e) for e in res.extrapolated),
            unit=self.meta.unit,
        )

    def _require_ms(self) -> None:
        if self.meta.unit != "ms":
            note = f" ({self.meta.unit_note})" if self.meta.unit_note else ""
            raise LatbenchError(
                self.origin, f"values are in an unknown unit{note}; import the table saying its unit (--unit s|ms)"
            )

    def block_latency_ms(self, arch: Arch, index: int, extrapolate: bool = False, force: bool = False) -> float:
        """Latency in ms of block ``index`` of ``arch``, interpolated in the grid."""
        self._require_ms()
        self._check_arch(arch, force)
        return self.interpolate(self.block_point(arch, index), extrapolate=extrapolate).value

    def arch_latency_ms(self, arch: Arch, extrapolate: bool = False, force: bool = False, **check: Any) -> float:
        """Sum of the block latencies of ``arch`` in ms (see :meth:`arch_latency` for flags per block)."""
        self._require_ms()
        return self.arch_latency(arch, extrapolate=extrapolate, force=force, **check).total

    # ------------------------------------------------------------ building
    @classmethod
    def from_records(
        cls,
        axes: Sequence[Axis],
        records: Iterable[Mapping[str, Any]],
        meta: TableMeta | None = None,
        value_key: str = "latency_ms",
        origin: str = "lookup table",
    ) -> LookupTable:
        """A table from measurement records (``{axis: value, ..., value_key: ms, "unstable": bool}``).

        Grid points without a record stay missing; two records for one point are an error.
        """
        axes = tuple(axes)
        values = np.full(tuple(len(a) for a in axes), np.nan)
        unstable = np.zeros(values.shape, dtype=bool)
        any_flag = False
        tmp = cls(axes=axes, values=values, origin=origin)
        for i, rec in enumerate(records):
            if value_key not in rec:
                raise LatbenchError(origin, f"record {i} has no {value_key!r}")
            point = {n: rec[n] for n in tmp.axis_names if n in rec}
            idx = tmp._index_of(point)
            if not math.isnan(values[idx]):
                raise LatbenchError(origin, f"two records for {_point_str(tmp.axis_names, tmp._coords(axes, idx))}")
            values[idx] = float(rec[value_key])
            if "unstable" in rec:
                any_flag = True
                unstable[idx] = bool(rec["unstable"])
        return cls(
            axes=axes, values=values, meta=meta or TableMeta(), unstable=unstable if any_flag else None, origin=origin
        )

    # ------------------------------------------------------------ file I/O
    def to_dict(self) -> dict[str, Any]:
        """The ``latbench-lut`` JSON object (values flat in C order, ``null`` where missing)."""
        flat = [None if math.isnan(v) else float(v) for v in self.values.ravel()]
        return {
            "format": FORMAT_NAME,
            "schema_version": SCHEMA_VERSION,
            "axes": [{"name": a.name, "values": list(a.values)} for a in self.axes],
            "values": flat,
            "unstable": None if self.unstable is None else [bool(u) for u in self.unstable.ravel()],
            "meta": self.meta.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "lookup table") -> LookupTable:
        """Validate and build a table from a ``latbench-lut`` JSON object; errors name ``where``."""
        if not isinstance(data, Mapping):
            raise LatbenchError(where, f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT_NAME:
            raise LatbenchError(where, f'not a latbench lookup table (no "format": "{FORMAT_NAME}")')
        version = data.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise LatbenchError(where, "missing or non-integer schema_version")
        if version > SCHEMA_VERSION:
            raise LatbenchError(where, f"schema_version {version} is newer than this latbench reads ({SCHEMA_VERSION})")
        if version < 1:
            raise LatbenchError(where, f"bad schema_version {version}")
        allowed = {"format", "schema_version", "axes", "values", "unstable", "meta"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        missing = sorted(allowed - set(data))
        if missing:
            raise LatbenchError(where, f"missing key {missing[0]!r}")
        raw_axes = data.get("axes")
        if not isinstance(raw_axes, list) or not raw_axes:
            raise LatbenchError(where, "axes: expected a non-empty list of {name, values}")
        axes = []
        for i, a in enumerate(raw_axes):
            if not isinstance(a, Mapping) or set(a) != {"name", "values"} or not isinstance(a["values"], list):
                raise LatbenchError(where, f'axes[{i}]: expected {{"name": ..., "values": [...]}}')
            try:
                axes.append(Axis(a["name"], tuple(a["values"])))
            except LatbenchError as exc:
                raise LatbenchError(where, f"axes[{i}] ({exc.where}): {exc.what}") from None
        shape = tuple(len(a) for a in axes)
        n = math.prod(shape)
        raw = data.get("values")
        if not isinstance(raw, list):
            raise LatbenchError(where, "values: expected a flat list of numbers (null for a missing point)")
        if len(raw) != n:
            raise LatbenchError(where, f"values: {len(raw)} entries, the axes make a grid of {n} points")
        flat = np.empty(n, dtype=np.float64)
        names = [a.name for a in axes]
        for i, v in enumerate(raw):
            if v is None:
                flat[i] = np.nan
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                idx = np.unravel_index(i, shape)
                raise LatbenchError(
                    where,
                    f"value at {_point_str(names, cls._coords(axes, idx))} must be a non-negative number, got {v!r}",
                )
            flat[i] = v
        unstable = None
        raw_u = data.get("unstable")
        if raw_u is not None:
            if not isinstance(raw_u, list) or len(raw_u) != n or not all(isinstance(u, bool) for u in raw_u):
                raise LatbenchError(where, f"unstable: expected null or a list of {n} booleans")
            unstable = np.array(raw_u, dtype=bool).reshape(shape)
        meta = TableMeta.from_dict(data["meta"], where)
        try:
            return cls(axes=tuple(axes), values=flat.reshape(shape), meta=meta, unstable=unstable, origin=where)
        except LatbenchError as exc:
            raise LatbenchError(where, exc.what if exc.where == where else f"{exc.where}: {exc.what}") from None

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as ``latbench-lut`` JSON, atomically."""
        from latbench.io import atomic_write_json

        return atomic_write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> LookupTable:
        """Read and validate a ``latbench-lut`` JSON file (one-line errors naming the file)."""
        from latbench.io import read_json

        try:
            return cls.from_dict(read_json(path), str(path))
        except LatbenchError as exc:
            if exc.where.startswith(str(path)):
                raise
            raise LatbenchError(str(path), f"{exc.where}: {exc.what}") from None

    # ------------------------------------------------------------------ NViT
    @classmethod
    def from_nvit(
        cls, source: Any, unit: str | None = None, nvit_conventions: bool = False, where: str | None = None
    ) -> LookupTable:
        """Read NViT's ``latency_head.json`` (a path or the parsed dict); see :mod:`latbench.lut.formats`."""
        from latbench.lut.formats import read_nvit

        return read_nvit(source, unit=unit, nvit_conventions=nvit_conventions, where=where)

    def to_nvit(self, unit: str | None = None) -> dict[str, Any]:
        """NViT's nested ``EMB_e → QK_h_d → V_d → MLP_m`` dict; see :func:`latbench.lut.formats.to_nvit`."""
        from latbench.lut.formats import to_nvit

        return to_nvit(self, unit=unit)
