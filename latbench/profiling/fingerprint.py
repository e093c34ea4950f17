"""The environment a measurement was taken in: CPU, threads, load, libraries, GPUs.

A fingerprint is stored once per run and referenced by its ``env_id`` from every
row. The id hashes what identifies the machine and software (CPU model, core
count, library versions, GPU model, driver), not what drifts (load, clocks,
temperature): two runs on the same machine and stack share an id.

NVML (``nvidia-ml-py``, imported as ``pynvml``) is optional and imported lazily;
with no NVIDIA driver the GPU part is simply empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from typing import Any

#: Distributions whose versions matter to a latency, looked up without importing them.
LIBRARIES: tuple[str, ...] = (
    "latbench",
    "torch",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "tensorrt",
    "xgboost",
    "xgboost-cpu",
    "transformers",
    "nvidia-ml-py",
    "ray",
)

#: NVML clock-event (throttle) reasons that make a GPU measurement unstable. Idle
#: and "applications clocks setting" are normal states, not throttling.
THROTTLE_BITS: dict[str, int] = {
    "GpuIdle": 0x1,
    "ApplicationsClocksSetting": 0x2,
    "SwPowerCap": 0x4,
    "HwSlowdown": 0x8,
    "SyncBoost": 0x10,
    "SwThermalSlowdown": 0x20,
    "HwThermalSlowdown": 0x40,
    "HwPowerBrakeSlowdown": 0x80,
    "DisplayClockSetting": 0x100,
}
BENIGN_THROTTLE: frozenset[str] = frozenset({"GpuIdle", "ApplicationsClocksSetting", "DisplayClockSetting"})

#: NVML's cumulative violation counters read with every state (``nvmlDeviceGetViolationStatus``):
#: state key -> (``nvmlPerfPolicyType_t`` constant name, its value, what the counter counts).
#: The counters add up the nanoseconds the clocks were held down by each cause, busy or idle, so
#: an increase between two readings says the cap bit during that window, whenever it was read.
VIOLATION_COUNTERS: dict[str, tuple[str, int, str]] = {
    "violation_power_ns": ("NVML_PERF_POLICY_POWER", 0, "power cap"),
    "violation_thermal_ns": ("NVML_PERF_POLICY_THERMAL", 1, "thermal cap"),
}


def decode_throttle(mask: int) -> list[str]:
    """Names of the NVML throttle reasons set in ``mask``."""
    return [name for name, bit in THROTTLE_BITS.items() if mask & bit]


def is_throttled(reasons: list[str]) -> bool:
    """Whether any reason other than idle / application clocks is set."""
    return any(r not in BENIGN_THROTTLE for r in reasons)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_info() -> dict[str, Any]:
    """CPU model, flags and core counts (Linux ``/proc/cpuinfo``; platform fallback)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = value.split()
    except OSError:
        pass
    usable = usable_cores()
    # Keep the flags that change kernel choice; the full list is long and uninformative.
    interesting = sorted(
        f for f in flags if f.startswith(("avx", "amx", "sse4", "fma", "f16c", "neon", "sve", "asimd"))
    )
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": usable,
        "flags": interesting,
    }


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that matter, without importing them."""
    out: dict[str, str] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "latbench":  # run from a source tree on PYTHONPATH (python -m latbench), not installed
                from latbench import __version__

                out[name] = __version__
            continue
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _nvml() -> Any | None:
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # NVMLError_LibraryNotFound / DriverNotLoaded: no NVIDIA GPU here
        return None
    return pynvml


def _throttle_mask(nv: Any, handle: Any) -> int:
    """The clock-event (throttle) reason bits of ``handle``.

    NVML 12.x renamed ``nvmlDeviceGetCurrentClocksThrottleReasons`` to ``...ClocksEventReasons``
    (same bits); the old name is deprecated and goes with CUDA 14, the new one is missing from
    drivers and ``nvidia-ml-py`` releases older than 12.535. The new name is tried first.
    """
    error: Exception | None = None
    for name in ("nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons"):
        fn = getattr(nv, name, None)
        if fn is None:
            continue
        try:
            return int(fn(handle))
        except Exception as exc:  # NVMLError_FunctionNotFound on a driver without this name
            error = exc
    raise error or AttributeError("pynvml has no clock-event (throttle) reasons query")


def gpu_state(index: int) -> dict[str, Any] | None:
    """What drifts on a GPU: clocks (MHz), temperature (C), power (W), P-state, throttle reasons.

    ``index`` is NVML's (see :func:`nvml_index` for torch's ``cuda:N``). Read with NVML before and
    after a measurement; never changes any setting. Each query is read on its own, so one that a GPU
    does not support (power on some virtual GPUs) loses only its field, named under ``error``.
    Returns ``None`` when NVML is not available.
    """
    nv = _nvml()
    if nv is None:
        return None
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    state: dict[str, Any] = {}
    errors: list[str] = []

    def read(key: str, query: Any) -> None:
        try:
            state[key] = query()
        except Exception as exc:  # one unsupported query must not lose the others, nor the run
            errors.append(f"{key}: {type(exc).__name__}: {exc}")

    read("sm_clock_mhz", lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)))
    read("mem_clock_mhz", lambda: int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)))
    read("temperature_c", lambda: int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)))
    read("power_w", lambda: round(nv.nvmlDeviceGetPowerUsage(h) / 1000.0, 1))
    read("pstate", lambda: int(nv.nvmlDeviceGetPerformanceState(h)))
    read("throttle_mask", lambda: _throttle_mask(nv, h))
    for key, (constant, value, _) in VIOLATION_COUNTERS.items():
        policy = getattr(nv, constant, value)
        read(key, lambda policy=policy: int(nv.nvmlDeviceGetViolationStatus(h, policy).violationTime))
    if "throttle_mask" in state:
        reasons = decode_throttle(state["throttle_mask"])
        state["throttle_reasons"] = reasons
        state["throttled"] = is_throttled(reasons)
    if errors:
        state["error"] = "; ".join(errors)
    return state


def violation_increase_ms(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, float]:
    """How many ms each NVML violation counter (:data:`VIOLATION_COUNTERS`) grew from ``before`` to ``after``,
    for the counters that grew (a missing reading says nothing)."""
    grown: dict[str, float] = {}
    for key, (_, _, what) in VIOLATION_COUNTERS.items():
        a, b = (before or {}).get(key), (after or {}).get(key)
        if isinstance(a, int) and isinstance(b, int) and b > a:
            grown[what] = (b - a) / 1e6
    return grown


class BusySampler:
    """Reads a GPU's SM clock and clock-event reasons while it runs the timed calls.

    A reading taken after a synchronise sees an idle GPU (clocks dropping, the ``GpuIdle``
    reason), not the one that ran the samples. A backend's CUDA timer calls :meth:`sample`
    once per batch of timed calls, after it has queued them and before it synchronises: the
    GPU is then working through the queue, outside every event pair. ``read`` (tests) returns
    ``(sm_clock_mhz, clock_event_mask)``; by default NVML is asked.
    """

    def __init__(self, index: int, read: Any = None) -> None:
        self.index = index
        self._read = read
        self.clocks_mhz: list[int] = []
        self.mask = 0
        self.errors = 0

    def _nvml_read(self) -> tuple[int, int]:
        nv = _nvml()
        if nv is None:
            raise RuntimeError("no NVML")
        h = nv.nvmlDeviceGetHandleByIndex(self.index)
        return int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)), _throttle_mask(nv, h)

    def sample(self) -> None:
        """One reading; a failed one is counted, never raised (it must not cost a measurement)."""
        try:
            clock, mask = (self._read or self._nvml_read)()
        except Exception:
            self.errors += 1
            return
        self.clocks_mhz.append(int(clock))
        self.mask |= int(mask)

    def summary(self) -> dict[str, Any] | None:
        """``sm_clock_busy_mhz`` (median reading), ``sm_clock_busy_min_mhz``, ``busy_readings`` and the
        ``busy_throttle_reasons`` seen (other than idle); ``None`` when nothing was read."""
        if not self.clocks_mhz:
            return None
        clocks = sorted(self.clocks_mhz)
        return {
            "sm_clock_busy_mhz": clocks[len(clocks) // 2],
            "sm_clock_busy_min_mhz": clocks[0],
            "busy_readings": len(clocks),
            "busy_throttle_reasons": [r for r in decode_throttle(self.mask) if r not in BENIGN_THROTTLE],
        }


def gpu_window_throttles(
    before: dict[str, Any] | None, after: dict[str, Any] | None, busy: dict[str, Any] | None = None
) -> list[str]:
    """Why the GPU was not running at its own pace over a timing window, one phrase each (empty: it was).

    Three sources: a throttle reason other than idle in the readings before or after; a power or
    thermal violation counter that grew between them; a reason seen while the GPU was busy.
    """
    names: list[str] = []
    for state in (before, after):
        if state and state.get("throttled"):
            names += [r for r in state.get("throttle_reasons", []) if r not in BENIGN_THROTTLE]
    names += list((busy or {}).get("busy_throttle_reasons") or [])
    out = list(dict.fromkeys(names))
    out += [f"{what} +{ms:.1f} ms" for what, ms in violation_increase_ms(before, after).items()]
    return out


def _bare_uuid(uuid: Any) -> str:
    """A GPU UUID without NVML's ``GPU-`` prefix, lower case (torch prints it bare)."""
    return _s(uuid).strip().lower().removeprefix("gpu-")


