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


def gpu_state(index: int) -> dict[str, Any] | None:
    """What drifts on a GPU: clocks (MHz), temperature (C), power (W), P-state, throttle reasons.

    Read with NVML before and after a measurement; never changes any setting.
    Returns ``None`` when NVML or the GPU is not available.
    """
    nv = _nvml()
    if nv is None:
        return None
    try:
        h = nv.nvmlDeviceGetHandleByIndex(index)
        mask = int(nv.nvmlDeviceGetCurrentClocksThrottleReasons(h))
        reasons = decode_throttle(mask)
        state = {
            "sm_clock_mhz": int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            "mem_clock_mhz": int(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            "temperature_c": int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            "power_w": round(nv.nvmlDeviceGetPowerUsage(h) / 1000.0, 1),
            "pstate": int(nv.nvmlDeviceGetPerformanceState(h)),
            "throttle_mask": mask,
            "throttle_reasons": reasons,
            "throttled": is_throttled(reasons),
        }
    except Exception as exc:  # one unsupported query must not lose the rest of a run
        return {"error": f"{type(exc).__name__}: {exc}"}
    return state


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
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return
    for g in gpus:
        i = g.get("index", 0)
        if i < torch.cuda.device_count():
            props = torch.cuda.get_device_properties(i)
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
        ``"<device>/<precision>"``; the ``env_id`` does not change, since peaks are measured, not identity."""
        key = peaks_key(str(peaks["device"]), str(peaks["precision"]))
        return replace(self, peaks={**self.peaks, key: dict(peaks)})

    def peaks_for(self, device: str, precision: str) -> dict[str, Any] | None:
        """The stored peaks of ``device`` at ``precision``, or ``None`` if never measured."""
        return self.peaks.get(peaks_key(device, precision))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["env_id"] = self.env_id
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        d = {k: v for k, v in data.items() if k != "env_id"}
        return cls(**d)


def peaks_key(device: str, precision: str) -> str:
    """Where :attr:`Fingerprint.peaks` keeps the peaks of one device and precision (``"cuda:0/fp16"``)."""
    return f"{device}/{precision}"


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
