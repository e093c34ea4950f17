"""The digits ViT: a model, its data, a CPU latency table of its blocks, and measured model latency.

scikit-learn's 8x8 digits (no download; :mod:`latbench.supernet.data`) read by a
small ViT (2x2 patches: 16 patches + a class token). Its block LUT is measured
here with latbench's profiler (backend and interleaved timing protocol): a
3-point grid per axis, which multilinear interpolation makes exact for any cost
that is multilinear in the block's dimensions (FLOPs are), so the grid only has
to catch how far real kernels depart from that. Every group of points is timed
together with a reference block, so that a machine whose speed drifts still
gives a consistent table (see :func:`measure_lut`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
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
            warmup_calls=5,
            warmup_s=0.05,
            min_samples=20,
            max_samples=100,
            target_rel_ci=0.02,
            budget_s=0.5,
            calls_per_round=4,
            min_rounds=5,
        )
    return ProtocolConfig()


def measure_lut(
    arch: Arch,
    out: str | os.PathLike[str],
    *,
    batch: int = 32,
    threads: int = 1,
    axes: dict[str, list[int]] | None = None,
    group_size: int = 8,
    quick: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> LookupTable:
    """Measure a block LUT for ``arch`` on this CPU (torch eager, fp32) and write it to ``out``.

    Every group of ``group_size`` grid points is timed in interleaved rounds *together with a
    reference block* (the largest point); a point's value is its median over the reference's
    median in the same rounds, times the reference's median over all groups. Why: on a shared
    machine the speed of a core drifts (by 2x on a busy 2-vCPU box, when the SMT sibling is
    taken), and points measured minutes apart would otherwise disagree, while ratios within
    one interleaved group hold. (``build-lut`` does not normalise so: see the note in
    :func:`latbench.lut.build.lut_from_store`.)

    Args:
        arch: The model whose blocks the table prices (a vit).
        out: The table file.
        batch: Images per call.
        threads: Intra-op threads.
        axes: The grid (default :func:`lut_axes`).
        group_size: Grid points interleaved with one reference measurement.
        quick: A lighter protocol (a few tenths of a second per point).
        on_progress: ``(done, total)`` after each group.
    """
    import itertools
    import statistics

    from latbench.lut.build import hardware_name
    from latbench.lut.table import Axis, TableMeta
    from latbench.models.build import block_inputs, build_block
    from latbench.profiling.base import get_backend
    from latbench.profiling.protocol import measure_interleaved
    from latbench.space.arch import LayerSpec

    if arch.family != "vit":
        raise LatbenchError("--lut measure", f"measures vit blocks, not {arch.family!r}")
    grid = axes or lut_axes(arch)
    names = ("emb", "heads", "qk_dim", "v_dim", "mlp")
    table_axes = tuple(Axis(n, tuple(grid[n])) for n in names)
    deploy = _deploy(batch, threads)
    protocol = _protocol(quick)
    backend = get_backend(deploy)

    def block(point: dict[str, int]) -> Any:
        spec = LayerSpec(point["heads"], point["qk_dim"], point["v_dim"], point["mlp"])
        one = Arch(family="vit", hidden=point["emb"], layers=(spec,), **arch.extras)
        return backend.prepare(build_block(one, 0), block_inputs(one, batch))

    points = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    reference = block({n: max(grid[n]) for n in names})
    ratios: list[tuple[dict[str, int], float, bool]] = []
    reference_ms: list[float] = []
    try:
        for start in range(0, len(points), group_size):
            chunk = points[start : start + group_size]
            prepared = [block(p) for p in chunk]
            try:
                ref, *rest = measure_interleaved([reference, *prepared], protocol)
            finally:
                for p in prepared:
                    p.close()
            reference_ms.append(ref.median_ms)
            ratios += [(p, m.median_ms / ref.median_ms, m.unstable) for p, m in zip(chunk, rest)]
            if on_progress is not None:
                on_progress(min(start + group_size, len(points)), len(points))
    finally:
        reference.close()
    ref_ms = statistics.median(reference_ms)
    records = [{**p, "latency_ms": r * ref_ms, "unstable": u} for p, r, u in ratios]
    meta = TableMeta(
        family="vit",
        unit="ms",
        device=hardware_name("cpu"),
        deploy={k: v for k, v in deploy.to_dict().items() if k not in ("batch", "seq_len", "options")},
        workload={"batch": batch, "image_size": arch.image_size, "patch_size": arch.patch_size},
        statistic="median",
        source=(
            f"latbench.pruning.digits.measure_lut for {arch.describe()}: medians relative to a reference block "
            f"timed in every group of {group_size} (reference median {ref_ms:.3f} ms over {len(reference_ms)} groups)"
        ),
    )
    table = LookupTable.from_records(table_axes, records, meta, origin=str(out))
    table.save(out)
    return table


def measure_latency_ms(
    models: Sequence[nn.Module], arch: Arch, *, batch: int = 32, threads: int = 1, quick: bool = False
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
