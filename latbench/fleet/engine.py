"""The fleet driver: connect to Ray, hand chunks to the devices, land the rows in the store.

Ray is the scheduler; latbench only says what each task needs. A task of a target
requires one unit of the target's custom resource (and one GPU on CUDA, which Ray
assigns), so Ray never runs two tasks on one device, and the devices behind one
resource take chunks as they free up. Ray retries a task whose worker or node died
(``max_retries``); an error raised by the measurement itself is not retried (it
would fail again) and stops that target.

The driver is the only writer: results come back through a ``ray.wait`` loop and
are appended to the :class:`~latbench.profiling.store.ResultStore` as they arrive.
A restarted driver measures only the keys the store lacks, so a run ends, however
often it was interrupted, with every requested row exactly once.

``import ray`` happens here, lazily; without it every entry point raises a one-line
:class:`~latbench.errors.MissingDependencyError`. Every node of the cluster needs
latbench (and the backend's libraries) installed: the task function is shipped by
reference, and each row's fingerprint records the versions that measured it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.fleet.envs import label_warning
from latbench.fleet.plan import FleetPlan, deal, item_key, write_plan
from latbench.fleet.targets import Target
from latbench.fleet.worker import ChunkError, ChunkResult, ChunkTask, MeasureFn, run_chunk
from latbench.profiling.job import WorkItem

#: How a user installs Ray for latbench.
RAY_INSTALL = "pip install 'latbench[ray]'"

#: Resources Ray defines itself; the rest of a node's resources are the user's custom ones.
_BUILTIN_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")

#: Seconds to wait for a TCP connection to the given address before calling it unreachable.
CONNECT_TIMEOUT_S = 5.0

ProgressFn = Callable[[str, int, int], None]
WarningFn = Callable[[str], None]


def import_ray() -> Any:
    """``import ray``, or a one-line :class:`MissingDependencyError` naming the extra."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("fleet", f"needs Ray, which is not installed: {RAY_INSTALL}") from None
    return ray


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(exc).__name__


