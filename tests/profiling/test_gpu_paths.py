"""The GPU paths' defects found by review (issue 15), pinned without a GPU: fakes for torch.cuda, NVML,
``tensorrt`` and ``onnxruntime``, and the pure functions split out of the backends."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.profiling.base import Prepared, get_backend, normalise_inputs
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.fingerprint import Fingerprint
from latbench.profiling.protocol import Probe, measure_interleaved

ROOT = Path(__file__).resolve().parents[2]
GPU = DeployConfig(backend="torch", device="cuda:0")


def mlp(width: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(16, width), torch.nn.GELU(), torch.nn.Linear(width, 16))


# ------------------------------------- 1. ONNX Runtime's TensorRT provider: an engine cache per model


def test_ort_tensorrt_engine_cache_is_keyed_by_the_models_content(tmp_path: Path) -> None:
    from latbench.profiling.backends._export import export_onnx
    from latbench.profiling.backends.onnxruntime import provider_options, trt_engine_cache_folder

    config = DeployConfig(
        backend="onnxruntime",
        device="cuda",
        mode="tensorrt",
        precision="fp16",
        batch=2,
        options={"onnxruntime.trt_engine_cache_dir": str(tmp_path / "cache")},
    )
    inputs = normalise_inputs(torch.randn(2, 16), DeployConfig(backend="torch", batch=2))
    onnx = {}
    for name, width in (("narrow", 32), ("wide", 64), ("narrow_again", 32)):
        (tmp_path / name).mkdir()
        # every export is called model.onnx, with the same graph input and output names: what ORT keys on
        onnx[name] = export_onnx(
            mlp(width), inputs, tmp_path / name / "model.onnx", backend="onnxruntime", opset=17, dynamic_batch=False
        )
    folders = {k: trt_engine_cache_folder(config, v, "NVIDIA H200", "1.30.0") for k, v in onnx.items()}
    assert folders["narrow"] != folders["wide"]  # same depth, different widths: different engines
    assert folders["narrow"] == folders["narrow_again"]  # the same model finds its engine again
    assert folders["narrow"].parent == tmp_path / "cache"
    assert trt_engine_cache_folder(config, onnx["narrow"], "NVIDIA H100", "1.30.0") != folders["narrow"]
    fp32 = DeployConfig.from_dict({**config.to_dict(), "precision": "fp32"})
    assert trt_engine_cache_folder(fp32, onnx["narrow"], "NVIDIA H200", "1.30.0") != folders["narrow"]
    stream = types.SimpleNamespace(cuda_stream=7)
    (_, trt), _ = provider_options(config, stream, folders["wide"])
    assert trt["trt_engine_cache_path"] == str(folders["wide"]) and trt["trt_engine_cache_enable"] is True


# ------------------------------------- 2. peaks of a precision torch cannot run: one path for job and fleet


def test_fleet_chunk_with_a_tensorrt_int8_target_records_no_peaks_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.fleet import worker
    from latbench.fleet.targets import Target
    from latbench.profiling import base
    from latbench.profiling.job import WorkItem
    from latbench.space import Arch

    # TensorRT int8 runs (a stand-in backend); torch eager has no int8 kernel on a GPU, and here no GPU at all
    monkeypatch.setattr(base, "get_backend", lambda deploy: object())
    deploy = DeployConfig(backend="tensorrt", device="cuda:0", precision="int8", batch=1, seq_len=8)
    target = Target(label="h200-trt-int8", resource="gpu_h200", deploy=deploy)
    got: dict[str, Any] = {}

    def measure_fn(items: list, space: str, deploy: DeployConfig, protocol: Any, env_id: str, peaks: Any, **kw: Any):
        got["peaks"] = peaks
        return [{"median_ms": 1.0} for _ in items]

    arch = Arch.uniform_arch("bert", hidden=32, n_layers=1, heads=1, qk_dim=8, mlp=32)
    task = worker.ChunkTask(target, (WorkItem(arch, "model", -1),), "tiny", ProtocolConfig())
    monkeypatch.setattr(worker, "_PEAKS_MEASURED", {})
    result = worker.run_chunk(task, measure_fn)
    (record,) = result.fingerprint["peaks"].values()
    assert "unavailable" in record and "no torch peak kernel for cuda:0/int8" in record["unavailable"]
    assert got["peaks"] is record and len(result.rows) == 1
    # a torch target's peaks are that very deployment's: its refusal is still the chunk's error
    torch_deploy = DeployConfig(backend="torch", device="cuda:0", precision="fp16", batch=1, seq_len=8)
    torch_target = Target(label="h200-torch", resource="gpu_h200", deploy=torch_deploy)
    monkeypatch.setattr(worker, "_PEAKS_MEASURED", {})
    with pytest.raises(worker.ChunkError, match="peaks"):
        worker.run_chunk(worker.ChunkTask(torch_target, task.items, "tiny", ProtocolConfig()), measure_fn)


def test_profile_job_and_fleet_share_the_peaks_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling import job

    store = types.SimpleNamespace(fingerprints=lambda: {})
    deploy = DeployConfig(backend="tensorrt", device="cuda:0", precision="int8", batch=1, seq_len=8)
    env = job.environment(deploy, store, True)
    assert "no torch peak kernel" in env["peaks"]["cuda:0/int8"]["unavailable"]


# ------------------------------------- 3. throttling during sampling: violation counters, the GPU read busy


class GpuFake(Prepared):
    """A GPU configuration that times nothing and, like the CUDA timer, calls ``on_busy`` once per batch."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__(GPU, build_ms=1.0, runtime="fake", info={})
        self.clock = clock

    def time_calls(self, n: int) -> list[float]:
        if self.on_busy is not None:
            self.on_busy()
        self.clock[0] += n * 1e-3
        return [1.0] * n


