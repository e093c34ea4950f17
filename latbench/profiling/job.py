"""The profiling job: sample architectures, build them, measure models and blocks, store every row.

``latbench profile`` is a thin wrapper around :func:`profile_space`. The job is
resumable: every measurement has a key in the :class:`~latbench.profiling.store.ResultStore`
(architecture, scope, block index, deployment, workload); a run started again
with the same command measures only the keys the store lacks, so a run killed at
any moment ends, once restarted, with exactly the requested rows.

Architectures are measured in groups: the whole models (and, with ``blocks``,
each distinct block) of ``group_size`` architectures are prepared together and
timed in interleaved rounds (A B C A B C ...), so slow drift of the machine
spreads over all of them instead of biasing whichever ran during a bad second
(MEASUREMENT.md). Each group's rows are written as soon as it is done.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.models.cost import Cost, block_cost, model_cost
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.store import MeasurementKey, ResultStore
from latbench.space import Arch, SearchSpace


@dataclass(frozen=True)
class WorkItem:
    """One thing to measure: a whole model (``block_index`` -1) or one block of an architecture.

    ``workload`` (batch, seq_len) overrides the deployment's, so that one run can measure a design
    over (architecture, batch, seq) with its workloads interleaved in the same rounds.
    """

    arch: Arch
    scope: str
    block_index: int
    workload: tuple[int, int | None] | None = None

    def deploy_for(self, deploy: DeployConfig) -> DeployConfig:
        """``deploy`` at this item's workload (unchanged when the item has none)."""
        if self.workload is None:
            return deploy
        return replace(deploy, batch=self.workload[0], seq_len=self.workload[1])

    def key(self, deploy: DeployConfig) -> MeasurementKey:
        d = self.deploy_for(deploy)
        return (self.arch.to_json(), self.scope, self.block_index, d.key(), d.batch, d.seq_len)

    def label(self) -> str:
        part = "model" if self.scope == "model" else f"block {self.block_index}"
        if self.workload is not None:
            part += f" at batch {self.workload[0]}" + (f", seq {self.workload[1]}" if self.workload[1] else "")
        return f"{self.arch.describe()} / {part}"


@dataclass
class ProfileReport:
    """What a profiling run did."""

    out: Path
    requested: int
    already_done: int
    measured: int = 0
    unstable: int = 0
    wall_s: float = 0.0
    env_id: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    busy: Any = None  # a drift.BusyReport of the rows measured in this run (CPU deployments)
    ref_anchor_ms: float | None = None  # with normalise_drift: the machine speed the rows were brought to


def work_items(
    archs: Sequence[Arch], blocks: bool, workloads: Sequence[Sequence[tuple[int, int | None]]] | None = None
) -> list[WorkItem]:
    """The model of each architecture and, with ``blocks``, the first block of each distinct layer spec.

    ``workloads`` (one list per architecture, from :func:`workload_design`): measure each
    architecture at those (batch, seq_len) instead of the deployment's workload.
    """
    from latbench.models import distinct_blocks

    items: list[WorkItem] = []
    seen: set[Arch] = set()
    for i, arch in enumerate(archs):
        if arch in seen:  # a space may sample the same architecture twice; it is measured once
            continue
        seen.add(arch)
        for w in workloads[i] if workloads is not None else [None]:  # type: ignore[list-item]
            items.append(WorkItem(arch, "model", -1, w))
            if blocks:
                items.extend(WorkItem(arch, "block", b, w) for b in distinct_blocks(arch))
    return items


