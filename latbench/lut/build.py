"""Building a lookup table: profile every grid point as a single block, or collect existing block rows.

A grid file names the family, the axes and their values, and optionally the
family settings (vocabulary, image and patch size ...)::

    {"family": "vit", "axes": {"emb": [192, 384], "heads": [3, 6], "qk_dim": [32, 64],
                               "v_dim": [32, 64], "mlp": [768, 1536]},
     "extras": {"image_size": 224, "patch_size": 16}}

Axes: ``emb, heads, qk_dim, v_dim, mlp`` for ``vit``; ``hidden, heads, qk_dim, mlp``
(``v_dim`` optional, else equal to ``qk_dim``) for ``bert`` and ``gpt``. Every grid
point becomes a one-block architecture measured through the profiler's result
store, so an interrupted build started again resumes where it stopped.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.lut.table import BLOCK_AXES, Axis, LookupTable, TableMeta
from latbench.space import FAMILIES, FAMILY_EXTRAS, Arch, LayerSpec

STATISTIC_COLUMNS = {"median": "median_ms", "p10": "p10_ms", "min": "min_ms", "mean": "mean_ms"}


def _axis_names(family: str, given: Mapping[str, Any]) -> tuple[str, ...]:
    names = BLOCK_AXES[family]
    if family != "vit" and "v_dim" in given:
        names = (*names[:3], "v_dim", *names[3:])
    return tuple(names)


def read_grid(path: str | Path) -> tuple[str, tuple[Axis, ...], dict[str, int]]:
    """Read and validate a grid file: ``(family, axes, extras)``; errors name the file."""
    from latbench.io import read_json

    where = str(path)
    data = read_json(path)
    if not isinstance(data, Mapping):
        raise LatbenchError(where, "expected a JSON object with 'family' and 'axes'")
    unknown = sorted(set(data) - {"family", "axes", "extras"})
    if unknown:
        raise LatbenchError(where, f"unknown key {unknown[0]!r}")
    family = data.get("family")
    if family not in FAMILIES:
        raise LatbenchError(where, f"unknown or missing family {family!r} (expected one of {', '.join(FAMILIES)})")
    raw = data.get("axes")
    if not isinstance(raw, Mapping):
        raise LatbenchError(where, "missing 'axes' (an object of axis name -> list of values)")
    names = _axis_names(family, raw)
    extra_axes = sorted(set(raw) - set(names))
    if extra_axes:
        raise LatbenchError(where, f"axis {extra_axes[0]!r} is not an axis of {family} blocks ({', '.join(names)})")
    axes = []
    for name in names:
        values = raw.get(name)
        if values is None:
            raise LatbenchError(where, f"missing axis {name!r}")
        if not isinstance(values, list) or not values:
            raise LatbenchError(where, f"axis {name!r}: expected a non-empty list of integers")
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
            raise LatbenchError(where, f"axis {name!r}: values must be integers >= 1")
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise LatbenchError(where, f"axis {name!r}: values must be strictly increasing")
        axes.append(Axis(name, tuple(float(v) for v in values)))
    extras = data.get("extras", {})
    if not isinstance(extras, Mapping):
        raise LatbenchError(where, "'extras' must be an object")
    bad = sorted(set(extras) - set(FAMILY_EXTRAS[family]))
    if bad:
        raise LatbenchError(where, f"{bad[0]!r} is not a setting of family {family!r}")
    return family, tuple(axes), dict(extras)


def grid_archs(family: str, axes: tuple[Axis, ...], extras: Mapping[str, int]) -> list[tuple[dict[str, int], Arch]]:
    """Every grid point with its one-block architecture."""
    names = [a.name for a in axes]
    out = []
    for values in itertools.product(*(a.values for a in axes)):
        point = {n: int(v) for n, v in zip(names, values)}
        hidden = point.get("emb", point.get("hidden"))
        spec = LayerSpec(
            heads=point["heads"], qk_dim=point["qk_dim"], v_dim=point.get("v_dim", point["qk_dim"]), mlp=point["mlp"]
        )
        try:
            arch = Arch(family=family, hidden=hidden, layers=(spec,), **extras)  # type: ignore[arg-type]
        except LatbenchError as exc:
            raise LatbenchError("grid", f"point {point}: {exc}") from None
        out.append((point, arch))
    return out


def hardware_name(device: str, env: Mapping[str, Any] | None = None) -> str:
    """What ``cpu`` or ``cuda:N`` is on the machine of fingerprint ``env`` (this machine when None).

    A table records the hardware, not the device string: ``cpu`` on another machine is another device.
    """
    if env is None:
        from latbench.profiling.fingerprint import collect

        env = collect().to_dict()
    if device == "cpu":
        return str(env.get("cpu", {}).get("model") or "cpu")
    gpus = env.get("gpus") or []
    idx = int(device.partition(":")[2] or 0)
    for g in gpus:
        if g.get("index") == idx and g.get("name"):
            return str(g["name"])
    return device


def _meta(
    family: str, deploy: Any, env: dict[str, Any] | None, env_id: str | None, statistic: str, source: str, arch: Arch
) -> TableMeta:
    from latbench import __version__

    workload: dict[str, Any] = {"batch": deploy.batch}
    if family == "vit":
        workload.update(image_size=arch.image_size, patch_size=arch.patch_size)
    else:
        workload["seq_len"] = deploy.seq_len
    device = hardware_name(deploy.device, env)
    return TableMeta(
        family=family,
        unit="ms",
        device=device,
        deploy={
            **{k: v for k, v in deploy.to_dict().items() if k not in ("batch", "seq_len", "options")},
            **dict(deploy.options),
        },
        workload=workload,
        env_id=env_id,
        env=env,
        latbench_version=__version__,
        statistic=statistic,
        source=source,
    )


def build_lut(
    grid: str | Path,
    deploy: Any,
    protocol: Any,
    out: str | Path,
    *,
    store: str | Path | None = None,
    statistic: str = "median",
    seed: int = 0,
    group_size: int = 8,
    source: str = "",
    on_progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
) -> LookupTable:
    """Profile every point of ``grid`` as one block (resumable through ``store``) and write the table to ``out``."""
    from latbench.profiling.job import WorkItem, check_workload, profile_items
    from latbench.profiling.store import ResultStore

    if statistic not in STATISTIC_COLUMNS:
        raise LatbenchError("--statistic", f"expected one of {', '.join(STATISTIC_COLUMNS)}, got {statistic!r}")
    family, axes, extras = read_grid(grid)
    check_workload(family, deploy)
    points = grid_archs(family, axes, extras)
    store_path = Path(store) if store is not None else Path(out).with_suffix(".parquet")
    if store_path.resolve() == Path(out).resolve():
        raise LatbenchError("--store", "must differ from --out")
    items = [WorkItem(arch, "block", 0) for _, arch in points]
    profile_items(
        items,
        f"lut:{Path(grid).name}",
        deploy,
        protocol,
        store_path,
        seed=seed,
        group_size=group_size,
        on_progress=on_progress,
    )
    st = ResultStore.open_readonly(store_path)
    df = st.to_frame()
    df = df[(df.scope == "block") & (df.deploy_key == deploy.key())]
    by_arch = {a: r for a, r in zip(df.arch, df.to_dict("records"))}
    col = STATISTIC_COLUMNS[statistic]
    records = []
    env_id = None
    for point, arch in points:
        row = by_arch.get(arch.to_json())
        if row is None:
            continue
        env_id = row["env_id"]
        records.append({**point, "latency_ms": float(row[col]), "unstable": bool(row["unstable"])})
    env = st.fingerprints().get(env_id) if env_id else None
    meta = _meta(family, deploy, env, env_id, statistic, source or f"latbench build-lut --grid {grid}", points[0][1])
    table = LookupTable.from_records(axes, records, meta, origin=str(out))
    table.save(out)
    return table


def lut_from_store(
    store: str | Path,
    out: str | Path,
    *,
    deploy_key: str | None = None,
    statistic: str = "median",
    source: str = "",
) -> LookupTable:
    """A table from the block rows of an existing result store (axes = the values found; gaps stay missing).

    Not here: the reference-block normalisation of :func:`latbench.pruning.digits.measure_lut`
    (each point's median over a full-size block timed in the same interleaved group). A store
    row is one self-contained measurement of one (block, deployment), which is what makes
    :func:`build_lut` resumable; a ratio to a reference needs that reference timed in every
    group and its per-group median kept with each row, i.e. a change to the profiler's job
    runner and store schema (``latbench.profiling``), not to the table. Until the profiler
    records it, tables built here are as consistent as the machine was while they were measured.
    """
    from latbench.profiling.config import DeployConfig
    from latbench.profiling.store import ResultStore

    if statistic not in STATISTIC_COLUMNS:
        raise LatbenchError("--statistic", f"expected one of {', '.join(STATISTIC_COLUMNS)}, got {statistic!r}")
    st = ResultStore.open_readonly(store)
    df = st.to_frame()
    df = df[df.scope == "block"]
    if df.empty:
        raise LatbenchError(str(store), "holds no block measurements (profile with --blocks)")
    keys = sorted(set(df.deploy_key))
    if deploy_key is None:
        if len(keys) > 1:
            raise LatbenchError(
                str(store), f"holds {len(keys)} deployments; choose one with --deploy-key ({keys[0]}, ...)"
            )
        deploy_key = keys[0]
    elif deploy_key not in keys:
        raise LatbenchError("--deploy-key", f"not in {store}")
    df = df[df.deploy_key == deploy_key]
    deploy = DeployConfig.from_key(deploy_key)
    archs = [Arch.from_json(a) for a in df.arch]
    family = archs[0].family
    if any(a.family != family for a in archs):
        raise LatbenchError(str(store), "mixes model families; a table holds one family's blocks")
    col = STATISTIC_COLUMNS[statistic]
    pts: dict[tuple[int, ...], dict[str, Any]] = {}
    names = BLOCK_AXES[family] if family == "vit" else (*BLOCK_AXES[family][:3], "v_dim", BLOCK_AXES[family][3])
    for arch, idx, value, unstable, env_id in zip(archs, df.block_index, df[col], df.unstable, df.env_id):
        s = arch.layers[int(idx)]
        dims = {
            "emb": arch.hidden,
            "hidden": arch.hidden,
            "heads": s.heads,
            "qk_dim": s.qk_dim,
            "v_dim": s.v_dim,
            "mlp": s.mlp,
        }
        point = tuple(dims[n] for n in names)
        # The same block measured inside several architectures: keep the most precise measurement.
        rec = {**dict(zip(names, point)), "latency_ms": float(value), "unstable": bool(unstable), "env_id": env_id}
        if point not in pts or (pts[point]["unstable"] and not unstable):
            pts[point] = rec
    if family != "vit" and all(r["v_dim"] == r["qk_dim"] for r in pts.values()):
        names = tuple(n for n in names if n != "v_dim")
    axes = tuple(Axis(n, tuple(sorted({float(r[n]) for r in pts.values()}))) for n in names)
    env_ids = {r["env_id"] for r in pts.values()}
    env_id = env_ids.pop() if len(env_ids) == 1 else None
    env = st.fingerprints().get(env_id) if env_id else None
    meta = _meta(family, deploy, env, env_id, statistic, source or f"latbench build-lut --from {store}", archs[0])
    records = [
        {n: r[n] for n in names} | {"latency_ms": r["latency_ms"], "unstable": r["unstable"]} for r in pts.values()
    ]
    table = LookupTable.from_records(axes, records, meta, origin=str(out))
    table.save(out)
    return table


def grid_json(family: str, axes: Mapping[str, list[int]], extras: Mapping[str, int] | None = None) -> str:
    """A grid file's text (for scripts that write the grids they ship)."""
    return json.dumps({"family": family, "axes": dict(axes), "extras": dict(extras or {})}, indent=2)
