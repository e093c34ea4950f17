"""ONNX Runtime: a torch module exported through ``torch.onnx`` (or a user's ONNX file), run by the CPU,
CUDA or TensorRT execution provider (``mode``).

- Threads: ``intra_op_num_threads = config.threads``, one inter-op thread,
  sequential execution; the same thread count the torch CPU backend uses.
- IO binding (``onnxruntime.io_binding``, default on): inputs and outputs are
  bound in place to torch tensors on the device, so a GPU timing does not
  include host<->device copies. Without it, ``session.run`` on numpy arrays
  times those copies too (and ``info`` says so).
- GPU timing: the provider runs on our torch stream (``user_compute_stream``),
  the stream that carries the CUDA-event pair of each call. It must not be the
  legacy default stream: ONNX Runtime ignores stream 0.
- Which provider ran: the session must list the requested provider first (a
  provider that fails to load falls back to the CPU silently), and with
  ``onnxruntime.check_providers`` the untimed call is profiled and the nodes
  each provider ran are counted (``info['nodes_by_provider']``); a GPU mode in
  which no node ran on the GPU is refused. Profiling ends with that call.
- TensorRT provider's engine cache: ONNX Runtime names a cached engine after the
  model's file name, its input/output names and versions, not its weights' shapes,
  so two widths of one depth would share an engine. Each model gets its own cache
  folder under ``onnxruntime.trt_engine_cache_dir``, named by the hash of the ONNX
  bytes and the settings that change the engine (:func:`trt_engine_cache_folder`),
  as the native TensorRT backend keys its engines.
- A provider that ``get_available_providers`` lists may still fail to load (a
  CUDA-12 onnxruntime-gpu beside a CUDA-13 torch): :func:`provider_loads` opens a
  one-node session with it, and a GPU mode whose provider does not load is refused
  as a missing dependency (so ``gpu`` tests skip with the reason).
- int8 (CPU): ``onnxruntime.quantization.quantize_dynamic`` on the export
  (int8 weights, activations quantised per call: the counterpart of torch's
  dynamic quantisation).

``build_ms`` covers export, quantisation, session creation (for the TensorRT
provider: its engine build) and the untimed call; ``info`` splits them.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import logging
import shutil
import tempfile
import time
import weakref
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latbench.errors import LatbenchError
from latbench.profiling.backends._export import OnnxModel, export_onnx, onnx_file
from latbench.profiling.backends._timing import (
    CudaEventTimer,
    CudaL2Flusher,
    HostCacheFlusher,
    cuda_problem,
    input_copies,
    time_host_calls,
)
from latbench.profiling.base import (
    Backend,
    ExampleInputs,
    ModelLike,
    NamedInputs,
    Prepared,
    cache_dir,
    cast_inputs,
    first_line,
    is_onnx_file,
    normalise_inputs,
    raise_missing,
    require_module,
    torch_dtype,
)
from latbench.profiling.config import DeployConfig

#: Execution provider per mode.
PROVIDERS: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}

#: ``onnxruntime.graph_optimization_level`` -> ``ort.GraphOptimizationLevel`` member.
OPTIMIZATION_LEVELS: dict[str, str] = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}

#: What each mode needs, for the one-line message when it is missing.
NEEDS: dict[str, str] = {
    "cpu": "the onnxruntime package (pip install 'latbench[onnx]')",
    "cuda": "the onnxruntime-gpu package with its CUDAExecutionProvider (pip install onnxruntime-gpu) "
    "and an NVIDIA GPU",
    "tensorrt": "the onnxruntime-gpu package with its TensorrtExecutionProvider, the tensorrt package 10.x or 11.x "
    "(pip install onnxruntime-gpu 'latbench[tensorrt]') and an NVIDIA GPU",
}

_ORT_TYPES: dict[str, torch.dtype] = {
    "tensor(float)": torch.float32,
    "tensor(float16)": torch.float16,
    "tensor(double)": torch.float64,
    "tensor(int64)": torch.int64,
    "tensor(int32)": torch.int32,
    "tensor(int8)": torch.int8,
    "tensor(uint8)": torch.uint8,
    "tensor(bool)": torch.bool,
}
_NUMPY_TYPES: dict[torch.dtype, Any] = {
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.float64: np.float64,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.int8: np.int8,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


def import_onnxruntime(mode: str = "cpu") -> Any:
    """``import onnxruntime``, or the one-line :class:`MissingDependencyError`."""
    try:
        import onnxruntime
    except ImportError:
        raise_missing("onnxruntime", NEEDS[mode])
    return onnxruntime


def nodes_by_provider(profile_path: str | Path) -> dict[str, int]:
    """Count the nodes each execution provider ran in an ONNX Runtime profile (a JSON list of events)."""
    with open(profile_path, encoding="utf-8") as fh:
        events = json.load(fh)
    counts: Counter[str] = Counter()
    for event in events:
        if isinstance(event, dict) and event.get("cat") == "Node":
            provider = (event.get("args") or {}).get("provider")
            # Each node gets a "_kernel_time" event (plus fences); count one per node.
            if provider and str(event.get("name", "")).endswith("_kernel_time"):
                counts[str(provider)] += 1
    return dict(counts)


def trt_engine_dir(config: DeployConfig) -> Path:
    """The root under which the TensorRT execution provider caches engines, one folder per model."""
    return Path(config.option("onnxruntime.trt_engine_cache_dir") or cache_dir("ort-tensorrt"))


def trt_engine_cache_key(onnx_sha256: str, config: DeployConfig, gpu_name: str, ort_version: str) -> str:
    """32 hex digits naming one model's engine-cache folder: the ONNX bytes' hash and what changes the engine."""
    identity = {
        "onnx_sha256": onnx_sha256,
        "precision": config.precision,
        "workspace_mb": config.option("onnxruntime.trt_workspace_mb"),
        "gpu": gpu_name,
        "onnxruntime": ort_version,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def trt_engine_cache_folder(config: DeployConfig, onnx: OnnxModel, gpu_name: str, ort_version: str) -> Path:
    """The TensorRT provider's engine cache for this model: a folder of its own under :func:`trt_engine_dir`.

    ONNX Runtime would otherwise find another model's engine in a shared folder whenever the
    file and tensor names agree (every export is ``model.onnx``, same depth, same names).
    """
    return trt_engine_dir(config) / trt_engine_cache_key(onnx.sha256(), config, gpu_name, ort_version)


def provider_loads(provider: str, device_id: int = 0) -> str | None:
    """``None`` when ONNX Runtime can open a session with ``provider`` first, else why not (one line).

    ``get_available_providers`` lists what the package was built with, not what loads: a CUDA-12
    onnxruntime-gpu lists CUDAExecutionProvider beside a CUDA-13 torch, then falls back to the CPU.
    A one-node model (Identity) is opened with the provider and the session's providers are read,
    once per process and provider.
    """
    return _probe_provider(import_onnxruntime(), provider, device_id)


@functools.cache
def _probe_provider(ort: Any, provider: str, device_id: int) -> str | None:
    if provider == "CPUExecutionProvider":
        return None
    if provider not in ort.get_available_providers():
        return f"onnxruntime {ort.__version__} does not offer {provider}"
    try:
        model = identity_model_bytes()
    except ImportError:
        return None  # no onnx package to make the probe model: listed is all that can be said
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the probe's own fallback warning is the answer, not noise
    opts: dict[str, Any] = {"device_id": device_id}
    try:
        session = ort.InferenceSession(model, options, providers=[(provider, opts), "CPUExecutionProvider"])
    except Exception as exc:
        return f"{provider} failed to load: {first_line(exc)}"
    active = list(session.get_providers())
    if not active or active[0] != provider:
        return (
            f"onnxruntime {ort.__version__} lists {provider} but it does not load (the session runs on "
            f"{', '.join(active) or 'nothing'}; e.g. a build for another CUDA major than torch's {torch.version.cuda})"
        )
    return None


def identity_model_bytes() -> bytes:
    """A serialized one-node ONNX model (float input -> Identity -> output), for :func:`provider_loads`."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every ONNX Runtime this project supports
    return model.SerializeToString()