def workload_design(
    n_archs: int, workloads: Sequence[tuple[int, int | None]], per_arch: int, seed: int
) -> list[list[tuple[int, int | None]]]:
    """Which workloads each of ``n_archs`` architectures is measured at: a balanced random design.

    Every architecture gets ``per_arch`` distinct workloads of the grid (``0`` or more than the
    grid: all of them); each pick takes the workloads measured least so far, ties broken at random
    (seeded), so every workload ends with the same number of architectures, give or take one, and
    no workload is tied to a slice of the space.
    """
    grid = list(dict.fromkeys(workloads))
    if not grid:
        raise LatbenchError("--batch/--seq", "no workload to measure")
    if per_arch < 0:
        raise LatbenchError("--workloads-per-arch", f"must be >= 0, got {per_arch}")
    k = min(per_arch or len(grid), len(grid))
    import numpy as np

    rng = np.random.default_rng(seed)
    counts = np.zeros(len(grid))
    design = []
    for _ in range(n_archs):
        order = np.lexsort((rng.random(len(grid)), counts))[:k]
        counts[order] += 1
        design.append([grid[j] for j in sorted(order.tolist())])
    return design


def check_workload(space_family: str, deploy: DeployConfig) -> None:
    """Text families need a sequence length; images take theirs from the architecture."""
    if space_family in ("bert", "gpt") and deploy.seq_len is None:
        raise LatbenchError("--seq", f"family {space_family!r} needs a sequence length")
    if space_family == "vit" and deploy.seq_len is not None:
        raise LatbenchError("--seq", "family 'vit' takes its tokens from image and patch size; leave --seq out")


def _build(item: WorkItem, deploy: DeployConfig, seed: int) -> tuple[Any, Any]:
    from latbench.models import block_inputs, build_block, build_model, example_inputs

    deploy = item.deploy_for(deploy)
    if item.scope == "model":
        return build_model(item.arch, seed=seed), example_inputs(item.arch, deploy.batch, deploy.seq_len, seed=seed)
    return build_block(item.arch, item.block_index, seed=seed), block_inputs(
        item.arch, deploy.batch, deploy.seq_len, seed=seed
    )


def _cost(item: WorkItem, deploy: DeployConfig) -> Cost:
    dtype = "fp32" if deploy.precision == "int8" else deploy.precision
    if item.scope == "model":
        return model_cost(item.arch, deploy.batch, deploy.seq_len, dtype).total
    return block_cost(item.arch, item.block_index, deploy.batch, deploy.seq_len, dtype)


def measurement_row(
    item: WorkItem,
    space_name: str,
    deploy: DeployConfig,
    measurement: Any,
    env_id: str,
    peaks: dict[str, Any] | None,
    protocol: ProtocolConfig | None = None,
) -> dict[str, Any]:
    """One store row: identity, deployment, workload, statistics, the protocol, cost and roofline."""
    deploy = item.deploy_for(deploy)
    cost = _cost(item, deploy)
    roofline_ms = None
    if peaks and peaks.get("peak_flops") and peaks.get("peak_bytes_per_s"):
        roofline_ms = cost.roofline_ms(float(peaks["peak_flops"]), float(peaks["peak_bytes_per_s"]))
    row: dict[str, Any] = {
        "arch": item.arch.to_json(),
        "space": space_name,
        "scope": item.scope,
        "block_index": item.block_index,
        "deploy_key": deploy.key(),
        "backend": deploy.backend,
        "mode": deploy.mode,
        "precision": deploy.precision,
        "device": deploy.device,
        "threads": deploy.threads,
        "cache": deploy.cache,
        "batch": deploy.batch,
        "seq_len": deploy.seq_len,
        "n_blocks": item.arch.n_layers if item.scope == "model" else 1,
        "env_id": env_id,
        "flops": cost.flops,
        "params": cost.params,
        "bytes": cost.bytes,
        "roofline_ms": roofline_ms,
        "timestamp": time.time(),
    }
    row.update(measurement.to_row())
    if protocol is not None:
        row["protocol"] = json.dumps(protocol.to_dict(), sort_keys=True)
    if roofline_ms:
        row["roofline_ratio"] = row["median_ms"] / roofline_ms
    return row


