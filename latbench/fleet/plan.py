"""What a fleet run measures: the items, the targets, and how the work is cut into chunks.

A :class:`FleetPlan` is plain data: a sample of a search space (``profile``) or a
LUT grid (``lut``), the targets with the run's workload, the protocol and the
seed. Every target measures every item; the identical devices behind one target
share them. The plan is written beside the store (``<store>.fleet.json``) so that
``latbench fleet status`` can tell how much of it is done without being told
again what was asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.fleet.targets import Target
from latbench.profiling.config import ProtocolConfig
from latbench.profiling.job import WorkItem
from latbench.profiling.store import MeasurementKey

#: Version of the plan file written beside a store.
PLAN_SCHEMA_VERSION = 1
PLAN_KINDS: tuple[str, ...] = ("profile", "lut")


@dataclass(frozen=True)
class FleetPlan:
    """A fleet run: what to measure, on which targets, how.

    Attributes:
        kind: ``profile`` (a sample of ``space``) or ``lut`` (every point of ``grid``).
        targets: The targets, each with the run's workload.
        protocol: The timing protocol of every measurement.
        seed: Sampling seed, weight seed and the seed of the order the work is dealt in.
        group_size: Architectures (profile) or grid points (lut) a task prepares and
            interleaves together; the unit of work a device takes at a time.
        peaks: Measure each device's attainable peaks once (roofline columns).
        space: The search space (``SearchSpace.to_dict()``), for ``profile``.
        samples: How many architectures to sample, for ``profile``.
        blocks: Also measure each distinct block, for ``profile``.
        grid: ``{"name", "family", "axes", "extras"}``, for ``lut``.
    """

    kind: str
    targets: tuple[Target, ...]
    protocol: ProtocolConfig
    seed: int = 0
    group_size: int = 4
    peaks: bool = True
    space: dict[str, Any] | None = None
    samples: int = 0
    blocks: bool = True
    grid: dict[str, Any] | None = None
    _items: list[WorkItem] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from latbench.profiling.job import check_workload

        if self.kind not in PLAN_KINDS:
            raise LatbenchError("plan", f"kind must be one of {', '.join(PLAN_KINDS)}, got {self.kind!r}")
        if not self.targets:
            raise LatbenchError("--targets", "no targets")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            raise LatbenchError("--group-size", f"must be >= 1, got {self.group_size!r}")
        if self.kind == "profile":
            if self.space is None:
                raise LatbenchError("plan", "a profile plan needs a space")
            if isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1:
                raise LatbenchError("--samples", f"must be >= 1, got {self.samples!r}")
        elif self.grid is None:
            raise LatbenchError("plan", "a lut plan needs a grid")
        family = self.family
        for t in self.targets:
            try:
                check_workload(family, t.deploy)
            except LatbenchError as exc:
                raise LatbenchError(exc.where, f"target {t.label!r}: {exc.what}") from None

    # -- what is measured ---------------------------------------------------------------------

    @property
    def family(self) -> str:
        """The model family of every item."""
        src = self.space if self.kind == "profile" else self.grid
        return str(src["family"])  # type: ignore[index]

    @property
    def space_name(self) -> str:
        """The ``space`` column of the rows (``lut:<grid file name>`` for a grid, as ``build-lut`` writes)."""
        if self.kind == "profile":
            return str(self.space["name"])  # type: ignore[index]
        return f"lut:{self.grid['name']}"  # type: ignore[index]

    def items(self) -> list[WorkItem]:
        """Every item each target measures, deduplicated, in sampling (or grid) order."""
        if self._items is None:
            object.__setattr__(self, "_items", self._compute_items())
        return list(self._items or [])

    def _compute_items(self) -> list[WorkItem]:
        from latbench.profiling.job import work_items

        if self.kind == "profile":
            from latbench.space import SearchSpace

            space = SearchSpace.from_dict(self.space, where="plan space")
            archs = space.sample(self.seed, n=self.samples)
            return work_items(archs, self.blocks)  # type: ignore[arg-type]
        return [WorkItem(arch, "block", 0) for _, arch in self.grid_points()]

    def grid_points(self) -> list[tuple[dict[str, int], Any]]:
        """``(point, one-block Arch)`` for every grid point (``lut`` plans)."""
        from latbench.lut.build import grid_archs

        if self.grid is None:
            raise LatbenchError("plan", "not a lut plan")
        return grid_archs(self.family, grid_axes(self.grid), self.grid.get("extras", {}))

    def keys(self, target: Target) -> list[MeasurementKey]:
        """The store keys ``target`` is asked for."""
        return [item_key(it, target) for it in self.items()]

    # -- (de)serialise ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "kind": self.kind,
            "targets": [t.to_dict() for t in self.targets],
            "protocol": self.protocol.to_dict(),
            "seed": self.seed,
            "group_size": self.group_size,
            "peaks": self.peaks,
            "space": self.space,
            "samples": self.samples,
            "blocks": self.blocks,
            "grid": self.grid,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "plan") -> FleetPlan:
        """Inverse of :meth:`to_dict`; errors name ``where``."""
        known = {"kind", "targets", "protocol", "seed", "group_size", "peaks", "space", "samples", "blocks", "grid"}
        if not isinstance(data, Mapping):
            raise LatbenchError(where, "expected a JSON object")
        unknown = sorted(set(data) - known)
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        try:
            return cls(
                kind=data["kind"],
                targets=tuple(Target.from_dict(t) for t in data["targets"]),
                protocol=ProtocolConfig.from_dict(data["protocol"]),
                seed=int(data.get("seed", 0)),
                group_size=int(data.get("group_size", 4)),
                peaks=bool(data.get("peaks", True)),
                space=data.get("space"),
                samples=int(data.get("samples", 0)),
                blocks=bool(data.get("blocks", True)),
                grid=data.get("grid"),
            )
        except LatbenchError as exc:
            raise LatbenchError(where, str(exc)) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise LatbenchError(where, f"malformed plan ({type(exc).__name__}: {exc})") from None


def grid_axes(grid: Mapping[str, Any]) -> tuple[Any, ...]:
    """The :class:`~latbench.lut.table.Axis` tuple of a plan's grid."""
    from latbench.lut.table import Axis

    return tuple(Axis(name, tuple(float(v) for v in values)) for name, values in grid["axes"].items())