def provider_report() -> dict[str, str]:
    """Each provider this onnxruntime lists -> ``"loads"`` or why it does not (for ``latbench env``)."""
    ort = import_onnxruntime()
    return {p: provider_loads(p) or "loads" for p in ort.get_available_providers()}


def provider_options(
    config: DeployConfig, stream: torch.cuda.Stream | None, engine_cache: Path | None = None
) -> list[Any]:
    """The ``providers`` argument of ``InferenceSession`` for ``config`` (GPU providers run on ``stream``).

    ``engine_cache``: the TensorRT provider's engine folder for this model (:func:`trt_engine_cache_folder`).
    """
    if config.mode == "cpu":
        return ["CPUExecutionProvider"]
    assert stream is not None
    cuda = {"device_id": config.gpu_index or 0, "user_compute_stream": str(stream.cuda_stream)}
    if config.mode == "cuda":
        return [("CUDAExecutionProvider", cuda)]
    trt = {
        **cuda,
        "trt_fp16_enable": config.precision == "fp16",
        "trt_max_workspace_size": config.option("onnxruntime.trt_workspace_mb") * 2**20,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(engine_cache or trt_engine_dir(config)),
    }
    # Nodes TensorRT cannot take run on CUDA, not on the CPU.
    return [("TensorrtExecutionProvider", trt), ("CUDAExecutionProvider", cuda)]


