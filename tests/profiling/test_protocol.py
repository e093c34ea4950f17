"""The timing protocol driven by a scripted fake backend and a fake clock: nothing real is timed,
so adaptive stopping, the budget, interleaving order and the unstable flags are deterministic.
A few structure-only checks then run the protocol and the peaks on the real CPU."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch

from latbench.errors import LatbenchError
from latbench.profiling.base import Prepared, get_backend
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.fingerprint import collect
from latbench.profiling.protocol import ROW_COLUMNS, Measurement, Probe, measure, measure_interleaved

CPU = DeployConfig(backend="torch", threads=1)
GPU = DeployConfig(backend="torch", device="cuda:0")  # a config is data: no GPU needed to build one


class FakeClock:
    """Seconds that advance only when a fake backend 'runs'."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakePrepared(Prepared):
    """Returns scripted latencies (``script(call_index)`` ms) and advances the fake clock by them."""

    def __init__(
        self,
        clock: FakeClock,
        script: Callable[[int], float],
        config: DeployConfig = CPU,
        name: str = "A",
        log: list[tuple[str, int]] | None = None,
    ) -> None:
        super().__init__(config, build_ms=12.5, runtime="fake 1.0", info={"fake": True})
        self.clock, self.script, self.name = clock, script, name
        self.calls = 0
        self.log = log if log is not None else []

    def time_calls(self, n: int) -> list[float]:
        self._check_open(n)
        self.log.append((self.name, n))
        out = []
        for _ in range(n):
            ms = self.script(self.calls)
            self.calls += 1
            self.clock.now += ms / 1e3
            out.append(ms)
        return out


def steady(ms: float = 1.0) -> Callable[[int], float]:
    return lambda i: ms * (1.0 + 0.001 * (i % 5))


def noisy(low: float = 1.0, high: float = 2.0, seed: int = 0) -> Callable[[int], float]:
    rng = np.random.default_rng(seed)
    values = rng.uniform(low, high, 100_000)
    return lambda i: float(values[i])


QUIET = Probe(
    load_average=lambda: [0.5, 0.4, 0.3],
    gpu_state=lambda i: {"throttled": False, "throttle_reasons": []},
    cpu_reference=lambda n: [10.0] * n,  # the machine's speed, scripted: nothing real is timed
)


def run(prepared: list[FakePrepared], clock: FakeClock, **protocol: float) -> list[Measurement]:
    defaults = {
        "warmup_calls": 10,
        "warmup_s": 0.0,
        "min_samples": 50,
        "budget_s": 5.0,
        "calls_per_round": 10,
        "min_rounds": 1,
    }
    return measure_interleaved(prepared, ProtocolConfig(**{**defaults, **protocol}), clock=clock, probe=QUIET)


def test_steady_latency_converges_at_min_samples() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, steady())], clock)
    assert m.stop_reason == "converged" and not m.unstable and m.unstable_reasons == ()
    assert m.stats.n == 50 == len(m.samples_ms) and m.rounds == 5
    assert m.stats.ci_rel_halfwidth <= 0.01
    assert not m.budget_exhausted
    assert m.build_ms == 12.5 and m.runtime == "fake 1.0" and m.info == {"fake": True}
    assert m.load_avg_before == (0.5, 0.4, 0.3) and m.gpu_state_before is None


def test_noise_runs_out_of_budget_and_is_flagged() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, noisy())], clock, budget_s=0.3)
    assert m.stop_reason == "budget" and m.budget_exhausted and m.unstable
    assert any("time budget" in r for r in m.unstable_reasons)
    assert any("IQR/median" in r for r in m.unstable_reasons)
    assert m.stats.n >= 50
    # The budget counts the configuration's own time, warm-up included, checked after each round.
    assert 0.3 <= m.wall_s < 0.3 + 10 * 2e-3


def test_min_samples_win_over_the_budget() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, noisy())], clock, budget_s=1e-9, min_samples=30)
    assert m.stats.n == 30 and m.stop_reason == "budget"


def test_max_samples_caps_sampling() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, noisy())], clock, budget_s=1e6, max_samples=85)
    assert m.stats.n == 85 and m.stop_reason == "max_samples" and m.unstable and not m.budget_exhausted
    assert any("max_samples" in r for r in m.unstable_reasons)


def test_warm_up_takes_enough_calls_and_enough_time_and_is_not_sampled() -> None:
    clock = FakeClock()
    fake = FakePrepared(clock, steady(1.0))
    (m,) = run([fake], clock, warmup_calls=10, warmup_s=0.05)
    assert m.warmup_calls >= 50  # 50 ms of 1 ms calls, in chunks of 10
    assert fake.calls == m.warmup_calls + m.stats.n