# ---------------------------------------------------------------- connection
class RaySession:
    """A connection to a Ray cluster; shuts Ray down on close only if it started it.

    Use :func:`connect` to make one.
    """

    def __init__(self, ray: Any, address: str, started: bool) -> None:
        self.ray = ray
        self.address = address
        self.started = started

    def close(self) -> None:
        """Disconnect (and stop a cluster this session started)."""
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
        self.started = False

    def __enter__(self) -> RaySession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _host_port(address: str) -> tuple[str, int] | None:
    rest = address.removeprefix("ray://")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in one line, within ``timeout_s``, if nothing listens at ``HOST:PORT`` (``ray://`` or not).

    Ray's own client retries an unreachable address for a long time before it gives up.
    """
    hp = _host_port(address)
    if hp is None:
        raise LatbenchError("--address", f"expected ray://HOST:PORT, HOST:PORT, auto or local, got {address!r}")
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer in {timeout_s:g} s"
        raise LatbenchError("--address", f"cannot reach Ray at {address} ({reason})") from None


def connect(address: str, targets: Sequence[Target] = (), *, num_cpus: int | None = None) -> RaySession:
    """Connect to Ray at ``address``; a session already connected in this process is reused.

    Args:
        address: ``ray://HOST:PORT`` (Ray client), ``HOST:PORT`` (a cluster's GCS, from one of
            its nodes), ``auto`` (the cluster this node belongs to, or ``RAY_ADDRESS``) or
            ``local`` (start a one-node cluster here that offers each target's resource with
            ``local_units`` units).
        targets: The targets, for ``local``.
        num_cpus: CPUs of a ``local`` cluster (default: Ray's count of this machine's).
    """
    ray = import_ray()
    if address not in ("auto", "local"):
        check_reachable(address)
    if ray.is_initialized():
        return RaySession(ray, address, started=False)
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == "local":
            resources: dict[str, float] = {}
            for t in targets:
                resources[t.resource] = max(resources.get(t.resource, 0.0), float(t.local_units))
            # address="local" always starts a new cluster; None would join one started by `ray start`.
            ray.init(address="local", num_cpus=num_cpus, resources=resources, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except Exception as exc:  # ConnectionError, RuntimeError, grpc errors: all one line for the user
        raise LatbenchError("--address", f"cannot connect to Ray at {address}: {_first_line(exc)}") from None
    return RaySession(ray, address, started=True)


def target_units(ray: Any, targets: Sequence[Target]) -> dict[str, int]:
    """How many tasks of each target the cluster can run at once; a target no node can run is an error.

    A node contributes ``min(units of the resource, GPUs // num_gpus, CPUs // num_cpus)``.
    Without this check a task nobody can take would wait forever.
    """
    nodes = [n for n in ray.nodes() if n.get("Alive", n.get("alive", False))]
    custom = sorted({r for n in nodes for r in n.get("Resources", {}) if r not in _BUILTIN_RESOURCES and ":" not in r})
    out: dict[str, int] = {}
    for t in targets:
        units = 0
        for n in nodes:
            res = n.get("Resources", {})
            fits = int(res.get(t.resource, 0))
            if t.num_gpus:
                fits = min(fits, int(res.get("GPU", 0) // t.num_gpus))
            if t.num_cpus:
                fits = min(fits, int(res.get("CPU", 0) // t.num_cpus))
            units += max(fits, 0)
        if units < 1:
            has = ", ".join(custom) or "none"
            need = f"1 {t.resource!r}" + (f" + {t.num_gpus} GPU" if t.num_gpus else "") + f" + {t.num_cpus:g} CPU"
            raise LatbenchError(
                f"target {t.label!r}", f"no node of the cluster offers {need} (its custom resources: {has})"
            )
        out[t.label] = units
    return out


# -------------------------------------------------------------------- report
@dataclass(frozen=True)
class TargetReport:
    """What a fleet run did for one target.

    Attributes:
        label: The target.
        requested: Rows the plan asks of it.
        already_done: Of those, rows the store held when the run started.
        measured: Rows this run added.
        unstable: Of the added rows, those flagged unstable.
        units: Tasks the cluster could run at once for it (its devices).
        env_ids: Environments its rows (old and new) were measured in.
        nodes: Nodes that measured in this run.
        error: The error that stopped the target, or ``None``.
    """

    label: str
    requested: int
    already_done: int
    measured: int = 0
    unstable: int = 0
    units: int = 0
    env_ids: tuple[str, ...] = ()
    nodes: tuple[str, ...] = ()
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and self.already_done + self.measured >= self.requested

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "requested": self.requested,
            "already_done": self.already_done,
            "measured": self.measured,
            "unstable": self.unstable,
            "units": self.units,
            "env_ids": list(self.env_ids),
            "nodes": list(self.nodes),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TargetReport:
        return cls(
            **{k: v for k, v in data.items() if k not in ("env_ids", "nodes")},
            env_ids=tuple(data.get("env_ids", ())),
            nodes=tuple(data.get("nodes", ())),
        )


@dataclass(frozen=True)
class FleetReport:
    """What a fleet run did.

    Attributes:
        out: The result store.
        targets: One report per target.
        warnings: Environments that differ under one label, and similar.
        wall_s: Seconds the run took (connection included).
    """

    out: str
    targets: tuple[TargetReport, ...]
    warnings: tuple[str, ...] = ()
    wall_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Whether every target has every requested row."""
        return all(t.complete for t in self.targets)

    @property
    def measured(self) -> int:
        return sum(t.measured for t in self.targets)

    def errors(self) -> list[str]:
        return [f"target {t.label!r}: {t.error}" for t in self.targets if t.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": self.out,
            "targets": [t.to_dict() for t in self.targets],
            "warnings": list(self.warnings),
            "wall_s": self.wall_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FleetReport:
        return cls(
            out=data["out"],
            targets=tuple(TargetReport.from_dict(t) for t in data["targets"]),
            warnings=tuple(data.get("warnings", ())),
            wall_s=float(data.get("wall_s", 0.0)),
        )


@dataclass
class _TargetState:
    """The driver's bookkeeping for one target during a run."""

    target: Target
    requested: int
    already_done: int
    queue: deque[tuple[WorkItem, ...]]
    units: int = 0
    inflight: int = 0
    measured: int = 0
    unstable: int = 0
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    warned: str | None = None
    error: str | None = None

    def report(self) -> TargetReport:
        return TargetReport(
            label=self.target.label,
            requested=self.requested,
            already_done=self.already_done,
            measured=self.measured,
            unstable=self.unstable,
            units=self.units,
            env_ids=tuple(sorted(self.envs)),
            nodes=tuple(sorted(self.nodes)),
            error=self.error,
        )


# --------------------------------------------------------------------- driver
def run_plan(
    plan: FleetPlan,
    out: str | Path,
    *,
    address: str = "auto",
    max_retries: int = 3,
    measure_fn: MeasureFn | None = None,
    on_progress: ProgressFn | None = None,
    on_warning: WarningFn | None = None,
    flush_s: float = 5.0,
) -> FleetReport:
    """Measure ``plan`` on its targets through Ray, into the result store at ``out`` (resumable).

    Args:
        plan: What to measure where (:func:`~latbench.fleet.plan.profile_plan`, :func:`~latbench.fleet.plan.lut_plan`).
        out: The result store; keys it already holds are skipped.
        address: Where Ray is (see :func:`connect`).
        max_retries: Times Ray runs a task again after its worker or node died.
        measure_fn: The unit of work run on the device (default
            :func:`latbench.profiling.job.measure_group`); tests wrap it to inject faults.
        on_progress: ``(label, done, requested)`` once per target at the start and after each chunk.
        on_warning: Called with each warning as it arises (they are also in the report).
        flush_s: Rows that arrived are appended to the store together at most this often
            (and at the end); a killed driver loses at most that much work, measured again on restart.

    Returns:
        A :class:`FleetReport`; a target stopped by an error has it in ``error`` (its rows so far are kept).
    """
    from latbench.profiling.store import ResultStore

    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise LatbenchError("--max-retries", f"must be an integer >= 0, got {max_retries!r}")
    import_ray()  # a missing Ray fails here, before the store is touched
    t0 = time.perf_counter()
    warnings: list[str] = []

    def warn(message: str) -> None:
        warnings.append(message)
        if on_warning:
            on_warning(message)

    items = plan.items()
    # The store's lock first: a second driver on the same store fails before touching Ray.
    with ResultStore(out) as store:
        fingerprints = store.fingerprints()
        states: dict[str, _TargetState] = {}
        if len(store) and plan.protocol.reference_calls:
            from latbench.profiling.reference import refuse_mixing

            refuse_mixing(store.to_table(), plan.protocol.reference, str(out))
        frame = store.to_table().select(["deploy_key", "env_id"]).to_pandas() if len(store) else None
        for t in plan.targets:
            todo = [it for it in items if item_key(it, t) not in store]
            state = _TargetState(
                target=t,
                requested=len(items),
                already_done=len(items) - len(todo),
                queue=deque(deal(todo, plan.seed, plan.group_size)),
            )
            if frame is not None:
                for env_id in set(frame.loc[frame.deploy_key == t.store_key, "env_id"]):
                    state.envs[env_id] = fingerprints.get(env_id, {"env_id": env_id})
            states[t.label] = state
            if on_progress:
                on_progress(t.label, state.already_done, state.requested)
        for state in states.values():
            _check_envs(state, warn)
        write_plan(out, plan)
        if any(s.queue for s in states.values()):
            with connect(address, plan.targets) as session:
                _drive(session.ray, plan, store, states, max_retries, measure_fn, on_progress, warn, flush_s)
    return FleetReport(
        out=str(out),
        targets=tuple(s.report() for s in states.values()),
        warnings=tuple(warnings),
        wall_s=time.perf_counter() - t0,
    )


class _Lander:
    """Rows waiting to be appended to the store, written together every ``flush_s`` seconds.

    Each append rewrites the whole parquet file (atomically), so appending every chunk of a
    9 375-point grid would cost the driver time quadratic in the grid. Rows not yet written
    when a driver is killed are measured again by the next run: none is lost, none doubled.
    """

    def __init__(self, store: Any, flush_s: float) -> None:
        self.store = store
        self.flush_s = flush_s
        self.rows: list[dict[str, Any]] = []
        self.envs: dict[str, dict[str, Any]] = {}
        self.keys: set[Any] = set()
        self.last = time.monotonic()

    def add(self, rows: Sequence[dict[str, Any]], env_id: str, fingerprint: dict[str, Any]) -> list[dict[str, Any]]:
        """Queue the rows whose keys are neither stored nor queued; returns them."""
        from latbench.profiling.store import measurement_key

        fresh = []
        for r in rows:
            # A retried task delivers once, but the store is the judge: never append a key twice.
            k = measurement_key(r)
            if k not in self.store and k not in self.keys:
                self.keys.add(k)
                fresh.append(r)
        if fresh:
            self.rows.extend(fresh)
            known = self.envs.setdefault(env_id, fingerprint)
            if known is not fingerprint:
                known["peaks"] = {**(fingerprint.get("peaks") or {}), **(known.get("peaks") or {})}
        return fresh

    def flush(self, force: bool = False) -> None:
        if self.rows and (force or time.monotonic() - self.last >= self.flush_s):
            self.store.append(self.rows, self.envs)
            self.rows, self.envs, self.keys = [], {}, set()
            self.last = time.monotonic()


def _drive(
    ray: Any,
    plan: FleetPlan,
    store: Any,
    states: dict[str, _TargetState],
    max_retries: int,
    measure_fn: MeasureFn | None,
    on_progress: ProgressFn | None,
    warn: WarningFn,
    flush_s: float,
) -> None:
    """The ``ray.wait`` loop: keep each target's devices fed, land each result as it arrives."""
    busy = [s.target for s in states.values() if s.queue]
    units = target_units(ray, busy)
    remotes: dict[str, Any] = {}
    for t in busy:
        states[t.label].units = units[t.label]
        # num_gpus in the decorator (not .options) makes Ray start a fresh worker per GPU task,
        # so CUDA_VISIBLE_DEVICES always matches the GPU Ray assigned.
        remotes[t.label] = ray.remote(
            num_cpus=t.num_cpus, num_gpus=t.num_gpus, resources={t.resource: 1}, max_retries=max_retries
        )(run_chunk)
    known_peaks: dict[str, dict[str, Any]] = {
        env_id: dict(fp.get("peaks") or {}) for env_id, fp in store.fingerprints().items()
    }
    lander = _Lander(store, flush_s)
    pending: dict[Any, str] = {}
    finished = False
    try:
        while True:
            for label, s in states.items():
                # Two chunks per device: the next one waits at the node while the current one runs.
                while s.queue and s.error is None and s.inflight < 2 * max(s.units, 1):
                    task = ChunkTask(
                        target=s.target,
                        items=s.queue.popleft(),
                        space_name=plan.space_name,
                        protocol=plan.protocol,
                        seed=plan.seed,
                        peaks=plan.peaks,
                        known_peaks=known_peaks,
                    )
                    pending[remotes[label].remote(task, measure_fn)] = label
                    s.inflight += 1
            if not pending:
                break
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                label = pending.pop(ref)
                s = states[label]
                s.inflight -= 1
                try:
                    result: ChunkResult = ray.get(ref)
                except Exception as exc:
                    s.error = _task_error(exc)
                    s.queue.clear()
                    for other, other_label in list(pending.items()):
                        if other_label == label:
                            ray.cancel(other, force=True)
                            pending.pop(other)
                            s.inflight -= 1
                    warn(f"target {label!r} stopped: {s.error}")
                    continue
                rows = lander.add(result.rows, result.env_id, result.fingerprint)
                s.measured += len(rows)
                s.unstable += sum(bool(r["unstable"]) for r in rows)
                s.nodes.add(result.node)
                known_peaks.setdefault(result.env_id, {}).update(result.fingerprint.get("peaks") or {})
                if result.env_id not in s.envs:
                    s.envs[result.env_id] = result.fingerprint
                    _check_envs(s, warn)
                if on_progress:
                    on_progress(label, s.already_done + s.measured, s.requested)
            lander.flush()
        finished = True
    finally:
        for ref in pending:  # an interrupted driver leaves no task running on a device
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        try:
            lander.flush(force=True)  # what did arrive is kept, even when the driver is interrupted
        except Exception:
            if finished:
                raise  # else the error that interrupted the run is the one to report


def _check_envs(state: _TargetState, warn: WarningFn) -> None:
    message = label_warning(state.target.label, state.envs)
    if message and message != state.warned:
        state.warned = message
        warn(message)


def _task_error(exc: BaseException) -> str:
    """One line for a failed task: the measurement's own error if it raised one, else Ray's."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, (LatbenchError, ChunkError)):
        return str(cause)
    if cause is not None:
        return f"{type(cause).__name__}: {_first_line(cause)}"
    return f"{type(exc).__name__}: {_first_line(exc)}"
