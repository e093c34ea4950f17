"""PyTorch on the CPU: eager (fp32, bf16, int8 dynamic quantisation) and torch.compile (fp32, bf16).

Threads are set explicitly (``torch.set_num_threads(config.threads)``) before
every batch of timed calls, since configurations measured interleaved in one
process may use different counts. Calls run under ``torch.inference_mode`` and
are timed with ``time.perf_counter_ns``.

int8 is ``torch.ao.quantization.quantize_dynamic`` on every ``nn.Linear``
(int8 weights, activations quantised per call), run by the quantised engine
the fingerprint's torch build selects (``torch.backends.quantized.engine``).
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any

import torch

from latbench.errors import LatbenchError
from latbench.profiling.backends._timing import HostCacheFlusher, input_copies, time_host_calls
from latbench.profiling.base import (
    Backend,
    ExampleInputs,
    ModelLike,
    NamedInputs,
    Prepared,
    cast_inputs,
    check_call_signature,
    first_call_error,
    first_line,
    normalise_inputs,
    require_module,
    torch_dtype,
)
from latbench.profiling.config import DeployConfig


def quantize_dynamic_int8(module: torch.nn.Module) -> tuple[torch.nn.Module, int]:
    """A dynamically quantised (int8 weights) copy of ``module`` and the number of ``nn.Linear`` it converted."""
    n_linear = sum(isinstance(m, torch.nn.Linear) for m in module.modules())
    if n_linear == 0:
        raise LatbenchError("precision int8", "the module has no nn.Linear to quantise; its timing would be fp32")
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
    return quantized, n_linear


class TorchCPUPrepared(Prepared):
    """A torch module ready to run on the CPU."""

    def __init__(
        self,
        config: DeployConfig,
        build_ms: float,
        info: dict[str, Any],
        runner: Any,
        inputs: NamedInputs,
        threads_before: int,
    ) -> None:
        super().__init__(config, build_ms, TorchCPUBackend.runtime_version(), info)
        self._runner = runner
        self._inputs = inputs
        self._threads_before = threads_before
        self._current = inputs.tensors
        self._copies: list[tuple[torch.Tensor, ...]] = []
        self._flusher: HostCacheFlusher | None = None
        if config.cache == "cold":
            self._copies = input_copies(inputs.tensors)
            self._flusher = HostCacheFlusher()
            self.info["cold_flush_bytes"] = self._flusher.nbytes
            self.info["cold_input_copies"] = len(self._copies)

    def _call(self) -> Any:
        return self._inputs.call(self._runner, self._current)

    def _before(self, i: int) -> None:
        self._current = self._copies[i % len(self._copies)]
        assert self._flusher is not None
        self._flusher.flush()

    def time_calls(self, n: int) -> list[float]:
        self._check_open(n)
        torch.set_num_threads(self.config.threads or torch.get_num_threads())
        before = self._before if self.config.cache == "cold" else None
        with torch.inference_mode():
            return time_host_calls(self._call, n, before)

    def _release(self) -> None:
        self._runner = None
        self._copies = []
        self._flusher = None
        torch.set_num_threads(self._threads_before)


class TorchCPUBackend(Backend):
    """``backend='torch'`` on ``device='cpu'``: modes eager and compile."""

    name = "torch"
    device_types = ("cpu",)

    @classmethod
    def check_available(cls, config: DeployConfig) -> None:
        """torch is a core dependency; nothing can be missing."""

    @classmethod
    def runtime_version(cls) -> str:
        return f"torch {torch.__version__}"

    def prepare(self, model: ModelLike, example_inputs: ExampleInputs) -> TorchCPUPrepared:
        config = self.config
        module = require_module(model, self.name)
        inputs = normalise_inputs(example_inputs, config)
        check_call_signature(module, inputs, f"backend '{self.name}' mode '{config.mode}'")
        threads_before = torch.get_num_threads()
        assert config.threads is not None  # resolved by DeployConfig on the CPU
        torch.set_num_threads(config.threads)
        t0 = time.perf_counter()
        info: dict[str, Any] = {"threads": config.threads, "mode": config.mode}
        given = module
        if config.precision == "bf16":
            module = copy.deepcopy(module).to(torch.bfloat16)
        elif config.precision == "int8":
            module, n_linear = quantize_dynamic_int8(module)
            info["quantized_linear"] = n_linear
            info["quantized_engine"] = torch.backends.quantized.engine
        inputs = cast_inputs(inputs, torch_dtype(config.precision), "cpu")
        runner: Any = module
        if config.mode == "compile":
            runner = torch.compile(
                module,
                mode=config.option("torch.compile_mode"),
                fullgraph=config.option("torch.compile_fullgraph"),
            )
        try:
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # deprecation notes of quantised ops
                inputs.call(runner)  # the untimed first call; torch.compile compiles here
        except LatbenchError:
            raise
        except Exception as exc:
            raise _first_call_error(exc, config, given, module, inputs) from exc
        build_ms = (time.perf_counter() - t0) * 1e3
        return TorchCPUPrepared(config, build_ms, info, runner, inputs, threads_before)


def _first_call_error(
    exc: Exception, config: DeployConfig, given: torch.nn.Module, module: torch.nn.Module, inputs: NamedInputs
) -> LatbenchError:
    """One line for a failed untimed first call: the inputs (a name ``forward`` does not take, a
    shape it refuses), else torch.compile or the int8 quantisation, whichever is to blame."""
    where = f"backend 'torch' mode '{config.mode}'"
    if config.mode == "compile":
        # As on a GPU: whatever fails while compiling is reported as torch.compile's failure.
        what = f"torch.compile failed ({type(exc).__name__}: {first_line(exc)}); use mode eager"
        return LatbenchError("mode compile", what)
    if config.precision != "int8":
        return first_call_error(exc, inputs, where)
    try:  # the module before quantisation: do the inputs fit it at all?
        with torch.inference_mode():
            inputs.call(given)
    except Exception as plain:
        return first_call_error(plain, inputs, where)
    return LatbenchError(
        config.label(), f"the dynamically quantised module failed its first call ({type(exc).__name__}: {exc})"
    )
