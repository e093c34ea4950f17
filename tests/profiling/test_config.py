"""DeployConfig and ProtocolConfig: defaults, refusals that name the problem, options, keys, round trips."""

from __future__ import annotations

import dataclasses
import json

import pytest

from latbench.errors import LatbenchError
from latbench.profiling.config import (
    BACKEND_OPTIONS,
    BACKENDS,
    DeployConfig,
    ProtocolConfig,
    default_mode,
    option_spec,
    parse_options,
)
from latbench.profiling.placement import default_threads


def test_cpu_defaults_resolve_mode_and_threads() -> None:
    c = DeployConfig(backend="torch")
    assert (c.device, c.mode, c.precision, c.cache, c.batch, c.seq_len) == ("cpu", "eager", "fp32", "warm", 1, None)
    # Set explicitly, identically for every backend: the usable cores.
    assert c.threads == default_threads()
    assert DeployConfig(backend="onnxruntime").threads == c.threads
    assert DeployConfig(backend="onnxruntime").mode == "cpu"


def test_gpu_defaults() -> None:
    c = DeployConfig(backend="torch", device="cuda")
    assert c.device == "cuda:0" and c.mode == "graph" and c.threads is None and c.gpu_index == 0
    assert DeployConfig(backend="onnxruntime", device="cuda:1").mode == "cuda"
    assert DeployConfig(backend="tensorrt", device="cuda:1").gpu_index == 1
    assert DeployConfig(backend="tensorrt", device="CUDA:1").mode == "engine"
    assert default_mode("torch", "cpu") == "eager"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"backend": "torch", "mode": "graph"}, ["graph", "cpu"]),
        ({"backend": "tensorrt"}, ["tensorrt", "cpu"]),
        ({"backend": "torch", "precision": "fp16"}, ["fp16", "torch", "cpu"]),
        ({"backend": "torch", "device": "cuda", "precision": "int8"}, ["int8", "CPU only"]),
        ({"backend": "torch", "mode": "compile", "precision": "int8"}, ["int8", "eager mode only"]),
        ({"backend": "onnxruntime", "precision": "bf16"}, ["bf16", "CPU execution provider"]),
        ({"backend": "onnxruntime", "device": "cuda", "precision": "int8"}, ["int8", "onnxruntime"]),
        ({"backend": "onnxruntime", "mode": "cuda"}, ["cuda", "device cuda"]),
        ({"backend": "onnxruntime", "device": "cuda", "mode": "cpu"}, ["'cpu'", "device cpu"]),
        ({"backend": "torch", "batch": 0}, ["batch", ">= 1"]),
        ({"backend": "torch", "batch": True}, ["batch"]),
        ({"backend": "torch", "seq_len": 0}, ["seq_len"]),
        ({"backend": "torch", "threads": 0}, ["threads"]),
        ({"backend": "jax"}, ["backend", "jax"]),
        ({"backend": "torch", "device": "gpu"}, ["device", "gpu"]),
        ({"backend": "torch", "mode": "jit"}, ["mode", "jit"]),
        ({"backend": "torch", "precision": "fp8"}, ["precision", "fp8"]),
        ({"backend": "torch", "cache": "hot"}, ["cache", "hot"]),
        ({"backend": "torch", "options": {"torch.nope": 1}}, ["torch.nope", "unknown"]),
        ({"backend": "torch", "options": {"onnxruntime.io_binding": False}}, ["onnxruntime.io_binding", "'torch'"]),
        ({"backend": "torch", "options": {"io_binding": False}}, ["io_binding", "<backend>.<name>"]),
        ({"backend": "torch", "options": {"torch.compile_mode": "max-autotune"}}, ["compile_mode", "compile"]),
        ({"backend": "torch", "options": {"torch.allow_tf32": True}}, ["allow_tf32", "cuda"]),
        (
            {"backend": "torch", "mode": "compile", "options": {"torch.compile_mode": "reduce-overhead"}},
            ["reduce-overhead", "cpu"],
        ),
        (
            {"backend": "torch", "device": "cuda", "cache": "cold", "options": {"torch.calls_per_sample": 10}},
            ["calls_per_sample", "cold"],
        ),
        ({"backend": "onnxruntime", "options": {"onnxruntime.opset": "x"}}, ["opset", "integer"]),
        ({"backend": "onnxruntime", "options": {"onnxruntime.opset": 5}}, ["opset", ">= 11"]),
        ({"backend": "onnxruntime", "options": {"onnxruntime.io_binding": "maybe"}}, ["io_binding", "true or false"]),
        ({"backend": "onnxruntime", "options": {"onnxruntime.exporter": "jit"}}, ["exporter", "torchscript"]),
        ({"backend": "onnxruntime", "options": {"onnxruntime.trt_workspace_mb": 64}}, ["trt_workspace_mb", "tensorrt"]),
        (
            {"backend": "tensorrt", "device": "cuda", "options": {"tensorrt.engine_cache_dir": "a,b"}},
            ["engine_cache_dir", "','"],
        ),
        ({"backend": "tensorrt", "device": "cuda", "options": {"tensorrt.builder_optimization_level": 9}}, ["<= 5"]),
        ({"backend": "torch", "options": [("torch.compile_mode", "a"), ("torch.compile_mode", "b")]}, ["twice"]),
    ],
)
def test_impossible_combinations_are_refused_by_name(kwargs: dict, words: list[str]) -> None:
    with pytest.raises(LatbenchError) as info:
        DeployConfig(**kwargs)
    message = str(info.value)
    for word in words:
        assert word in message, message