def item_key(item: WorkItem, target: Target) -> MeasurementKey:
    """The store key of ``item`` measured on ``target`` (its deploy key carries the label)."""
    d = target.deploy
    return (item.arch.to_json(), item.scope, item.block_index, target.store_key, d.batch, d.seq_len)


def profile_plan(
    space: Any,
    samples: int,
    targets: Sequence[Target],
    protocol: ProtocolConfig,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    seed: int = 0,
    blocks: bool = True,
    group_size: int = 4,
    peaks: bool = True,
) -> FleetPlan:
    """A plan that samples ``samples`` architectures of ``space`` (a :class:`SearchSpace`) with ``seed``."""
    return FleetPlan(
        kind="profile",
        targets=tuple(t.with_workload(batch, seq_len) for t in targets),
        protocol=protocol,
        seed=seed,
        group_size=group_size,
        peaks=peaks,
        space=space.to_dict(),
        samples=samples,
        blocks=blocks,
    )


def lut_plan(
    grid: str | Path,
    targets: Sequence[Target],
    protocol: ProtocolConfig,
    *,
    batch: int = 1,
    seq_len: int | None = None,
    seed: int = 0,
    group_size: int = 8,
    peaks: bool = True,
) -> FleetPlan:
    """A plan that measures every point of the grid file ``grid`` as one block."""
    from latbench.lut.build import read_grid

    family, axes, extras = read_grid(grid)
    grid_data = {
        "name": Path(grid).name,
        "family": family,
        "axes": {a.name: [int(v) for v in a.values] for a in axes},
        "extras": extras,
    }
    return FleetPlan(
        kind="lut",
        targets=tuple(t.with_workload(batch, seq_len) for t in targets),
        protocol=protocol,
        seed=seed,
        group_size=group_size,
        peaks=peaks,
        grid=grid_data,
    )


def deal(items: Sequence[WorkItem], seed: int, group_size: int) -> list[tuple[WorkItem, ...]]:
    """Cut ``items`` into chunks of ``group_size`` architectures, in an order shuffled by ``seed``.

    A chunk keeps an architecture's model and blocks together (they are interleaved with each
    other, as in a local run). The devices of one target take chunks as they free up, so a fast
    device takes more; the shuffle makes every device's share a fair mix of the whole sample or
    grid. Contiguous slices of a grid (ordered by its axes) would hand one device all the small
    blocks and another all the large ones, turning a device's bias into a structure along an axis.
    """
    import numpy as np

    by_arch: dict[str, list[WorkItem]] = {}
    for it in items:
        by_arch.setdefault(it.arch.to_json(), []).append(it)
    groups = list(by_arch.values())
    order = np.random.default_rng(seed).permutation(len(groups))
    shuffled = [groups[i] for i in order]
    return [
        tuple(it for group in shuffled[i : i + group_size] for it in group) for i in range(0, len(shuffled), group_size)
    ]


# ---------------------------------------------------------------- plan file
def plan_path(store: str | Path) -> Path:
    """Where the plan of the run writing ``store`` is kept: ``<store>.fleet.json``."""
    p = Path(store)
    return p.with_name(p.name + ".fleet.json")


def write_plan(store: str | Path, plan: FleetPlan) -> Path:
    """Write ``plan`` beside ``store``, atomically, with its schema version."""
    from latbench import __version__
    from latbench.io import atomic_write_json

    doc = {"schema_version": PLAN_SCHEMA_VERSION, "latbench_version": __version__, "plan": plan.to_dict()}
    return atomic_write_json(plan_path(store), doc)


def read_plan(store: str | Path) -> FleetPlan | None:
    """The plan written beside ``store``, or ``None`` if there is none; a bad file is a one-line error."""
    from latbench.io import read_json

    path = plan_path(store)
    if not path.exists():
        return None
    where = str(path)
    doc = read_json(path)
    if not isinstance(doc, Mapping) or "plan" not in doc:
        raise LatbenchError(where, "not a latbench fleet plan (no 'plan')")
    if doc.get("schema_version") != PLAN_SCHEMA_VERSION:
        raise LatbenchError(
            where, f"plan schema version {doc.get('schema_version')!r}, this latbench reads {PLAN_SCHEMA_VERSION}"
        )
    return FleetPlan.from_dict(doc["plan"], where)
