"""Latency measured on this CPU for pruning: a block LUT around a model's dims, and whole models interleaved.

Both the digits ViT and a BERT encoder are measured the same way, with latbench's
profiler (backend and interleaved timing protocol). The block LUT is a 3-point grid
per axis, which multilinear interpolation makes exact for any cost that is
multilinear in the block's dimensions (FLOPs are), so the grid only has to catch how
far real kernels depart from that. Every group of points is timed together with a
reference block, so that a machine whose speed drifts still gives a consistent table
(see :func:`measure_lut`).

The table's axes are the family's block axes (:data:`latbench.lut.table.BLOCK_AXES`:
``emb`` for a ViT, ``hidden`` for BERT) plus ``v_dim``: the pruner shrinks V apart
from Q/K, and a table that prices it apart is what its latency term needs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from latbench.errors import LatbenchError
from latbench.lut.table import LookupTable
from latbench.space.arch import Arch

__all__ = ["lut_axes", "lut_axis_names", "measure_latency_ms", "measure_lut"]

#: Families whose blocks :func:`measure_lut` measures (the ones the pruner prunes).
FAMILIES: tuple[str, ...] = ("vit", "bert")


def lut_axis_names(family: str) -> tuple[str, ...]:
    """Axes of a measured table: the family's block axes with ``v_dim`` after ``qk_dim``."""
    width = "emb" if family == "vit" else "hidden"
    return (width, "heads", "qk_dim", "v_dim", "mlp")


def lut_axes(arch: Arch) -> dict[str, list[int]]:
    """A grid around ``arch``'s blocks: for each dimension its maximum, half and quarter (heads: 1, half, all)."""

    def three(top: int, low: int) -> list[int]:
        return sorted({max(low, top // 4), max(low, top // 2), top})

    specs = arch.layers
    width = lut_axis_names(arch.family)[0]
    return {
        width: three(arch.hidden, 1),
        "heads": sorted({1, max(1, max(s.heads for s in specs) // 2), max(s.heads for s in specs)}),
        "qk_dim": three(max(s.qk_dim for s in specs), 1),
        "v_dim": three(max(s.v_dim for s in specs), 1),
        "mlp": three(max(s.mlp for s in specs), 1),
    }


def _check_family(arch: Arch) -> None:
    if arch.family not in FAMILIES:
        raise LatbenchError("--lut measure", f"measures {' and '.join(FAMILIES)} blocks, not {arch.family!r}")


def _seq_len(arch: Arch, seq_len: int | None) -> int | None:
    if arch.family == "vit":
        return None
    if seq_len is None:
        raise LatbenchError("seq_len", f"a {arch.family} model is measured at a sequence length; none was given")
    return seq_len


def _deploy(batch: int, threads: int, seq_len: int | None = None) -> Any:
    from latbench.profiling.config import DeployConfig

    return DeployConfig(backend="torch", device="cpu", threads=threads, batch=batch, seq_len=seq_len)


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
    seq_len: int | None = None,
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
        arch: The model whose blocks the table prices (a vit or a bert).
        out: The table file.
        batch: Images (vit) or sequences (bert) per call.
        threads: Intra-op threads.
        seq_len: Tokens per sequence (bert; the workload the table is recorded for).
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

    _check_family(arch)
    seq_len = _seq_len(arch, seq_len)
    grid = axes or lut_axes(arch)
    names = lut_axis_names(arch.family)
    width = names[0]
    table_axes = tuple(Axis(n, tuple(grid[n])) for n in names)
    deploy = _deploy(batch, threads, seq_len)
    protocol = _protocol(quick)
    backend = get_backend(deploy)

    def block(point: dict[str, int]) -> Any:
        spec = LayerSpec(point["heads"], point["qk_dim"], point["v_dim"], point["mlp"])
        one = Arch(family=arch.family, hidden=point[width], layers=(spec,), **arch.extras)
        return backend.prepare(build_block(one, 0), block_inputs(one, batch, seq_len))

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
        family=arch.family,
        unit="ms",
        device=hardware_name("cpu"),
        deploy={k: v for k, v in deploy.to_dict().items() if k not in ("batch", "seq_len", "options")},
        workload=(
            {"batch": batch, "image_size": arch.image_size, "patch_size": arch.patch_size}
            if arch.family == "vit"
            else {"batch": batch, "seq_len": seq_len}
        ),
        statistic="median",
        source=(
            f"latbench.pruning.measure.measure_lut for {arch.describe()}: medians relative to a reference block "
            f"timed in every group of {group_size} (reference median {ref_ms:.3f} ms over {len(reference_ms)} groups)"
        ),
    )
    table = LookupTable.from_records(table_axes, records, meta, origin=str(out))
    table.save(out)
    return table


def measure_latency_ms(
    models: Sequence[nn.Module],
    arch: Arch,
    *,
    batch: int = 32,
    threads: int = 1,
    seq_len: int | None = None,
    quick: bool = False,
) -> list[float]:
    """Median latency (ms) of whole models on this CPU, measured interleaved (A B A B ...) for fair ratios.

    Args:
        models: Models of ``arch``'s family and workload.
        arch: Any of them (for the input shape).
        batch: Images (vit) or sequences (bert) per call.
        threads: Intra-op threads.
        seq_len: Tokens per sequence (bert).
        quick: A lighter protocol.
    """
    from latbench.models.build import example_inputs
    from latbench.profiling.base import get_backend
    from latbench.profiling.protocol import measure_interleaved

    _check_family(arch)
    seq_len = _seq_len(arch, seq_len)
    deploy = _deploy(batch, threads, seq_len)
    backend = get_backend(deploy)
    inputs = example_inputs(arch, batch, seq_len)
    prepared = [backend.prepare(m, inputs) for m in models]
    try:
        results = measure_interleaved(prepared, _protocol(quick))
    finally:
        for p in prepared:
            p.close()
    return [r.median_ms for r in results]