def check_session_providers(mode: str, active: list[str], where: str) -> None:
    """Refuse a session whose first provider is not the one ``mode`` asked for.

    A GPU provider that fails to load (missing CUDA/cuDNN/TensorRT libraries) is dropped by
    ONNX Runtime with a warning, and the session silently runs on the CPU.
    """
    requested = PROVIDERS[mode]
    if not active or active[0] != requested:
        raise LatbenchError(
            where,
            f"{requested} did not load (the session runs on {', '.join(active) or 'nothing'}); "
            "ONNX Runtime would have fallen back to the CPU silently",
        )


def check_node_placement(mode: str, nodes: dict[str, int], where: str) -> int:
    """Refuse a GPU mode in which no node ran on the GPU; return how many nodes ran on the CPU.

    On a GPU some nodes (shape arithmetic) legitimately run on the CPU; their count is recorded.
    An empty ``nodes`` (nothing profiled) is not judged.
    """
    if not nodes:
        return 0
    ran_on = {
        "cpu": ("CPUExecutionProvider",),
        "cuda": ("CUDAExecutionProvider",),
        "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider"),
    }[mode]
    if not any(nodes.get(p, 0) for p in ran_on):
        raise LatbenchError(
            where, f"no node ran on {' or '.join(ran_on)} (nodes per provider: {nodes}); refusing a silent fallback"
        )
    return 0 if mode == "cpu" else nodes.get("CPUExecutionProvider", 0)


def match_inputs(session_inputs: list[Any], inputs: NamedInputs, where: str) -> list[tuple[str, int, torch.dtype]]:
    """``(graph input name, index into inputs, dtype the graph wants)`` per graph input.

    By name when every graph input is among the given names (an export may drop unused
    inputs), else by position when the counts agree (positional tensors for a user's file).
    """
    names = [i.name for i in session_inputs]
    wanted = []
    for arg in session_inputs:
        if arg.type not in _ORT_TYPES:
            raise LatbenchError(where, f"graph input {arg.name!r} has type {arg.type}, which latbench cannot feed")
        wanted.append(_ORT_TYPES[arg.type])
    if all(n in inputs.names for n in names):
        return [(n, inputs.names.index(n), t) for n, t in zip(names, wanted)]
    if len(names) == len(inputs.names) and not inputs.as_kwargs:
        return [(n, i, t) for i, (n, t) in enumerate(zip(names, wanted))]
    raise LatbenchError(where, f"graph inputs are {', '.join(names)}; given {', '.join(inputs.names)}")