def environment(
    deploy: DeployConfig, store: ResultStore, measure_peaks: bool, protocol: ProtocolConfig | None = None
) -> dict[str, Any]:
    """This machine's fingerprint, with attainable peaks (measured once per environment and kept in the store)
    and, on the CPU, where the measuring threads run (``placement``, from the protocol's pinning choice)."""
    from latbench.profiling.fingerprint import collect
    from latbench.profiling.peaks import deploy_peaks_key, device_peaks
    from latbench.profiling.placement import plan

    fp = collect(threads=deploy.threads)
    known = store.fingerprints().get(fp.env_id, {})
    peaks = dict(known.get("peaks") or {})
    key = deploy_peaks_key(deploy)
    if measure_peaks and key not in peaks:
        peaks[key] = device_peaks(deploy)  # a record of why, where torch has no kernel for the precision
    fp = replace(fp, peaks=peaks)
    out = fp.to_dict()
    if deploy.device_type == "cpu" and deploy.threads:
        out["placement"] = plan(deploy.threads, (protocol or ProtocolConfig()).pin_threads).to_dict()
    return out


def profile_archs(
    archs: Sequence[Arch],
    space_name: str,
    deploy: DeployConfig,
    protocol: ProtocolConfig,
    out: str | Path,
    *,
    blocks: bool = True,
    **kwargs: Any,
) -> ProfileReport:
    """Measure ``archs`` (whole models and, with ``blocks``, their distinct blocks) into the store at ``out``."""
    return profile_items(work_items(archs, blocks), space_name, deploy, protocol, out, **kwargs)


def profile_items(
    items: Sequence[WorkItem],
    space_name: str,
    deploy: DeployConfig,
    protocol: ProtocolConfig,
    out: str | Path,
    *,
    seed: int = 0,
    group_size: int = 4,
    peaks: bool = True,
    normalise_drift: bool = False,
    on_progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
) -> ProfileReport:
    """Measure ``items`` into the store at ``out``, skipping keys it already holds (resumption).

    Items of one architecture are prepared and interleaved together with those of the next
    ``group_size - 1`` architectures. ``on_progress(done, total, row)`` is called once at the
    start (``row`` None) and after each measurement. With ``normalise_drift`` (CPU only) each row
    also stores its median at the environment's anchor speed (:mod:`latbench.profiling.drift`).
    The report says, for a CPU deployment, whether the machine was too busy for the run's numbers
    to repeat (``report.busy``).
    """
    from latbench.profiling import drift
    from latbench.profiling.base import get_backend
    from latbench.profiling.fingerprint import load_average

    if group_size < 1:
        raise LatbenchError("--group-size", f"must be >= 1, got {group_size}")
    _check_normalise(normalise_drift, deploy, protocol)
    backend = get_backend(deploy)  # a missing library or GPU fails here, before anything is written
    items = list({it.key(deploy): it for it in items}.values())
    t0 = time.perf_counter()
    load_before = load_average()
    with ResultStore(out) as store:
        if deploy.device_type == "cpu" and protocol.reference_calls and len(store):
            from latbench.profiling.reference import refuse_mixing

            refuse_mixing(store.to_table(), protocol.reference, str(out))
        todo = [it for it in items if it.key(deploy) not in store]
        report = ProfileReport(out=Path(out), requested=len(items), already_done=len(items) - len(todo))
        env = environment(deploy, store, peaks, protocol)
        report.env_id = env["env_id"]
        anchor = drift.read_anchor(report.env_id, reference=protocol.reference) if normalise_drift else None
        from latbench.profiling.peaks import deploy_peaks_key

        env_peaks = env["peaks"].get(deploy_peaks_key(deploy))
        envs: dict[str, dict[str, Any]] | None = {env["env_id"]: env}
        done = report.already_done
        if on_progress:
            on_progress(done, len(items), None)
        # Group by architecture so a model and its blocks are interleaved together.
        by_arch: dict[str, list[WorkItem]] = {}
        for it in todo:
            by_arch.setdefault(it.arch.to_json(), []).append(it)
        arch_groups = list(by_arch.values())
        for g in range(0, len(arch_groups), group_size):
            group = [it for items_of_arch in arch_groups[g : g + group_size] for it in items_of_arch]
            rows = measure_group(
                group, space_name, deploy, protocol, report.env_id, env_peaks, seed=seed, backend=backend
            )
            if normalise_drift:
                anchor = anchor if anchor is not None else drift.set_anchor(report.env_id, rows)
                drift.normalise(rows, anchor)
                report.ref_anchor_ms = anchor
            store.append(rows, envs)
            envs = None
            report.rows.extend(rows)
            report.measured += len(rows)
            report.unstable += sum(bool(r["unstable"]) for r in rows)
            for r in rows:
                done += 1
                if on_progress:
                    on_progress(done, len(items), r)
    report.wall_s = time.perf_counter() - t0
    if deploy.device_type == "cpu" and report.rows:
        after = load_average()
        report.busy = drift.busy_summary(
            report.rows,
            protocol.busy_ref_spread_run,
            protocol.busy_round_spread_run,
            load_before[0] if load_before else None,
            after[0] if after else None,
        )
    return report


