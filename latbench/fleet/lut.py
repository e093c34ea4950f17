"""``fleet_build_lut``: one LUT grid measured on every target of a fleet, one table per target.

The grid's points are dealt to the devices behind each target (shuffled by seed,
a few points per task), measured as one-block architectures exactly as
``latbench build-lut`` measures them, and assembled into ``<out_dir>/<label>.json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.fleet.engine import FleetReport, ProgressFn, WarningFn, run_plan
from latbench.fleet.plan import FleetPlan, grid_axes, lut_plan
from latbench.fleet.targets import Target
from latbench.fleet.worker import MeasureFn
from latbench.profiling.config import ProtocolConfig


@dataclass(frozen=True)
class FleetLutReport:
    """What ``fleet build-lut`` did: the run, and the table written for each complete target.

    Attributes:
        run: The fleet run's report.
        tables: ``label -> table file`` for every target whose grid is complete.
        store: The result store holding the grid's rows.
    """

    run: FleetReport
    tables: dict[str, str]
    store: str

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run.to_dict(), "tables": dict(self.tables), "store": self.store}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetLutReport:
        return cls(run=FleetReport.from_dict(data["run"]), tables=dict(data["tables"]), store=str(data["store"]))


def fleet_build_lut(
    grid: str | Path,
    targets: Sequence[Target],
    protocol: ProtocolConfig,
    out_dir: str | Path,
    *,
    store: str | Path | None = None,
    address: str = "auto",
    statistic: str = "median",
    batch: int = 1,
    seq_len: int | None = None,
    seed: int = 0,
    group_size: int = 8,
    peaks: bool = True,
    max_retries: int = 3,
    measure_fn: MeasureFn | None = None,
    on_progress: ProgressFn | None = None,
    on_warning: WarningFn | None = None,
    flush_s: float = 5.0,
) -> FleetLutReport:
    """Measure every point of ``grid`` on every target and write one table per target.

    Args:
        grid: A grid file (see :func:`latbench.lut.build.read_grid`).
        targets: The targets.
        protocol: The timing protocol.
        out_dir: Where ``<label>.json`` is written for each target whose grid is complete.
        store: The result store of the grid's rows (default ``<out_dir>/fleet.parquet``); resumable.
        address: Where Ray is: ``ray://HOST:PORT``, ``HOST:PORT``, ``auto`` or ``local``.
        statistic: ``median``, ``p10``, ``min`` or ``mean`` of each point's samples.
        batch: Batch size.
        seq_len: Sequence length (bert, gpt); ``None`` for vit.
        seed: Weight and dealing seed.
        group_size: Grid points a task prepares and interleaves together.
        peaks: Measure each device's attainable peaks once (roofline columns).
        max_retries: Times Ray runs a task again after its worker or node died.
        measure_fn: The unit of work on the device (default ``measure_group``).
        on_progress: ``(label, done, requested)`` after each chunk.
        on_warning: Each warning as it arises.
        flush_s: Arrived rows are appended to the store together at most this often (and at the end).
    """
    from latbench.lut.build import STATISTIC_COLUMNS

    if statistic not in STATISTIC_COLUMNS:
        raise LatbenchError("--statistic", f"expected one of {', '.join(STATISTIC_COLUMNS)}, got {statistic!r}")
    out_path = Path(out_dir)
    if out_path.exists() and not out_path.is_dir():
        raise LatbenchError(str(out_path), "exists and is not a directory; --out names the folder of the tables")
    store_path = Path(store) if store is not None else out_path / "fleet.parquet"
    plan = lut_plan(
        grid, targets, protocol, batch=batch, seq_len=seq_len, seed=seed, group_size=group_size, peaks=peaks
    )
    report = run_plan(
        plan,
        store_path,
        address=address,
        max_retries=max_retries,
        measure_fn=measure_fn,
        on_progress=on_progress,
        on_warning=on_warning,
        flush_s=flush_s,
    )
    tables: dict[str, str] = {}
    for t, tr in zip(plan.targets, report.targets):
        if not tr.complete:
            continue
        path = out_path / f"{t.label}.json"
        target_table(plan, t, store_path, statistic=statistic, source=f"latbench fleet build-lut --grid {grid}").save(
            path
        )
        tables[t.label] = str(path)
    return FleetLutReport(run=report, tables=tables, store=str(store_path))


def target_table(
    plan: FleetPlan, target: Target, store: str | Path, *, statistic: str = "median", source: str = ""
) -> Any:
    """The :class:`~latbench.lut.table.LookupTable` of ``target`` from the grid rows in ``store``.

    Points the store lacks stay missing. The table's environment is the one its rows were
    measured in; when they come from several (several nodes), ``env_id`` is left unset and the
    ``env`` records the ids, since no single fingerprint vouches for every value.
    """
    from latbench.lut.build import STATISTIC_COLUMNS, _meta, hardware_name
    from latbench.lut.table import LookupTable
    from latbench.profiling.store import ResultStore

    if plan.kind != "lut":
        raise LatbenchError("plan", "not a lut plan")
    st = ResultStore.open_readonly(store)
    df = st.to_frame()
    df = df[(df.scope == "block") & (df.deploy_key == target.store_key)]
    by_arch = dict(zip(df.arch, df.to_dict("records")))
    col = STATISTIC_COLUMNS[statistic]
    points = plan.grid_points()
    records = []
    used: list[dict[str, Any]] = []
    for point, arch in points:
        row = by_arch.get(arch.to_json())
        if row is None:
            continue
        used.append(row)
        records.append({**point, "latency_ms": float(row[col]), "unstable": bool(row["unstable"])})
    env_ids = sorted({str(r["env_id"]) for r in used})
    fps = st.fingerprints()
    env_id = env_ids[0] if len(env_ids) == 1 else None
    origin = f"{source or 'latbench fleet build-lut'} (target {target.label}"
    if len(env_ids) > 1:
        origin += f"; environments {', '.join(env_ids)}"
    meta = _meta(
        plan.family, target.deploy, fps.get(env_id) if env_id else {}, env_id, statistic, origin + ")", points[0][1]
    )
    # The hardware actually measured: Ray's cuda:0 may be the node's cuda:3, so go by the NVML index.
    names = {hardware_name(_measured_device(target, r), fps.get(str(r["env_id"]), {})) for r in used}
    meta = replace(meta, device=next(iter(names)) if len(names) == 1 else None, env=fps.get(env_id) if env_id else None)
    return LookupTable.from_records(grid_axes(plan.grid or {}), records, meta, origin=str(store))


def _measured_device(target: Target, row: Mapping[str, Any]) -> str:
    index = row.get("nvml_index")
    if index is None or index != index:  # None, or NaN where pandas mixed GPU and CPU rows
        return target.deploy.device
    return f"cuda:{int(index)}"
