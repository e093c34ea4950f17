"""Where the measuring threads run (placement), rows marked when the machine was busy, and the
opt-in drift correction (``--normalise-drift``). Driven by fakes: a fake sysfs topology, the
scripted backend and reference of ``test_protocol``; the pinning itself is checked on this
process's real affinity and restored."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from latbench.errors import LatbenchError
from latbench.profiling import drift
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.placement import (
    default_threads,
    format_cpu_list,
    parse_cpu_list,
    physical_cores,
    pinned,
    plan,
)
from latbench.profiling.protocol import Probe, measure_interleaved, reference_spread

from .test_protocol import FakeClock, FakePrepared, steady
from .test_protocol_reference import ScriptedReference, probe, protocol

needs_affinity = pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no sched_setaffinity on this OS")


def fake_topology(tmp_path: Path, siblings: dict[int, str]) -> Path:
    """A /sys/devices/system/cpu with ``thread_siblings_list`` per CPU."""
    for cpu, text in siblings.items():
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(text + "\n")
    return tmp_path


def test_cpu_lists_round_trip() -> None:
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert format_cpu_list([0, 1, 2, 3, 8, 10, 11]) == "0-3,8,10-11"
    assert format_cpu_list(parse_cpu_list("5")) == "5"


def test_smt_siblings_count_as_one_core_and_one_core_is_left_free(tmp_path: Path) -> None:
    # 4 physical cores with 2 hyperthreads each: cpus i and i+4 share a core.
    sys_cpu = fake_topology(tmp_path, {i: f"{i % 4},{i % 4 + 4}" for i in range(8)})
    cpus = tuple(range(8))
    assert physical_cores(cpus, sys_cpu) == [4, 5, 6, 7]
    assert default_threads(cpus, sys_cpu) == 3  # one thread per physical core, less one
    p = plan(3, cpus=cpus, sys_cpu=sys_cpu)
    assert p.pinned and p.cpus == (5, 6, 7)  # the last cores: core 0 takes the interrupts
    assert p.summary() == "3 threads pinned to cpu 5-7 of 0-7"
    # More threads than physical cores: the whole CPU set, siblings included.
    assert plan(6, cpus=cpus, sys_cpu=sys_cpu).cpus == cpus


def test_two_cores_give_one_thread_on_the_last_core(tmp_path: Path) -> None:
    sys_cpu = fake_topology(tmp_path, {0: "0", 1: "1"})
    assert default_threads((0, 1), sys_cpu) == 1
    assert plan(1, cpus=(0, 1), sys_cpu=sys_cpu).cpus == (1,)
    # taskset -c 0: the CPU set is the user's choice.
    assert default_threads((0,), sys_cpu) == 1
    assert plan(1, cpus=(0,), sys_cpu=sys_cpu).cpus == (0,)
    # No topology in sysfs: each CPU is its own core.
    assert physical_cores((0, 1, 2), tmp_path / "absent") == [0, 1, 2]


def test_no_pin_and_bad_threads() -> None:
    p = plan(1, pin=False, cpus=(0, 1))
    assert not p.pinned and p.cpus == () and "not pinned (--no-pin)" in p.summary()
    with pytest.raises(LatbenchError, match="--threads"):
        plan(0)


def test_the_default_threads_of_a_cpu_deployment_come_from_the_placement() -> None:
    assert DeployConfig(backend="torch").threads == default_threads()
    assert DeployConfig(backend="torch", device="cuda:0").threads is None


@needs_affinity
def test_pinning_moves_every_thread_and_restores_them() -> None:
    import threading

    before = os.sched_getaffinity(0)
    target = max(before)
    stop = threading.Event()
    seen: dict[str, set[int]] = {}

    def worker() -> None:
        stop.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    try:
        with pinned(plan(1, cpus=tuple(sorted(before)))) as p:
            assert p.pinned and p.cpus == (target,)
            seen["main"] = os.sched_getaffinity(0)
            seen["worker"] = os.sched_getaffinity(t.native_id)
        assert os.sched_getaffinity(0) == before
        assert os.sched_getaffinity(t.native_id) == before
    finally:
        stop.set()
        t.join()
    assert seen["main"] == {target} and seen["worker"] == {target}


def test_a_row_measured_while_the_reference_moved_is_marked_busy() -> None:
    clock = FakeClock()
    moving = ScriptedReference([10.0, 10.0, 11.0, 12.0, 13.0, 10.0])
    (m,) = measure_interleaved(
        [FakePrepared(clock, steady())], protocol(min_rounds=6), clock=clock, probe=probe(moving)
    )
    assert m.ref_spread == pytest.approx(reference_spread([10.0, 10.0, 11.0, 12.0, 13.0, 10.0]))
    assert m.ref_spread > 0.15 and m.unstable
    assert any(r.startswith("machine busy: the CPU reference workload moved") for r in m.unstable_reasons)
    row = m.to_row()
    assert row["ref_spread"] == m.ref_spread
    assert json.loads(row["placement"])["threads"] == 1

    still = ScriptedReference([10.0, 10.05, 9.98, 10.02, 10.0, 10.01])
    (q,) = measure_interleaved([FakePrepared(clock, steady())], protocol(min_rounds=6), clock=clock, probe=probe(still))
    assert q.ref_spread < 0.01 and not q.unstable
    # The threshold is the protocol's.
    (lenient,) = measure_interleaved(
        [FakePrepared(clock, steady())],
        protocol(min_rounds=6, busy_ref_spread=0.5),
        clock=clock,
        probe=probe(ScriptedReference([10.0, 10.0, 11.0, 12.0, 13.0, 10.0])),
    )
    assert not lenient.unstable


def test_reference_spread_needs_three_rounds() -> None:
    assert math.isnan(reference_spread([10.0, 20.0]))
    assert reference_spread([10.0, 10.0, 10.0]) == 0.0
    with pytest.raises(LatbenchError, match="busy_ref_spread"):
        ProtocolConfig(busy_ref_spread=0.0)
    with pytest.raises(LatbenchError, match="pin_threads"):
        ProtocolConfig(pin_threads="yes")  # type: ignore[arg-type]


@needs_affinity
def test_a_cpu_measurement_runs_pinned_and_says_where() -> None:
    clock = FakeClock()
    inside: list[set[int]] = []

    class Recording(FakePrepared):
        def time_calls(self, n: int) -> list[float]:
            inside.append(os.sched_getaffinity(0))
            return super().time_calls(n)

    before = os.sched_getaffinity(0)
    (m,) = measure_interleaved(
        [Recording(clock, steady())], protocol(), clock=clock, probe=probe(ScriptedReference([1.0]))
    )
    assert os.sched_getaffinity(0) == before
    assert m.placement is not None and m.placement["pinned"]
    assert all(a == set(m.placement["cpus"]) for a in inside) and len(m.placement["cpus"]) == 1
    (u,) = measure_interleaved(
        [Recording(clock, steady())], protocol(pin_threads=False), clock=clock, probe=probe(ScriptedReference([1.0]))
    )
    assert u.placement is not None and not u.placement["pinned"]


def rows(median: list[float], ref: list[float]) -> list[dict]:
    return [{"median_ms": m, "ref_ms": r, "unstable_reasons": ""} for m, r in zip(median, ref)]


def test_normalised_medians_of_two_runs_at_different_machine_speeds_agree(tmp_path: Path) -> None:
    # Run 2 on a machine 8% slower for everything, the reference included.
    run1 = rows([10.0, 20.0, 40.0], [5.0, 5.0, 5.0])
    run2 = rows([10.8, 21.6, 43.2], [5.4, 5.4, 5.4])
    assert drift.read_anchor("env1", tmp_path) is None
    anchor = drift.set_anchor("env1", run1, tmp_path)
    assert anchor == 5.0 and drift.read_anchor("env1", tmp_path) == 5.0
    for r in (run1, run2):
        drift.normalise(r, drift.read_anchor("env1", tmp_path))  # the second run reads the same anchor
    assert [r["median_ms_normalised"] for r in run2] == pytest.approx([r["median_ms_normalised"] for r in run1])
    assert [r["median_ms"] for r in run2] == [10.8, 21.6, 43.2]  # raw stays raw
    assert all(r["ref_anchor_ms"] == 5.0 for r in run1 + run2)


def test_a_damaged_anchor_file_is_a_one_line_error(tmp_path: Path) -> None:
    drift.anchor_path("env1", tmp_path).write_text("{not json")
    with pytest.raises(LatbenchError, match=r"env1\.json"):
        drift.read_anchor("env1", tmp_path)
    with pytest.raises(LatbenchError, match="--normalise-drift"):
        drift.set_anchor("env2", rows([1.0], [math.nan]), tmp_path)


def test_the_busy_summary_says_so_with_the_figure() -> None:
    quiet = drift.busy_summary(rows([1.0] * 4, [5.0, 5.01, 5.02, 4.99]), 0.05, 0.06, 0.2, 1.0)
    assert not quiet.busy and quiet.message() is None
    assert "the CPU reference workload 0.5% over the run" in quiet.figures()
    moving = rows([1.0] * 4, [5.0, 5.5, 6.0, 6.5])
    moving[0]["unstable_reasons"] = "machine busy: other processes used 0.90 cores while measured (> 0.25)"
    moving[0]["other_cores"] = 0.9
    busy = drift.busy_summary(moving, 0.05, 0.06, 1.8, 3.2)
    assert busy.busy and busy.busy_rows == 1 and busy.rows == 4
    text = busy.message()
    assert text is not None and "machine busy" in text and f"{busy.ref_spread:.1%}" in text and "1.80 -> 3.20" in text
    assert "0.90 cores" in text
    # The rows' own rounds moving is enough, with a steady reference.
    wobbly = rows([1.0] * 4, [5.0] * 4)
    for r, spread in zip(wobbly, [0.09, 0.08, 0.10, 0.02]):
        r["round_spread"] = spread
    report = drift.busy_summary(wobbly, 0.05, 0.06, None, None)
    assert report.busy and report.round_spread == pytest.approx(0.085)
    assert "machine unsteady" in (report.message() or "") and "each model's rounds moved 8.5%" in report.message()


def test_round_spread_is_the_spread_of_the_per_round_medians() -> None:
    clock = FakeClock()
    wobble = {0: 1.0, 1: 1.1, 2: 0.9}  # each round of 10 calls 10% faster or slower than the last
    (m,) = measure_interleaved(
        [FakePrepared(clock, lambda i: wobble[(i // 10) % 3])],
        protocol(min_rounds=6),
        clock=clock,
        probe=probe(ScriptedReference([1.0])),
    )
    assert m.round_spread == pytest.approx(reference_spread([1.0, 1.1, 0.9] * 2))
    assert m.to_row()["round_spread"] == m.round_spread


class ScriptedCpu:
    """/proc/stat as scripted: each reading adds ``other`` cores of other work and 1 core of ours per second."""

    def __init__(self, other: float) -> None:
        self.other, self.t = other, 0.0

    def __call__(self) -> tuple[float, float, float]:
        reading = ((1 + self.other) * self.t, self.t, self.t)
        self.t += 2.0
        return reading


def test_a_row_sampled_while_other_processes_ran_is_marked_busy() -> None:
    clock = FakeClock()
    ref = ScriptedReference([10.0])
    busy_probe = Probe(
        load_average=lambda: None, gpu_state=lambda i: None, cpu_reference=ref, cpu_seconds=ScriptedCpu(0.9)
    )
    (m,) = measure_interleaved([FakePrepared(clock, steady())], protocol(min_rounds=3), clock=clock, probe=busy_probe)
    assert m.other_cores == pytest.approx(0.9) and m.unstable
    assert "machine busy: other processes used 0.90 cores while measured (> 0.25)" in m.unstable_reasons
    assert m.to_row()["other_cores"] == pytest.approx(0.9)
    quiet_probe = Probe(
        load_average=lambda: None, gpu_state=lambda i: None, cpu_reference=ref, cpu_seconds=ScriptedCpu(0.02)
    )
    (q,) = measure_interleaved([FakePrepared(clock, steady())], protocol(min_rounds=3), clock=clock, probe=quiet_probe)
    assert q.other_cores == pytest.approx(0.02) and not q.unstable


def test_other_work_needs_a_window_of_a_second_and_proc_stat() -> None:
    assert math.isnan(drift.other_cores((0.0, 0.0, 0.0), (0.5, 0.1, 0.5)))  # half a second: too short to judge
    assert math.isnan(drift.other_cores(None, (1.0, 1.0, 2.0)))
    assert drift.other_cores((0.0, 0.0, 0.0), (3.0, 2.0, 2.0)) == pytest.approx(0.5)
    real = drift.cpu_seconds()
    assert real is None or (real[0] >= 0 and real[1] >= 0)


def test_two_latbench_processes_do_not_measure_on_the_same_core(tmp_path: Path, monkeypatch) -> None:
    from latbench.profiling.placement import claimed

    monkeypatch.setenv("LATBENCH_CPU_LOCK_DIR", str(tmp_path / "locks"))
    sys_cpu = fake_topology(tmp_path / "sys", {0: "0", 1: "1", 2: "2"})
    p = plan(1, cpus=(0, 1, 2), sys_cpu=sys_cpu)
    assert p.cpus == (2,)
    # Lock files are per open file: a second claim in this process stands for another process.
    with claimed(p, sys_cpu) as first, claimed(p, sys_cpu) as second, claimed(p, sys_cpu) as third:
        assert first.cpus == (2,) and first.note == ""
        assert second.cpus == (1,) and "taken by another latbench process" in second.note
        assert third.cpus == (0,)
        with claimed(p, sys_cpu) as fourth:  # none free: it keeps its core and says so
            assert fourth.cpus == (2,) and "shared" in fourth.note and "shared" in fourth.summary()
    with claimed(p, sys_cpu) as again:  # released on exit
        assert again.cpus == (2,) and again.note == ""
