"""The :class:`Backend` ABC, what it prepares (:class:`Prepared`), and the registry of backends.

Lifecycle, the same for every backend::

    backend = get_backend(config)                    # MissingDependencyError if library/hardware absent
    prepared = backend.prepare(module, example_inputs)  # export/compile/capture/build + one untimed call
    prepared.time_calls(n)                           # n calls, one latency (ms) per call
    prepared.close()

Timing a :class:`Prepared` honestly (warm-up, adaptive stopping, interleaving)
is :mod:`latbench.profiling.protocol`'s job; a backend only knows how to run
and time single calls the right way for its device (CUDA events on the stream
that runs the work, ``perf_counter_ns`` on the CPU).

The registry maps ``(backend, device type)`` to ``"module:Class"`` strings and
imports a backend's module only when it is asked for, so importing this module
never loads onnxruntime or tensorrt; each backend module is the only place
that imports its library.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.profiling.config import BACKENDS, DeployConfig

if TYPE_CHECKING:
    import torch

#: What a backend accepts as example inputs: one tensor, positional tensors, or named tensors
#: (keyword arguments of the module, or input names of an ONNX file).
ExampleInputs = Any

#: What a backend accepts as the model: a torch module, or (onnxruntime, tensorrt) an ONNX file.
ModelLike = Any


def cache_dir(sub: str = "") -> Path:
    """latbench's cache folder (exported ONNX files, TensorRT engines): ``$LATBENCH_CACHE_DIR``,
    else ``$XDG_CACHE_HOME/latbench``, else ``~/.cache/latbench``."""
    root = os.environ.get("LATBENCH_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = str(Path(xdg) / "latbench") if xdg else str(Path.home() / ".cache" / "latbench")
    return Path(root) / sub if sub else Path(root)


class Prepared(ABC):
    """A model made ready to run one way; times calls, one latency per call.

    Attributes:
        config: The deployment it was prepared for.
        build_ms: Wall time of preparation (export, compile, capture, engine build or load,
            and the one untimed call), never part of a latency.
        runtime: The runtime and its version, e.g. ``"torch 2.13.0+cpu"``, ``"onnxruntime 1.32.0"``.
        info: Backend facts worth recording (providers and where nodes ran, engine cache hit,
            export time, quantisation engine, ...). JSON-able.
        on_busy: Set by the protocol on a GPU: a GPU backend calls it once per :meth:`time_calls`,
            after queuing the calls and before synchronising, to read the GPU while it works.
    """

    def __init__(self, config: DeployConfig, build_ms: float, runtime: str, info: dict[str, Any] | None = None):
        self.config = config
        self.build_ms = float(build_ms)
        self.runtime = runtime
        self.info: dict[str, Any] = dict(info or {})
        self.on_busy: Callable[[], None] | None = None
        self._closed = False

    @property
    def gpu_index(self) -> int | None:
        """The CUDA device index it runs on, ``None`` on the CPU."""
        return self.config.gpu_index

    @property
    def closed(self) -> bool:
        return self._closed

    @abstractmethod
    def time_calls(self, n: int) -> list[float]:
        """Run ``n`` calls and return one latency per call, in milliseconds.

        GPU backends record one CUDA-event pair per call on the stream that runs the work
        and synchronise once after the loop; CPU backends read ``perf_counter_ns`` around
        each call. With ``cache='cold'`` the cache is disturbed between calls, untimed.
        """

    def close(self) -> None:
        """Release what preparation holds (sessions, engines, graphs, temporary files). Idempotent."""
        if not self._closed:
            self._closed = True
            self._release()

    def _release(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Subclasses free their resources here (called once by :meth:`close`)."""

    def _check_open(self, n: int) -> None:
        if self._closed:
            raise LatbenchError(self.config.label(), "time_calls on a closed backend")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise LatbenchError(self.config.label(), f"time_calls needs n >= 1, got {n!r}")

    def __enter__(self) -> Prepared:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config.label()!r}, build_ms={self.build_ms:.1f}, runtime={self.runtime!r})"