class _Runner:
    """One ONNX Runtime call with the inputs in place, by IO binding or by ``session.run``."""

    def __init__(
        self,
        session: Any,
        bindings: list[tuple[str, int, torch.dtype]],
        tensors: tuple[torch.Tensor, ...],
        device: torch.device,
        io_binding: bool,
    ) -> None:
        self.session = session
        self.bindings = bindings
        self.device = device
        self.io_binding = io_binding
        self.io = session.io_binding() if io_binding else None
        self.outputs: list[torch.Tensor] = []
        self.set_inputs(tensors)

    def set_inputs(self, tensors: tuple[torch.Tensor, ...]) -> None:
        """Point the next calls at ``tensors`` (cast to what the graph wants, on the device)."""
        self.tensors = tuple(tensors[i].to(device=self.device, dtype=t).contiguous() for _, i, t in self.bindings)
        if self.io is None:
            self.feeds = {name: t.cpu().numpy() for (name, _, _), t in zip(self.bindings, self.tensors)}
            return
        kind, index = self.device.type, self.device.index or 0
        for (name, _, dtype), t in zip(self.bindings, self.tensors):
            self.io.bind_input(name, kind, index, _NUMPY_TYPES[dtype], tuple(t.shape), t.data_ptr())

    def first_call(self) -> None:
        """The untimed call; with IO binding it also learns the output shapes and binds buffers for them."""
        if self.io is None:
            self.session.run(None, self.feeds)
            return
        kind, index = self.device.type, self.device.index or 0
        for out in self.session.get_outputs():
            self.io.bind_output(out.name, kind, index)
        self.session.run_with_iobinding(self.io)
        values = self.io.get_outputs()
        self.io.clear_binding_outputs()
        self.outputs = []
        for out, value in zip(self.session.get_outputs(), values):
            dtype = _ORT_TYPES.get(value.data_type())
            if dtype is None:
                raise LatbenchError("onnxruntime", f"output {out.name!r} has type {value.data_type()}")
            buf = torch.empty(tuple(value.shape()), dtype=dtype, device=self.device)
            self.outputs.append(buf)  # kept alive: ONNX Runtime writes into it on every call
            self.io.bind_output(out.name, kind, index, _NUMPY_TYPES[dtype], tuple(buf.shape), buf.data_ptr())

    def __call__(self) -> None:
        if self.io is None:
            self.session.run(None, self.feeds)
        else:
            self.session.run_with_iobinding(self.io)


class ONNXRuntimePrepared(Prepared):
    """An ONNX Runtime session ready to run."""

    def __init__(
        self,
        config: DeployConfig,
        build_ms: float,
        info: dict[str, Any],
        runner: _Runner,
        inputs: NamedInputs,
        stream: torch.cuda.Stream | None,
        workdir: Path,
    ) -> None:
        super().__init__(config, build_ms, ONNXRuntimeBackend.runtime_version(), info)
        self._runner: _Runner | None = runner
        # The exported files go even if close() is forgotten.
        self._remove_workdir = weakref.finalize(self, shutil.rmtree, str(workdir), True)
        self._timer = CudaEventTimer(stream) if stream is not None else None
        self._copies: list[tuple[torch.Tensor, ...]] = []
        self._host_flusher: HostCacheFlusher | None = None
        self._gpu_flusher: CudaL2Flusher | None = None
        if config.cache == "cold":
            if stream is None:
                self._copies = input_copies(inputs.tensors)
                self._host_flusher = HostCacheFlusher()
                self.info["cold_flush_bytes"] = self._host_flusher.nbytes
            else:
                self._gpu_flusher = CudaL2Flusher(torch.device(config.device))
                self.info["cold_flush_bytes"] = self._gpu_flusher.nbytes

    def _before_host(self, i: int) -> None:
        assert self._runner is not None and self._host_flusher is not None
        self._runner.set_inputs(self._copies[i % len(self._copies)])
        self._host_flusher.flush()

    def _before_gpu(self, i: int) -> None:
        assert self._gpu_flusher is not None
        self._gpu_flusher.flush()

    def time_calls(self, n: int) -> list[float]:
        self._check_open(n)
        assert self._runner is not None
        if self._timer is None:
            return time_host_calls(self._runner, n, self._before_host if self._copies else None)
        device = torch.device(self.config.device)
        with torch.cuda.device(device), torch.cuda.stream(self._timer.stream):
            before = self._before_gpu if self._gpu_flusher else None
            return self._timer.time_calls(self._runner, n, before, busy=self.on_busy)

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.stream.synchronize()
        self._runner = None
        self._copies = []
        self._remove_workdir()


