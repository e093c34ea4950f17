"""``fleet_profile``: a sample of a search space measured on every target of a fleet."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from latbench.fleet.engine import FleetReport, ProgressFn, WarningFn, run_plan
from latbench.fleet.plan import profile_plan
from latbench.fleet.targets import Target
from latbench.fleet.worker import MeasureFn
from latbench.profiling.config import ProtocolConfig


def fleet_profile(
    space: Any,
    samples: int,
    targets: Sequence[Target],
    protocol: ProtocolConfig,
    out: str | Path,
    *,
    address: str = "auto",
    batch: int = 1,
    seq_len: int | None = None,
    seed: int = 0,
    blocks: bool = True,
    group_size: int = 4,
    peaks: bool = True,
    max_retries: int = 3,
    measure_fn: MeasureFn | None = None,
    on_progress: ProgressFn | None = None,
    on_warning: WarningFn | None = None,
    flush_s: float = 5.0,
) -> FleetReport:
    """Sample ``samples`` architectures of ``space`` with ``seed`` and measure them on every target.

    The same as :func:`latbench.profiling.job.profile_space` run on each target's device (same
    seed, same architectures, same weights), with the devices behind one target sharing the
    work. Rows land in the store at ``out`` tagged with ``target``; their ``deploy_key`` starts
    with ``target=<label>,``. Resumable: a second call measures only what the store lacks.

    Args:
        space: A :class:`~latbench.space.SearchSpace`.
        samples: Architectures to sample.
        targets: The targets (from :func:`~latbench.fleet.targets.read_targets`).
        protocol: The timing protocol.
        out: The result store.
        address: Where Ray is: ``ray://HOST:PORT``, ``HOST:PORT``, ``auto`` or ``local``.
        batch: Batch size of the workload.
        seq_len: Sequence length (bert, gpt); ``None`` for vit.
        seed: Sampling, weight and dealing seed.
        blocks: Also measure each distinct block alone.
        group_size: Architectures a task prepares and interleaves together.
        peaks: Measure each device's attainable peaks once (roofline columns).
        max_retries: Times Ray runs a task again after its worker or node died.
        measure_fn: The unit of work on the device (default ``measure_group``).
        on_progress: ``(label, done, requested)`` after each chunk.
        on_warning: Each warning as it arises.
        flush_s: Arrived rows are appended to the store together at most this often (and at the end).
    """
    plan = profile_plan(
        space,
        samples,
        targets,
        protocol,
        batch=batch,
        seq_len=seq_len,
        seed=seed,
        blocks=blocks,
        group_size=group_size,
        peaks=peaks,
    )
    return run_plan(
        plan,
        out,
        address=address,
        max_retries=max_retries,
        measure_fn=measure_fn,
        on_progress=on_progress,
        on_warning=on_warning,
        flush_s=flush_s,
    )
