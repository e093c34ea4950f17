"""What one Ray task does on the node holding a device: fingerprint it, measure a chunk, return the rows.

The task writes nothing: its rows and the fingerprint they refer to travel back to
the driver, which is the only writer of the result store. So a task killed at any
point (a lost node, ``kill -9``) leaves nothing behind, and Ray may run it again.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from latbench.fleet.targets import Target
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.job import WorkItem

#: Peaks this worker process measured, by (env_id, "device/precision"): a CPU worker is
#: reused by Ray for many chunks and should measure its device's peaks once.
_PEAKS_MEASURED: dict[tuple[str, str], dict[str, Any]] = {}


@dataclass(frozen=True)
class ChunkTask:
    """One unit of work for one device: a few architectures' items, measured interleaved.

    Attributes:
        target: The target (its deployment carries the run's workload).
        items: What to measure, prepared together and timed in interleaved rounds.
        space_name: The ``space`` column of the rows.
        protocol: The timing protocol.
        seed: Weight and input seed (same seed, same weights on every device).
        peaks: Measure the device's attainable peaks if they are not known yet.
        known_peaks: ``env_id -> {"device/precision": peaks}`` already in the store or
            measured by an earlier task, so that a device's peaks are measured once.
    """

    target: Target
    items: tuple[WorkItem, ...]
    space_name: str
    protocol: ProtocolConfig
    seed: int = 0
    peaks: bool = True
    known_peaks: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ChunkResult:
    """What a task sends back: store rows (not yet written) and the environment they were taken in.

    Attributes:
        label: The target's label.
        rows: One store row per item, tagged with ``target``, ``node`` and ``nvml_index``, whose
            ``deploy_key`` is the target's (:attr:`Target.store_key`).
        fingerprint: The node's environment fingerprint (with the device's peaks, if any).
        node: Host name of the node that measured.
        nvml_index: The NVML index of the GPU measured (``None`` on the CPU).
        wall_s: Seconds the task took, building and peaks included.
    """

    label: str
    rows: tuple[dict[str, Any], ...]
    fingerprint: dict[str, Any]
    node: str
    nvml_index: int | None
    wall_s: float

    @property
    def env_id(self) -> str:
        return str(self.fingerprint["env_id"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "rows": [dict(r) for r in self.rows],
            "fingerprint": self.fingerprint,
            "node": self.node,
            "nvml_index": self.nvml_index,
            "wall_s": self.wall_s,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChunkResult:
        return cls(
            label=data["label"],
            rows=tuple(dict(r) for r in data["rows"]),
            fingerprint=dict(data["fingerprint"]),
            node=data["node"],
            nvml_index=data["nvml_index"],
            wall_s=float(data["wall_s"]),
        )


#: ``measure_group``'s signature: (items, space_name, deploy, protocol, env_id, peaks, *, seed, backend, gpu_index).
MeasureFn = Callable[..., list[dict[str, Any]]]


class ChunkError(Exception):
    """A measurement error raised on a worker, carried back to the driver as one line.

    :class:`~latbench.errors.LatbenchError` takes two arguments and does not survive the
    pickling Ray applies to a task's exception; this one does.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def run_chunk(task: ChunkTask, measure_fn: MeasureFn | None = None) -> ChunkResult:
    """Measure ``task`` on this node's device and return the rows (runs inside a Ray task).

    Args:
        task: The chunk.
        measure_fn: The unit of work, :func:`latbench.profiling.job.measure_group` by default
            (a test passes a wrapper that kills its worker to check Ray's retries).

    Raises:
        ChunkError: A :class:`~latbench.errors.LatbenchError` (a missing library or GPU, a bad
            deployment) raised while measuring, with its one-line message.
    """
    from latbench.errors import LatbenchError

    try:
        return _run_chunk(task, measure_fn)
    except LatbenchError as exc:
        raise ChunkError(str(exc)) from None


def _run_chunk(task: ChunkTask, measure_fn: MeasureFn | None) -> ChunkResult:
    from latbench.profiling.base import get_backend
    from latbench.profiling.fingerprint import collect
    from latbench.profiling.job import measure_group
    from latbench.profiling.peaks import deploy_peaks_key, device_peaks

    t0 = time.perf_counter()
    deploy = task.target.deploy
    # The backend first: it imports torch and sets the thread count, which the fingerprint records.
    backend = get_backend(deploy)
    fp = collect(threads=deploy.threads).to_dict()
    env_id = fp["env_id"]
    nvml_index = nvml_index_of(deploy, fp)
    key = deploy_peaks_key(deploy)
    peaks = (task.known_peaks.get(env_id) or {}).get(key) or _PEAKS_MEASURED.get((env_id, key))
    if peaks is None and task.peaks:
        # The profile job's path: a precision torch cannot run here (TensorRT int8) is recorded, not raised.
        peaks = device_peaks(deploy)
        _PEAKS_MEASURED[(env_id, key)] = peaks
    fp["peaks"] = {key: peaks} if peaks else {}
    rows = (measure_fn or measure_group)(
        list(task.items),
        task.space_name,
        deploy,
        task.protocol,
        env_id,
        peaks,
        seed=task.seed,
        backend=backend,
        gpu_index=nvml_index,
    )
    node = socket.gethostname()
    tagged = []
    for row in rows:
        tagged.append(
            {
                **row,
                "deploy_key": task.target.store_key,
                "target": task.target.label,
                "node": node,
                "nvml_index": nvml_index,
            }
        )
    return ChunkResult(
        label=task.target.label,
        rows=tuple(tagged),
        fingerprint=fp,
        node=node,
        nvml_index=nvml_index,
        wall_s=time.perf_counter() - t0,
    )


def nvml_index_of(deploy: DeployConfig, fingerprint: Mapping[str, Any]) -> int | None:
    """The NVML index of the GPU ``deploy`` runs on, found by its UUID.

    Ray gives a GPU task one GPU through ``CUDA_VISIBLE_DEVICES``, so torch's ``cuda:0`` may be
    the node's fourth GPU; NVML ignores that variable and numbers all of them. Reading clocks and
    throttle reasons of the wrong GPU would mislabel a measurement, so the index is matched by UUID.
    """
    if deploy.device_type != "cuda":
        return None
    uuid = ""
    try:
        import torch

        uuid = str(torch.cuda.get_device_properties(deploy.gpu_index or 0).uuid)
    except Exception:  # an old torch without .uuid, or no CUDA: fall back below
        uuid = ""
    bare = uuid.removeprefix("GPU-")
    for g in fingerprint.get("gpus") or []:
        if bare and str(g.get("uuid", "")).removeprefix("GPU-") == bare and "index" in g:
            return int(g["index"])
    try:
        import ray

        ids = ray.get_gpu_ids() if ray.is_initialized() else []
    except Exception:
        ids = []
    if len(ids) == 1 and str(ids[0]).isdigit():
        return int(ids[0])  # Ray's id is the node's CUDA index, NVML's for identical GPUs
    return deploy.gpu_index
