"""The timing protocol of MEASUREMENT.md: warm-up, one sample per call, adaptive stop, interleaving.

For each prepared configuration:

1. warm-up: at least ``warmup_calls`` untimed calls and at least ``warmup_s``
   seconds (0.2 s CPU, 25 ms GPU by default);
2. sampling in rounds of ``calls_per_round`` calls, one latency per call, every
   raw sample kept. Several configurations are *interleaved*: each round gives
   every configuration still sampling its calls, A B C A B C ..., so that drift
   of the machine spreads over all of them instead of biasing one;
3. a configuration stops after a round in which the 95% CI of its median
   (order statistics, :func:`~latbench.profiling.stats.median_ci`) lies within
   ``±target_rel_ci`` of the median, once it has ``min_samples`` and ``min_rounds``;
   or when its time (warm-up included) passes ``budget_s`` with ``min_samples``
   and ``min_rounds`` taken (the budget never cuts the spread over rounds short);
   or at ``max_samples``;
4. on the CPU, a fixed reference workload (the protocol's ``reference``,
   :mod:`latbench.profiling.reference`) is timed ``reference_calls`` times at the
   start of every round. Each measurement keeps
   ``ref_ms``, the median of the reference over the rounds it was sampled in: the
   speed of the machine while it was measured. On a shared (virtual) machine that
   speed drifts by a few percent over minutes, for every workload alike
   (``benchmarks/RESULTS.md``, noise-cpu); ``median_ms`` is never corrected for it,
   ``ref_ms`` lets a reader see the drift and compare runs taken at different speeds.

A :class:`Measurement` is unstable when IQR/median exceeds ``unstable_iqr_ratio``,
when it stopped before its CI was tight (budget or sample cap), or when the GPU
reported a throttle reason other than idle before or after sampling or while it ran
the timed calls, or NVML's power/thermal violation counters grew over the window. Load
average (and on a GPU the NVML state) is read before and after.

The clock and the environment probes are parameters, so that tests drive the
whole protocol with a scripted fake backend and time nothing real.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.profiling import drift, fingerprint
from latbench.profiling.base import Prepared
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.placement import Placement, pinned, plan
from latbench.profiling.reference import cpu_reference
from latbench.profiling.stats import Stats, ci_converged, relative_spread

#: Why sampling of a configuration stopped.
STOP_REASONS: tuple[str, ...] = ("converged", "budget", "max_samples")

#: The columns :meth:`Measurement.to_row` gives, in order.
ROW_COLUMNS: tuple[str, ...] = (
    "median_ms",
    "mean_ms",
    "min_ms",
    "max_ms",
    "std_ms",
    "p10_ms",
    "p25_ms",
    "p75_ms",
    "p90_ms",
    "p99_ms",
    "iqr_ratio",
    "ci_low_ms",
    "ci_high_ms",
    "n",
    "unstable",
    "unstable_reasons",
    "build_ms",
    "budget_exhausted",
    "stop_reason",
    "wall_s",
    "runtime",
    "ref_ms",
    "ref_spread",
    "other_cores",
    "round_spread",
    "placement",
    "samples_ms",
    "sm_clock_busy_mhz",
)


@dataclass(frozen=True)
class Probe:
    """Reads what drifts in the environment; replaced by fakes in tests.

    Attributes:
        load_average: Returns the 1/5/15-minute load average, or ``None``.
        gpu_state: Returns NVML's state of a GPU (see :func:`latbench.profiling.fingerprint.gpu_state`).
    """

    load_average: Callable[[], list[float] | None] = fingerprint.load_average
    gpu_state: Callable[[int], dict[str, Any] | None] = fingerprint.gpu_state
    #: Times the reference workload n times (ms each); None: :func:`~latbench.profiling.reference.cpu_reference`
    #: with the protocol's ``reference``.
    cpu_reference: Callable[[int], list[float]] | None = None
    #: Reads a GPU while it runs the timed calls (a :class:`~latbench.profiling.fingerprint.BusySampler`).
    busy_sampler: Callable[[int], Any] = fingerprint.BusySampler
    #: (CPU seconds every process used, this process's own, wall s): two readings give the other work meanwhile.
    cpu_seconds: Callable[[], tuple[float, float, float] | None] = drift.cpu_seconds


@dataclass(frozen=True)
class Measurement:
    """One configuration's latency: statistics, every raw sample, and the conditions it was taken in.

    Attributes:
        config: The deployment measured.
        runtime: Runtime and version (``"onnxruntime 1.32.0"``).
        stats: Summary of ``samples_ms``.
        samples_ms: Every timed call, in the order taken (ms).
        unstable: Whether any of ``unstable_reasons`` holds.
        unstable_reasons: Why the number should not be trusted, one phrase each.
        build_ms: Preparation time (export, compile, capture, engine build), apart from latency.
        budget_exhausted: Sampling stopped on the time budget with the CI still wide.
        stop_reason: ``"converged"``, ``"budget"`` or ``"max_samples"``.
        warmup_calls: Untimed warm-up calls made before sampling.
        rounds: Rounds this configuration took part in.
        load_avg_before: Load average before warm-up.
        load_avg_after: Load average after sampling.
        gpu_state_before: NVML state after warm-up, before sampling (``None`` on the CPU).
        gpu_state_after: NVML state after sampling.
        wall_s: Time this configuration itself ran (warm-up and sampling), in seconds.
        info: What the backend recorded (providers, engine cache, ...).
        ref_ms: Median time of the CPU reference workload (the protocol's ``reference``) over the rounds
            this configuration was sampled in: the machine's speed meanwhile; NaN when none was
            timed (a GPU, or ``reference_calls=0``). ``median_ms`` is not corrected by it.
        ref_spread: How much the reference moved over those rounds: (p90 - p10) / median of its
            per-round medians (NaN with fewer than 3 rounds or no reference). Above the protocol's
            ``busy_ref_spread`` the machine's speed moved while this row was measured: it is unstable.
        placement: Where a CPU configuration's threads ran (:meth:`Placement.to_dict`); ``None`` on a GPU.
        round_spread: How much this configuration's own latency moved between its rounds: (p90 - p10) /
            median of its per-round medians (NaN with fewer than 3 rounds). The rounds are spread over
            the group's time, so a wide spread says the machine moved while it was measured, and that
            another run can differ by as much (RESULTS, protocol-choice-cpu).
        other_cores: CPU time other processes used while this CPU configuration was warmed up and
            sampled, in cores (NaN on a GPU, or a window under a second). Above the protocol's
            ``busy_other_cores`` other work shared the machine: the row is unstable.
        gpu_busy: The GPU read while it ran the timed calls (SM clock, throttle reasons seen;
            :meth:`~latbench.profiling.fingerprint.BusySampler.summary`), ``None`` on the CPU.
    """

    config: DeployConfig
    runtime: str
    stats: Stats
    samples_ms: tuple[float, ...]
    unstable: bool
    unstable_reasons: tuple[str, ...]
    build_ms: float
    budget_exhausted: bool
    stop_reason: str
    warmup_calls: int
    rounds: int
    load_avg_before: tuple[float, ...] | None
    load_avg_after: tuple[float, ...] | None
    gpu_state_before: dict[str, Any] | None
    gpu_state_after: dict[str, Any] | None
    wall_s: float
    info: dict[str, Any] = field(default_factory=dict)
    ref_ms: float = math.nan
    ref_spread: float = math.nan
    placement: dict[str, Any] | None = None
    other_cores: float = math.nan
    round_spread: float = math.nan
    gpu_busy: dict[str, Any] | None = None

    @property
    def median_ms(self) -> float:
        return self.stats.median_ms

    def to_row(self) -> dict[str, Any]:
        """Flat columns for the result store (:data:`ROW_COLUMNS`); ``samples_ms`` is a list,
        ``unstable_reasons`` one string joined by ``"; "`` (empty when stable)."""
        s = self.stats
        return {
            "median_ms": s.median_ms,
            "mean_ms": s.mean_ms,
            "min_ms": s.min_ms,
            "max_ms": s.max_ms,
            "std_ms": s.std_ms,
            "p10_ms": s.p10_ms,
            "p25_ms": s.p25_ms,
            "p75_ms": s.p75_ms,
            "p90_ms": s.p90_ms,
            "p99_ms": s.p99_ms,
            "iqr_ratio": s.iqr_ratio,
            "ci_low_ms": s.ci_low_ms,
            "ci_high_ms": s.ci_high_ms,
            "n": s.n,
            "unstable": self.unstable,
            "unstable_reasons": "; ".join(self.unstable_reasons),
            "build_ms": self.build_ms,
            "budget_exhausted": self.budget_exhausted,
            "stop_reason": self.stop_reason,
            "wall_s": self.wall_s,
            "runtime": self.runtime,
            "ref_ms": self.ref_ms,
            "ref_spread": self.ref_spread,
            "other_cores": self.other_cores,
            "round_spread": self.round_spread,
            "placement": None if self.placement is None else json.dumps(self.placement, sort_keys=True),
            "samples_ms": list(self.samples_ms),
            "sm_clock_busy_mhz": (self.gpu_busy or {}).get("sm_clock_busy_mhz"),
        }

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-able (the config and stats as nested dicts)."""
        return {
            "config": self.config.to_dict(),
            "runtime": self.runtime,
            "stats": self.stats.to_dict(),
            "samples_ms": list(self.samples_ms),
            "unstable": self.unstable,
            "unstable_reasons": list(self.unstable_reasons),
            "build_ms": self.build_ms,
            "budget_exhausted": self.budget_exhausted,
            "stop_reason": self.stop_reason,
            "warmup_calls": self.warmup_calls,
            "rounds": self.rounds,
            "load_avg_before": None if self.load_avg_before is None else list(self.load_avg_before),
            "load_avg_after": None if self.load_avg_after is None else list(self.load_avg_after),
            "gpu_state_before": self.gpu_state_before,
            "gpu_state_after": self.gpu_state_after,
            "wall_s": self.wall_s,
            "info": self.info,
            "ref_ms": None if math.isnan(self.ref_ms) else self.ref_ms,
            "ref_spread": None if math.isnan(self.ref_spread) else self.ref_spread,
            "other_cores": None if math.isnan(self.other_cores) else self.other_cores,
            "round_spread": None if math.isnan(self.round_spread) else self.round_spread,
            "placement": self.placement,
            "gpu_busy": self.gpu_busy,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                config=DeployConfig.from_dict(data["config"]),
                runtime=str(data["runtime"]),
                stats=Stats.from_dict(data["stats"]),
                samples_ms=tuple(float(x) for x in data["samples_ms"]),
                unstable=bool(data["unstable"]),
                unstable_reasons=tuple(str(r) for r in data["unstable_reasons"]),
                build_ms=float(data["build_ms"]),
                budget_exhausted=bool(data["budget_exhausted"]),
                stop_reason=str(data["stop_reason"]),
                warmup_calls=int(data["warmup_calls"]),
                rounds=int(data["rounds"]),
                load_avg_before=_opt_tuple(data.get("load_avg_before")),
                load_avg_after=_opt_tuple(data.get("load_avg_after")),
                gpu_state_before=data.get("gpu_state_before"),
                gpu_state_after=data.get("gpu_state_after"),
                wall_s=float(data["wall_s"]),
                info=dict(data.get("info") or {}),
                ref_ms=math.nan if data.get("ref_ms") is None else float(data["ref_ms"]),
                ref_spread=math.nan if data.get("ref_spread") is None else float(data["ref_spread"]),
                other_cores=math.nan if data.get("other_cores") is None else float(data["other_cores"]),
                round_spread=math.nan if data.get("round_spread") is None else float(data["round_spread"]),
                placement=data.get("placement"),
                gpu_busy=data.get("gpu_busy"),
            )
        except KeyError as exc:
            raise LatbenchError("measurement", f"missing field {exc.args[0]!r}") from None


def _opt_tuple(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(x) for x in value)


class _Run:
    """Bookkeeping of one configuration during a (possibly interleaved) measurement."""

    def __init__(self, prepared: Prepared, gpu_index: int | None) -> None:
        self.prepared = prepared
        self.gpu_index = gpu_index
        self.samples: list[float] = []
        self.spent_s = 0.0
        self.rounds = 0
        self.warmup_calls = 0
        self.stop_reason: str | None = None
        self.refs: list[float] = []  # the reference's median time in each round this run took part in
        self.other_cores = math.nan  # CPU use of other processes while this run was sampled, in cores
        self.round_medians: list[float] = []  # the median of each round's timed calls

    def timed(self, n: int, clock: Callable[[], float]) -> list[float]:
        t0 = clock()
        out = self.prepared.time_calls(n)
        self.spent_s += clock() - t0
        if len(out) != n:
            raise LatbenchError(self.prepared.config.label(), f"the backend returned {len(out)} timings for {n} calls")
        bad = [x for x in out if not (math.isfinite(x) and x >= 0)]
        if bad:
            raise LatbenchError(self.prepared.config.label(), f"the backend returned an invalid timing {bad[0]!r} ms")
        return [float(x) for x in out]

    def warm_up(self, protocol: ProtocolConfig, clock: Callable[[], float]) -> None:
        seconds = protocol.warmup_seconds(self.gpu_index is not None)
        t0 = clock()
        chunk = max(1, protocol.warmup_calls)
        if protocol.warmup_calls:
            self.timed(protocol.warmup_calls, clock)
            self.warmup_calls += protocol.warmup_calls
        while clock() - t0 < seconds:
            self.timed(chunk, clock)
            self.warmup_calls += chunk

    def update(self, protocol: ProtocolConfig) -> None:
        n = len(self.samples)
        if n >= protocol.min_samples and self.rounds >= protocol.min_rounds:
            if ci_converged(self.samples, protocol.target_rel_ci, protocol.min_samples):
                self.stop_reason = "converged"
                return
        if n >= protocol.max_samples:
            self.stop_reason = "max_samples"
        elif n >= protocol.min_samples and self.rounds >= protocol.min_rounds and self.spent_s >= protocol.budget_s:
            self.stop_reason = "budget"


def measure(
    prepared: Prepared,
    protocol: ProtocolConfig | None = None,
    gpu_index: int | None = None,
    *,
    clock: Callable[[], float] | None = None,
    probe: Probe | None = None,
) -> Measurement:
    """Measure one prepared configuration with the protocol.

    Args:
        prepared: From :meth:`Backend.prepare`; left open (the caller closes it).
        protocol: Protocol settings; defaults to :class:`ProtocolConfig`'s.
        gpu_index: NVML index of the GPU to read before/after; ``None``: the config's CUDA index
            (``None`` on the CPU).
        clock: Seconds as a float (default ``time.perf_counter``); tests inject a fake.
        probe: Environment readers (default: :class:`Probe`, i.e. load average and NVML).
    """
    return measure_interleaved([prepared], protocol, gpu_index, clock=clock, probe=probe)[0]


def measure_interleaved(
    prepared: Sequence[Prepared],
    protocol: ProtocolConfig | None = None,
    gpu_index: int | None = None,
    *,
    clock: Callable[[], float] | None = None,
    probe: Probe | None = None,
) -> list[Measurement]:
    """Measure several prepared configurations, alternating them in rounds (A B C A B C ...).

    Each configuration warms up once (in order), then every round gives each configuration
    that is still sampling ``calls_per_round`` calls (preceded, when more than one is
    interleaved, by ``round_warmup_calls`` untimed calls). A configuration leaves the rounds
    when it converges, runs out of budget (after ``min_rounds``) or reaches ``max_samples``;
    the others go on. When a CPU configuration takes part in a round, the round starts with
    ``reference_calls`` timings of the reference workload (``probe.cpu_reference``).

    Returns:
        One :class:`Measurement` per prepared configuration, in the order given.
    """
    if not prepared:
        return []
    protocol = protocol or ProtocolConfig()
    clock = clock or time.perf_counter
    probe = probe or Probe()
    runs = [_Run(p, p.gpu_index if gpu_index is None else gpu_index) for p in prepared]
    cpu_threads = [r.prepared.config.threads or 1 for r in runs if r.gpu_index is None]
    placement = plan(max(cpu_threads), protocol.pin_threads) if cpu_threads else None
    with pinned(placement) if placement is not None else contextlib.nullcontext() as in_force:
        return _sample(runs, protocol, clock, probe, in_force)


def _sample(
    runs: list[_Run],
    protocol: ProtocolConfig,
    clock: Callable[[], float],
    probe: Probe,
    placement: Placement | None,
) -> list[Measurement]:
    interleaved = len(runs) > 1
    load_before = probe.load_average()
    cpu_before = probe.cpu_seconds()
    for run in runs:
        run.warm_up(protocol, clock)
    gpus = sorted({r.gpu_index for r in runs if r.gpu_index is not None})
    gpu_before = {i: probe.gpu_state(i) for i in gpus}
    busy = {i: probe.busy_sampler(i) for i in gpus}
    for run in runs:
        if run.gpu_index is not None:
            run.prepared.on_busy = busy[run.gpu_index].sample
    reference = probe.cpu_reference or functools.partial(cpu_reference, kind=protocol.reference)
    active = list(runs)
    while active:
        if protocol.reference_calls and any(r.gpu_index is None for r in active):
            ref = float(np.median(reference(protocol.reference_calls)))
            for run in active:
                if run.gpu_index is None:
                    run.refs.append(ref)
        for run in active:
            if interleaved and protocol.round_warmup_calls:
                run.timed(protocol.round_warmup_calls, clock)
            n = min(protocol.calls_per_round, protocol.max_samples - len(run.samples))
            got = run.timed(n, clock)
            run.samples.extend(got)
            run.round_medians.append(float(np.median(got)))
            run.rounds += 1
        for run in active:
            run.update(protocol)
            if run.stop_reason is not None and run.gpu_index is None:
                run.other_cores = drift.other_cores(cpu_before, probe.cpu_seconds())
        active = [r for r in active if r.stop_reason is None]
    for run in runs:
        run.prepared.on_busy = None
    gpu_after = {i: probe.gpu_state(i) for i in gpus}
    load_after = probe.load_average()
    return [
        _measurement(
            r,
            protocol,
            load_before,
            load_after,
            gpu_before.get(r.gpu_index) if r.gpu_index is not None else None,
            gpu_after.get(r.gpu_index) if r.gpu_index is not None else None,
            placement.to_dict() if placement is not None and r.gpu_index is None else None,
            busy[r.gpu_index].summary() if r.gpu_index is not None else None,
        )
        for r in runs
    ]


def reference_spread(refs: Sequence[float]) -> float:
    """(p90 - p10) / median of per-round medians (of the reference, or of a configuration's own
    timings); NaN with fewer than 3 rounds."""
    return relative_spread(refs, min_n=3)


def unstable_reasons(
    stats: Stats,
    protocol: ProtocolConfig,
    stop_reason: str,
    gpu_states: Sequence[dict[str, Any] | None] = (),
    ref_spread: float = math.nan,
    gpu_busy: dict[str, Any] | None = None,
    other_cores: float = math.nan,
) -> list[str]:
    """The reasons a measurement is unstable (empty if it is not)."""
    reasons = []
    if math.isfinite(other_cores) and other_cores > protocol.busy_other_cores:
        reasons.append(
            f"machine busy: other processes used {other_cores:.2f} cores while measured "
            f"(> {protocol.busy_other_cores:g})"
        )
    if math.isfinite(ref_spread) and ref_spread > protocol.busy_ref_spread:
        reasons.append(
            f"machine busy: the CPU reference workload moved {ref_spread:.1%} (p10-p90) "
            f"> {protocol.busy_ref_spread:.1%} while measured"
        )
    if stats.iqr_ratio > protocol.unstable_iqr_ratio:
        reasons.append(f"IQR/median {stats.iqr_ratio:.3f} > {protocol.unstable_iqr_ratio:g}")
    if stop_reason != "converged":
        reasons.append(
            f"median CI ±{stats.ci_rel_halfwidth:.2%} wider than ±{protocol.target_rel_ci:.2%} "
            f"({'time budget' if stop_reason == 'budget' else 'max_samples'} reached)"
        )
    before, after = [*gpu_states, None, None][:2]
    throttles = fingerprint.gpu_window_throttles(before, after, gpu_busy)
    if throttles:
        reasons.append(f"GPU throttled ({', '.join(dict.fromkeys(throttles))})")
    return reasons


def _measurement(
    run: _Run,
    protocol: ProtocolConfig,
    load_before: list[float] | None,
    load_after: list[float] | None,
    gpu_before: dict[str, Any] | None,
    gpu_after: dict[str, Any] | None,
    placement: dict[str, Any] | None = None,
    gpu_busy: dict[str, Any] | None = None,
) -> Measurement:
    stats = Stats.from_samples(run.samples)
    stop = run.stop_reason or "max_samples"
    spread = reference_spread(run.refs)
    reasons = unstable_reasons(
        stats,
        protocol,
        stop,
        (gpu_before, gpu_after),
        ref_spread=spread,
        gpu_busy=gpu_busy,
        other_cores=run.other_cores,
    )
    return Measurement(
        config=run.prepared.config,
        runtime=run.prepared.runtime,
        stats=stats,
        samples_ms=tuple(run.samples),
        unstable=bool(reasons),
        unstable_reasons=tuple(reasons),
        build_ms=run.prepared.build_ms,
        budget_exhausted=stop == "budget",
        stop_reason=stop,
        warmup_calls=run.warmup_calls,
        rounds=run.rounds,
        load_avg_before=_opt_tuple(load_before),
        load_avg_after=_opt_tuple(load_after),
        gpu_state_before=gpu_before,
        gpu_state_after=gpu_after,
        wall_s=run.spent_s,
        info=dict(run.prepared.info),
        ref_ms=float(np.median(run.refs)) if run.refs else math.nan,
        ref_spread=spread,
        other_cores=run.other_cores,
        round_spread=reference_spread(run.round_medians),
        placement=placement,
        gpu_busy=gpu_busy,
    )
