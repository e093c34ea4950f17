"""Backends: the registry and its lazy imports, one-line missing-dependency messages, the torch CPU and
ONNX Runtime CPU backends on tiny models, the pure parts of the GPU-only backends (provider checks,
provider options, TensorRT flags, profiles, engine cache and build against a stand-in ``tensorrt``),
and real-GPU tests marked ``gpu`` (skipped here with the reason)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.profiling.base import (
    REGISTRY,
    Backend,
    available_backends,
    backend_class,
    get_backend,
    normalise_inputs,
    register_backend,
)
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.protocol import measure

TRT_MESSAGE = (
    "backend 'tensorrt' needs the tensorrt package 10.x or 11.x (pip install 'latbench[tensorrt]') and an NVIDIA GPU"
)


def mlp(width: int = 32) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.GELU(), torch.nn.Linear(2 * width, width))


def cpu(backend: str = "torch", **kw: Any) -> DeployConfig:
    return DeployConfig(backend=backend, threads=1, batch=2, **kw)


def check_timings(timings: list[float], n: int) -> None:
    assert len(timings) == n
    assert all(math.isfinite(t) and t > 0 for t in timings)


# ---------------------------------------------------------------------------------- registry


def test_importing_the_profiler_loads_no_heavy_library() -> None:
    code = (
        "import sys\n"
        "import latbench.profiling.config, latbench.profiling.base, latbench.profiling.protocol\n"
        "import latbench.profiling.peaks\n"
        "assert 'torch' not in sys.modules, 'torch'\n"
        "from latbench.profiling.base import get_backend\n"
        "from latbench.profiling.config import DeployConfig\n"
        "get_backend(DeployConfig(backend='torch'))\n"
        "bad = [m for m in ('onnxruntime', 'tensorrt', 'onnx') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_available_backends_here() -> None:
    status = available_backends()
    assert set(status) == {f"{b}/{d}" for b, d in REGISTRY}
    assert status["torch/cpu"] is None and status["onnxruntime/cpu"] is None
    for key, reason in status.items():
        assert reason is None or reason.startswith(f"backend '{key.split('/')[0]}' needs ")
    if not torch.cuda.is_available():
        assert "NVIDIA GPU" in status["torch/cuda"]


def test_register_backend_and_class_checks() -> None:
    with pytest.raises(LatbenchError, match="not a backend"):
        register_backend("jax", "cpu", "x:Y")
    with pytest.raises(LatbenchError, match="device type"):
        register_backend("torch", "tpu", "x:Y")
    cls = backend_class(cpu())
    assert cls.name == "torch" and issubclass(cls, Backend)
    with pytest.raises(LatbenchError, match="runs backend 'torch' on cpu"):
        cls(DeployConfig(backend="onnxruntime"))


# ----------------------------------------------------------------- missing dependencies


def test_tensorrt_missing_gives_exactly_the_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(MissingDependencyError) as info:
        get_backend(DeployConfig(backend="tensorrt", device="cuda"))
    assert str(info.value) == TRT_MESSAGE
    assert isinstance(info.value, LatbenchError)  # the CLI prints "latbench: error: <message>", exit 2


def test_tensorrt_9_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="9.3.0"))
    with pytest.raises(MissingDependencyError, match=r"found tensorrt 9\.3\.0"):
        get_backend(DeployConfig(backend="tensorrt", device="cuda"))


def test_tensorrt_present_but_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.13.0"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MissingDependencyError) as info:
        get_backend(DeployConfig(backend="tensorrt", device="cuda"))
    assert str(info.value).startswith(TRT_MESSAGE + " (")


def test_onnxruntime_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError) as info:
        get_backend(DeployConfig(backend="onnxruntime"))
    assert str(info.value) == "backend 'onnxruntime' needs the onnxruntime package (pip install 'latbench[onnx]')"


def test_onnxruntime_gpu_provider_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu package with its CUDAExecutionProvider"):
        get_backend(DeployConfig(backend="onnxruntime", device="cuda"))
    with pytest.raises(MissingDependencyError, match=r"TensorrtExecutionProvider, the tensorrt package 10\.x"):
        get_backend(DeployConfig(backend="onnxruntime", device="cuda", mode="tensorrt"))


def test_torch_cuda_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MissingDependencyError) as info:
        get_backend(DeployConfig(backend="torch", device="cuda"))
    assert str(info.value).startswith("backend 'torch' needs a CUDA build of torch and an NVIDIA GPU (")


# ------------------------------------------------------------------------------ inputs


def test_inputs_are_batch_first_and_named() -> None:
    config = cpu()
    single = normalise_inputs(torch.zeros(2, 3), config)
    assert single.names == ("input_0",) and not single.as_kwargs
    named = normalise_inputs({"ids": torch.zeros(2, 5, dtype=torch.long), "mask": torch.ones(2, 5)}, config)
    assert named.names == ("ids", "mask") and named.as_kwargs
    with pytest.raises(LatbenchError, match="batch 2"):
        normalise_inputs(torch.zeros(3, 4), config)
    with pytest.raises(LatbenchError, match="not tensors"):
        normalise_inputs([torch.zeros(2), 3], config)
    with pytest.raises(LatbenchError, match="no inputs"):
        normalise_inputs([], config)


# --------------------------------------------------------------------------- torch CPU


@pytest.mark.parametrize("precision", ["fp32", "int8", "bf16"])
def test_torch_cpu_lifecycle(precision: str) -> None:
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = cpu(precision=precision)
    prepared = get_backend(config).prepare(model, torch.randn(2, 32))
    try:
        check_timings(prepared.time_calls(5), 5)
        assert torch.get_num_threads() == 1  # set explicitly before every batch of calls
        assert prepared.build_ms >= 0 and prepared.runtime.startswith("torch ")
        if precision == "int8":
            assert prepared.info["quantized_linear"] == 2 and prepared.info["quantized_engine"]
    finally:
        prepared.close()
    prepared.close()  # idempotent
    # The caller's module is untouched: precision changes work on a copy.
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert isinstance(model[0], torch.nn.Linear) and model[0].weight.dtype == torch.float32
    with pytest.raises(LatbenchError, match="closed"):
        prepared.time_calls(1)


def test_torch_cpu_cold_cache_and_keyword_inputs() -> None:
    class Keyword(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.proj(x) * scale

    config = cpu(cache="cold")
    with get_backend(config).prepare(Keyword(), {"x": torch.randn(2, 8), "scale": torch.ones(2, 1)}) as p:
        check_timings(p.time_calls(3), 3)
        assert p.info["cold_flush_bytes"] > 0 and p.info["cold_input_copies"] >= 2
        with pytest.raises(LatbenchError, match="n >= 1"):
            p.time_calls(0)


def test_torch_cpu_refusals(tmp_path: Path) -> None:
    with pytest.raises(LatbenchError, match=r"no nn\.Linear"):
        get_backend(cpu(precision="int8")).prepare(torch.nn.ReLU(), torch.randn(2, 4))
    with pytest.raises(LatbenchError, match="onnxruntime or tensorrt"):
        get_backend(cpu()).prepare(str(tmp_path / "model.onnx"), torch.randn(2, 4))


@pytest.mark.slow
def test_torch_cpu_compile() -> None:
    with get_backend(cpu(mode="compile")).prepare(mlp(), torch.randn(2, 32)) as p:
        check_timings(p.time_calls(5), 5)


# ------------------------------------------------------------------------ ONNX Runtime CPU


def ort_output(prepared: Any) -> torch.Tensor:
    return prepared._runner.outputs[0]


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnxruntime_cpu_lifecycle_and_provider_check(precision: str) -> None:
    model, x = mlp(), torch.randn(2, 32)
    with get_backend(cpu("onnxruntime", precision=precision)).prepare(model, x) as p:
        check_timings(p.time_calls(5), 5)
        assert p.info["session_providers"][0] == "CPUExecutionProvider"
        assert p.info["nodes_by_provider"].get("CPUExecutionProvider", 0) > 0
        assert p.info["export_ms"] > 0 and p.build_ms >= p.info["export_ms"]
        assert p.runtime.startswith("onnxruntime ")
        expected = model(x).detach()
        if precision == "fp32":  # the bound output buffer holds what the module computes
            assert torch.allclose(ort_output(p), expected, atol=1e-5)
        else:
            assert p.info["quantize_ms"] > 0
            assert torch.allclose(ort_output(p), expected, atol=0.1)
        workdir = Path(p._remove_workdir.peek()[2][0])
        assert workdir.is_dir()
    assert not workdir.exists()  # temporary export removed on close


def test_onnxruntime_dynamic_batch_exports_at_batch_2_and_runs_at_batch_1() -> None:
    from latbench.profiling.backends._export import export_inputs

    x = torch.randn(1, 32)
    assert export_inputs((x,), dynamic_batch=True)[0].shape == (2, 32)
    assert export_inputs((x,), dynamic_batch=False)[0].shape == (1, 32)
    config = DeployConfig(backend="onnxruntime", threads=1, batch=1, options={"onnxruntime.dynamic_batch": True})
    model = mlp()
    with get_backend(config).prepare(model, x) as p:
        assert isinstance(p._runner.session.get_inputs()[0].shape[0], str)  # symbolic batch axis
        check_timings(p.time_calls(3), 3)
        assert torch.allclose(ort_output(p), model(x).detach(), atol=1e-5)


def test_onnxruntime_without_io_binding_and_cold() -> None:
    config = cpu("onnxruntime", cache="cold", options={"onnxruntime.io_binding": False})
    with get_backend(config).prepare(mlp(), torch.randn(2, 32)) as p:
        assert p.info["io_binding"] is False and p.info["cold_flush_bytes"] > 0
        check_timings(p.time_calls(3), 3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_runs_a_users_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "user.onnx"
    model, x = mlp(), torch.randn(2, 32)
    torch.onnx.export(model, (x,), str(path), input_names=["features"], dynamo=False)
    for inputs in ({"features": x}, (x,)):
        with get_backend(cpu("onnxruntime")).prepare(str(path), inputs) as p:
            assert p.info["exporter"] == "file"
            check_timings(p.time_calls(2), 2)
    with pytest.raises(LatbenchError, match="graph inputs are features"):
        get_backend(cpu("onnxruntime")).prepare(str(path), {"other": x})
    with pytest.raises(LatbenchError, match="no such file"):
        get_backend(cpu("onnxruntime")).prepare(str(tmp_path / "missing.onnx"), x)


def test_onnxruntime_dynamo_exporter_needs_onnxscript(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    config = cpu("onnxruntime", options={"onnxruntime.exporter": "dynamo"})
    with pytest.raises(MissingDependencyError, match="needs the onnxscript package"):
        get_backend(config).prepare(mlp(), torch.randn(2, 32))


def test_provider_checks_refuse_silent_fallbacks() -> None:
    from latbench.profiling.backends.onnxruntime import check_node_placement, check_session_providers

    check_session_providers("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], "w")
    with pytest.raises(LatbenchError, match=r"CUDAExecutionProvider did not load.*silently"):
        check_session_providers("cuda", ["CPUExecutionProvider"], "w")
    with pytest.raises(LatbenchError, match="TensorrtExecutionProvider did not load"):
        check_session_providers("tensorrt", ["CUDAExecutionProvider", "CPUExecutionProvider"], "w")
    assert check_node_placement("cuda", {"CUDAExecutionProvider": 10, "CPUExecutionProvider": 2}, "w") == 2
    assert check_node_placement("tensorrt", {"TensorrtExecutionProvider": 1}, "w") == 0
    assert check_node_placement("cpu", {"CPUExecutionProvider": 3}, "w") == 0
    assert check_node_placement("cuda", {}, "w") == 0
    with pytest.raises(LatbenchError, match="no node ran on CUDAExecutionProvider"):
        check_node_placement("cuda", {"CPUExecutionProvider": 12}, "w")


def test_nodes_by_provider_reads_a_profile(tmp_path: Path) -> None:
    from latbench.profiling.backends.onnxruntime import nodes_by_provider

    events = [
        {"cat": "Session", "name": "model_run"},
        {"cat": "Node", "name": "/0/MatMul_kernel_time", "args": {"provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "/0/MatMul_fence_before", "args": {"provider": "CUDAExecutionProvider"}},
        {"cat": "Node", "name": "/1/Shape_kernel_time", "args": {"provider": "CPUExecutionProvider"}},
    ]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    assert nodes_by_provider(path) == {"CUDAExecutionProvider": 1, "CPUExecutionProvider": 1}


def test_gpu_provider_options_run_on_our_stream() -> None:
    from latbench.profiling.backends.onnxruntime import provider_options

    stream = types.SimpleNamespace(cuda_stream=140000)
    assert provider_options(cpu("onnxruntime"), None) == ["CPUExecutionProvider"]
    ((name, opts),) = provider_options(DeployConfig(backend="onnxruntime", device="cuda:1"), stream)
    assert name == "CUDAExecutionProvider" and opts == {"device_id": 1, "user_compute_stream": "140000"}
    trt_config = DeployConfig(
        backend="onnxruntime",
        device="cuda",
        mode="tensorrt",
        precision="fp16",
        options={"onnxruntime.trt_workspace_mb": 512, "onnxruntime.trt_engine_cache_dir": "/tmp/e"},
    )
    (trt_name, trt), (cuda_name, _) = provider_options(trt_config, stream)
    assert (trt_name, cuda_name) == ("TensorrtExecutionProvider", "CUDAExecutionProvider")
    assert trt["trt_fp16_enable"] is True and trt["trt_max_workspace_size"] == 512 * 2**20
    assert trt["trt_engine_cache_path"] == "/tmp/e" and trt["user_compute_stream"] == "140000"


# ------------------------------------------------------------- TensorRT, without TensorRT


def test_builder_flags_per_precision() -> None:
    from latbench.profiling.backends.tensorrt import builder_flags

    assert builder_flags("fp32") == ((), ())
    assert builder_flags("fp32", allow_tf32=False) == ((), ("TF32",))
    assert builder_flags("fp16") == (("FP16",), ())
    assert builder_flags("bf16") == (("BF16",), ())
    assert builder_flags("int8") == (("INT8", "FP16"), ())
    with pytest.raises(LatbenchError):
        builder_flags("fp8")


def test_shape_profiles_and_engine_cache_key() -> None:
    from latbench.profiling.backends.tensorrt import engine_cache_key, shape_profiles

    (static,) = shape_profiles(("x",), ((4, 128),), dynamic_batch=False)
    assert static.min == static.opt == static.max == (4, 128)
    (dynamic,) = shape_profiles(("x",), ((4, 128),), dynamic_batch=True)
    assert dynamic.min == (1, 128) and dynamic.opt == dynamic.max == (4, 128)
    base = dict(
        onnx_sha256="ab" * 32,
        precision="fp16",
        profiles=(static,),
        trt_version="10.13.0",
        gpu_name="NVIDIA H100",
        compute_capability="9.0",
        workspace_mb=4096,
        optimization_level=3,
        allow_tf32=True,
    )
    key = engine_cache_key(**base)
    assert key == engine_cache_key(**base) and len(key) == 32
    for field, other in [
        ("onnx_sha256", "cd" * 32),
        ("precision", "int8"),
        ("profiles", (dynamic,)),
        ("trt_version", "10.14.0"),
        ("gpu_name", "NVIDIA H200"),
        ("compute_capability", "8.0"),
        ("workspace_mb", 1024),
        ("optimization_level", 5),
        ("allow_tf32", False),
    ]:
        assert engine_cache_key(**{**base, field: other}) != key, field


class FakeTRT:
    """A stand-in for the TensorRT 10 Python API names the backend uses, recording what it is asked."""

    def __init__(self, parse_ok: bool = True, build_ok: bool = True, input_shape: tuple = (4, 16)) -> None:
        self.__version__ = "10.13.0"
        self.calls: list[Any] = []
        self.DataType = types.SimpleNamespace(FLOAT="FLOAT", HALF="HALF", INT64="INT64")
        self.BuilderFlag = types.SimpleNamespace(FP16="FP16", BF16="BF16", INT8="INT8", TF32="TF32")
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
        fake = self

        class Tensor:
            def __init__(self, name: str, dtype: str, shape: tuple = (4, 16)) -> None:
                self.name, self.dtype, self.shape, self.dynamic_range = name, dtype, shape, None

            def set_dynamic_range(self, low: float, high: float) -> bool:
                self.dynamic_range = (low, high)
                return True

        class Layer:
            def __init__(self, outputs: list[Tensor]) -> None:
                self.outputs = outputs
                self.num_outputs = len(outputs)

            def get_output(self, i: int) -> Tensor:
                return self.outputs[i]

        class Network:
            def __init__(self) -> None:
                self.inputs = [Tensor("input_0", "FLOAT", input_shape), Tensor("ids", "INT64", input_shape)]
                self.layers = [Layer([Tensor("h", "FLOAT")]), Layer([Tensor("shape", "INT64")])]
                self.num_inputs, self.num_layers = len(self.inputs), len(self.layers)

            def get_input(self, i: int) -> Tensor:
                return self.inputs[i]

            def get_layer(self, i: int) -> Layer:
                return self.layers[i]

        class Profile:
            def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
                fake.calls.append(("set_shape", name, low, opt, high))

        class Config:
            builder_optimization_level = None

            def set_memory_pool_limit(self, pool: str, size: int) -> None:
                fake.calls.append(("pool", pool, size))

            def set_flag(self, flag: str) -> None:
                fake.calls.append(("set_flag", flag))

            def clear_flag(self, flag: str) -> None:
                fake.calls.append(("clear_flag", flag))

            def add_optimization_profile(self, profile: Profile) -> None:
                fake.calls.append(("add_profile",))

        class Builder:
            def __init__(self, logger: Any) -> None:
                self.config = Config()

            def create_network(self, flags: int) -> Network:
                fake.calls.append(("create_network", flags))
                fake.network = Network()
                return fake.network

            def create_builder_config(self) -> Config:
                return self.config

            def create_optimization_profile(self) -> Profile:
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> bytes | None:
                fake.calls.append(("build", config.builder_optimization_level))
                return b"engine-bytes" if build_ok else None

        class OnnxParser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network: Network, logger: Any) -> None:
                pass

            def parse_from_file(self, path: str) -> bool:
                fake.calls.append(("parse_from_file", path))
                return parse_ok

            def get_error(self, i: int) -> str:
                return "In node 3 (Erf): unsupported"

        self.Builder, self.OnnxParser = Builder, OnnxParser


def build(fake: FakeTRT, precision: str, dynamic: bool = False, allow_tf32: bool = True) -> bytes:
    from latbench.profiling.backends.tensorrt import build_serialized_engine, shape_profiles

    profiles = shape_profiles(("input_0", "ids"), ((4, 16), (4, 16)), dynamic_batch=dynamic)
    return build_serialized_engine(
        fake,
        Path("m.onnx"),
        precision,
        profiles,
        workspace_mb=256,
        optimization_level=4,
        allow_tf32=allow_tf32,
        logger=None,
    )


def test_engine_build_calls_the_tensorrt_10_api() -> None:
    fake = FakeTRT()
    assert build(fake, "fp16") == b"engine-bytes"
    assert fake.calls == [
        ("create_network", 0),
        ("parse_from_file", "m.onnx"),
        ("pool", "WORKSPACE", 256 * 2**20),
        ("set_flag", "FP16"),
        ("build", 4),
    ]
    fake = FakeTRT()
    build(fake, "fp32", dynamic=True, allow_tf32=False)
    assert ("clear_flag", "TF32") in fake.calls and ("add_profile",) in fake.calls
    assert ("set_shape", "input_0", (1, 16), (4, 16), (4, 16)) in fake.calls


def test_int8_build_sets_dummy_ranges_on_float_tensors_only() -> None:
    fake = FakeTRT()
    build(fake, "int8")
    assert [c for c in fake.calls if c[0] == "set_flag"] == [("set_flag", "INT8"), ("set_flag", "FP16")]
    tensors = fake.network.inputs + [t for layer in fake.network.layers for t in layer.outputs]
    assert {t.name: t.dynamic_range for t in tensors} == {
        "input_0": (-4.0, 4.0),
        "ids": None,
        "h": (-4.0, 4.0),
        "shape": None,
    }


def test_free_dimensions_of_an_onnx_file_get_a_profile_of_the_workload() -> None:
    # A user's file exported with dynamic axes: TensorRT builds no such network without a profile.
    fake = FakeTRT(input_shape=(-1, -1))
    build(fake, "fp16")
    assert ("add_profile",) in fake.calls
    assert ("set_shape", "input_0", (4, 16), (4, 16), (4, 16)) in fake.calls
    assert ("set_shape", "ids", (4, 16), (4, 16), (4, 16)) in fake.calls


def test_network_profiles_match_by_name_else_by_position() -> None:
    from latbench.profiling.backends.tensorrt import network_profiles, shape_profiles

    def tensor(name: str, shape: tuple) -> Any:
        return types.SimpleNamespace(name=name, shape=shape)

    (static,) = shape_profiles(("input_0",), ((2, 8),), dynamic_batch=False)
    (dynamic,) = shape_profiles(("input_0",), ((2, 8),), dynamic_batch=True)
    assert network_profiles([tensor("input_0", (2, 8))], (static,)) == []
    assert network_profiles([tensor("input_0", (-1, 8))], (dynamic,)) == [("input_0", dynamic)]
    # a user's file fed positionally: its graph names its input, the profile does not
    assert network_profiles([tensor("pixels", (-1, 8))], (static,)) == [("pixels", static)]
    assert network_profiles([tensor("pixels", (-1, 8)), tensor("mask", (2, 8))], (static,)) == []


def test_engine_build_failures_are_one_line() -> None:
    with pytest.raises(LatbenchError, match=r"ONNX parser failed: In node 3 \(Erf\)"):
        build(FakeTRT(parse_ok=False), "fp16")
    with pytest.raises(LatbenchError, match="builder failed for precision bf16"):
        build(FakeTRT(build_ok=False), "bf16")


def test_engine_cache_builds_once(tmp_path: Path) -> None:
    from latbench.profiling.backends.tensorrt import load_or_build_engine

    builds = []

    def builder() -> bytes:
        builds.append(1)
        return b"serialized"

    first = load_or_build_engine(tmp_path, "k" * 32, builder, {"precision": "fp16"})
    second = load_or_build_engine(tmp_path, "k" * 32, builder, {"precision": "fp16"})
    assert first[0] == second[0] == b"serialized" and len(builds) == 1
    assert (first[1], second[1]) == (False, True) and second[2] == 0.0
    meta = json.loads((tmp_path / ("k" * 32 + ".json")).read_text())
    assert meta["precision"] == "fp16" and meta["engine_build_ms"] >= 0


def test_engine_io_binding_matches_inputs_by_name_and_sizes_outputs() -> None:
    from latbench.profiling.backends._export import OnnxModel
    from latbench.profiling.backends.tensorrt import TensorRTBackend

    trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"))
    dtypes = {"mask": "INT64", "x": "FLOAT", "y": "HALF"}

    class Engine:
        num_io_tensors = 3

        def get_tensor_name(self, i: int) -> str:
            return ["mask", "x", "y"][i]

        def get_tensor_mode(self, name: str) -> str:
            return "out" if name == "y" else "in"

        def get_tensor_dtype(self, name: str) -> Any:
            return types.SimpleNamespace(name=dtypes[name])

    class Context:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple) -> bool:
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> tuple:
            return (self.shapes["x"][0], 7)

        def set_tensor_address(self, name: str, address: int) -> None:
            self.addresses[name] = address

    config = DeployConfig(backend="tensorrt", device="cuda", batch=2)
    inputs = normalise_inputs({"x": torch.randn(2, 5), "mask": torch.ones(2, 5, dtype=torch.int32)}, config)
    onnx = OnnxModel(Path("m.onnx"), inputs.names, 0.0, "torchscript", False)
    context = Context()
    buffers = TensorRTBackend(config)._bind(trt, Engine(), context, onnx, inputs, torch.device("cpu"))
    mask, x, y = buffers
    assert mask.dtype is torch.int64 and x.dtype is torch.float32 and y.dtype is torch.float16
    assert context.shapes == {"mask": (2, 5), "x": (2, 5)} and y.shape == (2, 7)
    assert context.addresses == {"mask": mask.data_ptr(), "x": x.data_ptr(), "y": y.data_ptr()}


def test_trt_dtypes() -> None:
    from latbench.profiling.backends.tensorrt import trt_dtype

    assert trt_dtype(types.SimpleNamespace(name="HALF")) is torch.float16
    assert trt_dtype("DataType.INT64") is torch.int64
    with pytest.raises(LatbenchError, match="FP8"):
        trt_dtype(types.SimpleNamespace(name="FP8"))


def test_tf32_switch_restores_the_previous_setting() -> None:
    from latbench.profiling.backends.torch_cuda import tf32, tf32_setting

    setting = tf32_setting(True)
    if setting["api"] == "fp32_precision":
        before = torch.backends.cuda.matmul.fp32_precision
        with tf32(True):
            assert torch.backends.cuda.matmul.fp32_precision == "tf32"
        assert torch.backends.cuda.matmul.fp32_precision == before
    else:
        before = torch.backends.cuda.matmul.allow_tf32
        with tf32(not before):
            assert torch.backends.cuda.matmul.allow_tf32 is (not before)
        assert torch.backends.cuda.matmul.allow_tf32 is before


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_onnxruntime_first_call_failure_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "user.onnx"
    torch.onnx.export(mlp(), (torch.randn(2, 32),), str(path), input_names=["features"], dynamo=False)
    # the file takes [2, 32]; a [2, 16] workload fails in ONNX Runtime's run, not in latbench's checks
    with pytest.raises(LatbenchError, match=r"^backend 'onnxruntime' mode 'cpu': the untimed first call failed: "):
        get_backend(cpu("onnxruntime")).prepare(str(path), {"features": torch.randn(2, 16)})


def test_gpu_out_of_memory_becomes_one_line() -> None:
    from latbench.profiling.backends._timing import gpu_memory_errors

    with pytest.raises(LatbenchError, match=r"^torch graph: out of GPU memory \(CUDA out of memory\. Tried"):
        with gpu_memory_errors("torch graph"):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore lines")
    with pytest.raises(KeyError):  # anything else is not its business
        with gpu_memory_errors("torch graph"):
            raise KeyError("x")


def test_torch_compile_failure_is_one_line_but_out_of_memory_is_left_alone() -> None:
    from latbench.profiling.backends.torch_cuda import _compile

    class Broken(torch.nn.Module):
        def __init__(self, error: Exception) -> None:
            super().__init__()
            self.error = error

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise self.error

    config = DeployConfig(backend="torch", device="cuda", mode="compile", batch=2)
    inputs = normalise_inputs(torch.randn(2, 4), config)
    # stream None: torch.cuda.stream(None) does nothing, so the wrapping runs without a GPU
    with pytest.raises(LatbenchError, match=r"^mode compile: torch.compile failed \(.*boom"):
        _compile(Broken(RuntimeError("boom")), inputs, config, None)  # type: ignore[arg-type]
    torch._dynamo.reset()
    with pytest.raises(torch.cuda.OutOfMemoryError):
        _compile(Broken(torch.cuda.OutOfMemoryError("CUDA out of memory")), inputs, config, None)  # type: ignore[arg-type]
    torch._dynamo.reset()


def test_callable_on_a_gpu_waits_for_the_default_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.backends._timing import CallablePrepared

    waited = []

    class Stream:
        def __init__(self, device: Any) -> None:
            self.device = device

        def wait_stream(self, other: Any) -> None:
            waited.append(other)

    monkeypatch.setattr(torch.cuda, "Stream", Stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: ("default", str(device)))
    CallablePrepared(DeployConfig(backend="torch", device="cuda:1", mode="eager"), lambda: None)
    assert waited == [("default", "cuda:1")]  # a and b of the matmul were filled there


# ----------------------------------------------------------------- NVML (a stand-in pynvml)


class NVMLError(Exception):
    pass


def fake_pynvml(uuids: list[str], *, event_reasons: bool = True, power_ok: bool = True) -> types.ModuleType:
    """The pynvml names latbench reads, for GPUs with these UUIDs (NVML's ``GPU-`` prefix included)."""
    nv = types.ModuleType("pynvml")
    nv.NVML_CLOCK_SM, nv.NVML_CLOCK_MEM, nv.NVML_TEMPERATURE_GPU = 1, 2, 0
    nv.nvmlInit = lambda: None
    nv.nvmlDeviceGetCount = lambda: len(uuids)
    nv.nvmlDeviceGetHandleByIndex = lambda i: ("handle", i)
    nv.nvmlDeviceGetUUID = lambda h: uuids[h[1]]
    nv.nvmlDeviceGetClockInfo = lambda h, kind: 1980 if kind == 1 else 2619
    nv.nvmlDeviceGetTemperature = lambda h, sensor: 41
    nv.nvmlDeviceGetPerformanceState = lambda h: 0

    def power(h: Any) -> int:
        if not power_ok:
            raise NVMLError("Not Supported")
        return 312_345

    nv.nvmlDeviceGetPowerUsage = power
    nv.nvmlDeviceGetViolationStatus = lambda h, policy: types.SimpleNamespace(referenceTime=0, violationTime=0)
    if event_reasons:
        nv.nvmlDeviceGetCurrentClocksEventReasons = lambda h: 0x1 | 0x4  # idle, software power cap
    nv.nvmlDeviceGetCurrentClocksThrottleReasons = lambda h: 0x1
    return nv


def test_gpu_state_reads_each_field_alone_and_both_names_of_the_throttle_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from latbench.profiling.fingerprint import gpu_state

    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(["GPU-a"]))
    state = gpu_state(0)
    assert state is not None and "error" not in state
    assert state["sm_clock_mhz"] == 1980 and state["power_w"] == 312.3 and state["temperature_c"] == 41
    assert state["throttle_reasons"] == ["GpuIdle", "SwPowerCap"] and state["throttled"] is True
    # an nvidia-ml-py older than 12.535 has only the deprecated name; power unsupported (a vGPU)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(["GPU-a"], event_reasons=False, power_ok=False))
    state = gpu_state(0)
    assert state["throttle_reasons"] == ["GpuIdle"] and state["throttled"] is False
    assert "power_w" not in state and state["error"].startswith("power_w: NVMLError: Not Supported")
    assert state["sm_clock_mhz"] == 1980  # the rest is kept


