"""TensorRT 10.x and 11.x: an engine built from the ONNX export, cached, run with ``execute_async_v3``.

The pieces, in the order ``prepare`` runs them (TensorRT 10/11 Python API):

1. ``torch.onnx`` export. On 10.x in fp32: precision is the builder's choice (weakly typed
   network, precision flags). On 11.x, which removed the precision flags and builds every
   network strongly typed, the export itself is in the deployment's precision (weights and
   inputs fp16/bf16, exported on the GPU), so the types in the graph are what runs;
2. ``trt.Builder`` -> ``create_network(flags)`` (:func:`network_flags`: 0 on 10.x, whose
   networks are always explicit-batch; ``STRONGLY_TYPED`` on 11.x, where it is the only mode) ->
   ``trt.OnnxParser.parse_from_file``; ``create_builder_config`` with the workspace
   pool (``set_memory_pool_limit(MemoryPoolType.WORKSPACE, ...)``), the builder
   optimisation level and the precision flags of :func:`builder_flags`; an
   optimisation profile (``create_optimization_profile`` / ``set_shape``) when the
   batch axis is dynamic; ``build_serialized_network``;
3. the serialized engine is cached under a key of the ONNX hash, precision,
   profile, TensorRT version, GPU and builder settings (:func:`engine_cache_key`),
   so the minutes of a build are paid once; build time is recorded apart;
4. ``trt.Runtime.deserialize_cuda_engine`` -> ``create_execution_context``;
   every I/O tensor (``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``)
   gets a torch buffer: ``set_input_shape`` and ``set_tensor_address``;
5. each call is ``execute_async_v3(stream)`` on a torch stream, timed by one
   CUDA-event pair per call on that stream.

int8 on 10.x is *implicit* quantisation with dummy dynamic ranges on every tensor,
as ``trtexec --int8`` does without a calibration cache: the latency of int8
kernels (with fp16 fallback) but meaningless accuracy. TensorRT 10.1 deprecated
this path in favour of explicit Q/DQ models, and 11.x removed it (the INT8 flag
and ``set_dynamic_range``): int8 on 11.x needs a Q/DQ model, which latbench does
not make, so it is refused with one line (:func:`check_precision`).

This module has never run on this project's CPU machines (no TensorRT, no GPU);
the pieces that need neither are unit-tested against a stand-in ``tensorrt``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from latbench.errors import LatbenchError
from latbench.io import atomic_write, atomic_write_json
from latbench.profiling.backends._export import OnnxModel, export_onnx, onnx_file
from latbench.profiling.backends._timing import CudaEventTimer, CudaL2Flusher, cuda_problem, gpu_memory_errors
from latbench.profiling.base import (
    Backend,
    ExampleInputs,
    ModelLike,
    NamedInputs,
    Prepared,
    cache_dir,
    cast_inputs,
    is_onnx_file,
    normalise_inputs,
    raise_missing,
    require_module,
)
from latbench.profiling.config import DeployConfig

NEEDS = "the tensorrt package 10.x or 11.x (pip install 'latbench[tensorrt]') and an NVIDIA GPU"

#: TensorRT major versions this backend knows.
SUPPORTED_MAJORS: tuple[int, ...] = (10, 11)

#: The process's TensorRT logger, with the module it came from (:func:`logger_for`).
_LOGGER: tuple[Any, Any] | None = None

#: Dummy symmetric dynamic range given to every float tensor for int8 without calibration.
DUMMY_INT8_RANGE = 4.0

#: TensorRT data type name -> torch dtype.
TRT_DTYPES: dict[str, torch.dtype] = {
    "FLOAT": torch.float32,
    "HALF": torch.float16,
    "BF16": torch.bfloat16,
    "INT8": torch.int8,
    "UINT8": torch.uint8,
    "INT32": torch.int32,
    "INT64": torch.int64,
    "BOOL": torch.bool,
}


def trt_major(trt: Any) -> int:
    """The major version of a ``tensorrt`` module (0 when it does not say)."""
    head = str(getattr(trt, "__version__", "0")).split(".")[0]
    return int(head) if head.isdigit() else 0


def import_tensorrt() -> Any:
    """``import tensorrt`` (10.x or 11.x), or the one-line :class:`MissingDependencyError`."""
    try:
        import tensorrt
    except ImportError:
        raise_missing("tensorrt", NEEDS)
    if trt_major(tensorrt) not in SUPPORTED_MAJORS:
        raise_missing("tensorrt", NEEDS, f"found tensorrt {getattr(tensorrt, '__version__', '?')}")
    return tensorrt


def strongly_typed(major: int) -> bool:
    """Whether networks of this TensorRT major are built strongly typed (11.x: always)."""
    return major >= 11


def check_precision(precision: str, major: int) -> None:
    """Refuse a precision this TensorRT major cannot build from latbench's export (int8 on 11.x)."""
    if strongly_typed(major) and precision == "int8":
        raise LatbenchError(
            "precision int8",
            "TensorRT 11.x removed implicit int8 (BuilderFlag.INT8, dynamic ranges) and needs a model with "
            "explicit Q/DQ nodes, which latbench does not make; use TensorRT 10.x for int8",
        )


