"""Measuring whole models on the target for a search: the reference before it, the results after it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.space import Arch


def measure_models(
    archs: Sequence[Arch],
    space_name: str,
    deploy: Any,
    protocol: Any,
    *,
    keep: str | Path | None = None,
    seed: int = 0,
    on_progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
) -> list[dict[str, Any]]:
    """Measure whole models of ``archs`` in *one* interleaved group; one store row per architecture, in order.

    The rows go through a fresh result store (with the environment fingerprint), copied to
    ``keep`` when given, so a measurement is never reused from an earlier run by accident.
    """
    from latbench.profiling.job import check_workload, profile_archs
    from latbench.profiling.store import read_store

    distinct = list({a.to_json(): a for a in archs}.values())
    if not distinct:
        raise LatbenchError("measure", "no architectures to measure")
    check_workload(distinct[0].family, deploy)
    with tempfile.TemporaryDirectory(prefix="latbench-measure-") as tmp:
        store = Path(tmp) / "measurements.parquet"
        profile_archs(
            distinct,
            space_name,
            deploy,
            protocol,
            store,
            blocks=False,
            group_size=len(distinct),
            seed=seed,
            on_progress=on_progress,
        )
        frame = read_store(store)
        if keep is not None:
            from latbench.io import atomic_write

            atomic_write(keep, lambda p: shutil.copyfile(store, p))
    by_arch = {r["arch"]: r for r in frame.to_dict("records") if r["scope"] == "model"}
    return [by_arch[a.to_json()] for a in archs]
