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
"""

from __future__ import annotations

import warnings
from typing import Any

from latbench.errors import LatbenchError
from latbench.profiling.config import DeployConfig, ProtocolConfig

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
)


def measure_peaks(
    deploy: DeployConfig | str = "cpu",
    precision: str | None = None,
    *,
    protocol: ProtocolConfig | None = None,
    matmul_n: int | None = None,
    copy_bytes: int | None = None,
) -> dict[str, Any]:
    """Measure the attainable matmul FLOP/s and copy bandwidth of a device.

    Args:
        deploy: A deployment (its device, precision and threads are used; whatever its
            backend, the kernels run in torch) or a device string (``"cpu"``, ``"cuda:0"``).
        precision: Overrides the deployment's precision (``fp32`` with a device string).
        protocol: Timing protocol; defaults to :data:`PEAK_PROTOCOL`.
        matmul_n: Matrix size (default 512 on the CPU, 8192 on a GPU).
        copy_bytes: Bytes copied per call (default 64 MiB on the CPU, 1 GiB on a GPU).

    Returns:
        ``device``, ``precision``, ``threads``, ``peak_flops``, ``peak_bytes_per_s``,
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
            results[name] = measure(prepared, protocol, gpu_index)
        finally:
            prepared.close()
    flops = 2.0 * n**3
    moved = 2.0 * nbytes  # one read and one write of every byte
    mm, cp = results["matmul"].stats, results["copy"].stats
    return {
        "device": config.device,
        "precision": config.precision,
        "threads": config.threads,
        "peak_flops": flops / (mm.median_ms * 1e-3),
        "peak_bytes_per_s": moved / (cp.median_ms * 1e-3),
        "best_flops": flops / (mm.min_ms * 1e-3),
        "best_bytes_per_s": moved / (cp.min_ms * 1e-3),
        "statistic": "median",
        "method": (
            f"latbench protocol over {kernel} (2·n³ FLOPs per call) and Tensor.copy_ of {nbytes / 2**20:.0f} MiB "
            f"(read + write counted) with torch {torch.__version__} on {config.device}"
        ),
        "matmul": {"n": n, "flops_per_call": flops, **_summary(results["matmul"])},
        "copy": {"bytes_per_call": moved, **_summary(results["copy"])},
    }


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