def test_gpu_configs_warm_up_for_25_ms_by_default() -> None:
    clock = FakeClock()
    (m,) = measure_interleaved(
        [FakePrepared(clock, steady(1.0), config=GPU)], ProtocolConfig(warmup_calls=1), clock=clock, probe=QUIET
    )
    assert 25 <= m.warmup_calls <= 26
    assert m.gpu_state_before == {"throttled": False, "throttle_reasons": []}


def test_bimodal_samples_are_unstable_by_iqr() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, lambda i: 1.0 if i % 2 else 1.5)], clock, max_samples=60, budget_s=1e6)
    assert m.stats.iqr_ratio > 0.10
    assert any(r.startswith("IQR/median") for r in m.unstable_reasons)


def test_interleaving_alternates_configurations_in_rounds() -> None:
    clock, log = FakeClock(), []
    fakes = [FakePrepared(clock, steady(), name=name, log=log) for name in "ABC"]
    ms = run(fakes, clock, round_warmup_calls=1)
    warm, rounds = log[:3], log[3:]
    assert warm == [("A", 10), ("B", 10), ("C", 10)]
    # Each round: per configuration, one untimed switch call then its calls, A B C A B C ...
    expected_round = [("A", 1), ("A", 10), ("B", 1), ("B", 10), ("C", 1), ("C", 10)]
    assert rounds == expected_round * 5
    assert [m.stats.n for m in ms] == [50, 50, 50]


def test_a_converged_configuration_leaves_the_rounds() -> None:
    clock, log = FakeClock(), []
    fakes = [
        FakePrepared(clock, steady(), name="A", log=log),
        FakePrepared(clock, noisy(), name="B", log=log),
    ]
    a, b = run(fakes, clock, round_warmup_calls=0, budget_s=0.5)
    assert a.stop_reason == "converged" and a.stats.n == 50
    assert b.stop_reason == "budget" and b.stats.n > 50
    sampled = [name for name, n in log[2:]]
    assert sampled[:10] == ["A", "B"] * 5
    assert set(sampled[10:]) == {"B"}


def test_min_rounds_spread_samples_over_time() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, steady())], clock, min_rounds=8, calls_per_round=15, min_samples=10)
    assert m.rounds == 8 and m.stats.n == 120 and m.stop_reason == "converged"


def test_gpu_throttle_marks_unstable_and_both_states_are_kept() -> None:
    clock = FakeClock()
    states = iter(
        [
            {"throttled": False, "throttle_reasons": ["GpuIdle"], "sm_clock_mhz": 1980},
            {"throttled": True, "throttle_reasons": ["GpuIdle", "SwPowerCap"], "sm_clock_mhz": 1500},
        ]
    )
    probe = Probe(load_average=lambda: None, gpu_state=lambda index: next(states))
    (m,) = measure_interleaved([FakePrepared(clock, steady(), config=GPU)], ProtocolConfig(), clock=clock, probe=probe)
    assert m.unstable and m.unstable_reasons == ("GPU throttled (SwPowerCap)",)
    assert m.gpu_state_before["sm_clock_mhz"] == 1980 and m.gpu_state_after["sm_clock_mhz"] == 1500
    assert m.load_avg_before is None


def test_gpu_index_override_and_idle_is_not_throttling() -> None:
    clock, asked = FakeClock(), []
    probe = Probe(
        load_average=lambda: None,
        gpu_state=lambda index: asked.append(index) or {"throttled": False, "throttle_reasons": ["GpuIdle"]},
    )
    m = measure(FakePrepared(clock, steady(), config=GPU), ProtocolConfig(), gpu_index=3, clock=clock, probe=probe)
    assert asked == [3, 3] and not m.unstable


def test_to_row_columns_and_round_trip() -> None:
    clock = FakeClock()
    (m,) = run([FakePrepared(clock, steady())], clock)
    row = m.to_row()
    assert tuple(row) == ROW_COLUMNS
    for column in (
        "median_ms",
        "mean_ms",
        "min_ms",
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
        "samples_ms",
    ):
        assert column in row
    assert isinstance(row["samples_ms"], list) and len(row["samples_ms"]) == row["n"]
    assert row["unstable_reasons"] == "" and row["median_ms"] == m.stats.median_ms
    again = Measurement.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again == m
    with pytest.raises(LatbenchError, match="missing field"):
        Measurement.from_dict({"runtime": "x"})