def export_dtype(precision: str, major: int) -> torch.dtype:
    """The dtype the ONNX is exported in: fp32 on 10.x (the builder picks precision), else the precision's."""
    if not strongly_typed(major) or precision in ("fp32", "int8"):
        return torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]


def network_flags(trt: Any, major: int) -> int:
    """``create_network``'s flags: 0 on 10.x (explicit batch is the only mode), ``STRONGLY_TYPED`` on 11.x."""
    if not strongly_typed(major):
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def builder_flags(precision: str, allow_tf32: bool = True, major: int = 10) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names of the ``trt.BuilderFlag`` members to set and to clear for ``precision``.

    fp32 keeps TF32 (on by default in TensorRT) unless ``allow_tf32`` is false. On 10.x fp16
    and bf16 enable their flag (layers may still fall back to fp32); int8 enables INT8 with
    FP16 as the fallback for layers without int8 kernels. On 11.x there are no precision flags:
    the strongly typed network runs in the types of the exported graph.
    """
    check_precision(precision, major)
    if precision == "fp32":
        return (), () if allow_tf32 else ("TF32",)
    if strongly_typed(major) and precision in ("fp16", "bf16"):
        return (), ()
    if precision == "fp16":
        return ("FP16",), ()
    if precision == "bf16":
        return ("BF16",), ()
    if precision == "int8":
        return ("INT8", "FP16"), ()
    raise LatbenchError("precision", f"no TensorRT builder flags for {precision!r}")


@dataclass(frozen=True)
class ShapeProfile:
    """One input's optimisation-profile shapes."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def shape_profiles(
    names: tuple[str, ...], shapes: tuple[tuple[int, ...], ...], dynamic_batch: bool
) -> tuple[ShapeProfile, ...]:
    """Profiles for the inputs: the workload's shape, or batch 1..workload batch when the batch axis is dynamic."""
    out = []
    for name, shape in zip(names, shapes):
        shape = tuple(int(s) for s in shape)
        low = (1, *shape[1:]) if dynamic_batch and shape else shape
        out.append(ShapeProfile(name, low, shape, shape))
    return tuple(out)


def engine_cache_key(
    onnx_sha256: str,
    precision: str,
    profiles: tuple[ShapeProfile, ...],
    trt_version: str,
    gpu_name: str,
    compute_capability: str,
    workspace_mb: int,
    optimization_level: int,
    allow_tf32: bool,
) -> str:
    """32 hex digits naming a serialized engine: everything that changes what the builder makes."""
    identity = {
        "onnx_sha256": onnx_sha256,
        "precision": precision,
        "profiles": [asdict(p) for p in profiles],
        "tensorrt": trt_version,
        "gpu": gpu_name,
        "compute_capability": compute_capability,
        "workspace_mb": workspace_mb,
        "builder_optimization_level": optimization_level,
        "allow_tf32": allow_tf32,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def set_dummy_dynamic_ranges(trt: Any, network: Any, amax: float = DUMMY_INT8_RANGE) -> int:
    """Give every float tensor without one a dynamic range ``[-amax, amax]``; returns how many were set."""
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}
    tensors = [network.get_input(i) for i in range(network.num_inputs)]
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        tensors += [layer.get_output(j) for j in range(layer.num_outputs)]
    count = 0
    for tensor in tensors:
        if tensor is not None and tensor.dtype in floats and tensor.dynamic_range is None:
            tensor.set_dynamic_range(-amax, amax)
            count += 1
    return count