def measure_group(
    group: Sequence[WorkItem],
    space_name: str,
    deploy: DeployConfig,
    protocol: ProtocolConfig,
    env_id: str,
    peaks: dict[str, Any] | None,
    *,
    seed: int = 0,
    backend: Any = None,
    gpu_index: int | None = None,
) -> list[dict[str, Any]]:
    """Build, prepare and measure ``group`` interleaved in rounds; one store row per item (nothing is written).

    This is the unit of work a fleet worker runs; :func:`profile_items` runs it locally.
    ``gpu_index`` is the NVML index of the GPU to read before/after (default: the deployment's
    CUDA index matched to NVML's by UUID, :func:`~latbench.profiling.fingerprint.nvml_index`).
    """
    from latbench.profiling.base import get_backend
    from latbench.profiling.protocol import measure_interleaved

    backends = {deploy.key(): backend or get_backend(deploy)}  # one per workload of the group
    prepared = []
    try:
        for it in group:
            at = it.deploy_for(deploy)
            if at.key() not in backends:
                backends[at.key()] = get_backend(at)
            module, inputs = _build(it, deploy, seed)
            prepared.append(backends[at.key()].prepare(module, inputs))
        measurements = measure_interleaved(prepared, protocol, gpu_index=_nvml_index(deploy, gpu_index))
    finally:
        for p in prepared:
            p.close()
    return [measurement_row(it, space_name, deploy, m, env_id, peaks, protocol) for it, m in zip(group, measurements)]


def _nvml_index(deploy: DeployConfig, given: int | None) -> int | None:
    """The NVML index of ``deploy``'s GPU: ``given``, else torch's index matched to NVML's by UUID
    (they differ when ``CUDA_VISIBLE_DEVICES`` hides or reorders GPUs); ``None`` on the CPU."""
    if given is not None or deploy.gpu_index is None:
        return given
    from latbench.profiling.fingerprint import nvml_index

    return nvml_index(deploy.gpu_index)


def profile_space(
    space: SearchSpace,
    n_archs: int,
    seed: int,
    deploy: DeployConfig,
    protocol: ProtocolConfig,
    out: str | Path,
    workloads: Sequence[tuple[int, int | None]] | None = None,
    workloads_per_arch: int = 0,
    **kwargs: Any,
) -> ProfileReport:
    """Sample ``n_archs`` architectures of ``space`` with ``seed`` (same seed, same architectures) and profile them.

    With ``workloads`` (a grid of (batch, seq_len)), each architecture is measured at
    ``workloads_per_arch`` of them (``0``: all), chosen by :func:`workload_design`; the items of
    an architecture group, whatever their workload, are interleaved in the same rounds, so that
    the machine's drift does not pass for a workload effect.
    """
    if n_archs < 1:
        raise LatbenchError("--samples", f"must be >= 1, got {n_archs}")
    archs = space.sample(seed, n=n_archs)
    design = None
    if workloads is not None and list(workloads) != [(deploy.batch, deploy.seq_len)]:
        for b, s in workloads:
            check_workload(space.family, replace(deploy, batch=b, seq_len=s))
        design = workload_design(n_archs, workloads, workloads_per_arch, seed)
    else:
        check_workload(space.family, deploy)
    blocks = kwargs.pop("blocks", True)
    items = work_items(archs, blocks, design)  # type: ignore[arg-type]
    return profile_items(items, space.name, deploy, protocol, out, seed=seed, **kwargs)