def run_gpu(states: list[dict[str, Any]], busy_read: Any = None) -> Any:
    from latbench.profiling.fingerprint import BusySampler

    clock = [0.0]
    readings = iter(states)
    probe = Probe(
        load_average=lambda: None,
        gpu_state=lambda i: next(readings),
        busy_sampler=lambda i: BusySampler(i, read=busy_read or (lambda: (1980, 0x0))),
    )
    protocol = ProtocolConfig(warmup_calls=1, warmup_s=0.0, min_samples=20, budget_s=1.0, min_rounds=1)
    (m,) = measure_interleaved([GpuFake(clock)], protocol, clock=lambda: clock[0], probe=probe)
    return m


IDLE = {"throttled": False, "throttle_reasons": ["GpuIdle"]}


def test_a_power_cap_between_the_idle_readings_marks_the_row_unstable() -> None:
    # Both readings are taken idle (after a synchronise): no throttle bit, but the counter grew
    before = {**IDLE, "violation_power_ns": 10_000, "violation_thermal_ns": 0}
    m = run_gpu([before, {**before, "violation_power_ns": 2_510_000}])
    assert m.unstable and any("power cap +2.5 ms" in r for r in m.unstable_reasons)
    steady = run_gpu([{**IDLE, "violation_power_ns": 5, "violation_thermal_ns": 7}] * 2)
    assert not any("GPU" in r for r in steady.unstable_reasons)


def test_the_gpu_is_read_while_busy_and_its_clock_recorded() -> None:
    clocks = iter([1755, 1410, 1980] * 100)
    m = run_gpu([IDLE, IDLE], busy_read=lambda: (next(clocks), 0x20))  # SwThermalSlowdown while busy
    assert m.gpu_busy["busy_readings"] == m.rounds == 2  # one per timed batch (not the warm-up)
    assert m.gpu_busy["sm_clock_busy_min_mhz"] == 1410 and m.to_row()["sm_clock_busy_mhz"] == 1755
    assert any("SwThermalSlowdown" in r for r in m.unstable_reasons)
    assert type(m).from_dict(m.to_dict()).gpu_busy == m.gpu_busy


def test_window_throttles_and_a_failed_busy_read() -> None:
    from latbench.profiling.fingerprint import BusySampler, gpu_window_throttles

    assert gpu_window_throttles(IDLE, IDLE) == []
    assert gpu_window_throttles({"violation_thermal_ns": 0}, {"violation_thermal_ns": 1_000_000}) == [
        "thermal cap +1.0 ms"
    ]
    sampler = BusySampler(0, read=lambda: (_ for _ in ()).throw(RuntimeError("NVML gone")))
    sampler.sample()
    assert sampler.errors == 1 and sampler.summary() is None


