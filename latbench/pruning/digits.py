"""The digits ViT: a model, its data, a CPU latency table of its blocks, and measured model latency.

scikit-learn's 8x8 digits (no download; :mod:`latbench.supernet.data`) read by a
small ViT (2x2 patches: 16 patches + a class token). Its block LUT is measured
here with latbench's profiler and LUT builder (:func:`latbench.lut.build.build_lut`):
a 3-point grid per axis, which multilinear interpolation makes exact for any
cost that is multilinear in the block's dimensions (FLOPs are), so the grid
only has to catch how far real kernels depart from that.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from latbench.errors import LatbenchError
from latbench.lut.table import LookupTable
from latbench.space.arch import Arch

__all__ = [
    "DIGITS_MODEL",
    "digits_arch",
    "digits_data",
    "is_digits_arch",
    "lut_axes",
    "measure_latency_ms",
    "measure_lut",
]

#: The ``--model`` name of the digits ViT.
DIGITS_MODEL = "vit-digits"


def digits_arch(hidden: int = 64, n_layers: int = 4, heads: int = 4, qk_dim: int = 16, mlp: int = 128) -> Arch:
    """The digits ViT's architecture (default: 4 blocks of 4 heads x 16, MLP 128, width 64)."""
    from latbench.supernet.data import digits_vit_extras

    return Arch.uniform_arch("vit", hidden, n_layers, heads, qk_dim, mlp, **digits_vit_extras())


def is_digits_arch(arch: Arch) -> bool:
    """Whether ``arch`` reads the digits (8x8, one channel, 10 classes)."""
    from latbench.supernet.data import digits_vit_extras

    return arch.family == "vit" and arch.extras == digits_vit_extras()


def digits_data(seed: int = 0) -> tuple[Any, Any, Any]:
    """Train, validation and test splits of the digits (see :func:`latbench.supernet.data.digits_splits`)."""
    from latbench.supernet.data import digits_splits

    return digits_splits(seed=seed)


def lut_axes(arch: Arch) -> dict[str, list[int]]:
    """A grid around ``arch``'s blocks: for each dimension its maximum, half and quarter (heads: 1, half, all)."""

    def three(top: int, low: int) -> list[int]:
        return sorted({max(low, top // 4), max(low, top // 2), top})

    specs = arch.layers
    return {
        "emb": three(arch.hidden, 1),
        "heads": sorted({1, max(1, max(s.heads for s in specs) // 2), max(s.heads for s in specs)}),
        "qk_dim": three(max(s.qk_dim for s in specs), 1),
        "v_dim": three(max(s.v_dim for s in specs), 1),
        "mlp": three(max(s.mlp for s in specs), 1),
    }


def _deploy(batch: int, threads: int) -> Any:
    from latbench.profiling.config import DeployConfig

    return DeployConfig(backend="torch", device="cpu", threads=threads, batch=batch)


def _protocol(quick: bool) -> Any:
    from latbench.profiling.config import ProtocolConfig

    if quick:
        # A table for pruning decisions, not for publication: fewer samples, a looser CI.
        return ProtocolConfig(
            warmup_calls=3, warmup_s=0.05, min_samples=10, max_samples=60, target_rel_ci=0.03, budget_s=0.5
        )
    return ProtocolConfig()


def measure_lut(
    arch: Arch,
    out: str | os.PathLike[str],
    *,
    batch: int = 256,
    threads: int = 1,
    axes: dict[str, list[int]] | None = None,
    quick: bool = True,
    on_progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
) -> LookupTable:
    """Measure a block LUT for ``arch`` on this CPU (torch eager, fp32) and write it to ``out``.

    The profiler's result store sits beside ``out`` (``.parquet``), so an interrupted build resumes.

    Args:
        arch: The model whose blocks the table prices (a vit).
        out: The table file.
        batch: Images per call (large enough that compute, not dispatch, dominates).
        threads: Intra-op threads.
        axes: The grid (default :func:`lut_axes`).
        quick: A lighter protocol (about a quarter of a second per point).
        on_progress: ``(done, total, row)`` after each point.
    """
    from latbench.io import atomic_write_text
    from latbench.lut.build import build_lut, grid_json

    if arch.family != "vit":
        raise LatbenchError("--lut measure", f"measures vit blocks, not {arch.family!r}")
    out = Path(out)
    grid = out.with_suffix(".grid.json")
    atomic_write_text(grid, grid_json("vit", axes or lut_axes(arch), arch.extras))
    return build_lut(
        grid,
        _deploy(batch, threads),
        _protocol(quick),
        out,
        store=out.with_suffix(".parquet"),
        source=f"latbench.pruning.digits.measure_lut for {arch.describe()}",
        on_progress=on_progress,
    )


def measure_latency_ms(
    models: Sequence[nn.Module], arch: Arch, *, batch: int = 256, threads: int = 1, quick: bool = False
) -> list[float]:
    """Median latency (ms) of whole models on this CPU, measured interleaved (A B A B ...) for fair ratios.

    Args:
        models: Models of ``arch``'s family and workload.
        arch: Any of them (for the input shape).
        batch: Images per call.
        threads: Intra-op threads.
        quick: A lighter protocol.
    """
    from latbench.models.build import example_inputs
    from latbench.profiling.base import get_backend
    from latbench.profiling.protocol import measure_interleaved

    deploy = _deploy(batch, threads)
    backend = get_backend(deploy)
    inputs = example_inputs(arch, batch)
    prepared = [backend.prepare(m, inputs) for m in models]
    try:
        results = measure_interleaved(prepared, _protocol(quick))
    finally:
        for p in prepared:
            p.close()
    return [r.median_ms for r in results]