def network_profiles(network_inputs: list[Any], profiles: tuple[ShapeProfile, ...]) -> list[tuple[str, ShapeProfile]]:
    """``(network input name, its profile)`` for every input that needs one.

    TensorRT refuses to build a network with a free dimension (``-1``) in an input and no
    optimisation profile for it: our export with a dynamic batch has one, and so has a user's
    ONNX file exported with dynamic axes, whose profile is then the workload's shape
    (min = opt = max). Inputs are matched by name, else by position when the counts agree
    (positional tensors for a user's file, as in :meth:`TensorRTBackend._bind`).
    """
    by_name = {p.name: p for p in profiles}
    if all(t.name in by_name for t in network_inputs):
        pairs = [(t, by_name[t.name]) for t in network_inputs]
    elif len(network_inputs) == len(profiles):
        pairs = list(zip(network_inputs, profiles))
    else:
        pairs = [(t, by_name[t.name]) for t in network_inputs if t.name in by_name]
    needed = []
    for tensor, p in pairs:
        free = any(int(d) < 0 for d in tuple(tensor.shape))
        if free or p.min != p.max:
            needed.append((tensor.name, p))
    return needed


def logger_for(trt: Any) -> Any:
    """One ``trt.Logger`` for the process: a builder or runtime made while another is alive with a
    different logger makes TensorRT warn on every engine of a profiling group."""
    global _LOGGER
    if _LOGGER is None or _LOGGER[0] is not trt:
        _LOGGER = (trt, trt.Logger(trt.Logger.WARNING))
    return _LOGGER[1]