def test_nvml_index_follows_the_uuid_of_torchs_device(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling.fingerprint import gpu_info, nvml_index

    # CUDA_VISIBLE_DEVICES=2: torch's cuda:0 is NVML's GPU 2 (torch prints its UUID without "GPU-")
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    props = types.SimpleNamespace(uuid="cccc", multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    assert nvml_index(0) == 2
    assert nvml_index(5) == 5  # not a device torch has: its own index
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert nvml_index(0) == 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    nv = sys.modules["pynvml"]
    nv.nvmlSystemGetDriverVersion = lambda: "580.65"
    nv.nvmlSystemGetCudaDriverVersion = lambda: 13000
    nv.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)
    nv.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=80 * 2**30)
    nv.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    nv.nvmlDeviceGetMaxClockInfo = lambda h, kind: 1980
    nv.nvmlDeviceGetEnforcedPowerLimit = lambda h: 700_000
    gpus = gpu_info()
    assert [g.get("cuda_index") for g in gpus] == [None, None, 0]
    assert gpus[2]["sm_count"] == 132 and "sm_count" not in gpus[0]


def test_measure_group_reads_nvml_by_uuid_not_by_torchs_index(monkeypatch: pytest.MonkeyPatch) -> None:
    from latbench.profiling import fingerprint, job

    monkeypatch.setattr(fingerprint, "nvml_index", lambda cuda_index: 3)
    gpu = DeployConfig(backend="torch", device="cuda:0")
    assert job._nvml_index(gpu, None) == 3
    assert job._nvml_index(gpu, 1) == 1  # a fleet worker's own answer wins
    assert job._nvml_index(cpu(), None) is None


