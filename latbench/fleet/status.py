"""``fleet_status``: the targets of a fleet store, the environments they ran in, and how far they got.

Reads the store without locking it (safe while a run writes it) and the plan the
last run wrote beside it; with a Ray address it also shows how many units of each
target's resource the cluster has and how many are free right now.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.fleet.envs import label_warning
from latbench.fleet.plan import FleetPlan, read_plan
from latbench.fleet.targets import Target


@dataclass(frozen=True)
class EnvSummary:
    """One environment a target's rows were measured in.

    Attributes:
        env_id: The fingerprint's id.
        description: CPU model, threads, GPU names.
        rows: The target's rows measured in it.
        nodes: Host names of the nodes behind it (from the rows' ``node`` column).
    """

    env_id: str
    description: str
    rows: int
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "description": self.description, "rows": self.rows, "nodes": list(self.nodes)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnvSummary:
        return cls(data["env_id"], data["description"], int(data["rows"]), tuple(data.get("nodes", ())))


@dataclass(frozen=True)
class TargetStatus:
    """Progress of one target.

    Attributes:
        label: The target.
        resource: Its Ray resource (``None`` if known only from the store).
        deployment: Its deployment, in words.
        requested: Rows the last run's plan asks of it (``None`` without a plan).
        done: Of those (or, without a plan, in all), the rows the store holds.
        envs: The environments its rows were measured in.
        units: Units of its resource in the cluster (with an address), else ``None``.
        units_free: Of those, units not taken right now (by this or any other job).
    """

    label: str
    resource: str | None
    deployment: str
    requested: int | None
    done: int
    envs: tuple[EnvSummary, ...] = ()
    units: float | None = None
    units_free: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "resource": self.resource,
            "deployment": self.deployment,
            "requested": self.requested,
            "done": self.done,
            "envs": [e.to_dict() for e in self.envs],
            "units": self.units,
            "units_free": self.units_free,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetStatus:
        return cls(
            **{k: v for k, v in data.items() if k != "envs"},
            envs=tuple(EnvSummary.from_dict(e) for e in data.get("envs", ())),
        )


@dataclass(frozen=True)
class FleetStatus:
    """The state of a fleet store.

    Attributes:
        store: The result store.
        kind: ``profile`` or ``lut`` (from the plan), or ``None`` without one.
        targets: One status per target.
        warnings: Environments that differ under one label.
    """

    store: str
    kind: str | None
    targets: tuple[TargetStatus, ...]
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "kind": self.kind,
            "targets": [t.to_dict() for t in self.targets],
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetStatus:
        return cls(
            store=data["store"],
            kind=data.get("kind"),
            targets=tuple(TargetStatus.from_dict(t) for t in data["targets"]),
            warnings=tuple(data.get("warnings", ())),
        )


def fleet_status(
    store: str | Path,
    targets: Sequence[Target] | None = None,
    *,
    address: str | None = None,
) -> FleetStatus:
    """The targets of the fleet store ``store``, their fingerprints and progress.

    Args:
        store: The result store. It may not exist yet when a run's plan lies beside it (nothing
            done so far); with neither, the path is a one-line error (a mistyped ``--out``, not
            an empty fleet).
        targets: The targets to list (default: the last run's plan's, else the labels in the store).
        address: A Ray address; given, each target's resource units (total, free) are shown.
    """
    from latbench.fleet.targets import split_deploy_key
    from latbench.profiling.store import ResultStore, describe_fingerprint

    store_path = Path(store)
    plan = read_plan(store_path)
    if plan is None and not store_path.exists():
        raise LatbenchError(str(store_path), "no such result store (and no fleet plan beside it)")
    frame = None
    fps: dict[str, dict[str, Any]] = {}
    keys: set[Any] = set()
    if store_path.exists():
        st = ResultStore.open_readonly(store_path)
        fps = st.fingerprints()
        keys = st.keys()
        table = st.to_table()
        cols = [c for c in ("deploy_key", "env_id", "node") if c in table.column_names]
        frame = table.select(cols).to_pandas()
    labels: list[str]
    if targets is not None:
        labels = [t.label for t in targets]
    elif plan is not None:
        labels = [t.label for t in plan.targets]
    elif frame is not None:
        labels = sorted({lb for lb in (split_deploy_key(k)[0] for k in set(frame.deploy_key)) if lb is not None})
    else:
        labels = []
    given = {t.label: t for t in targets or ()}
    planned = {t.label: t for t in (plan.targets if plan is not None else ())}
    units = _units(address, [given.get(lb) or planned.get(lb) for lb in labels]) if address else {}

    out: list[TargetStatus] = []
    warnings: list[str] = []
    for label in labels:
        t = planned.get(label) or given.get(label)
        requested, done = _progress(label, plan, keys, frame)
        envs: list[EnvSummary] = []
        env_fps: dict[str, dict[str, Any]] = {}
        if frame is not None:
            mine = frame[[split_deploy_key(k)[0] == label for k in frame.deploy_key]]
            for env_id, group in mine.groupby("env_id"):
                fp = fps.get(str(env_id), {})
                env_fps[str(env_id)] = fp
                nodes = tuple(sorted({str(n) for n in group["node"].dropna()})) if "node" in group else ()
                envs.append(EnvSummary(str(env_id), describe_fingerprint(fp), len(group), nodes))
        message = label_warning(label, env_fps)
        if message:
            warnings.append(message)
        total, free = units.get(label, (None, None))
        out.append(
            TargetStatus(
                label=label,
                resource=t.resource if t is not None else None,
                deployment=t.deploy.label() if t is not None else "-",
                requested=requested,
                done=done,
                envs=tuple(envs),
                units=total,
                units_free=free,
            )
        )
    return FleetStatus(
        store=str(store_path), kind=plan.kind if plan else None, targets=tuple(out), warnings=tuple(warnings)
    )


def _progress(label: str, plan: FleetPlan | None, keys: set[Any], frame: Any) -> tuple[int | None, int]:
    from latbench.fleet.targets import split_deploy_key

    target = next((t for t in plan.targets if t.label == label), None) if plan is not None else None
    if plan is not None and target is not None:
        wanted = plan.keys(target)
        return len(wanted), sum(k in keys for k in wanted)
    if frame is None:
        return None, 0
    return None, int(sum(split_deploy_key(k)[0] == label for k in frame.deploy_key))


def _units(address: str, targets: Sequence[Target | None]) -> dict[str, tuple[float, float]]:
    from latbench.fleet.engine import connect

    with connect(address, [t for t in targets if t is not None]) as session:
        total = session.ray.cluster_resources()
        free = session.ray.available_resources()
    return {t.label: (float(total.get(t.resource, 0.0)), float(free.get(t.resource, 0.0))) for t in targets if t}
