"""Attainable peaks of a device, measured once and stored with the fingerprint (``Fingerprint.peaks``).

Two kernels, timed with the same protocol as any model (:func:`~latbench.profiling.protocol.measure`):

- a large matmul ``(n, n) @ (n, n)`` in the deployment's precision: ``2·n³`` FLOPs per call
  (for int8 on the CPU: a dynamically quantised ``nn.Linear`` of ``n`` features on ``n`` rows,
  the kernel torch's int8 deployments run);
- a large copy ``dst.copy_(src)``: ``2·nbytes`` moved per call (one read, one write).

The peaks are the median throughputs (``peak_flops``, ``peak_bytes_per_s``); the best-sample
throughputs are stored beside them. Each block's roofline time is
``max(FLOPs / peak_flops, bytes / peak_bytes_per_s)`` (:mod:`latbench.models.cost`).

The CPU version uses modest sizes so that it takes about a second; the GPU one uses
sizes that reach the plateau on an H100 (n = 8192, 1 GiB).

Peaks are kept per device, precision and *math mode* (:func:`matmul_math`): on a GPU
since Ampere, fp32 matmuls run on TF32 tensor cores when the deployment lets them
(TensorRT fp32 by default, ONNX Runtime's CUDA and TensorRT providers by default,
torch with ``torch.allow_tf32``), several times the IEEE fp32 peak; such a deployment's
roofline uses a peak measured with TF32 on, under its own key.

A deployment whose precision torch eager cannot run on the device (int8 on a GPU:
TensorRT has kernels, torch has none) gets a record saying why, not an error
(:func:`device_peaks`): the profile job and the fleet worker share that path.
"""

from __future__ import annotations

import warnings
from typing import Any

from latbench.errors import LatbenchError
from latbench.profiling.config import DeployConfig, ProtocolConfig
from latbench.profiling.fingerprint import peaks_key

#: Matrix size and copy size per device type.
CPU_MATMUL_N = 512
CPU_COPY_BYTES = 64 * 2**20
GPU_MATMUL_N = 8192
GPU_COPY_BYTES = 2**30

#: A short protocol: the kernels are steady, and a peak needs ±2%, not ±1%.
PEAK_PROTOCOL = ProtocolConfig(
    warmup_calls=3,
    warmup_s=0.05,
    min_samples=15,
    max_samples=400,
    target_rel_ci=0.02,
    budget_s=0.4,
    calls_per_round=5,
    min_rounds=1,  # one configuration, not interleaved: the profile defaults' 10 rounds would only slow start-up
    reference_calls=0,  # a peak is the kernel's own best; the machine's speed beside it is not stored
)


def matmul_math(deploy: DeployConfig) -> str:
    """How ``deploy``'s fp32 matmuls run: ``"tf32"`` on TF32 tensor cores, ``""`` otherwise
    (IEEE fp32, a CPU, or a precision other than fp32, whose math is the precision itself)."""
    if deploy.precision != "fp32" or deploy.device_type != "cuda":
        return ""
    if deploy.backend == "torch":
        return "tf32" if deploy.option("torch.allow_tf32") else ""
    if deploy.backend == "tensorrt":
        return "tf32" if deploy.option("tensorrt.allow_tf32") else ""
    if deploy.backend == "onnxruntime":
        # The CUDA provider's use_tf32 defaults to on, and TensorRT's TF32 flag too.
        return "tf32"
    return ""


def deploy_peaks_key(deploy: DeployConfig) -> str:
    """The key of ``deploy``'s peaks in a fingerprint (:func:`~latbench.profiling.fingerprint.peaks_key`)."""
    return peaks_key(deploy.device, deploy.precision, matmul_math(deploy))


def device_peaks(deploy: DeployConfig, **kwargs: Any) -> dict[str, Any]:
    """:func:`measure_peaks` of ``deploy``, or a record of why torch has no peak kernel for it.

    For a torch deployment a refusal is an error (the peak kernels are that very deployment's);
    for another backend (TensorRT int8 on a GPU) the rows then carry no roofline and the run goes on.
    """
    try:
        return measure_peaks(deploy, **kwargs)
    except LatbenchError as exc:
        if deploy.backend == "torch":
            raise
        key = deploy_peaks_key(deploy)
        return {
            "device": deploy.device,
            "precision": deploy.precision,
            "math": matmul_math(deploy),
            "unavailable": f"no torch peak kernel for {key}: {exc.what}",
        }