def test_nvml_state_carries_the_violation_counters(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.fingerprint import gpu_state

    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM, nv.NVML_TEMPERATURE_GPU = 1, 2, 0
    nv.NVML_PERF_POLICY_POWER, nv.NVML_PERF_POLICY_THERMAL = 0, 1
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetHandleByIndex = lambda i: i
    nv.nvmlDeviceGetClockInfo = lambda h, kind: 1980
    nv.nvmlDeviceGetTemperature = lambda h, s: 40
    nv.nvmlDeviceGetPowerUsage = lambda h: 300_000
    nv.nvmlDeviceGetPerformanceState = lambda h: 0
    nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x1
    nv.nvmlDeviceGetViolationStatus = lambda h, policy: types.SimpleNamespace(
        referenceTime=1, violationTime={0: 123_000, 1: 456}[policy]
    )
    monkeypatch.setitem(sys.modules, "pynvml", nv)
    state = gpu_state(0)
    assert state["violation_power_ns"] == 123_000 and state["violation_thermal_ns"] == 456


def test_the_cuda_timer_reads_the_gpu_after_queuing_and_before_synchronising(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.backends._timing import CudaEventTimer

    log: list[str] = []

    class Event:
        def __init__(self, enable_timing: bool = False) -> None:
            pass

        def record(self, stream: Any) -> None:
            log.append("record")

        def elapsed_time(self, other: Any) -> float:
            return 1.0

    monkeypatch.setattr(torch.cuda, "Event", Event)
    stream = types.SimpleNamespace(synchronize=lambda: log.append("sync"))
    timer = CudaEventTimer(stream)  # type: ignore[arg-type]
    assert timer.time_calls(lambda: log.append("call"), 2, busy=lambda: log.append("busy")) == [1.0, 1.0]
    assert log[-2:] == ["busy", "sync"] and log.count("call") == 2


# ------------------------------------- 4. CUDA-graph capture on cuda:N


def test_graph_capture_uses_a_stream_of_the_target_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.backends import torch_cuda

    class Stream:
        def __init__(self, device: Any = None) -> None:
            self.device = torch.device(device) if device is not None else torch.device("cuda:0")

        def wait_stream(self, other: Any) -> None:
            pass

        def synchronize(self) -> None:
            pass

    captured: dict[str, Any] = {}

    @contextlib.contextmanager
    def graph(cuda_graph: Any, pool: Any = None, stream: Any = None, **kw: Any) -> Any:
        captured["stream"] = stream
        yield

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream(device))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", lambda: types.SimpleNamespace(replay=lambda: None))
    monkeypatch.setattr(torch.cuda, "graph", graph)
    config = DeployConfig(backend="torch", device="cuda:1", mode="graph", batch=2)
    inputs = normalise_inputs(torch.randn(2, 16), config)
    torch_cuda._capture_graph(mlp(32), inputs, Stream("cuda:1"))  # type: ignore[arg-type]
    assert captured["stream"] is not None and captured["stream"].device == torch.device("cuda:1")


# ------------------------------------- 5. TF32: torch's new API, and which one ran


def test_tf32_uses_the_new_api_where_torch_has_it() -> None:
    from latbench.profiling.backends.torch_cuda import tf32, tf32_setting

    matmul = torch.backends.cuda.matmul
    if not hasattr(matmul, "fp32_precision"):
        pytest.skip(f"torch {torch.__version__} has no fp32_precision API")
    saved = matmul.fp32_precision
    try:
        matmul.fp32_precision = "tf32"  # after this, reading the legacy allow_tf32 flag raises
        with tf32(False):
            assert matmul.fp32_precision == "ieee"
        assert matmul.fp32_precision == "tf32"
        with tf32(True):
            assert matmul.fp32_precision == "tf32"
        assert tf32_setting(False) == {"api": "fp32_precision", "matmul": "ieee", "cudnn_conv": "ieee"}
    finally:
        matmul.fp32_precision = saved


def test_tf32_falls_back_to_the_legacy_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.backends.torch_cuda import tf32, tf32_setting

    legacy = types.SimpleNamespace(allow_tf32=False)
    cudnn = types.SimpleNamespace(allow_tf32=True)
    monkeypatch.setattr(torch.backends.cuda, "matmul", legacy)
    monkeypatch.setattr(torch.backends, "cudnn", cudnn)
    with tf32(True):
        assert legacy.allow_tf32 is True and cudnn.allow_tf32 is True
    assert legacy.allow_tf32 is False and cudnn.allow_tf32 is True
    assert tf32_setting(True)["api"] == "allow_tf32"


# ------------------------------------- 6. peaks keyed by the math mode that runs


def test_peaks_are_keyed_by_math_mode() -> None:
    from latbench.profiling.peaks import deploy_peaks_key, matmul_math

    def d(**kw: Any) -> DeployConfig:
        return DeployConfig(**{"device": "cuda:0", **kw})

    assert deploy_peaks_key(d(backend="tensorrt")) == "cuda:0/fp32/tf32"  # TensorRT's TF32 is on by default
    assert deploy_peaks_key(d(backend="tensorrt", options={"tensorrt.allow_tf32": False})) == "cuda:0/fp32"
    assert deploy_peaks_key(d(backend="torch")) == "cuda:0/fp32"
    assert deploy_peaks_key(d(backend="torch", options={"torch.allow_tf32": True})) == "cuda:0/fp32/tf32"
    assert deploy_peaks_key(d(backend="onnxruntime", mode="cuda")) == "cuda:0/fp32/tf32"
    assert deploy_peaks_key(d(backend="tensorrt", precision="fp16")) == "cuda:0/fp16"
    assert deploy_peaks_key(DeployConfig(backend="torch", device="cpu", threads=1)) == "cpu/fp32"  # stores as before
    assert matmul_math(d(backend="torch", precision="bf16", options={"torch.allow_tf32": True})) == ""
    fp = Fingerprint(cpu={}, threads=1, python="3", platform="x", libraries={})
    fp = fp.with_peaks({"device": "cuda:0", "precision": "fp32", "math": "tf32", "peak_flops": 4e14})
    fp = fp.with_peaks({"device": "cuda:0", "precision": "fp32", "math": "", "peak_flops": 5e13})
    assert fp.peaks_for("cuda:0", "fp32", "tf32")["peak_flops"] == 4e14
    assert fp.peaks_for("cuda:0", "fp32")["peak_flops"] == 5e13


def test_a_tf32_deployment_gets_a_peak_measured_with_tf32(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling import job, peaks

    asked: list[Any] = []

    def fake_measure(deploy: DeployConfig, **kw: Any) -> dict[str, Any]:
        asked.append(peaks.matmul_math(deploy))
        return {"device": deploy.device, "precision": deploy.precision, "math": peaks.matmul_math(deploy)}

    monkeypatch.setattr(peaks, "measure_peaks", fake_measure)
    store = types.SimpleNamespace(fingerprints=lambda: {})
    env = job.environment(DeployConfig(backend="tensorrt", device="cuda:0", batch=1), store, True)
    assert asked == ["tf32"] and set(env["peaks"]) == {"cuda:0/fp32/tf32"}


def test_predictor_features_find_the_peaks_of_the_math_mode() -> None:
    from latbench.predictors.train import _peaks_key

    deploy = DeployConfig(backend="tensorrt", device="cuda:0", batch=1).to_dict()
    assert _peaks_key(deploy, "cuda:0/fp32") == "cuda:0/fp32/tf32"
    assert _peaks_key({"device": "cpu"}, "cpu/fp32") == "cpu/fp32"  # an old or partial record: as before


# ------------------------------------- 7. torch.compile: synchronised, CUDA-graph recordings untimed


class SyncStream:
    def __init__(self, error: Exception | None = None) -> None:
        self.error, self.syncs = error, 0

    def synchronize(self) -> None:
        self.syncs += 1
        if self.error is not None:
            raise self.error


def compile_with(monkeypatch: pytest.MonkeyPatch, mode: str, stream: SyncStream) -> list[int]:
    from latbench.profiling.backends.torch_cuda import _compile

    calls: list[int] = []

    def fake_compile(module: Any, **kw: Any) -> Any:
        return lambda *a, **k: calls.append(stream.syncs)

    monkeypatch.setattr(torch, "compile", fake_compile)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    config = DeployConfig(backend="torch", device="cuda", mode="compile", batch=2, options={"torch.compile_mode": mode})
    _compile(mlp(8), normalise_inputs(torch.randn(2, 16), config), config, stream)  # type: ignore[arg-type]
    return calls


def test_compile_records_cuda_graphs_before_any_timed_call(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SyncStream()
    calls = compile_with(monkeypatch, "reduce-overhead", stream)
    # warm-up run, recording, first replay: each synchronised before the next
    assert calls == [0, 1, 2] and stream.syncs == 3
    stream = SyncStream()
    assert compile_with(monkeypatch, "default", stream) == [0] and stream.syncs == 1


def test_a_device_error_of_compiled_code_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = SyncStream(RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors ..."))
    with pytest.raises(LatbenchError, match=r"^mode compile: torch.compile failed \(RuntimeError: CUDA error: an ill"):
        compile_with(monkeypatch, "max-autotune", stream)


# ------------------------------------- 8. TensorRT 10 and 11; providers that are listed but do not load


def fake_trt(version: str) -> Any:
    from tests.profiling.test_backends import FakeTRT

    fake = FakeTRT()
    fake.__version__ = version
    fake.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=1)
    if version.startswith("11"):
        fake.BuilderFlag = types.SimpleNamespace(TF32="TF32")  # 11.x: no FP16/BF16/INT8 flags
    return fake


def build(fake: Any, precision: str) -> bytes:
    from latbench.profiling.backends.tensorrt import build_serialized_engine, shape_profiles

    profiles = shape_profiles(("input_0", "ids"), ((4, 16), (4, 16)), dynamic_batch=False)
    return build_serialized_engine(
        fake, Path("m.onnx"), precision, profiles, workspace_mb=64, optimization_level=3, allow_tf32=True, logger=None
    )


def test_tensorrt_11_builds_strongly_typed_without_precision_flags() -> None:
    from latbench.profiling.backends.tensorrt import export_dtype

    fake = fake_trt("11.1.0")
    assert build(fake, "fp16") == b"engine-bytes"
    assert ("create_network", 1 << 1) in fake.calls
    assert not [c for c in fake.calls if c[0] == "set_flag"]
    assert export_dtype("fp16", 11) is torch.float16 and export_dtype("bf16", 11) is torch.bfloat16
    assert export_dtype("fp16", 10) is torch.float32  # 10.x: the builder's flag decides
    fake10 = fake_trt("10.13.0")
    build(fake10, "fp16")
    assert ("create_network", 0) in fake10.calls and ("set_flag", "FP16") in fake10.calls


def test_tensorrt_11_refuses_int8_in_one_line() -> None:
    with pytest.raises(LatbenchError, match=r"^precision int8: TensorRT 11.x removed implicit int8") as info:
        build(fake_trt("11.0.0"), "int8")
    assert "\n" not in str(info.value)


def test_tensorrt_versions_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.backends.tensorrt import import_tensorrt

    for version in ("10.13.0", "11.4.1"):
        monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__=version))
        assert import_tensorrt().__version__ == version
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="12.0.0"))
    with pytest.raises(MissingDependencyError, match=r"10\.x or 11\.x .*found tensorrt 12\.0\.0"):
        import_tensorrt()


