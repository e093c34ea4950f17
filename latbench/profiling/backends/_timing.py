"""Timing loops and cache flushers shared by the backends (torch is imported here; no other library).

Two ways to time a call, as MEASUREMENT.md prescribes:

- host: ``time.perf_counter_ns`` immediately around each call (CPU backends: the
  call returns when the work is done);
- CUDA: one event pair per call recorded on the stream that runs the work, a
  single synchronise after the loop (a synchronise inside the loop would add
  its own latency and let the GPU idle between calls).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from latbench.errors import LatbenchError
from latbench.profiling.base import Prepared, first_line
from latbench.profiling.config import DeployConfig

#: Input copies a cold-cache CPU run rotates through.
COLD_INPUT_COPIES = 4
#: Fallback last-level cache size when sysfs does not tell (bytes).
DEFAULT_LLC_BYTES = 32 * 2**20
#: Fallback GPU L2 size when torch does not tell (bytes); an H100 has 50 MiB.
DEFAULT_L2_BYTES = 64 * 2**20


def cuda_problem(config: DeployConfig) -> str | None:
    """Why torch cannot run on ``config.device`` (a CPU build, no GPU, too few GPUs), or ``None`` if it can.

    Every GPU backend needs torch's CUDA view: buffers, streams and events are torch's.
    """
    if not torch.cuda.is_available():
        build = "this torch is a CPU build" if torch.version.cuda is None else "torch sees no GPU"
        return f"{build}: torch {torch.__version__}"
    index = config.gpu_index or 0
    if index >= torch.cuda.device_count():
        return f"{config.device} asked for, torch sees {torch.cuda.device_count()} GPU(s)"
    return None


@contextlib.contextmanager
def gpu_memory_errors(where: str) -> Iterator[None]:
    """Turn a CUDA out-of-memory error into one line (the workload does not fit), not a traceback."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as exc:
        raise LatbenchError(
            where, f"out of GPU memory ({first_line(exc)}); try a smaller batch, sequence or model"
        ) from exc


def time_host_calls(fn: Callable[[], Any], n: int, before: Callable[[int], None] | None = None) -> list[float]:
    """Run ``fn`` ``n`` times; return per-call wall times in ms. ``before(i)`` runs untimed before call ``i``."""
    out: list[float] = []
    clock = time.perf_counter_ns
    for i in range(n):
        if before is not None:
            before(i)
        t0 = clock()
        fn()
        t1 = clock()
        out.append((t1 - t0) / 1e6)
    return out


class CudaEventTimer:
    """Times calls with CUDA events on one stream; the work must be launched on that stream.

    Events are pooled and reused between :meth:`time_calls` calls: reuse is safe
    because every call synchronises before it returns.
    """

    def __init__(self, stream: torch.cuda.Stream) -> None:
        self.stream = stream
        self._starts: list[torch.cuda.Event] = []
        self._ends: list[torch.cuda.Event] = []

    def _pool(self, n: int) -> None:
        while len(self._starts) < n:
            self._starts.append(torch.cuda.Event(enable_timing=True))
            self._ends.append(torch.cuda.Event(enable_timing=True))

    def time_calls(
        self,
        fn: Callable[[], Any],
        n: int,
        before: Callable[[int], None] | None = None,
        calls_per_sample: int = 1,
        busy: Callable[[], None] | None = None,
    ) -> list[float]:
        """``n`` samples of ``fn`` in ms, each one event pair around ``calls_per_sample`` calls (their mean).

        ``before(i)`` is enqueued on the stream before sample ``i``'s start event, so it is not timed.
        ``busy()`` runs on the host once everything is queued and before the synchronise: the GPU is
        then working through the queue (NVML reads its clocks under load), and no event pair waits on it.
        The caller makes :attr:`stream` current (``with torch.cuda.stream(timer.stream)``).
        """
        self._pool(n)
        stream = self.stream
        for i in range(n):
            if before is not None:
                before(i)
            self._starts[i].record(stream)
            for _ in range(calls_per_sample):
                fn()
            self._ends[i].record(stream)
        if busy is not None:
            busy()
        # The one synchronise: after the loop, never inside it.
        stream.synchronize()
        return [self._starts[i].elapsed_time(self._ends[i]) / calls_per_sample for i in range(n)]


def llc_bytes() -> int:
    """Size of this CPU's last-level cache in bytes (Linux sysfs), or :data:`DEFAULT_LLC_BYTES`."""
    best_level, best_size = -1, 0
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level = int((index / "level").read_text().strip())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        try:
            size = int(text.rstrip("KMG")) * scale
        except ValueError:
            continue
        if level > best_level or (level == best_level and size > best_size):
            best_level, best_size = level, size
    return best_size or DEFAULT_LLC_BYTES


class HostCacheFlusher:
    """Overwrites a buffer twice the last-level cache, evicting weights and activations (CPU cold cache)."""

    def __init__(self, nbytes: int | None = None) -> None:
        self.nbytes = int(nbytes or 2 * llc_bytes())
        self._buf = torch.empty(self.nbytes, dtype=torch.uint8)
        self._value = 0

    def flush(self) -> None:
        # A changing value, so that no layer can skip writing identical bytes.
        self._value = (self._value + 1) % 251
        self._buf.fill_(self._value)


class CudaL2Flusher:
    """Overwrites a device buffer twice the GPU's L2 on the current stream (GPU cold cache)."""

    def __init__(self, device: torch.device) -> None:
        l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or DEFAULT_L2_BYTES)
        self.nbytes = 2 * l2
        self._buf = torch.empty(self.nbytes, dtype=torch.uint8, device=device)

    def flush(self) -> None:
        self._buf.zero_()


def input_copies(tensors: Sequence[torch.Tensor], copies: int = COLD_INPUT_COPIES) -> list[tuple[torch.Tensor, ...]]:
    """``copies`` independent clones of the inputs, for a cold-cache run to rotate through."""
    return [tuple(t.clone() for t in tensors) for _ in range(copies)]


class CallablePrepared(Prepared):
    """A zero-argument callable timed like a backend's model (used for the attainable peaks).

    On the CPU it is timed with ``perf_counter_ns`` under ``torch.inference_mode`` with
    ``config.threads`` threads; on a GPU with CUDA events on a private stream.
    """

    def __init__(self, config: DeployConfig, fn: Callable[[], Any], info: dict[str, Any] | None = None) -> None:
        super().__init__(config, build_ms=0.0, runtime=f"torch {torch.__version__}", info=info)
        self._fn = fn
        self._timer: CudaEventTimer | None = None
        if config.device_type == "cuda":
            device = torch.device(config.device)
            stream = torch.cuda.Stream(device)
            # The callable's tensors were filled on the default stream; its calls run on ours.
            stream.wait_stream(torch.cuda.current_stream(device))
            self._timer = CudaEventTimer(stream)

    def time_calls(self, n: int) -> list[float]:
        self._check_open(n)
        if self._timer is None:
            previous = torch.get_num_threads()
            if self.config.threads is not None:
                torch.set_num_threads(self.config.threads)
            try:
                with torch.inference_mode():
                    return time_host_calls(self._fn, n)
            finally:
                torch.set_num_threads(previous)
        with torch.cuda.device(torch.device(self.config.device)), torch.cuda.stream(self._timer.stream):
            with torch.inference_mode():
                return self._timer.time_calls(self._fn, n, busy=self.on_busy)