def measure_peaks(
    deploy: DeployConfig | str = "cpu",
    precision: str | None = None,
    *,
    protocol: ProtocolConfig | None = None,
    matmul_n: int | None = None,
    copy_bytes: int | None = None,
    tf32: bool | None = None,
) -> dict[str, Any]:
    """Measure the attainable matmul FLOP/s and copy bandwidth of a device.

    Args:
        deploy: A deployment (its device, precision and threads are used; whatever its
            backend, the kernels run in torch) or a device string (``"cpu"``, ``"cuda:0"``).
        precision: Overrides the deployment's precision (``fp32`` with a device string).
        protocol: Timing protocol; defaults to :data:`PEAK_PROTOCOL`.
        matmul_n: Matrix size (default 512 on the CPU, 8192 on a GPU).
        copy_bytes: Bytes copied per call (default 64 MiB on the CPU, 1 GiB on a GPU).
        tf32: Run an fp32 matmul on a GPU with TF32 on; default: what the deployment uses
            (:func:`matmul_math`), off with a device string.

    Returns:
        ``device``, ``precision``, ``math`` (``"tf32"`` or ``""``), ``threads``, ``peak_flops``, ``peak_bytes_per_s``,
        ``best_flops``, ``best_bytes_per_s``, ``method`` (how they were measured), ``statistic``,
        and the ``matmul`` / ``copy`` details (size, median and min ms, n, unstable). JSON-able.
    """
    import torch

    from latbench.profiling.backends._timing import CallablePrepared
    from latbench.profiling.protocol import measure

    if isinstance(deploy, str):
        config = DeployConfig(backend="torch", device=deploy, mode="eager", precision=precision or "fp32")
    else:
        config = DeployConfig(
            backend="torch",
            device=deploy.device,
            mode="eager",
            precision=precision or deploy.precision,
            threads=deploy.threads,
        )
    gpu = config.device_type == "cuda"
    if tf32 is None:
        tf32 = not isinstance(deploy, str) and matmul_math(deploy) == "tf32"
    math = "tf32" if tf32 and gpu and config.precision == "fp32" else ""
    if gpu and not torch.cuda.is_available():
        raise LatbenchError("peaks", f"{config.device} asked for, but torch sees no GPU")
    device = torch.device(config.device)
    n = int(matmul_n or (GPU_MATMUL_N if gpu else CPU_MATMUL_N))
    nbytes = int(copy_bytes or (GPU_COPY_BYTES if gpu else CPU_COPY_BYTES))
    protocol = protocol or PEAK_PROTOCOL
    gpu_index = None
    if config.gpu_index is not None:
        from latbench.profiling.fingerprint import nvml_index

        gpu_index = nvml_index(config.gpu_index)  # NVML's number of the GPU, whose state is read around

    matmul_fn, kernel = _matmul(config, device, n)
    src = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    dst = torch.empty_like(src)

    def copy() -> Any:
        return dst.copy_(src)

    results = {}
    for name, fn in (("matmul", matmul_fn), ("copy", copy)):
        prepared = CallablePrepared(config, fn)
        try:
            with _math_mode(math, gpu):
                results[name] = measure(prepared, protocol, gpu_index)
        finally:
            prepared.close()
    flops = 2.0 * n**3
    moved = 2.0 * nbytes  # one read and one write of every byte
    mm, cp = results["matmul"].stats, results["copy"].stats
    return {
        "device": config.device,
        "precision": config.precision,
        "math": math,
        "threads": config.threads,
        "peak_flops": flops / (mm.median_ms * 1e-3),
        "peak_bytes_per_s": moved / (cp.median_ms * 1e-3),
        "best_flops": flops / (mm.min_ms * 1e-3),
        "best_bytes_per_s": moved / (cp.min_ms * 1e-3),
        "statistic": "median",
        "method": (
            f"latbench protocol over {kernel}{' with TF32' if math else ''} (2·n³ FLOPs per call) "
            f"and Tensor.copy_ of {nbytes / 2**20:.0f} MiB "
            f"(read + write counted) with torch {torch.__version__} on {config.device}"
        ),
        "matmul": {"n": n, "flops_per_call": flops, **_summary(results["matmul"])},
        "copy": {"bytes_per_call": moved, **_summary(results["copy"])},
    }


def _math_mode(math: str, gpu: bool) -> Any:
    """TF32 on or off for a GPU's matmul (both set explicitly: the peak must not take a global default)."""
    import contextlib

    if not gpu:
        return contextlib.nullcontext()
    from latbench.profiling.backends.torch_cuda import tf32

    return tf32(math == "tf32")


def _summary(m: Any) -> dict[str, Any]:
    return {"median_ms": m.stats.median_ms, "min_ms": m.stats.min_ms, "n_samples": m.stats.n, "unstable": m.unstable}


def _matmul(config: DeployConfig, device: Any, n: int) -> tuple[Any, str]:
    import torch

    from latbench.profiling.base import torch_dtype

    gen = torch.Generator(device="cpu").manual_seed(0)
    if config.precision == "int8":
        from latbench.profiling.backends.torch_cpu import quantize_dynamic_int8

        linear, _ = quantize_dynamic_int8(torch.nn.Sequential(torch.nn.Linear(n, n, bias=False)))
        x = torch.randn(n, n, generator=gen)

        def quantized() -> Any:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return linear(x)

        return quantized, f"a dynamically quantised nn.Linear ({n}→{n}, int8 weights) on {n} rows"
    dtype = torch_dtype(config.precision)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)

    def matmul() -> Any:
        return torch.matmul(a, b, out=out)

    return matmul, f"torch.matmul ({n}×{n} @ {n}×{n}, {config.precision})"