def fake_onnxruntime(loads: bool) -> types.ModuleType:
    """An onnxruntime-gpu that lists the CUDA provider; ``loads=False``: built for another CUDA."""
    ort = types.ModuleType("onnxruntime")
    ort.__version__ = "1.20.1"
    ort.get_available_providers = lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]

    class SessionOptions:
        log_severity_level = 2

    class InferenceSession:
        def __init__(self, model: Any, options: Any, providers: list) -> None:
            self.providers = [p if isinstance(p, str) else p[0] for p in providers]

        def get_providers(self) -> list[str]:
            return self.providers if loads else ["CPUExecutionProvider"]

    ort.SessionOptions, ort.InferenceSession = SessionOptions, InferenceSession
    return ort


def test_a_listed_provider_that_does_not_load_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    config = DeployConfig(backend="onnxruntime", device="cuda", mode="cuda", batch=2)
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(loads=False))
    with pytest.raises(MissingDependencyError, match=r"lists CUDAExecutionProvider but it does not load") as info:
        get_backend(config)  # what the gpu tests call first: they skip with this reason
    assert "\n" not in str(info.value)
    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(loads=True))
    get_backend(config)


def test_env_says_which_providers_load(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("onnx")
    from typer.testing import CliRunner

    from latbench.cli import app

    monkeypatch.setitem(sys.modules, "onnxruntime", fake_onnxruntime(loads=False))
    result = CliRunner().invoke(app, ["env"])
    assert result.exit_code == 0, result.output
    assert "CPUExecutionProvider: loads" in result.output
    assert "CUDAExecutionProvider: onnxruntime 1.20.1 lists CUDAExecutionProvider but it does not load" in (
        result.output.replace("\n", " ")
    )


def test_the_tensorrt_extra_admits_11() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '"tensorrt>=10,<12"' in text


# ------------------------------------- 9. the GPU session script fits two 600-second calls


def test_gpu_session_plan_fits_two_calls_of_the_device_limits() -> None:
    env = {**os.environ, "GPU_PLAN": "1", "GPU_DEVICE": "cpu"}
    plans = {}
    for steps in (["check", "noise"], ["data", "predictor", "lut", "search"]):
        out = subprocess.run(
            ["bash", str(ROOT / "scripts/gpu_session.sh"), *steps], env=env, capture_output=True, text=True, cwd=ROOT
        )
        assert out.returncode == 0, out.stderr
        budget = dict(line.split()[1:3] for line in out.stdout.splitlines() if line.startswith("plan "))
        plans[tuple(steps)] = {k: int(v) for k, v in budget.items()}
    for steps, budget in plans.items():
        assert set(budget) == {*steps, "pack"}
        assert sum(budget.values()) <= 570, (steps, budget)  # inside one 600 s call, with the pack
    # both calls and a machine start (about 2 min) inside the 15 minutes of device time
    assert sum(sum(b.values()) for b in plans.values()) + 120 <= 15 * 60
