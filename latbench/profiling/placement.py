"""Where a CPU measurement runs: how many intra-op threads, pinned to which cores.

The defaults were chosen by measurement (``benchmarks/RESULTS.md``, sections noise-cpu and
rerun-cpu; MEASUREMENT.md's table): on a shared machine two threads on two cores wait on the
slower one, and a measuring thread the scheduler moves between cores pays for cold caches and
for whatever ran there. So, by default:

- **threads**: one per *physical* core of this process's CPU set, less one core left to the
  operating system and everything else (never fewer than one). SMT siblings share a core's
  execution units, so a second thread on a sibling measures its neighbour, not the model.
  On a 2-core machine: 1 thread.
- **pinning**: every thread of the process is pinned, for the duration of the sampling, to a
  fixed set of logical CPUs, one per thread, taken from the *end* of the CPU set (core 0
  takes most interrupts and housekeeping on Linux). Run under ``taskset -c N`` to choose the
  core yourself: the CPU set is then ``{N}``. Pinning is skipped (and the record says why)
  where the OS does not allow it.

The choice is recorded with every CPU row (``placement``) and in the run's fingerprint, so
two stores taken with different placements never pass for the same deployment unnoticed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError

_SYS_CPU = Path("/sys/devices/system/cpu")


def cpu_set() -> tuple[int, ...]:
    """The logical CPUs this process may run on (its affinity), sorted."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return tuple(range(os.cpu_count() or 1))


def _siblings(cpu: int, sys_cpu: Path = _SYS_CPU) -> frozenset[int]:
    """The logical CPUs sharing ``cpu``'s physical core (itself only when the OS does not say)."""
    path = sys_cpu / f"cpu{cpu}" / "topology" / "thread_siblings_list"
    try:
        return frozenset(parse_cpu_list(path.read_text()))
    except (OSError, ValueError):
        return frozenset({cpu})


def parse_cpu_list(text: str) -> list[int]:
    """Linux's CPU list format (``"0-3,8,10-11"``) as a sorted list of CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        if dash:
            cpus.update(range(int(lo), int(hi) + 1))
        else:
            cpus.add(int(lo))
    return sorted(cpus)


def physical_cores(cpus: tuple[int, ...], sys_cpu: Path = _SYS_CPU) -> list[int]:
    """One logical CPU per physical core among ``cpus`` (the highest-numbered of each core's siblings
    in the set), in ascending order."""
    seen: set[frozenset[int]] = set()
    chosen: list[int] = []
    for cpu in sorted(cpus, reverse=True):
        core = _siblings(cpu, sys_cpu) & frozenset(cpus) or frozenset({cpu})
        if core in seen:
            continue
        seen.add(core)
        chosen.append(max(core))
    return sorted(chosen)


def default_threads(cpus: tuple[int, ...] | None = None, sys_cpu: Path = _SYS_CPU) -> int:
    """One thread per physical core of the CPU set, less one core kept free (at least 1)."""
    cores = physical_cores(cpu_set() if cpus is None else cpus, sys_cpu)
    return max(1, len(cores) - 1)


@dataclass(frozen=True)
class Placement:
    """Where the measuring threads of a CPU deployment run.

    Attributes:
        threads: Intra-op threads of the deployment.
        cpus: The logical CPUs they are pinned to (empty: not pinned).
        cpu_set: The CPUs this process was allowed to use.
        pinned: Whether the threads were (or will be) pinned.
        why_not: Why they were not pinned (empty when pinned).
    """

    threads: int
    cpus: tuple[int, ...]
    cpu_set: tuple[int, ...]
    pinned: bool
    why_not: str = ""
    note: str = ""

    def summary(self) -> str:
        """``"1 thread pinned to cpu 1 of 0-1"`` (or why not pinned)."""
        t = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        of = format_cpu_list(self.cpu_set)
        if self.pinned:
            return f"{t} pinned to cpu {format_cpu_list(self.cpus)} of {of}" + (f" ({self.note})" if self.note else "")
        return f"{t}, not pinned ({self.why_not}), cpus {of}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpus"] = list(self.cpus)
        d["cpu_set"] = list(self.cpu_set)
        d["summary"] = self.summary()
        return d


def format_cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """The inverse of :func:`parse_cpu_list`: ``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(cpus):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def plan(threads: int, pin: bool = True, cpus: tuple[int, ...] | None = None, sys_cpu: Path = _SYS_CPU) -> Placement:
    """Where ``threads`` measuring threads go: the last ``threads`` physical cores of the CPU set.

    More threads than physical cores are pinned to the whole CPU set (SMT siblings included).
    """
    if threads < 1:
        raise LatbenchError("--threads", f"must be >= 1, got {threads}")
    allowed = cpu_set() if cpus is None else tuple(sorted(cpus))
    if not pin:
        return Placement(threads, (), allowed, False, "--no-pin")
    if not hasattr(os, "sched_setaffinity"):
        return Placement(threads, (), allowed, False, "this OS has no sched_setaffinity")
    cores = physical_cores(allowed, sys_cpu)
    chosen = tuple(cores[-threads:]) if threads <= len(cores) else allowed
    return Placement(threads, chosen, allowed, True)


