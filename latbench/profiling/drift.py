"""The machine's own drift: seen in every CPU row, removed where asked (``--normalise-drift``).

Every round of a CPU measurement times a fixed reference workload
(:mod:`latbench.profiling.reference`, the protocol's ``reference``); a row's ``ref_ms`` is its median over the
row's rounds, the speed of the machine while the row was measured. On a shared (virtual) machine
that speed moves by several percent over minutes, for every workload alike (RESULTS, noise-cpu
and rerun-cpu), so two runs an hour apart differ by the drift even when each is precise.

Opt-in correction: each row also gets ``median_ms_normalised = median_ms * anchor / ref_ms``,
its median at one fixed speed of the machine, the *anchor*: the reference's median over the
first normalised run's first group on this environment, kept per environment and reference
workload in latbench's cache (``<cache>/reference/<env_id>.<reference>.json``; ``<env_id>.json``
for ``matmul``, where anchors were kept before references had names) so that every later run on
the same machine and stack, timed with the same reference, is brought to the same speed.
``median_ms`` stays as measured; the anchor is stored in every corrected row (``ref_anchor_ms``),
so a reader can bring rows to another anchor.

:func:`busy_summary` reads a run's rows back and says whether the machine was too busy for
its numbers to repeat, with the figure.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.io import atomic_write_text
from latbench.profiling.reference import LEGACY, row_reference
from latbench.profiling.stats import relative_spread

ANCHOR_SCHEMA = 1


def anchor_path(env_id: str, root: Path | None = None, reference: str = LEGACY) -> Path:
    """Where an environment's anchor for a reference workload is kept."""
    if root is None:
        from latbench.profiling.base import cache_dir

        root = cache_dir("reference")
    return Path(root) / (f"{env_id}.json" if reference == LEGACY else f"{env_id}.{reference}.json")