class Backend(ABC):
    """Turns a model into a :class:`Prepared` for one :class:`DeployConfig`.

    Subclasses set :attr:`name` (the config's ``backend``) and :attr:`device_types`,
    implement :meth:`check_available` (raise :class:`MissingDependencyError` with the
    one-line message of :func:`missing_message`), :meth:`runtime_version` and :meth:`prepare`.
    """

    name: ClassVar[str]
    device_types: ClassVar[tuple[str, ...]]

    def __init__(self, config: DeployConfig) -> None:
        if config.backend != self.name or config.device_type not in self.device_types:
            raise LatbenchError(
                "backend",
                f"{type(self).__name__} runs backend '{self.name}' on {', '.join(self.device_types)}, "
                f"not '{config.backend}' on {config.device}",
            )
        self.config = config

    @classmethod
    @abstractmethod
    def check_available(cls, config: DeployConfig) -> None:
        """Raise :class:`MissingDependencyError` if the library or hardware ``config`` needs is absent."""

    @classmethod
    @abstractmethod
    def runtime_version(cls) -> str:
        """The runtime and its version, e.g. ``"onnxruntime 1.32.0"``."""

    @abstractmethod
    def prepare(self, model: ModelLike, example_inputs: ExampleInputs) -> Prepared:
        """Make ``model`` ready to run on ``example_inputs`` (batch-first, shaped as the workload).

        Export, compilation, graph capture and engine builds happen here and are timed
        into ``build_ms``, followed by one untimed call. The caller's module is not
        modified beyond ``eval()``: precision changes work on a copy.
        """


def missing_message(backend: str, needs: str, detail: str = "") -> str:
    """The one line a missing library or device gets, e.g.
    ``backend 'tensorrt' needs the tensorrt package 10.x (pip install 'latbench[tensorrt]') and an NVIDIA GPU``.

    ``detail`` (what was found instead) is appended in parentheses.
    """
    return f"backend '{backend}' needs {needs}" + (f" ({detail})" if detail else "")


def raise_missing(backend: str, needs: str, detail: str = "") -> None:
    """Raise :class:`MissingDependencyError` with :func:`missing_message` (the CLI prints it after
    ``latbench: error:``)."""
    raise MissingDependencyError("", missing_message(backend, needs, detail))


# -------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend: which configs it serves and where its class lives."""

    name: str
    device_type: str
    target: str  # "package.module:ClassName", imported on first use

    def load(self) -> type[Backend]:
        """Import the backend's module (and so its library) and return the class."""
        module_name, _, class_name = self.target.partition(":")
        module = importlib.import_module(module_name)
        return getattr(module, class_name)


_PKG = "latbench.profiling.backends"

#: ``(backend, device type) -> entry``. Extend with :func:`register_backend`.
REGISTRY: dict[tuple[str, str], BackendEntry] = {
    ("torch", "cpu"): BackendEntry("torch", "cpu", f"{_PKG}.torch_cpu:TorchCPUBackend"),
    ("torch", "cuda"): BackendEntry("torch", "cuda", f"{_PKG}.torch_cuda:TorchCUDABackend"),
    ("onnxruntime", "cpu"): BackendEntry("onnxruntime", "cpu", f"{_PKG}.onnxruntime:ONNXRuntimeBackend"),
    ("onnxruntime", "cuda"): BackendEntry("onnxruntime", "cuda", f"{_PKG}.onnxruntime:ONNXRuntimeBackend"),
    ("tensorrt", "cuda"): BackendEntry("tensorrt", "cuda", f"{_PKG}.tensorrt:TensorRTBackend"),
}


