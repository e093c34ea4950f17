"""PyTorch on an NVIDIA GPU: eager, CUDA-graph replay (``graph``) and torch.compile; fp32, fp16, bf16.

Everything runs on a private stream, and latency is measured with one CUDA-event
pair per call recorded on that stream, with one synchronise after the loop
(MEASUREMENT.md). The modes:

- ``eager``: the module as is. Small models are bound by the host launching
  kernels, so eager GPU latency drifts with the host; ``info['host_bound']``
  says so, and ``torch.calls_per_sample`` > 1 times loops of calls instead.
- ``graph``: after three warm-up calls on a side stream, one call is captured
  into a ``torch.cuda.CUDAGraph`` on static input buffers and replayed; the
  default on a GPU, since it is what a deployed small model sees.
- ``compile``: ``torch.compile(mode=torch.compile_mode)``; compilation happens in
  the untimed first call and is part of ``build_ms``.

``torch.allow_tf32`` sets TF32 for matmuls and cuDNN around preparation and every
timed batch, then restores the previous values: a graph or a compiled kernel keeps
what it was built with. torch >= 2.9 has a new API (``fp32_precision = "tf32" | "ieee"``)
and refuses to read the legacy ``allow_tf32`` flags once anything set the new one, so
the new API is used where it exists, the legacy flags elsewhere; ``info['tf32']``
records which API ran and the setting.

The CUDA graph is captured on a stream created on the target device: the default
capture stream belongs to whichever device first used it, wrong for ``cuda:N``, N > 0.
torch.compile's modes that record CUDA graphs (``reduce-overhead``, ``max-autotune``)
record on their second call; the untimed calls at preparation cover the warm-up run,
the recording and a first replay, each synchronised, so a recording never lands in a
timed sample and a device error of the compiled code is reported as one line.

Cold cache: a buffer twice the L2 size is overwritten on the stream before each
call, outside its event pair. That evicts weights, inputs and activations alike,
so rotating input copies would add nothing on a GPU.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from typing import Any

import torch

from latbench.errors import LatbenchError
from latbench.profiling.backends._timing import CudaEventTimer, CudaL2Flusher, cuda_problem, gpu_memory_errors
from latbench.profiling.base import (
    Backend,
    ExampleInputs,
    ModelLike,
    NamedInputs,
    Prepared,
    cast_inputs,
    check_call_signature,
    first_line,
    normalise_inputs,
    raise_missing,
    require_module,
    torch_dtype,
    untimed_first_call,
)
from latbench.profiling.config import DeployConfig

#: Warm-up calls before a CUDA-graph capture (lazy initialisation, cuBLAS workspaces, autotuning).
CAPTURE_WARMUP_CALLS = 3

#: torch.compile modes whose compiled code records CUDA graphs (cudagraph trees).
CUDAGRAPH_COMPILE_MODES: frozenset[str] = frozenset({"reduce-overhead", "max-autotune"})
#: Untimed calls at preparation for those modes: a warm-up run, the recording, a first replay.
CUDAGRAPH_COMPILE_CALLS = 3


def tf32_api() -> str:
    """``"fp32_precision"`` where torch has the new TF32 API (torch >= 2.9), else ``"allow_tf32"``."""
    return "fp32_precision" if hasattr(torch.backends.cuda.matmul, "fp32_precision") else "allow_tf32"


def tf32_setting(enabled: bool) -> dict[str, str]:
    """What :func:`tf32` sets, for ``info['tf32']``: the API used and the matmul setting."""
    api = tf32_api()
    if api == "fp32_precision":
        return {"api": api, "matmul": "tf32" if enabled else "ieee", "cudnn_conv": "tf32" if enabled else "ieee"}
    return {"api": api, "matmul": str(enabled).lower(), "cudnn": str(enabled).lower()}


@contextlib.contextmanager
def tf32(enabled: bool) -> Iterator[None]:
    """Set matmul/cuDNN TF32 for the block and restore the previous values.

    With torch's new API the legacy flags are neither read nor written: reading them raises
    once anything used the new one.
    """
    if tf32_api() == "fp32_precision":
        matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
        saved = (matmul.fp32_precision, conv.fp32_precision)
        value = "tf32" if enabled else "ieee"
        matmul.fp32_precision = value
        conv.fp32_precision = value
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    legacy = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = legacy


class TorchCUDAPrepared(Prepared):
    """A torch module ready to run on a GPU in one of the three modes."""

    def __init__(
        self,
        config: DeployConfig,
        build_ms: float,
        info: dict[str, Any],
        call: Any,
        stream: torch.cuda.Stream,
        keep: tuple[Any, ...],
    ) -> None:
        super().__init__(config, build_ms, TorchCUDABackend.runtime_version(), info)
        self._call = call
        self._device = torch.device(config.device)
        self._timer = CudaEventTimer(stream)
        self._keep = keep  # module, graph, static buffers: alive as long as the graph may replay
        self._flusher = CudaL2Flusher(self._device) if config.cache == "cold" else None
        if self._flusher is not None:
            self.info["cold_flush_bytes"] = self._flusher.nbytes

    def _before(self, i: int) -> None:
        assert self._flusher is not None
        self._flusher.flush()

    def time_calls(self, n: int) -> list[float]:
        self._check_open(n)
        before = self._before if self._flusher is not None else None
        with (
            gpu_memory_errors(self.config.label()),
            torch.cuda.device(self._device),
            torch.cuda.stream(self._timer.stream),
            torch.inference_mode(),
            tf32(self.config.option("torch.allow_tf32")),
        ):
            return self._timer.time_calls(
                self._call,
                n,
                before,
                calls_per_sample=self.config.option("torch.calls_per_sample"),
                busy=self.on_busy,
            )

    def _release(self) -> None:
        with torch.cuda.device(self._device):
            torch.cuda.synchronize()
        self._call = None
        self._keep = ()
        self._flusher = None
        torch.cuda.empty_cache()


class TorchCUDABackend(Backend):
    """``backend='torch'`` on ``device='cuda:N'``: modes eager, graph (default) and compile."""

    name = "torch"
    device_types = ("cuda",)

    @classmethod
    def check_available(cls, config: DeployConfig) -> None:
        problem = cuda_problem(config)
        if problem:
            raise_missing(cls.name, "a CUDA build of torch and an NVIDIA GPU", problem)

    @classmethod
    def runtime_version(cls) -> str:
        return f"torch {torch.__version__} (CUDA {torch.version.cuda})"

    def prepare(self, model: ModelLike, example_inputs: ExampleInputs) -> TorchCUDAPrepared:
        config = self.config
        module = require_module(model, self.name)
        inputs = normalise_inputs(example_inputs, config)
        check_call_signature(module, inputs, f"backend '{self.name}' mode '{config.mode}'")
        device = torch.device(config.device)
        dtype = torch_dtype(config.precision)
        info: dict[str, Any] = {
            "mode": config.mode,
            "gpu": torch.cuda.get_device_name(device),
            "host_bound": config.mode == "eager",
            "calls_per_sample": config.option("torch.calls_per_sample"),
            "tf32": tf32_setting(config.option("torch.allow_tf32")),
        }
        stream = torch.cuda.Stream(device)
        with gpu_memory_errors(config.label()), torch.cuda.device(device), tf32(config.option("torch.allow_tf32")):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            # A copy: .to() converts in place, and the caller's module stays as it was.
            module = copy.deepcopy(module).to(device=device, dtype=dtype)
            inputs = cast_inputs(inputs, dtype, device)
            # Weights and inputs were copied on the default stream; the work runs on ours.
            stream.wait_stream(torch.cuda.current_stream(device))
            if config.mode == "graph":
                call, keep = _capture_graph(module, inputs, stream)
            elif config.mode == "compile":
                call, keep = _compile(module, inputs, config, stream)
            else:
                call, keep = _eager(module, inputs, stream)
            torch.cuda.synchronize()
            build_ms = (time.perf_counter() - t0) * 1e3
        return TorchCUDAPrepared(config, build_ms, info, call, stream, keep)


def _eager(module: torch.nn.Module, inputs: NamedInputs, stream: torch.cuda.Stream) -> tuple[Any, tuple[Any, ...]]:
    def call() -> Any:
        return inputs.call(module)

    def first() -> None:
        call()
        if stream is not None:
            stream.synchronize()  # a device-side error (an index out of range) surfaces here, not later

    with torch.cuda.stream(stream), torch.inference_mode():
        untimed_first_call(first, inputs, "backend 'torch' mode 'eager'")
    return call, (module, inputs)


def _compile(
    module: torch.nn.Module, inputs: NamedInputs, config: DeployConfig, stream: torch.cuda.Stream
) -> tuple[Any, tuple[Any, ...]]:
    compiled = torch.compile(
        module, mode=config.option("torch.compile_mode"), fullgraph=config.option("torch.compile_fullgraph")
    )

    def call() -> Any:
        return inputs.call(compiled)

    mode = config.option("torch.compile_mode")
    calls = CUDAGRAPH_COMPILE_CALLS if mode in CUDAGRAPH_COMPILE_MODES else 1
    try:
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(calls):
                call()  # the first compiles (its time lands in build_ms); then cudagraph trees record
                if stream is not None:
                    # A device-side error of the compiled code surfaces here, inside the one-line wording.
                    stream.synchronize()
    except torch.cuda.OutOfMemoryError:
        raise  # gpu_memory_errors words it
    except Exception as exc:  # Inductor/Triton failures (no C compiler, an unsupported op) are long tracebacks
        raise LatbenchError(
            "mode compile", f"torch.compile failed ({type(exc).__name__}: {first_line(exc)}); use mode eager or graph"
        ) from exc
    return call, (module, compiled, inputs)


def _capture_graph(
    module: torch.nn.Module, inputs: NamedInputs, stream: torch.cuda.Stream
) -> tuple[Any, tuple[Any, ...]]:
    # Warm-up on a side stream before capture, as torch's CUDA-graph docs require: lazy
    # initialisation (cuBLAS handles, workspaces) must not happen inside the capture.
    device = stream.device
    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side), torch.inference_mode():
        # The first warm-up call is the module's first: a wrong input name or shape fails here
        # (a device-side error, such as an index out of range, at the synchronise).
        untimed_first_call(lambda: (inputs.call(module), side.synchronize()), inputs, "backend 'torch' mode 'graph'")
        for _ in range(CAPTURE_WARMUP_CALLS - 1):
            inputs.call(module)
    torch.cuda.current_stream(device).wait_stream(side)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    # Captured on a stream of the target device: torch's default capture stream is created once,
    # on whichever device was current then, and a capture on another device's stream fails.
    capture = torch.cuda.Stream(device)
    try:
        with torch.inference_mode(), torch.cuda.graph(graph, stream=capture):
            static_out = inputs.call(module)
    except torch.cuda.OutOfMemoryError:
        raise  # not a capture problem: gpu_memory_errors words it
    except RuntimeError as exc:
        what = f"the module cannot be captured as a CUDA graph ({first_line(exc)}); use mode eager or compile"
        raise LatbenchError("mode graph", what) from exc
    with torch.cuda.stream(stream):
        graph.replay()  # the untimed first call
    return graph.replay, (module, graph, inputs, static_out)