def _check_normalise(normalise_drift: bool, deploy: DeployConfig, protocol: ProtocolConfig) -> None:
    if normalise_drift and (deploy.device_type != "cpu" or not protocol.reference_calls):
        raise LatbenchError(
            "--normalise-drift",
            "needs the CPU reference workload, which is timed on CPU deployments only (and not with reference_calls 0)",
        )


def measure_user_model(
    model: str,
    inputs: Sequence[Any],
    deploy: DeployConfig,
    protocol: ProtocolConfig,
    *,
    out: str | Path | None = None,
    seed: int = 0,
    normalise_drift: bool = False,
) -> dict[str, Any]:
    """Measure a user's model (``MODEL.onnx`` or ``module:factory``) with the profiling protocol.

    ``inputs`` are :class:`~latbench.profiling.user_model.InputSpec`; they are passed by name
    (keyword arguments of the module, or the ONNX graph's input names). Returns the row, which
    is also appended to the store at ``out`` when given (its key is the model string). With
    ``normalise_drift`` (CPU) the row also holds its median at the environment's anchor speed,
    as ``profile --normalise-drift`` stores it (:mod:`latbench.profiling.drift`).
    """
    from latbench.profiling import drift
    from latbench.profiling.base import get_backend, is_onnx_file
    from latbench.profiling.fingerprint import collect
    from latbench.profiling.protocol import measure
    from latbench.profiling.user_model import load_factory

    _check_normalise(normalise_drift, deploy, protocol)
    backend = get_backend(deploy)
    tensors = {spec.name: spec.make(seed + i) for i, spec in enumerate(inputs)}
    params = flops = None
    if is_onnx_file(model):
        if not Path(model).is_file():
            raise LatbenchError(str(model), "no such file")
        module: Any = str(model)
    else:
        module = load_factory(model)
        params = sum(p.numel() for p in module.parameters())
        flops = _count_flops(module, tensors)
    prepared = backend.prepare(module, tensors)
    try:
        m = measure(prepared, protocol, gpu_index=_nvml_index(deploy, None))
    finally:
        prepared.close()
    fp = collect(threads=deploy.threads).to_dict()
    row: dict[str, Any] = {
        "arch": f"user:{model}",
        "space": "user",
        "scope": "model",
        "block_index": -1,
        "deploy_key": deploy.key(),
        "backend": deploy.backend,
        "mode": deploy.mode,
        "precision": deploy.precision,
        "device": deploy.device,
        "threads": deploy.threads,
        "cache": deploy.cache,
        "batch": deploy.batch,
        "seq_len": deploy.seq_len,
        "env_id": fp["env_id"],
        "flops": flops,
        "params": params,
        "roofline_ms": None,
        "inputs": ";".join(f"{s.name}:{'x'.join(map(str, s.shape))}:{s.dtype}" for s in inputs),
        "timestamp": time.time(),
    }
    row.update(m.to_row())
    row["protocol"] = json.dumps(protocol.to_dict(), sort_keys=True)
    if normalise_drift:
        anchor = drift.read_anchor(row["env_id"], reference=protocol.reference)
        drift.normalise([row], anchor if anchor is not None else drift.set_anchor(row["env_id"], [row]))
    if out is not None:
        with ResultStore(out) as store:
            key = (row["arch"], "model", -1, row["deploy_key"], row["batch"], row["seq_len"])
            if key in store:
                raise LatbenchError(str(out), f"already holds a measurement of {model} in this deployment")
            store.append([row], {fp["env_id"]: fp})
    return row


def _count_flops(module: Any, inputs: dict[str, Any]) -> int | None:
    """FLOPs of one call counted by torch's FlopCounterMode (matmuls, convolutions, attention)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            module(**inputs)
        return int(counter.get_total_flops())
    except Exception:  # a model the counter cannot trace still gets its latency measured
        return None