def register_backend(name: str, device_type: str, target: str) -> None:
    """Register (or replace) the class serving ``backend=name`` on ``device_type`` (``"module:Class"``).

    ``name`` must be one of :data:`latbench.profiling.config.BACKENDS`, since configs validate against them.
    """
    if name not in BACKENDS:
        raise LatbenchError("backend", f"{name!r} is not a backend configs know ({', '.join(BACKENDS)})")
    if device_type not in ("cpu", "cuda"):
        raise LatbenchError("backend", f"device type must be cpu or cuda, got {device_type!r}")
    REGISTRY[(name, device_type)] = BackendEntry(name, device_type, target)


def backend_class(config: DeployConfig) -> type[Backend]:
    """The class serving ``config`` (its module is imported now)."""
    entry = REGISTRY.get((config.backend, config.device_type))
    if entry is None:
        raise LatbenchError("backend", f"no backend '{config.backend}' is registered for {config.device_type}")
    return entry.load()


def get_backend(config: DeployConfig) -> Backend:
    """The backend for ``config``, checked to be usable here.

    Raises:
        MissingDependencyError: the library or the hardware it needs is missing (one line).
    """
    cls = backend_class(config)
    cls.check_available(config)
    return cls(config)


def available_backends() -> dict[str, str | None]:
    """Every registered backend as ``"<backend>/<device type>"`` mapped to ``None`` if it can run
    here (default mode, ``cuda:0`` for GPUs) or to the one-line reason it cannot."""
    out: dict[str, str | None] = {}
    for (name, device_type), entry in REGISTRY.items():
        config = DeployConfig(backend=name, device="cpu" if device_type == "cpu" else "cuda:0")
        try:
            entry.load().check_available(config)
        except MissingDependencyError as exc:
            out[f"{name}/{device_type}"] = str(exc)
        else:
            out[f"{name}/{device_type}"] = None
    return out


# ------------------------------------------------------------------------- shared helpers


@dataclass(frozen=True)
class NamedInputs:
    """Example inputs in one shape for every backend: names, tensors, and how the module takes them."""

    names: tuple[str, ...]
    tensors: tuple[torch.Tensor, ...]
    as_kwargs: bool

    def call(self, module: Any, tensors: Sequence[torch.Tensor] | None = None) -> Any:
        """Call ``module`` with these inputs (or with ``tensors`` in their place)."""
        ts = self.tensors if tensors is None else tuple(tensors)
        if self.as_kwargs:
            return module(**dict(zip(self.names, ts)))
        return module(*ts)

    def replace(self, tensors: Sequence[torch.Tensor]) -> NamedInputs:
        return NamedInputs(self.names, tuple(tensors), self.as_kwargs)


def normalise_inputs(example_inputs: ExampleInputs, config: DeployConfig) -> NamedInputs:
    """Turn a tensor, a sequence or a mapping of tensors into :class:`NamedInputs` and check the batch.

    Positional inputs are named ``input_0``, ``input_1``, ... (the names given to ONNX exports).
    The first input's leading dimension must equal ``config.batch`` (inputs are batch-first).
    """
    import torch

    if isinstance(example_inputs, torch.Tensor):
        names, tensors, as_kwargs = ("input_0",), (example_inputs,), False
    elif isinstance(example_inputs, Mapping):
        names, tensors, as_kwargs = tuple(str(k) for k in example_inputs), tuple(example_inputs.values()), True
    elif isinstance(example_inputs, Sequence) and not isinstance(example_inputs, (str, bytes)):
        tensors = tuple(example_inputs)
        names, as_kwargs = tuple(f"input_{i}" for i in range(len(tensors))), False
    else:
        raise LatbenchError(
            "example inputs",
            f"expected a tensor, a sequence or a mapping of tensors, got {type(example_inputs).__name__}",
        )
    if not tensors:
        raise LatbenchError("example inputs", "no inputs given")
    bad = [n for n, t in zip(names, tensors) if not isinstance(t, torch.Tensor)]
    if bad:
        raise LatbenchError("example inputs", f"not tensors: {', '.join(bad)}")
    first = tensors[0]
    if first.dim() == 0 or first.shape[0] != config.batch:
        raise LatbenchError(
            "example inputs",
            f"the first input ({names[0]}, shape {tuple(first.shape)}) must be batch-first with batch "
            f"{config.batch}, as the deploy config says",
        )
    return NamedInputs(names, tensors, as_kwargs)