def test_a_backend_returning_garbage_is_refused() -> None:
    clock = FakeClock()

    class Short(FakePrepared):
        def time_calls(self, n: int) -> list[float]:
            return super().time_calls(n)[:-1]

    with pytest.raises(LatbenchError, match="timings for"):
        run([Short(clock, steady())], clock)
    with pytest.raises(LatbenchError, match="invalid timing"):
        run([FakePrepared(clock, lambda i: math.nan)], clock)
    assert measure_interleaved([]) == []


# ------------------------------------------------------------------------------ real CPU runs

QUICK = ProtocolConfig(warmup_calls=3, warmup_s=0.01, min_samples=20, budget_s=0.2, calls_per_round=10)


def test_protocol_on_the_torch_cpu_backend_gives_sane_structure() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
    with get_backend(DeployConfig(backend="torch", threads=1, batch=2)).prepare(model, torch.randn(2, 32)) as p:
        m = measure(p, QUICK)
    s = m.stats
    assert s.n == len(m.samples_ms) >= 20
    assert all(math.isfinite(x) and x > 0 for x in m.samples_ms)
    assert 0 < s.min_ms <= s.p10_ms <= s.median_ms <= s.p90_ms <= s.max_ms
    assert s.ci_low_ms <= s.median_ms <= s.ci_high_ms
    assert m.build_ms >= 0 and m.wall_s > 0 and m.runtime.startswith("torch ")
    assert m.load_avg_before is None or len(m.load_avg_before) == 3


def test_peaks_on_the_cpu_are_positive_and_stored_with_the_fingerprint() -> None:
    from latbench.profiling.peaks import measure_peaks

    peaks = measure_peaks(DeployConfig(backend="onnxruntime", threads=1), matmul_n=128, copy_bytes=4 * 2**20)
    assert peaks["device"] == "cpu" and peaks["precision"] == "fp32" and peaks["threads"] == 1
    for key in ("peak_flops", "peak_bytes_per_s", "best_flops", "best_bytes_per_s"):
        assert math.isfinite(peaks[key]) and peaks[key] > 0
    assert peaks["best_flops"] >= peaks["peak_flops"]
    assert "torch.matmul" in peaks["method"] and peaks["matmul"]["n"] == 128
    json.dumps(peaks)
    fp = collect(threads=1)
    stored = fp.with_peaks(peaks)
    assert stored.env_id == fp.env_id
    assert stored.peaks_for("cpu", "fp32") == peaks and stored.peaks_for("cpu", "int8") is None
    int8 = measure_peaks("cpu", "int8", matmul_n=64, copy_bytes=2**20)
    assert "quantised" in int8["method"] and int8["peak_flops"] > 0


def test_a_deployment_whose_precision_has_no_torch_peak_kernel_profiles_without_a_roofline(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TensorRT int8 on a GPU: torch has no int8 peak kernel there; the profile must go on (no roofline)."""
    from latbench.profiling import peaks as peaks_module
    from latbench.profiling.job import environment
    from latbench.profiling.store import ResultStore

    def refuse(deploy, *args, **kwargs):
        raise LatbenchError("precision", "int8 is for torch on the CPU")

    monkeypatch.setattr(peaks_module, "measure_peaks", refuse)
    with ResultStore(tmp_path / "s.parquet") as store:
        env = environment(DeployConfig(backend="onnxruntime", precision="int8", threads=1), store, True)
        assert "int8 is for torch on the CPU" in env["peaks"]["cpu/int8"]["unavailable"]
        with pytest.raises(LatbenchError, match="int8 is for torch"):  # torch's own deployment: a real error
            environment(DeployConfig(backend="torch", precision="int8", threads=1), store, True)


def test_peaks_refuse_what_cannot_run() -> None:
    from latbench.profiling.peaks import measure_peaks

    with pytest.raises(LatbenchError, match="int8"):
        measure_peaks("cuda:0", "int8")
    if not torch.cuda.is_available():
        with pytest.raises(LatbenchError, match="no GPU"):
            measure_peaks("cuda:0", "fp16")


def test_the_fingerprint_names_latbench_run_from_a_source_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from latbench import __version__
    from latbench.profiling import fingerprint

    real = metadata.version

    def not_installed(name: str) -> str:
        if name == "latbench":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(fingerprint.metadata, "version", not_installed)
    assert fingerprint.library_versions()["latbench"] == __version__