def nvml_index(cuda_index: int) -> int:
    """NVML's index of the GPU torch calls ``cuda:<cuda_index>``.

    NVML numbers every GPU of the machine (PCI order) and ignores ``CUDA_VISIBLE_DEVICES``;
    CUDA numbers the visible ones (fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``). So
    with ``CUDA_VISIBLE_DEVICES=3``, ``cuda:0`` is NVML's GPU 3. The two are matched by UUID;
    when that cannot be done (no NVML, torch not imported or without CUDA, a MIG instance),
    ``cuda_index`` itself is returned.
    """
    torch = sys.modules.get("torch")
    nv = _nvml()
    if torch is None or nv is None:
        return cuda_index
    try:
        if not torch.cuda.is_available() or cuda_index >= torch.cuda.device_count():
            return cuda_index
        wanted = _bare_uuid(torch.cuda.get_device_properties(cuda_index).uuid)
        for i in range(int(nv.nvmlDeviceGetCount())):
            if wanted and _bare_uuid(nv.nvmlDeviceGetUUID(nv.nvmlDeviceGetHandleByIndex(i))) == wanted:
                return i
    except Exception:  # an old torch without .uuid, an NVML error: keep torch's index
        pass
    return cuda_index


def gpu_info() -> list[dict[str, Any]]:
    """Static facts per NVIDIA GPU through NVML (empty with no driver), plus torch's view if CUDA is up."""
    nv = _nvml()
    if nv is None:
        return []
    gpus = []
    try:
        count = nv.nvmlDeviceGetCount()
        driver = nv.nvmlSystemGetDriverVersion()
        cuda_drv = nv.nvmlSystemGetCudaDriverVersion()
    except Exception:
        return []
    for i in range(count):
        try:
            h = nv.nvmlDeviceGetHandleByIndex(i)
            major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            info: dict[str, Any] = {
                "index": i,
                "name": _s(nv.nvmlDeviceGetName(h)),
                "uuid": _s(nv.nvmlDeviceGetUUID(h)),
                "compute_capability": f"{major}.{minor}",
                "memory_gib": round(mem.total / 2**30, 2),
                "driver_version": _s(driver),
                "cuda_driver_version": f"{cuda_drv // 1000}.{(cuda_drv % 1000) // 10}",
                "max_sm_clock_mhz": int(nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)),
                "power_limit_w": round(nv.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0, 1),
            }
        except Exception as exc:
            info = {"index": i, "error": f"{type(exc).__name__}: {exc}"}
        info["state"] = gpu_state(i)
        gpus.append(info)
    _add_torch_cuda(gpus)
    return gpus