def torch_dtype(precision: str) -> torch.dtype:
    """The floating dtype a precision runs in (int8 keeps fp32 activations: dynamic quantisation)."""
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}[precision]


def cast_inputs(inputs: NamedInputs, dtype: torch.dtype, device: Any) -> NamedInputs:
    """Floating inputs to ``dtype``, every input to ``device``, contiguous; integer inputs keep their dtype."""
    out = []
    for t in inputs.tensors:
        t = t.to(device=device, dtype=dtype) if t.is_floating_point() else t.to(device=device)
        out.append(t.contiguous())
    return inputs.replace(out)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if empty), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_inputs(inputs: NamedInputs) -> str:
    """The inputs as ``name:1x128:int64, ...`` (the ``--input`` spelling), for error messages."""
    return ", ".join(
        f"{name}:{'x'.join(map(str, t.shape)) or '()'}:{str(t.dtype).removeprefix('torch.')}"
        for name, t in zip(inputs.names, inputs.tensors)
    )


def check_call_signature(module: Any, inputs: NamedInputs, where: str) -> None:
    """Check, without running it, that ``module``'s ``forward`` takes ``inputs`` (their names, or
    their number when positional); a mismatch is one :class:`LatbenchError` naming both sides.

    Caught here rather than in the first call, it cannot be mistaken for a failure of what
    runs that call (torch.compile, say). A ``forward`` whose signature cannot be read passes.
    """
    import inspect

    forward = getattr(module, "forward", None)
    if forward is None:
        return
    try:
        signature = inspect.signature(forward)
    except (TypeError, ValueError):
        return
    try:
        if inputs.as_kwargs:
            signature.bind(**dict.fromkeys(inputs.names))
        else:
            signature.bind(*inputs.names)
    except TypeError as exc:
        star = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
        params = ", ".join(star.get(p.kind, "") + name for name, p in signature.parameters.items())
        raise LatbenchError(
            where,
            f"the model's forward({params}) does not take inputs {describe_inputs(inputs)} ({exc}); "
            "check the input names (measure: --input)",
        ) from None


def untimed_first_call(call: Callable[[], Any], inputs: NamedInputs, where: str) -> Any:
    """Run the untimed first call of a module; its failure (an input name the module's ``forward``
    does not take, a shape or dtype it refuses) becomes one :class:`LatbenchError` naming ``where``,
    the inputs and the first line of the error, not a traceback from deep inside the model.

    A CUDA out-of-memory error is left alone (:func:`~latbench.profiling.backends._timing.gpu_memory_errors`
    words it), as is a :class:`LatbenchError`.
    """
    try:
        return call()
    except LatbenchError:
        raise
    except Exception as exc:
        if type(exc).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
            raise
        raise first_call_error(exc, inputs, where) from exc


def first_call_error(exc: BaseException, inputs: NamedInputs, where: str) -> LatbenchError:
    """The one-line error for a module whose first call with ``inputs`` raised ``exc``."""
    return LatbenchError(
        where,
        f"the model's untimed first call failed with inputs {describe_inputs(inputs)} "
        f"({type(exc).__name__}: {first_line(exc)}); check the input names, shapes and dtypes (measure: --input)",
    )


def is_onnx_file(model: ModelLike) -> bool:
    """Whether ``model`` names an ONNX file rather than being a module."""
    return isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")


def require_module(model: ModelLike, backend: str) -> Any:
    """``model`` as a torch module in eval mode, or a one-line error (an ONNX file, say)."""
    import torch

    if isinstance(model, torch.nn.Module):
        return model.eval()
    if is_onnx_file(model):
        raise LatbenchError(
            str(model), f"backend '{backend}' runs torch modules; use onnxruntime or tensorrt for an ONNX file"
        )
    raise LatbenchError("model", f"expected a torch.nn.Module, got {type(model).__name__}")