def _thread_ids() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return [0]


def _set_affinity(tids: list[int], cpus: set[int] | dict[int, set[int]]) -> None:
    for tid in tids:
        mask = cpus[tid] if isinstance(cpus, dict) else cpus
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, mask)


def _lock_dir() -> Path:
    import tempfile

    return Path(os.environ.get("LATBENCH_CPU_LOCK_DIR") or Path(tempfile.gettempdir()) / "latbench-cpus")


@contextlib.contextmanager
def claimed(placement: Placement, sys_cpu: Path = _SYS_CPU) -> Iterator[Placement]:
    """The placement with its cores claimed from other latbench processes on this machine.

    Two measuring processes on one core measure each other (MEASUREMENT.md), and every process
    would pick the same last cores by default (local fleet workers, two profiles at once). So each
    core is claimed with an exclusive lock file while it is measured on; a process whose cores are
    taken moves to the next free physical cores, from the end of its CPU set. With none free it
    keeps its cores and says so in ``note``.
    """
    if not placement.pinned or not placement.cpus or placement.cpus == placement.cpu_set:
        yield placement
        return
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield placement
        return
    folder = _lock_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        yield placement
        return
    want = len(placement.cpus)
    candidates = list(placement.cpus[::-1]) + [
        c for c in physical_cores(placement.cpu_set, sys_cpu)[::-1] if c not in placement.cpus
    ]
    held: list[tuple[int, Any]] = []
    try:
        for cpu in candidates:
            if len(held) == want:
                break
            try:
                f = open(folder / f"cpu{cpu}.lock", "a+")
            except OSError:
                continue
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                f.close()
                continue
            held.append((cpu, f))
        if len(held) == want:
            cpus = tuple(sorted(c for c, _ in held))
            note = "" if cpus == placement.cpus else "the default cores were taken by another latbench process"
            yield Placement(placement.threads, cpus, placement.cpu_set, True, note=note)
        else:
            yield Placement(
                placement.threads,
                placement.cpus,
                placement.cpu_set,
                True,
                note="shared: every core is measured on by another latbench process",
            )
    finally:
        for _, f in held:
            f.close()


@contextlib.contextmanager
def pinned(placement: Placement) -> Iterator[Placement]:
    """Claim ``placement``'s cores (:func:`claimed`), pin every thread of this process to them for
    the duration, and restore each thread's previous affinity afterwards. Threads started inside
    inherit the pinning.

    Yields the placement actually in force: a refusal by the OS (a container's cpuset, say)
    gives an unpinned placement with the reason, never an error.
    """
    if not placement.pinned or not placement.cpus:
        yield placement
        return
    with claimed(placement) as actual:
        with _pinned_to(actual) as in_force:
            yield in_force


@contextlib.contextmanager
def _pinned_to(placement: Placement) -> Iterator[Placement]:
    tids = _thread_ids()
    before: dict[int, set[int]] = {}
    for tid in tids:
        with contextlib.suppress(OSError):
            before[tid] = set(os.sched_getaffinity(tid))
    try:
        os.sched_setaffinity(0, set(placement.cpus))
    except OSError as exc:
        yield Placement(placement.threads, (), placement.cpu_set, False, f"sched_setaffinity refused: {exc.strerror}")
        return
    _set_affinity(tids, set(placement.cpus))
    try:
        yield placement
    finally:
        _set_affinity(list(before), before)