def _add_torch_cuda(gpus: list[dict[str, Any]]) -> None:
    """Add torch's view (``cuda_index``, SM count) to the NVML records, matched by UUID: NVML's
    index is not torch's when ``CUDA_VISIBLE_DEVICES`` hides or reorders GPUs."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    by_uuid = {_bare_uuid(g["uuid"]): g for g in gpus if g.get("uuid")}
    for j in range(torch.cuda.device_count()):
        try:
            props = torch.cuda.get_device_properties(j)
            g = by_uuid.get(_bare_uuid(props.uuid))
        except Exception:  # an old torch without .uuid
            return
        if g is not None:
            g["cuda_index"] = j
            g["sm_count"] = props.multi_processor_count
            g["torch_cuda_version"] = torch.version.cuda


def _s(x: Any) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


@dataclass(frozen=True)
class Fingerprint:
    """The machine and software stack of a run."""

    cpu: dict[str, Any]
    threads: int
    python: str
    platform: str
    libraries: dict[str, str]
    gpus: list[dict[str, Any]] = field(default_factory=list)
    load_avg: list[float] | None = None
    peaks: dict[str, Any] = field(default_factory=dict)

    @property
    def env_id(self) -> str:
        """12 hex digits identifying the machine and stack (not its drifting state)."""
        stable = {
            "cpu": {k: self.cpu.get(k) for k in ("model", "arch", "logical_cores", "flags")},
            "threads": self.threads,
            "python": self.python,
            "platform": self.platform,
            "libraries": self.libraries,
            "gpus": [{k: g.get(k) for k in ("name", "uuid", "driver_version", "power_limit_w")} for g in self.gpus],
        }
        return hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:12]

    def with_peaks(self, peaks: dict[str, Any]) -> Fingerprint:
        """A copy with ``peaks`` (from :func:`latbench.profiling.peaks.measure_peaks`) stored under
        :func:`peaks_key` of their device, precision and math mode; the ``env_id`` does not change,
        since peaks are measured, not identity."""
        key = peaks_key(str(peaks["device"]), str(peaks["precision"]), str(peaks.get("math") or ""))
        return replace(self, peaks={**self.peaks, key: dict(peaks)})

    def peaks_for(self, device: str, precision: str, math: str = "") -> dict[str, Any] | None:
        """The stored peaks of ``device`` at ``precision`` in math mode ``math``, or ``None`` if never measured."""
        return self.peaks.get(peaks_key(device, precision, math))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["env_id"] = self.env_id
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        d = {k: v for k, v in data.items() if k != "env_id"}
        return cls(**d)


def peaks_key(device: str, precision: str, math: str = "") -> str:
    """Where :attr:`Fingerprint.peaks` keeps the peaks of one device, precision and math mode.

    ``math`` is how fp32 matmuls run when not in plain IEEE fp32: ``"tf32"`` (TF32 tensor cores,
    what TensorRT fp32 and torch with TF32 on use), giving ``"cuda:0/fp32/tf32"``; empty otherwise
    (``"cuda:0/fp16"``, ``"cpu/fp32"``), the keys stores written before math modes existed hold.
    """
    return f"{device}/{precision}/{math}" if math else f"{device}/{precision}"


def collect(threads: int | None = None) -> Fingerprint:
    """Fingerprint this machine now. ``threads``: the intra-op threads the run will use."""
    if threads is None:
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else (os.cpu_count() or 1)
    return Fingerprint(
        cpu=cpu_info(),
        threads=int(threads),
        python=platform.python_version(),
        platform=platform.platform(),
        libraries=library_versions(),
        gpus=gpu_info(),
        load_avg=load_average(),
    )