# ------------------------------------------------------------------------- real GPU (gpu)

GPU_QUICK = ProtocolConfig(warmup_calls=5, min_samples=20, budget_s=1.0)


def encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.TransformerEncoderLayer(64, 4, 128, batch_first=True, dropout=0.0)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["eager", "graph", "compile"])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_torch_cuda_modes(mode: str, precision: str) -> None:
    config = DeployConfig(backend="torch", device="cuda", mode=mode, precision=precision, batch=2, seq_len=16)
    model = encoder()
    with get_backend(config).prepare(model, torch.randn(2, 16, 64)) as p:
        check_timings(p.time_calls(10), 10)
        m = measure(p, GPU_QUICK)
        assert m.stats.n == len(m.samples_ms) >= 20 and m.stats.p10_ms <= m.stats.median_ms <= m.stats.p90_ms
        assert m.build_ms > 0 and p.info["host_bound"] == (mode == "eager")
    assert next(model.parameters()).device.type == "cpu"  # the caller's module stays where it was


@pytest.mark.gpu
def test_torch_cuda_cold_cache_and_loops() -> None:
    cold = DeployConfig(backend="torch", device="cuda", cache="cold", batch=2)
    with get_backend(cold).prepare(mlp(), torch.randn(2, 32)) as p:
        assert p.info["cold_flush_bytes"] >= 2**20
        check_timings(p.time_calls(5), 5)
    loops = DeployConfig(backend="torch", device="cuda", mode="eager", batch=2, options={"torch.calls_per_sample": 10})
    with get_backend(loops).prepare(mlp(), torch.randn(2, 32)) as p:
        check_timings(p.time_calls(5), 5)