def test_bf16_is_allowed_on_torch_cpu_and_documented() -> None:
    assert DeployConfig(backend="torch", precision="bf16").precision == "bf16"
    assert DeployConfig(backend="torch", precision="int8").mode == "eager"
    assert DeployConfig(backend="tensorrt", device="cuda", precision="int8").precision == "int8"


def test_options_are_coerced_sorted_and_defaults_dropped() -> None:
    c = DeployConfig(
        backend="onnxruntime",
        options={"onnxruntime.opset": "18", "onnxruntime.io_binding": "false", "onnxruntime.exporter": "torchscript"},
    )
    assert c.options == (("onnxruntime.io_binding", False), ("onnxruntime.opset", 18))
    assert c.option("onnxruntime.opset") == 18
    assert c.option("onnxruntime.graph_optimization_level") == "all"
    assert set(c.effective_options()) == {s.key for s in BACKEND_OPTIONS["onnxruntime"]}
    # The same deployment spelled with a default or without it has one key.
    assert (
        c.key()
        == DeployConfig(
            backend="onnxruntime", options=[("onnxruntime.opset", 18), ("onnxruntime.io_binding", False)]
        ).key()
    )
    with pytest.raises(LatbenchError, match="another backend"):
        c.option("torch.compile_mode")


def test_key_format_and_round_trip() -> None:
    c = DeployConfig(backend="torch", threads=2, batch=8, seq_len=128)
    assert c.key() == "backend=torch,device=cpu,mode=eager,precision=fp32,threads=2,cache=warm,batch=8,seq_len=128"
    configs = [
        c,
        DeployConfig(
            backend="torch",
            device="cuda:1",
            mode="compile",
            precision="bf16",
            cache="cold",
            options={"torch.compile_mode": "max-autotune", "torch.allow_tf32": True},
        ),
        DeployConfig(backend="onnxruntime", precision="int8", threads=1, options={"onnxruntime.io_binding": False}),
        DeployConfig(
            backend="tensorrt",
            device="cuda",
            precision="fp16",
            batch=4,
            options={"tensorrt.workspace_mb": 1024, "tensorrt.engine_cache_dir": "/tmp/engines"},
        ),
    ]
    keys = [x.key() for x in configs]
    assert len(set(keys)) == len(keys)
    for x in configs:
        assert DeployConfig.from_key(x.key()) == x
        assert DeployConfig.from_dict(json.loads(json.dumps(x.to_dict()))) == x
    assert "torch.allow_tf32=true" in configs[1].key()
    assert "threads=none" in configs[1].key() and "seq_len=none" in configs[1].key()


def test_label_is_short_and_readable() -> None:
    c = DeployConfig(backend="torch", device="cuda", precision="fp16", seq_len=128)
    assert c.label() == "torch graph fp16 cuda:0 b1 s128 warm"
    assert DeployConfig(backend="torch", threads=2).label() == "torch eager fp32 cpu 2t b1 warm"


def test_from_dict_and_from_key_refuse_garbage() -> None:
    with pytest.raises(LatbenchError, match="unknown field"):
        DeployConfig.from_dict({"backend": "torch", "colour": "red"})
    with pytest.raises(LatbenchError, match="no backend"):
        DeployConfig.from_dict({"device": "cpu"})
    with pytest.raises(LatbenchError, match="unknown field"):
        DeployConfig.from_key("backend=torch,flavour=x")
    with pytest.raises(LatbenchError, match="integer"):
        DeployConfig.from_key("backend=torch,batch=two")


def test_configs_are_frozen() -> None:
    c = DeployConfig(backend="torch")
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.batch = 2  # type: ignore[misc]


def test_every_declared_option_belongs_to_its_backend() -> None:
    for backend, specs in BACKEND_OPTIONS.items():
        assert backend in BACKENDS
        for spec in specs:
            assert spec.key.startswith(backend + ".")
            assert option_spec(spec.key) is spec
            assert spec.coerce(spec.default) == spec.default


def test_parse_options() -> None:
    assert parse_options(["onnxruntime.opset=18", " onnxruntime.io_binding = false "]) == {
        "onnxruntime.opset": "18",
        "onnxruntime.io_binding": "false",
    }
    with pytest.raises(LatbenchError, match="key=value"):
        parse_options(["onnxruntime.opset"])


def test_protocol_defaults_follow_measurement_md() -> None:
    p = ProtocolConfig()
    assert (p.warmup_calls, p.min_samples, p.target_rel_ci, p.unstable_iqr_ratio) == (10, 50, 0.01, 0.10)
    assert p.warmup_seconds(on_gpu=False) == 0.2 and p.warmup_seconds(on_gpu=True) == 0.025
    assert ProtocolConfig(warmup_s=0).warmup_seconds(on_gpu=False) == 0
    assert ProtocolConfig.from_dict(json.loads(json.dumps(p.to_dict()))) == p


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"min_samples": 0}, "min_samples"),
        ({"min_samples": 100, "max_samples": 50}, "max_samples"),
        ({"target_rel_ci": 0}, "target_rel_ci"),
        ({"target_rel_ci": 1.5}, "relative"),
        ({"budget_s": -1}, "budget_s"),
        ({"budget_s": float("nan")}, "budget_s"),
        ({"calls_per_round": 0}, "calls_per_round"),
        ({"warmup_s": -0.1}, "warmup_s"),
        ({"warmup_calls": 1.5}, "warmup_calls"),
    ],
)
def test_protocol_validation(kwargs: dict, word: str) -> None:
    with pytest.raises(LatbenchError, match=word):
        ProtocolConfig(**kwargs)
    with pytest.raises(LatbenchError, match="unknown field"):
        ProtocolConfig.from_dict({"samples": 3})
