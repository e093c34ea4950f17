"""The machine-speed reference timed in every round, and the budget that waits for ``min_rounds``.

Driven by the scripted fake backend of ``test_protocol`` and a scripted reference: nothing real
is timed, except in the last test, which checks only the structure of the real reference."""

from __future__ import annotations

import math

import pytest
import torch

from latbench.errors import LatbenchError
from latbench.profiling.config import ProtocolConfig
from latbench.profiling.protocol import Measurement, Probe, cpu_reference, measure_interleaved

from .test_protocol import CPU, GPU, FakeClock, FakePrepared, noisy, steady


class ScriptedReference:
    """The reference's time in each round it is asked for: ``values[k]`` ms for the k-th round."""

    def __init__(self, values: list[float]) -> None:
        self.values = values
        self.asked: list[int] = []

    def __call__(self, n: int) -> list[float]:
        value = self.values[min(len(self.asked), len(self.values) - 1)]
        self.asked.append(n)
        return [value] * n


def probe(reference: ScriptedReference) -> Probe:
    return Probe(load_average=lambda: None, gpu_state=lambda i: None, cpu_reference=reference)


def protocol(**overrides: float) -> ProtocolConfig:
    base = {
        "warmup_calls": 1,
        "warmup_s": 0.0,
        "min_samples": 10,
        "calls_per_round": 10,
        "budget_s": 1e6,
        "min_rounds": 1,
    }
    return ProtocolConfig(**{**base, **overrides})


def test_the_reference_is_timed_once_per_round_and_its_median_kept() -> None:
    clock = FakeClock()
    ref = ScriptedReference([10.0, 10.0, 12.0, 12.0, 12.0, 30.0])
    fakes = [FakePrepared(clock, steady(), name=n) for n in "AB"]
    a, b = measure_interleaved(fakes, protocol(min_rounds=5), clock=clock, probe=probe(ref))
    assert a.rounds == b.rounds == 5
    assert ref.asked == [3] * 5  # one reference (3 timings) per round, not one per configuration
    assert a.ref_ms == b.ref_ms == 12.0  # median of 10, 10, 12, 12, 12
    # The reference is a record of the machine's speed; the latency itself is not corrected by it.
    assert a.median_ms == pytest.approx(1.002)
    assert a.to_row()["ref_ms"] == 12.0


def test_a_configuration_keeps_the_reference_of_its_own_rounds() -> None:
    clock = FakeClock()
    ref = ScriptedReference([10.0] * 5 + [20.0] * 100)
    fakes = [FakePrepared(clock, steady(), name="A"), FakePrepared(clock, noisy(), name="B")]
    a, b = measure_interleaved(fakes, protocol(min_samples=50, budget_s=2.0), clock=clock, probe=probe(ref))
    assert a.stop_reason == "converged" and a.rounds == 5
    assert b.rounds > 2 * a.rounds
    assert a.ref_ms == 10.0  # A left after round 5: the slower machine later is B's only
    assert b.ref_ms == 20.0


def test_reference_calls_per_round_and_zero_turns_it_off() -> None:
    clock = FakeClock()
    ref = ScriptedReference([8.0])
    (m,) = measure_interleaved(
        [FakePrepared(clock, steady())], protocol(min_rounds=3, reference_calls=3), clock=clock, probe=probe(ref)
    )
    assert ref.asked == [3, 3, 3] and m.ref_ms == 8.0
    off = ScriptedReference([8.0])
    (m,) = measure_interleaved(
        [FakePrepared(clock, steady())], protocol(reference_calls=0), clock=clock, probe=probe(off)
    )
    assert off.asked == [] and math.isnan(m.ref_ms)
    with pytest.raises(LatbenchError, match="reference_calls"):
        ProtocolConfig(reference_calls=-1)


def test_no_cpu_reference_for_a_gpu_configuration() -> None:
    clock = FakeClock()
    ref = ScriptedReference([8.0])
    (m,) = measure_interleaved([FakePrepared(clock, steady(), config=GPU)], protocol(), clock=clock, probe=probe(ref))
    assert ref.asked == [] and math.isnan(m.ref_ms) and math.isnan(m.to_row()["ref_ms"])
    again = Measurement.from_dict(m.to_dict())
    assert math.isnan(again.ref_ms)


def test_ref_ms_survives_the_round_trip_and_old_records_read() -> None:
    clock = FakeClock()
    (m,) = measure_interleaved(
        [FakePrepared(clock, steady(), config=CPU)], protocol(), clock=clock, probe=probe(ScriptedReference([9.5]))
    )
    data = m.to_dict()
    assert Measurement.from_dict(data) == m and Measurement.from_dict(data).ref_ms == 9.5
    del data["ref_ms"]  # written before the reference existed
    assert math.isnan(Measurement.from_dict(data).ref_ms)


def test_the_budget_does_not_cut_the_rounds_short() -> None:
    clock = FakeClock()
    ref = ScriptedReference([10.0])
    (m,) = measure_interleaved(
        [FakePrepared(clock, noisy())], protocol(budget_s=1e-9, min_rounds=7), clock=clock, probe=probe(ref)
    )
    assert m.stop_reason == "budget" and m.rounds == 7 and m.stats.n == 70
    # Past min_rounds the budget stops it as before (after min_samples).
    (m,) = measure_interleaved(
        [FakePrepared(clock, noisy())],
        protocol(budget_s=1e-9, min_rounds=1, min_samples=30),
        clock=clock,
        probe=probe(ref),
    )
    assert m.stop_reason == "budget" and m.rounds == 3 and m.stats.n == 30


def test_the_real_reference_times_positive_calls_and_restores_threads() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before == 1 else before)
    threads = torch.get_num_threads()
    try:
        times = cpu_reference(3)
        assert len(times) == 3 and all(math.isfinite(t) and t > 0 for t in times)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