@pytest.mark.gpu
def test_peaks_on_the_gpu() -> None:
    from latbench.profiling.peaks import measure_peaks

    peaks = measure_peaks("cuda:0", "fp16", matmul_n=2048, copy_bytes=64 * 2**20)
    assert peaks["peak_flops"] > 0 and peaks["peak_bytes_per_s"] > 0


@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["cuda", "tensorrt"])
def test_onnxruntime_gpu(mode: str) -> None:
    config = DeployConfig(backend="onnxruntime", device="cuda", mode=mode, batch=2)
    try:
        backend = get_backend(config)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    with backend.prepare(mlp(), torch.randn(2, 32)) as p:
        check_timings(p.time_calls(5), 5)
        assert p.info["session_providers"][0] != "CPUExecutionProvider"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine(precision: str, tmp_path: Path) -> None:
    config = DeployConfig(
        backend="tensorrt",
        device="cuda",
        precision=precision,
        batch=2,
        options={"tensorrt.engine_cache_dir": str(tmp_path)},
    )
    try:
        backend = get_backend(config)
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    with backend.prepare(mlp(), torch.randn(2, 32)) as p:
        assert p.info["engine_cached"] is False
        check_timings(p.time_calls(5), 5)
    with backend.prepare(mlp(), torch.randn(2, 32)) as p:
        assert p.info["engine_cached"] is True
