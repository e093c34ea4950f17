"""How a model is deployed (:class:`DeployConfig`) and how its latency is timed (:class:`ProtocolConfig`).

A :class:`DeployConfig` plays the part of a "smash config" in model-optimisation
tools: backend (the compiler or runtime), mode, precision (the quantiser),
threads, cache state, the workload (batch, sequence length) and the backend's own
hyperparameters. It validates itself on construction and refuses impossible
combinations with a :class:`~latbench.errors.LatbenchError` that names them.

Backend hyperparameters live in ``options`` under keys prefixed by the backend's
name (``onnxruntime.io_binding``); each backend declares its options here, in
:data:`BACKEND_OPTIONS`, so a config validates without importing the backend's
heavy library. Options equal to their default are dropped, so a config spelled
with or without a default has the same :meth:`DeployConfig.key`.

Nothing here imports torch, onnxruntime or tensorrt.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from latbench.errors import LatbenchError
from latbench.profiling import reference as reference_workloads
from latbench.profiling.placement import default_threads
from latbench.profiling.stats import UNSTABLE_IQR_RATIO

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime", "tensorrt")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
CACHE_STATES: tuple[str, ...] = ("warm", "cold")

#: Modes per backend. torch: how the module runs; onnxruntime: the execution
#: provider; tensorrt: a built engine (its only mode).
MODES: dict[str, tuple[str, ...]] = {
    "torch": ("eager", "graph", "compile"),
    "onnxruntime": ("cpu", "cuda", "tensorrt"),
    "tensorrt": ("engine",),
}

#: Precisions a deployment can actually run, per (backend, mode). Why the gaps:
#: torch CPU fp16 lacks or emulates most kernels (bf16 is native on CPUs with
#: AVX512-BF16/AMX, whose flags the fingerprint records); torch int8 is dynamic
#: quantisation of nn.Linear, a CPU eager-mode path only; ONNX Runtime's CPU
#: provider has no fp16/bf16 kernels worth timing and its int8 is dynamic
#: quantisation (CPU only); ORT's CUDA provider covers fp32/fp16 (bf16 is
#: partial); int8 through ORT's TensorRT provider needs a calibration table.
SUPPORTED_PRECISIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("torch", "eager@cpu"): ("fp32", "bf16", "int8"),
    ("torch", "compile@cpu"): ("fp32", "bf16"),
    ("torch", "eager@cuda"): ("fp32", "fp16", "bf16"),
    ("torch", "graph@cuda"): ("fp32", "fp16", "bf16"),
    ("torch", "compile@cuda"): ("fp32", "fp16", "bf16"),
    ("onnxruntime", "cpu@cpu"): ("fp32", "int8"),
    ("onnxruntime", "cuda@cuda"): ("fp32", "fp16"),
    ("onnxruntime", "tensorrt@cuda"): ("fp32", "fp16"),
    ("tensorrt", "engine@cuda"): ("fp32", "fp16", "bf16", "int8"),
}

#: Why a precision is refused, for the error message.
_PRECISION_WHY: dict[tuple[str, str, str], str] = {
    ("torch", "cpu", "fp16"): "fp16 on the torch CPU backend lacks or emulates most kernels; use bf16 or fp32",
    ("torch", "cuda", "int8"): "torch int8 is dynamic quantisation of nn.Linear, which runs on the CPU only",
    ("onnxruntime", "cpu", "bf16"): "ONNX Runtime's CPU execution provider has no bf16 kernels",
    ("onnxruntime", "cpu", "fp16"): "ONNX Runtime's CPU execution provider has few fp16 kernels; use fp32 or int8",
    ("onnxruntime", "cuda", "int8"): "ONNX Runtime int8 here is dynamic quantisation, a CPU path",
    ("onnxruntime", "cuda", "bf16"): "ONNX Runtime's CUDA providers cover bf16 only partially; use fp16",
}


@dataclass(frozen=True)
class OptionSpec:
    """One hyperparameter a backend declares.

    Attributes:
        key: Full key, prefixed by the backend's name (``"tensorrt.workspace_mb"``).
        kind: ``bool``, ``int`` or ``str``.
        default: Value when not given.
        help: One line for the CLI and the docs.
        choices: Allowed values (``str`` options), or ``None`` for any.
        min_value: Smallest allowed value (``int`` options).
        max_value: Largest allowed value (``int`` options).
        modes: Modes the option applies to (``None``: every mode); given for another mode it is refused.
        devices: Device types it applies to (``"cpu"``, ``"cuda"``; ``None``: both).
    """

    key: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    min_value: int | None = None
    max_value: int | None = None
    modes: tuple[str, ...] | None = None
    devices: tuple[str, ...] | None = None

    def coerce(self, value: Any) -> Any:
        """Validate ``value`` (a CLI string is converted) and return it in the declared type."""
        where = f"option {self.key}"
        if self.kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise LatbenchError(where, f"expected true or false, got {value!r}")
        if self.kind is int:
            if isinstance(value, bool):
                raise LatbenchError(where, f"expected an integer, got {value!r}")
            try:
                number = int(value) if not isinstance(value, float) or value.is_integer() else None
            except (TypeError, ValueError):
                number = None
            if number is None:
                raise LatbenchError(where, f"expected an integer, got {value!r}")
            if self.min_value is not None and number < self.min_value:
                raise LatbenchError(where, f"must be >= {self.min_value}, got {number}")
            if self.max_value is not None and number > self.max_value:
                raise LatbenchError(where, f"must be <= {self.max_value}, got {number}")
            return number
        text = str(value)
        if self.choices is not None and text not in self.choices:
            raise LatbenchError(where, f"expected one of {', '.join(self.choices)}, got {text!r}")
        # The key() format separates fields with ',' and key from value with '='.
        if any(c in text for c in ",=\n"):
            raise LatbenchError(where, f"value must not contain ',', '=' or a newline: {text!r}")
        return text


#: Every backend's declared hyperparameters. A backend module reads its own here.
BACKEND_OPTIONS: dict[str, tuple[OptionSpec, ...]] = {
    "torch": (
        OptionSpec(
            "torch.compile_mode",
            str,
            "default",
            "torch.compile mode",
            choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
            modes=("compile",),
        ),
        OptionSpec("torch.compile_fullgraph", bool, False, "torch.compile(fullgraph=...)", modes=("compile",)),
        OptionSpec(
            "torch.allow_tf32",
            bool,
            False,
            "let fp32 matmuls use TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32)",
            devices=("cuda",),
        ),
        OptionSpec(
            "torch.calls_per_sample",
            int,
            1,
            "calls per CUDA-event pair; >1 times host-bound eager models as loops (a sample is their mean)",
            min_value=1,
            max_value=1000,
            devices=("cuda",),
        ),
    ),
    "onnxruntime": (
        OptionSpec(
            "onnxruntime.graph_optimization_level",
            str,
            "all",
            "SessionOptions.graph_optimization_level",
            choices=("disable", "basic", "extended", "all"),
        ),
        OptionSpec(
            "onnxruntime.io_binding",
            bool,
            True,
            "bind inputs and outputs in place (without it, GPU timings include host<->device copies)",
        ),
        OptionSpec(
            "onnxruntime.exporter",
            str,
            "torchscript",
            "torch.onnx exporter (dynamo needs the onnxscript package)",
            choices=("torchscript", "dynamo"),
        ),
        OptionSpec("onnxruntime.opset", int, 17, "ONNX opset of the export", min_value=11, max_value=23),
        OptionSpec(
            "onnxruntime.dynamic_batch",
            bool,
            False,
            "export with a dynamic batch axis (exported at batch >= 2, see MEASUREMENT.md)",
        ),
        OptionSpec(
            "onnxruntime.allow_spinning",
            bool,
            True,
            "let intra-op threads spin between calls (session.intra_op.allow_spinning)",
        ),
        OptionSpec(
            "onnxruntime.check_providers",
            bool,
            True,
            "profile the untimed call to check which provider ran each node (refuses a silent CPU fallback)",
        ),
        OptionSpec(
            "onnxruntime.trt_workspace_mb",
            int,
            4096,
            "TensorRT provider workspace (trt_max_workspace_size), MiB",
            min_value=16,
            modes=("tensorrt",),
        ),
        OptionSpec(
            "onnxruntime.trt_engine_cache_dir",
            str,
            "",
            "TensorRT provider engine cache (empty: <latbench cache>/ort-tensorrt)",
            modes=("tensorrt",),
        ),
    ),
    "tensorrt": (
        OptionSpec("tensorrt.workspace_mb", int, 4096, "builder workspace memory pool, MiB", min_value=16),
        OptionSpec(
            "tensorrt.engine_cache_dir",
            str,
            "",
            "where built engines are cached (empty: <latbench cache>/tensorrt)",
        ),
        OptionSpec(
            "tensorrt.builder_optimization_level",
            int,
            3,
            "IBuilderConfig.builder_optimization_level (higher: longer build, maybe faster engine)",
            min_value=0,
            max_value=5,
        ),
        OptionSpec("tensorrt.allow_tf32", bool, True, "keep BuilderFlag.TF32 (TensorRT's default) for fp32"),
        OptionSpec(
            "tensorrt.opset", int, 17, "ONNX opset of the export the engine is built from", min_value=11, max_value=23
        ),
        OptionSpec(
            "tensorrt.dynamic_batch",
            bool,
            False,
            "dynamic batch axis with an optimisation profile min=1, opt=max=batch",
        ),
    ),
}


def option_spec(key: str) -> OptionSpec:
    """The declaration of ``key``, or a one-line error naming what is wrong with it."""
    prefix, dot, _ = key.partition(".")
    if not dot or prefix not in BACKEND_OPTIONS:
        raise LatbenchError(f"option {key}", f"keys are '<backend>.<name>' with backend one of {', '.join(BACKENDS)}")
    for spec in BACKEND_OPTIONS[prefix]:
        if spec.key == key:
            return spec
    known = ", ".join(s.key for s in BACKEND_OPTIONS[prefix])
    raise LatbenchError(f"option {key}", f"unknown option of backend '{prefix}' (known: {known})")


def parse_options(items: Iterable[str]) -> dict[str, Any]:
    """Parse CLI ``key=value`` strings into a dict (values are coerced by :class:`DeployConfig`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise LatbenchError("option", f"expected key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def default_mode(backend: str, device: str) -> str:
    """The mode a config gets when none is given: what a deployment of that backend would use.

    torch: CUDA-graph replay on a GPU (deployed small models are launch-bound, see
    MEASUREMENT.md), eager on the CPU; onnxruntime: the provider of the device;
    tensorrt: an engine.
    """
    gpu = device.startswith("cuda")
    if backend == "torch":
        return "graph" if gpu else "eager"
    if backend == "onnxruntime":
        return "cuda" if gpu else "cpu"
    return "engine"


def _normalise_device(device: str) -> str:
    text = str(device).strip().lower()
    if text == "cpu":
        return "cpu"
    if text == "cuda":
        return "cuda:0"  # one spelling per device, so keys agree
    head, colon, index = text.partition(":")
    if head == "cuda" and colon and index.isdigit():
        return f"cuda:{int(index)}"
    raise LatbenchError("device", f"expected cpu, cuda or cuda:N, got {device!r}")


def _normalise_options(raw: Any) -> tuple[tuple[str, Any], ...]:
    if raw is None:
        return ()
    if isinstance(raw, Mapping):
        items = list(raw.items())
    else:
        try:
            items = [tuple(pair) for pair in raw]
        except TypeError:
            raise LatbenchError("options", f"expected a mapping or (key, value) pairs, got {raw!r}") from None
        if any(len(pair) != 2 for pair in items):
            raise LatbenchError("options", "expected (key, value) pairs")
    out: dict[str, Any] = {}
    for key, value in items:
        if not isinstance(key, str):
            raise LatbenchError("options", f"option keys are strings, got {key!r}")
        if key in out:
            raise LatbenchError(f"option {key}", "given twice")
        out[key] = value
    return tuple(sorted(out.items()))


@dataclass(frozen=True)
class DeployConfig:
    """How a model is deployed and fed: one measurable deployment.

    Attributes:
        backend: ``"torch"``, ``"onnxruntime"`` or ``"tensorrt"``.
        device: ``"cpu"`` or ``"cuda:N"`` (``"cuda"`` is stored as ``"cuda:0"``). N is torch's
            index, which NVML shares unless ``CUDA_VISIBLE_DEVICES`` reorders the GPUs.
        mode: torch: ``eager`` | ``graph`` (CUDA-graph replay) | ``compile`` (torch.compile);
            onnxruntime: the execution provider ``cpu`` | ``cuda`` | ``tensorrt``; tensorrt: ``engine``.
            ``None`` resolves to :func:`default_mode` (graph on CUDA, eager on CPU).
        precision: ``fp32`` | ``fp16`` | ``bf16`` | ``int8`` (see :data:`SUPPORTED_PRECISIONS`).
        threads: Intra-op CPU threads. ``None`` resolves on the CPU to one thread per physical core
            of this process's CPU set less one left free (:func:`~latbench.profiling.placement.default_threads`;
            1 on a 2-core machine), so every backend gets the same explicit number, and stays ``None``
            (library default) on a GPU.
        cache: ``warm`` (repeated calls on one buffer) or ``cold`` (CPU: rotate input copies and
            overwrite a buffer twice the last-level cache before each call; GPU: overwrite a
            buffer twice the L2 before each call; neither is timed).
        batch: Batch size of the workload, >= 1.
        seq_len: Sequence length of the workload (``None`` for image models).
        options: Backend hyperparameters as sorted ``(key, value)`` pairs, keys prefixed by the
            backend's name; a mapping is accepted. Validated against :data:`BACKEND_OPTIONS`;
            values equal to the default are dropped.
    """

    backend: str
    device: str = "cpu"
    mode: str | None = None
    precision: str = "fp32"
    threads: int | None = None
    cache: str = "warm"
    batch: int = 1
    seq_len: int | None = None
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise LatbenchError("backend", f"expected one of {', '.join(BACKENDS)}, got {self.backend!r}")
        device = _normalise_device(self.device)
        object.__setattr__(self, "device", device)
        mode = default_mode(self.backend, device) if self.mode is None else self.mode
        if mode not in MODES[self.backend]:
            raise LatbenchError(
                "mode", f"backend '{self.backend}' has modes {', '.join(MODES[self.backend])}, got {mode!r}"
            )
        object.__setattr__(self, "mode", mode)
        if self.precision not in PRECISIONS:
            raise LatbenchError("precision", f"expected one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.cache not in CACHE_STATES:
            raise LatbenchError("cache", f"expected warm or cold, got {self.cache!r}")
        for name in ("batch", "seq_len", "threads"):
            value = getattr(self, name)
            if value is None and name != "batch":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LatbenchError(name, f"must be an integer >= 1, got {value!r}")
        self._check_combination()
        if self.threads is None and device == "cpu":
            object.__setattr__(self, "threads", default_threads())
        object.__setattr__(self, "options", self._validated_options())

    # -- validation ---------------------------------------------------------------------------

    def _check_combination(self) -> None:
        dev = self.device_type
        if self.backend == "tensorrt" and dev == "cpu":
            raise LatbenchError("device", "backend 'tensorrt' runs on an NVIDIA GPU only, not on cpu; use device cuda")
        if self.backend == "torch" and self.mode == "graph" and dev == "cpu":
            raise LatbenchError("mode", "mode 'graph' (CUDA-graph capture and replay) needs a CUDA device, not cpu")
        if self.backend == "onnxruntime":
            if self.mode in ("cuda", "tensorrt") and dev == "cpu":
                raise LatbenchError(
                    "mode", f"onnxruntime mode '{self.mode}' is a GPU execution provider; use device cuda"
                )
            if self.mode == "cpu" and dev == "cuda":
                raise LatbenchError("mode", "onnxruntime mode 'cpu' runs on the CPU; use device cpu")
        allowed = SUPPORTED_PRECISIONS[(self.backend, f"{self.mode}@{dev}")]
        if self.precision not in allowed:
            why = _PRECISION_WHY.get((self.backend, dev, self.precision))
            if why is None and self.precision == "int8" and self.backend == "torch":
                why = "torch int8 (dynamic quantisation) runs in eager mode only"
            where = f"backend '{self.backend}' mode '{self.mode}' on {dev}"
            raise LatbenchError(
                "precision",
                f"{self.precision} is not supported by {where} (supported: {', '.join(allowed)})"
                + (f": {why}" if why else ""),
            )

    def _validated_options(self) -> tuple[tuple[str, Any], ...]:
        kept: list[tuple[str, Any]] = []
        for key, value in _normalise_options(self.options):
            prefix = key.partition(".")[0]
            if prefix in BACKEND_OPTIONS and prefix != self.backend:
                raise LatbenchError(f"option {key}", f"belongs to backend '{prefix}', not '{self.backend}'")
            spec = option_spec(key)
            if spec.modes is not None and self.mode not in spec.modes:
                raise LatbenchError(f"option {key}", f"applies to mode {', '.join(spec.modes)} only, not {self.mode!r}")
            if spec.devices is not None and self.device_type not in spec.devices:
                raise LatbenchError(f"option {key}", f"applies on {', '.join(spec.devices)} only, not {self.device}")
            value = spec.coerce(value)
            if value != spec.default:
                kept.append((key, value))
        result = tuple(kept)
        effective = {**{s.key: s.default for s in BACKEND_OPTIONS[self.backend]}, **dict(result)}
        if self.backend == "torch":
            if self.device_type == "cpu" and effective["torch.compile_mode"] == "reduce-overhead":
                raise LatbenchError(
                    "option torch.compile_mode", "reduce-overhead means CUDA graphs, which a cpu device does not have"
                )
            if effective["torch.calls_per_sample"] > 1 and self.cache == "cold":
                raise LatbenchError(
                    "option torch.calls_per_sample",
                    "values > 1 time back-to-back calls, which contradicts cache 'cold'",
                )
        return result

    # -- accessors ----------------------------------------------------------------------------

    @property
    def device_type(self) -> str:
        """``"cpu"`` or ``"cuda"``."""
        return "cpu" if self.device == "cpu" else "cuda"

    @property
    def gpu_index(self) -> int | None:
        """The CUDA device index, or ``None`` on the CPU."""
        return None if self.device == "cpu" else int(self.device.partition(":")[2])

    def option(self, key: str) -> Any:
        """The effective value of one of this backend's options (given, or its default)."""
        spec = option_spec(key)
        if spec.key.partition(".")[0] != self.backend:
            raise LatbenchError(f"option {key}", f"belongs to another backend than '{self.backend}'")
        return dict(self.options).get(key, spec.default)

    def effective_options(self) -> dict[str, Any]:
        """Every option of this backend with its effective value, defaults included."""
        return {s.key: self.option(s.key) for s in BACKEND_OPTIONS[self.backend]}

    # -- identity -----------------------------------------------------------------------------

    def key(self) -> str:
        """A stable string identifying this deployment and workload, e.g.
        ``backend=torch,device=cpu,mode=eager,precision=fp32,threads=2,cache=warm,batch=1,seq_len=128``
        followed by ``,<option>=<value>`` for each non-default option in key order.

        The result store identifies rows by it; :meth:`from_key` parses it back.
        """
        parts = [
            f"backend={self.backend}",
            f"device={self.device}",
            f"mode={self.mode}",
            f"precision={self.precision}",
            f"threads={'none' if self.threads is None else self.threads}",
            f"cache={self.cache}",
            f"batch={self.batch}",
            f"seq_len={'none' if self.seq_len is None else self.seq_len}",
        ]
        parts += [f"{k}={_format_value(v)}" for k, v in self.options]
        return ",".join(parts)

    @classmethod
    def from_key(cls, key: str) -> DeployConfig:
        """Parse :meth:`key` back into a config (validated)."""
        fields_: dict[str, Any] = {}
        options: dict[str, Any] = {}
        for part in key.split(","):
            name, eq, value = part.partition("=")
            if not eq:
                raise LatbenchError("deploy key", f"expected name=value, got {part!r}")
            if name == "target":  # a fleet row's key starts with its target label: not part of the deployment
                continue
            if "." in name:
                options[name] = value
            elif name in ("threads", "batch", "seq_len"):
                fields_[name] = None if value == "none" else _parse_int(name, value)
            elif name in ("backend", "device", "mode", "precision", "cache"):
                fields_[name] = value
            else:
                raise LatbenchError("deploy key", f"unknown field {name!r}")
        if "backend" not in fields_:
            raise LatbenchError("deploy key", "no backend")
        return cls(**fields_, options=options)

    def label(self) -> str:
        """A short human-readable name, e.g. ``torch graph fp16 cuda:0 b1 s128 warm``."""
        parts = [self.backend, self.mode or "", self.precision, self.device]
        if self.threads is not None:
            parts.append(f"{self.threads}t")
        parts.append(f"b{self.batch}")
        if self.seq_len is not None:
            parts.append(f"s{self.seq_len}")
        parts.append(self.cache)
        parts += [f"{k.partition('.')[2]}={_format_value(v)}" for k, v in self.options]
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; ``options`` becomes a dict."""
        d = asdict(self)
        d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeployConfig:
        """Inverse of :meth:`to_dict`; unknown fields are refused."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LatbenchError("deploy config", f"unknown field(s) {', '.join(unknown)}")
        if "backend" not in data:
            raise LatbenchError("deploy config", "no backend")
        return cls(**dict(data))


def _format_value(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise LatbenchError("deploy key", f"{name} must be an integer, got {value!r}") from None


@dataclass(frozen=True)
class ProtocolConfig:
    """How one latency is measured (MEASUREMENT.md's protocol; every default is its default).

    Attributes:
        warmup_calls: Untimed calls before sampling, at least this many ...
        warmup_s: ... and for at least this long; ``None``: 0.2 s on the CPU, 0.025 s on a GPU.
        min_samples: Samples always taken, even past the budget.
        max_samples: Sampling stops here even if the CI is still wide (the row is then unstable).
        target_rel_ci: Stop once the 95% CI of the median lies within ``±target_rel_ci`` of it.
        budget_s: Time one configuration may spend (warm-up included) before it stops, once it
            has ``min_samples`` and ``min_rounds``; stopping on the budget with a wide CI marks
            the row unstable.
        calls_per_round: Calls one configuration gets per round; convergence is checked after each round.
        min_rounds: Rounds a configuration takes part in before it may stop, so that its samples
            spread over time (``10`` rounds of ``15`` calls is MEASUREMENT.md's CPU protocol).
        round_warmup_calls: Untimed calls at the start of each round when several configurations
            are interleaved, so that the switch from another configuration does not leak into
            the first sample of a warm-cache round.
        reference_calls: Timings of a fixed CPU reference workload at the start of each round in
            which a CPU configuration is sampled (``0``: none); their median over a configuration's
            rounds is stored as ``ref_ms``, the machine's speed while it was measured.
        reference: Which reference workload (:mod:`latbench.profiling.reference`): ``bert-block``
            (one transformer block, it follows the models' drift the most closely) or ``matmul``
            (the reference of stores written before references had names).
        unstable_iqr_ratio: IQR/median above this marks a row unstable.
        pin_threads: Pin a CPU configuration's threads to fixed cores while it is sampled
            (:mod:`latbench.profiling.placement`); the placement is stored with every row.
        busy_ref_spread: A CPU row whose reference workload moved more than this (p10-p90 over
            its rounds, relative) is marked unstable: the machine's speed changed under it. On this
            project's quiet 2-core VM the reference moves 7% (median; 12.5% at most) within a row's
            10 rounds by itself (RESULTS, protocol-choice-cpu), hence 15%.
        busy_ref_spread_run: At the end of a CPU run, a reference that moved more than this over
            the run's rows (p10-p90 of their ``ref_ms``) is reported: numbers can differ from
            another run by about that much.
        busy_round_spread_run: At the end of a CPU run, rows whose own per-round medians moved more
            than this (p10-p90, the median over the run's rows) are reported the same way: on this
            project's VM, blocks of rounds that moved less than 4% repeated within 1.5%, those that moved
            9-12% differed by 5-10% from the next (RESULTS, protocol-choice-cpu).
        busy_other_cores: A CPU row during whose sampling other processes used more than this
            many cores (``/proc/stat``) is marked unstable: other work shared the machine.
    """

    warmup_calls: int = 10
    warmup_s: float | None = None
    min_samples: int = 50
    max_samples: int = 2000
    target_rel_ci: float = 0.01
    budget_s: float = 5.0
    calls_per_round: int = 10
    min_rounds: int = 10
    round_warmup_calls: int = 1
    reference_calls: int = 3
    reference: str = reference_workloads.DEFAULT
    unstable_iqr_ratio: float = UNSTABLE_IQR_RATIO
    pin_threads: bool = True
    busy_ref_spread: float = 0.15
    busy_ref_spread_run: float = 0.05
    busy_round_spread_run: float = 0.06
    busy_other_cores: float = 0.25

    def __post_init__(self) -> None:
        if not isinstance(self.pin_threads, bool):
            raise LatbenchError("protocol pin_threads", f"must be true or false, got {self.pin_threads!r}")
        for name, low in (
            ("warmup_calls", 0),
            ("min_samples", 1),
            ("max_samples", 1),
            ("calls_per_round", 1),
            ("min_rounds", 1),
            ("round_warmup_calls", 0),
            ("reference_calls", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise LatbenchError(f"protocol {name}", f"must be an integer >= {low}, got {value!r}")
        reference_workloads.check(self.reference)
        if self.max_samples < self.min_samples:
            raise LatbenchError(
                "protocol max_samples", f"must be >= min_samples ({self.min_samples}), got {self.max_samples}"
            )
        for name, positive in (
            ("target_rel_ci", True),
            ("budget_s", True),
            ("unstable_iqr_ratio", True),
            ("busy_ref_spread", True),
            ("busy_ref_spread_run", True),
            ("busy_round_spread_run", True),
            ("busy_other_cores", True),
        ):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
                raise LatbenchError(f"protocol {name}", f"must be a finite number > 0, got {value!r}")
        if self.target_rel_ci >= 1:
            raise LatbenchError("protocol target_rel_ci", f"is relative (0.01 = ±1%), got {self.target_rel_ci}")
        if self.warmup_s is not None and (
            not isinstance(self.warmup_s, (int, float)) or not math.isfinite(self.warmup_s) or self.warmup_s < 0
        ):
            raise LatbenchError("protocol warmup_s", f"must be a finite number >= 0, got {self.warmup_s!r}")

    def warmup_seconds(self, on_gpu: bool) -> float:
        """The warm-up duration: ``warmup_s`` if given, else 25 ms on a GPU and 0.2 s on the CPU."""
        if self.warmup_s is not None:
            return float(self.warmup_s)
        return 0.025 if on_gpu else 0.2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProtocolConfig:
        """Inverse of :meth:`to_dict`; unknown fields are refused, a missing ``reference`` is ``matmul``."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise LatbenchError("protocol", f"unknown field(s) {', '.join(unknown)}")
        # A protocol written before references had names was timed with the legacy one.
        return cls(**{"reference": reference_workloads.LEGACY, **dict(data)})