class ONNXRuntimeBackend(Backend):
    """``backend='onnxruntime'``: modes (execution providers) cpu, cuda and tensorrt."""

    name = "onnxruntime"
    device_types = ("cpu", "cuda")

    @classmethod
    def check_available(cls, config: DeployConfig) -> None:
        ort = import_onnxruntime(config.mode or "cpu")
        provider = PROVIDERS[config.mode or "cpu"]
        available = ort.get_available_providers()
        if provider not in available:
            raise_missing(
                cls.name, NEEDS[config.mode or "cpu"], f"onnxruntime {ort.__version__} offers {', '.join(available)}"
            )
        if config.device_type == "cuda":
            problem = cuda_problem(config)
            if problem:
                raise_missing(cls.name, NEEDS[config.mode or "cuda"], problem)
            problem = provider_loads(provider, config.gpu_index or 0)
            if problem:
                raise_missing(cls.name, NEEDS[config.mode or "cuda"], problem)

    @classmethod
    def runtime_version(cls) -> str:
        return f"onnxruntime {import_onnxruntime().__version__}"

    def prepare(self, model: ModelLike, example_inputs: ExampleInputs) -> ONNXRuntimePrepared:
        config = self.config
        mode = config.mode or "cpu"
        ort = import_onnxruntime(mode)
        inputs = normalise_inputs(example_inputs, config)
        gpu = config.device_type == "cuda"
        device = torch.device(config.device)
        dtype = torch_dtype(config.precision)
        workdir = Path(tempfile.mkdtemp(prefix="latbench-onnx-"))
        where = f"backend '{self.name}' mode '{mode}'"
        try:
            t0 = time.perf_counter()
            onnx = self._onnx_model(model, inputs, dtype, device, workdir)
            info: dict[str, Any] = {
                "provider": PROVIDERS[mode],
                "exporter": onnx.exporter,
                "export_ms": onnx.export_ms,
                "dynamic_batch": onnx.dynamic_batch,
                "io_binding": config.option("onnxruntime.io_binding"),
                "threads": config.threads,
            }
            if gpu and not info["io_binding"]:
                info["includes_copies"] = "host<->device copies are timed (onnxruntime.io_binding=false)"
            if config.precision == "int8":
                onnx, info["quantize_ms"] = _quantize(onnx, workdir)
            options = self._session_options(ort, workdir)
            engine_cache = None
            if mode == "tensorrt":
                gpu_name = torch.cuda.get_device_name(device)
                engine_cache = trt_engine_cache_folder(config, onnx, gpu_name, ort.__version__)
                engine_cache.mkdir(parents=True, exist_ok=True)
                info["trt_engine_cache"] = str(engine_cache)
            stream = torch.cuda.Stream(device) if gpu else None
            t_session = time.perf_counter()
            providers = provider_options(config, stream, engine_cache)
            try:
                session = ort.InferenceSession(str(onnx.path), options, providers=providers)
            except Exception as exc:
                raise LatbenchError(where, f"session creation failed: {first_line(exc)}") from exc
            info["session_ms"] = (time.perf_counter() - t_session) * 1e3
            info["session_providers"] = list(session.get_providers())
            check_session_providers(mode, info["session_providers"], where)
            bindings = match_inputs(session.get_inputs(), inputs, where)
            self._check_precision(bindings, onnx, where)
            info["input_types"] = {name: str(t).replace("torch.", "") for name, _, t in bindings}
            cast = cast_inputs(inputs, dtype, device)
            try:
                runner = _Runner(session, bindings, cast.tensors, device, info["io_binding"])
                with torch.cuda.device(device) if gpu else contextlib.nullcontext():
                    if stream is not None:
                        # Inputs were copied on the default stream; ONNX Runtime reads them on ours.
                        stream.wait_stream(torch.cuda.current_stream(device))
                        with torch.cuda.stream(stream):
                            runner.first_call()
                        stream.synchronize()
                    else:
                        runner.first_call()
            except LatbenchError:
                raise
            except Exception as exc:  # a shape the graph refuses, a kernel or memory failure on the device
                raise LatbenchError(where, f"the untimed first call failed: {first_line(exc)}") from exc
            if config.option("onnxruntime.check_providers"):
                self._check_nodes(session, info, where)
            build_ms = (time.perf_counter() - t0) * 1e3
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return ONNXRuntimePrepared(config, build_ms, info, runner, cast, stream, workdir)

    # -- steps ----------------------------------------------------------------------------------

    def _onnx_model(
        self, model: ModelLike, inputs: NamedInputs, dtype: torch.dtype, device: torch.device, workdir: Path
    ) -> OnnxModel:
        config = self.config
        if is_onnx_file(model):
            return onnx_file(model, inputs)
        module = require_module(model, self.name)
        if dtype == torch.float32:
            # Export from the CPU; the session places weights on the device itself.
            export_device = torch.device("cpu")
            params = next(module.parameters(), None)
            if params is not None and params.device.type != "cpu":
                module = copy.deepcopy(module).cpu()
        else:
            # Half precision traces on the device it will run on (CPU half kernels are incomplete).
            export_device = device
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
        return export_onnx(
            module,
            cast_inputs(inputs, dtype, export_device),
            workdir / "model.onnx",
            backend=self.name,
            opset=config.option("onnxruntime.opset"),
            dynamic_batch=config.option("onnxruntime.dynamic_batch"),
            exporter=config.option("onnxruntime.exporter"),
        )

    def _session_options(self, ort: Any, workdir: Path) -> Any:
        config = self.config
        options = ort.SessionOptions()
        if config.threads is not None:
            options.intra_op_num_threads = config.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = OPTIMIZATION_LEVELS[config.option("onnxruntime.graph_optimization_level")]
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        spinning = "1" if config.option("onnxruntime.allow_spinning") else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spinning)
        # Errors only: provider fallbacks are checked below instead of logged.
        options.log_severity_level = 3
        if config.option("onnxruntime.check_providers"):
            options.enable_profiling = True
            options.profile_file_prefix = str(workdir / "profile")
        return options

    def _check_precision(self, bindings: list[tuple[str, int, torch.dtype]], onnx: OnnxModel, where: str) -> None:
        if onnx.exporter != "file":
            return
        floats = {t for _, _, t in bindings if t.is_floating_point}
        want = torch.float16 if self.config.precision == "fp16" else torch.float32
        if floats and want not in floats:
            raise LatbenchError(
                where,
                f"the ONNX file takes {', '.join(sorted(str(t) for t in floats))} inputs, not precision "
                f"{self.config.precision}: a file runs in the precision it was exported in",
            )

    def _check_nodes(self, session: Any, info: dict[str, Any], where: str) -> None:
        path = session.end_profiling()
        nodes: dict[str, int] = {}
        if path:
            nodes = nodes_by_provider(path)
            Path(path).unlink(missing_ok=True)
        info["nodes_by_provider"] = nodes
        cpu_nodes = check_node_placement(self.config.mode or "cpu", nodes, where)
        if cpu_nodes:
            info["cpu_nodes"] = cpu_nodes


def _quantize(onnx: OnnxModel, workdir: Path) -> tuple[OnnxModel, float]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = workdir / "model.int8.onnx"
    t0 = time.perf_counter()
    quant_logger = logging.getLogger()
    level = quant_logger.level
    # quantize_dynamic logs a pre-processing hint on the root logger at WARNING; it is advice, not a fault.
    quant_logger.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(onnx.path), str(target), weight_type=QuantType.QInt8)
    finally:
        quant_logger.setLevel(level)
    quantize_ms = (time.perf_counter() - t0) * 1e3
    return OnnxModel(target, onnx.input_names, onnx.export_ms, onnx.exporter, onnx.dynamic_batch), quantize_ms