def build_serialized_engine(
    trt: Any,
    onnx_path: Path,
    precision: str,
    profiles: tuple[ShapeProfile, ...],
    *,
    workspace_mb: int,
    optimization_level: int,
    allow_tf32: bool,
    logger: Any,
) -> bytes:
    """Parse ``onnx_path`` and build a serialized engine (the minutes-long step)."""
    where = "backend 'tensorrt'"
    major = trt_major(trt)
    to_set, to_clear = builder_flags(precision, allow_tf32, major)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt, major))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise LatbenchError(where, f"the ONNX parser failed: {errors[0] if errors else 'no error given'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb * 2**20)
    config.builder_optimization_level = optimization_level
    for name in to_set:
        config.set_flag(getattr(trt.BuilderFlag, name))
    for name in to_clear:
        config.clear_flag(getattr(trt.BuilderFlag, name))
    if precision == "int8":  # 10.x only (check_precision refused it on 11.x)
        set_dummy_dynamic_ranges(trt, network)
    needed = network_profiles([network.get_input(i) for i in range(network.num_inputs)], profiles)
    if needed:
        profile = builder.create_optimization_profile()
        for name, p in needed:
            profile.set_shape(name, p.min, p.opt, p.max)
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise LatbenchError(where, f"the builder failed for precision {precision} (see TensorRT's log above)")
    return bytes(serialized)


def load_or_build_engine(
    cache_folder: Path,
    key: str,
    build: Callable[[], bytes],
    metadata: dict[str, Any],
) -> tuple[bytes, bool, float, Path]:
    """The serialized engine for ``key``: from ``cache_folder`` if there, else ``build()`` and cached.

    Returns:
        The engine bytes, whether it came from the cache, the build time in ms (0 when cached),
        and the cache file.
    """
    path = cache_folder / f"{key}.engine"
    if path.is_file():
        return path.read_bytes(), True, 0.0, path
    t0 = time.perf_counter()
    serialized = build()
    build_ms = (time.perf_counter() - t0) * 1e3
    atomic_write(path, lambda tmp: tmp.write_bytes(serialized))
    atomic_write_json(path.with_suffix(".json"), {**metadata, "engine_build_ms": build_ms})
    return serialized, False, build_ms, path


def trt_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a ``trt.DataType``."""
    name = getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])
    if name not in TRT_DTYPES:
        raise LatbenchError("backend 'tensorrt'", f"I/O tensor of type {name}, which latbench cannot feed")
    return TRT_DTYPES[name]


class TensorRTPrepared(Prepared):
    """A TensorRT execution context with its buffers bound."""

    def __init__(
        self,
        config: DeployConfig,
        build_ms: float,
        info: dict[str, Any],
        context: Any,
        stream: torch.cuda.Stream,
        keep: tuple[Any, ...],
        workdir: Path,
    ) -> None:
        super().__init__(config, build_ms, TensorRTBackend.runtime_version(), info)
        self._context = context
        self._timer = CudaEventTimer(stream)
        self._keep = keep  # runtime, engine and bound buffers must outlive the context's use
        # The exported ONNX goes even if close() is forgotten.
        self._remove_workdir = weakref.finalize(self, shutil.rmtree, str(workdir), True)
        self._flusher = CudaL2Flusher(torch.device(config.device)) if config.cache == "cold" else None
        if self._flusher is not None:
            self.info["cold_flush_bytes"] = self._flusher.nbytes

    def _call(self) -> None:
        self._context.execute_async_v3(self._timer.stream.cuda_stream)

    def _before(self, i: int) -> None:
        assert self._flusher is not None
        self._flusher.flush()

    def time_calls(self, n: int) -> list[float]:
        self._check_open(n)
        with torch.cuda.device(torch.device(self.config.device)), torch.cuda.stream(self._timer.stream):
            return self._timer.time_calls(self._call, n, self._before if self._flusher else None, busy=self.on_busy)

    def _release(self) -> None:
        self._timer.stream.synchronize()
        self._context = None
        self._keep = ()
        self._remove_workdir()


class TensorRTBackend(Backend):
    """``backend='tensorrt'`` (mode ``engine``) on ``device='cuda:N'``."""

    name = "tensorrt"
    device_types = ("cuda",)

    @classmethod
    def check_available(cls, config: DeployConfig) -> None:
        import_tensorrt()
        problem = cuda_problem(config)
        if problem:
            raise_missing(cls.name, NEEDS, problem)

    @classmethod
    def runtime_version(cls) -> str:
        return f"tensorrt {import_tensorrt().__version__}"

    def prepare(self, model: ModelLike, example_inputs: ExampleInputs) -> TensorRTPrepared:
        trt = import_tensorrt()
        config = self.config
        inputs = normalise_inputs(example_inputs, config)
        device = torch.device(config.device)
        workdir = Path(tempfile.mkdtemp(prefix="latbench-trt-"))
        try:
            with gpu_memory_errors(config.label()), torch.cuda.device(device):
                return self._prepare(trt, model, inputs, device, workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise

    def _prepare(
        self, trt: Any, model: ModelLike, inputs: NamedInputs, device: torch.device, workdir: Path
    ) -> TensorRTPrepared:
        config = self.config
        where = "backend 'tensorrt'"
        major = trt_major(trt)
        check_precision(config.precision, major)
        t0 = time.perf_counter()
        onnx = self._onnx_model(model, inputs, workdir, export_dtype(config.precision, major), device)
        profiles = shape_profiles(
            onnx.input_names, tuple(tuple(t.shape) for t in inputs.tensors), config.option("tensorrt.dynamic_batch")
        )
        props = torch.cuda.get_device_properties(device)
        capability = f"{props.major}.{props.minor}"
        settings = {
            "workspace_mb": config.option("tensorrt.workspace_mb"),
            "optimization_level": config.option("tensorrt.builder_optimization_level"),
            "allow_tf32": config.option("tensorrt.allow_tf32"),
        }
        onnx_sha = onnx.sha256()
        key = engine_cache_key(
            onnx_sha, config.precision, profiles, trt.__version__, props.name, capability, **settings
        )
        folder = Path(config.option("tensorrt.engine_cache_dir") or cache_dir("tensorrt"))
        logger = logger_for(trt)

        def build() -> bytes:
            return build_serialized_engine(trt, onnx.path, config.precision, profiles, logger=logger, **settings)

        metadata = {
            "onnx_sha256": onnx_sha,
            "precision": config.precision,
            "profiles": [asdict(p) for p in profiles],
            "tensorrt": trt.__version__,
            "gpu": props.name,
            "compute_capability": capability,
            **settings,
        }
        serialized, cached, engine_build_ms, engine_path = load_or_build_engine(folder, key, build, metadata)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(serialized)
        if engine is None:
            raise LatbenchError(where, f"could not deserialize {engine_path}; delete it to rebuild")
        context = engine.create_execution_context()
        buffers = self._bind(trt, engine, context, onnx, inputs, device)
        stream = torch.cuda.Stream(device)
        # Inputs were copied on the default stream; the engine reads them on ours.
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            ok = context.execute_async_v3(stream.cuda_stream)  # the untimed first call
        stream.synchronize()
        if not ok:
            raise LatbenchError(where, "execute_async_v3 failed on the first call (see TensorRT's log above)")
        build_ms = (time.perf_counter() - t0) * 1e3
        info = {
            "exporter": onnx.exporter,
            "export_ms": onnx.export_ms,
            "engine_cached": cached,
            "engine_build_ms": engine_build_ms,
            "engine_path": str(engine_path),
            "builder_flags": list(builder_flags(config.precision, settings["allow_tf32"], major)[0]),
            "strongly_typed": strongly_typed(major),
            "profiles": [asdict(p) for p in profiles],
            "gpu": props.name,
        }
        if config.precision == "int8":
            info["int8"] = "implicit quantisation with dummy ranges: int8 latency, accuracy not meaningful"
        return TensorRTPrepared(config, build_ms, info, context, stream, (runtime, engine, buffers), workdir)

    def _onnx_model(
        self, model: ModelLike, inputs: NamedInputs, workdir: Path, dtype: torch.dtype, device: torch.device
    ) -> OnnxModel:
        if is_onnx_file(model):
            return onnx_file(model, inputs)
        module = require_module(model, self.name)
        # fp32 exports from the CPU; half precision (11.x) traces on the GPU (CPU half kernels are incomplete).
        export_device = torch.device("cpu") if dtype == torch.float32 else device
        params = next(module.parameters(), None)
        if params is not None and (params.device != export_device or params.dtype != dtype):
            module = copy.deepcopy(module).to(device=export_device, dtype=dtype)
        return export_onnx(
            module,
            cast_inputs(inputs, dtype, export_device),
            workdir / "model.onnx",
            backend=self.name,
            opset=self.config.option("tensorrt.opset"),
            dynamic_batch=self.config.option("tensorrt.dynamic_batch"),
        )

    def _bind(
        self, trt: Any, engine: Any, context: Any, onnx: OnnxModel, inputs: NamedInputs, device: torch.device
    ) -> list[torch.Tensor]:
        where = "backend 'tensorrt'"
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        in_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        out_names = [n for n in names if n not in in_names]
        by_name = all(n in onnx.input_names for n in in_names)
        if not by_name and len(in_names) != len(inputs.tensors):
            raise LatbenchError(where, f"engine inputs are {', '.join(in_names)}; given {', '.join(inputs.names)}")
        buffers: list[torch.Tensor] = []
        for position, name in enumerate(in_names):
            source = inputs.tensors[onnx.input_names.index(name) if by_name else position]
            t = source.to(device=device, dtype=trt_dtype(engine.get_tensor_dtype(name))).contiguous()
            if not context.set_input_shape(name, tuple(t.shape)):
                raise LatbenchError(where, f"input {name!r} of shape {tuple(t.shape)} is outside the engine's profile")
            context.set_tensor_address(name, t.data_ptr())
            buffers.append(t)
        for name in out_names:
            shape = tuple(int(s) for s in context.get_tensor_shape(name))
            if any(s < 0 for s in shape):
                raise LatbenchError(where, f"output {name!r} has a data-dependent shape {shape}, not supported")
            buf = torch.empty(shape, dtype=trt_dtype(engine.get_tensor_dtype(name)), device=device)
            context.set_tensor_address(name, buf.data_ptr())
            buffers.append(buf)
        return buffers