def read_anchor(env_id: str, root: Path | None = None, reference: str = LEGACY) -> float | None:
    """The environment's anchor (ms) for ``reference``, or ``None`` when none was set; a damaged file is an
    error naming it."""
    path = anchor_path(env_id, root, reference)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        value = float(data["ref_anchor_ms"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise LatbenchError(str(path), f"not a reference anchor ({exc}); delete it to set a new one") from None
    if not (math.isfinite(value) and value > 0):
        raise LatbenchError(str(path), f"reference anchor must be a positive number of ms, got {value!r}")
    return value


def set_anchor(env_id: str, rows: Sequence[dict[str, Any]], root: Path | None = None) -> float:
    """Set the environment's anchor from ``rows`` (the median of their ``ref_ms``, all timed with one
    reference workload) and keep it."""
    timed = [r for r in rows if _finite(r.get("ref_ms"))]
    if not timed:
        raise LatbenchError("--normalise-drift", "no CPU reference workload was timed (a GPU, or reference_calls 0)")
    reference = _one_reference(timed)
    value = float(np.median([float(r["ref_ms"]) for r in timed]))
    path = anchor_path(env_id, root, reference)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"schema": ANCHOR_SCHEMA, "env_id": env_id, "reference": reference, "ref_anchor_ms": value}
    atomic_write_text(path, json.dumps({**record, "rows": len(timed)}) + "\n")
    return value


def _one_reference(rows: Sequence[dict[str, Any]]) -> str:
    names = {row_reference(r) for r in rows}
    if len(names) != 1:
        what = f"rows timed with several reference workloads ({', '.join(sorted(names))})"
        raise LatbenchError("--normalise-drift", what)
    return names.pop()


def normalise(rows: list[dict[str, Any]], anchor_ms: float) -> None:
    """Add ``median_ms_normalised`` and ``ref_anchor_ms`` to each row with a reference (in place)."""
    for row in rows:
        ref = row.get("ref_ms")
        if _finite(ref) and float(ref) > 0:
            row["median_ms_normalised"] = float(row["median_ms"]) * anchor_ms / float(ref)
            row["ref_anchor_ms"] = anchor_ms


def cpu_seconds() -> tuple[float, float, float] | None:
    """(CPU time every process of the machine has used, in seconds summed over CPUs; this process's own;
    the wall clock), read together; ``None`` where ``/proc/stat`` is not there. Two readings give the
    CPU time other processes took in between: the work that shared the machine with a measurement."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    # user nice system idle iowait irq softirq steal (guest time is already counted in user)
    ticks = [int(x) for x in fields[1:9]]
    busy = ticks[0] + ticks[1] + ticks[2] + ticks[5] + ticks[6]
    return busy / os.sysconf("SC_CLK_TCK"), time.process_time(), time.perf_counter()


def other_cores(before: tuple[float, ...] | None, after: tuple[float, ...] | None) -> float:
    """The CPU time other processes used between two :func:`cpu_seconds` readings, in cores.

    NaN when unknown, or when the readings are less than a second apart: ``/proc/stat`` counts
    in 10-ms ticks, too coarse to say anything about a shorter window."""
    if before is None or after is None:
        return math.nan
    wall = after[2] - before[2]
    if wall < 1.0:
        return math.nan
    other = (after[0] - before[0]) - (after[1] - before[1])
    return max(0.0, other / wall)


def _finite(x: Any) -> bool:
    try:
        return x is not None and math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class BusyReport:
    """How much the machine moved over a run, and what the run's rows say about it.

    Attributes:
        rows: Rows of the run with a reference timing.
        busy_rows: Rows marked unstable as measured on a busy machine (other processes, a moving reference).
        ref_spread: (p90 - p10) / median of the rows' ``ref_ms`` over the run (NaN without rows).
        round_spread: The median over rows of each row's own ``round_spread`` (NaN if unknown).
        load_before: 1-minute load average when the run started (``None`` if unknown).
        load_after: ... and when it ended.
        ref_threshold: The protocol's ``busy_ref_spread_run``.
        round_threshold: The protocol's ``busy_round_spread_run``.
        other_cores: The largest CPU use of other processes over the rows' windows, in cores (NaN if unknown).
    """

    rows: int
    busy_rows: int
    ref_spread: float
    round_spread: float
    load_before: float | None
    load_after: float | None
    ref_threshold: float
    round_threshold: float
    other_cores: float = math.nan

    @property
    def busy(self) -> bool:
        return (
            self.busy_rows > 0
            or (math.isfinite(self.ref_spread) and self.ref_spread > self.ref_threshold)
            or (math.isfinite(self.round_spread) and self.round_spread > self.round_threshold)
        )

    def figures(self) -> str:
        """The run's figures in one phrase (also printed when the machine was quiet)."""
        parts = []
        if math.isfinite(self.round_spread):
            parts.append(f"each model's rounds moved {self.round_spread:.1%} (median p10-p90)")
        if math.isfinite(self.ref_spread):
            parts.append(f"the CPU reference workload {self.ref_spread:.1%} over the run")
        if math.isfinite(self.other_cores):
            parts.append(f"other processes used up to {self.other_cores:.2f} cores")
        if self.load_before is not None and self.load_after is not None:
            parts.append(f"load {self.load_before:.2f} -> {self.load_after:.2f}")
        return "; ".join(parts)

    def message(self) -> str | None:
        """One paragraph for the end of a run when the machine moved too much; ``None`` when it did not."""
        if not self.busy:
            return None
        what = "machine busy" if self.busy_rows else "machine unsteady (no other work seen: its own speed moved)"
        return (
            f"{what}: {self.figures()} (thresholds {self.round_threshold:.0%} and {self.ref_threshold:.0%}); "
            f"{self.busy_rows} of {self.rows} rows are marked unstable for other work or a moving reference. "
            "Numbers taken now can differ from another run by about that much: profile again with other work "
            "stopped, or add --normalise-drift to store each median also at one fixed machine speed."
        )


def busy_summary(
    rows: Sequence[dict[str, Any]],
    ref_threshold: float,
    round_threshold: float,
    load_before: float | None,
    load_after: float | None,
) -> BusyReport:
    """Read a run's rows: how much the reference and the rows' own rounds moved, how many rows were busy."""
    refs = [float(r["ref_ms"]) for r in rows if _finite(r.get("ref_ms"))]
    rounds = [float(r["round_spread"]) for r in rows if _finite(r.get("round_spread"))]
    busy_rows = sum("machine busy" in str(r.get("unstable_reasons") or "") for r in rows)
    others = [float(r["other_cores"]) for r in rows if _finite(r.get("other_cores"))]
    return BusyReport(
        rows=len(refs),
        busy_rows=busy_rows,
        ref_spread=relative_spread(refs),
        round_spread=float(np.median(rounds)) if rounds else math.nan,
        load_before=load_before,
        load_after=load_after,
        ref_threshold=ref_threshold,
        round_threshold=round_threshold,
        other_cores=max(others) if others else math.nan,
    )
