"""Training data for predictors: a latbench result store, or an imported table (HAT), in one parquet file.

A predictor trains from a parquet file of one of two kinds, told apart by the
file's schema metadata:

- a **result store** (:mod:`latbench.profiling.store`): its whole-model rows
  (``scope == "model"``) of one deployment; the target is a statistic of each
  row's samples (``median_ms`` by default, ``p10_ms``, ``min_ms`` or ``mean_ms``);
  features are computed from the ``arch`` column and the workload.
- an **imported table** (``latbench import hat``): given feature columns and one
  target column in ms, with metadata saying where it comes from and the device.

Either way a :class:`Dataset` carries where its numbers are valid
(:class:`Validity`: device, deployment, workload, environments) and the sha256
of the file, so a predictor's card can say what it was trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError

#: Schema-metadata key of an imported table, and its layout version.
META_DATASET = b"latbench_dataset"
DATASET_FORMAT = "latbench-table"
DATASET_SCHEMA_VERSION = 1

#: ``--statistic`` → the store column it reads.
STATISTIC_COLUMNS: dict[str, str] = {"median": "median_ms", "p10": "p10_ms", "min": "min_ms", "mean": "mean_ms"}

#: HAT's file names say the device (``wmt14ende_cpu_xeon_all.csv``); its paper names the parts.
HAT_DEVICES: dict[str, str] = {
    "cpu_xeon": "Intel Xeon E5-2640",
    "gpu_titanxp": "NVIDIA Titan Xp",
    "cpu_raspberrypi": "Raspberry Pi ARM Cortex-A72",
}
_HAT_NAME = re.compile(r"^(?P<task>[a-z0-9]+)_(?P<device>(?:cpu|gpu)_[a-z0-9]+?)(?:_all)?$")

#: Deployment fields that identify where a latency holds (the workload is kept apart).
DEPLOY_FIELDS: tuple[str, ...] = ("backend", "device", "mode", "precision", "threads", "cache")


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


#: How far (relative) a dimension may lie beyond the training architectures' before it is flagged.
DIM_TOLERANCE = 0.15


@dataclass(frozen=True)
class Validity:
    """Where a predictor's (or a data set's) latencies hold.

    Attributes:
        source: ``latbench-store``, or the imported table's source (``hat``).
        device: The hardware (CPU model or GPU name), or None when unknown.
        deploy: The deployment without its workload: backend, device (``cpu``/``cuda:N``),
            mode, precision, threads, cache and backend options; empty when unknown.
        workload: Ranges seen, ``{"batch": [lo, hi], "seq_len": [lo, hi]}`` (empty for tables).
        env_ids: Environment fingerprints of the measurements.
        family: Model family (stores), or None.
        spaces: Search spaces the architectures came from (stores).
        task: The imported table's data set (HAT: ``wmt14ende`` ...), or None.
        dims: Ranges of the architectures' dimensions seen (stores), ``{"hidden": [lo, hi],
            "layers": ..., "heads": ..., "qk_dim": ..., "v_dim": ..., "mlp": ...}``; beyond them a
            prediction is an extrapolation (:meth:`dim_problems`). Empty when unknown.
        workloads: The (batch, seq_len) points measured (stores); a workload inside ``workload``'s
            ranges but not among them is an interpolation (:meth:`workload_kind`).
    """

    source: str
    device: str | None = None
    deploy: dict[str, Any] = field(default_factory=dict)
    workload: dict[str, list[int]] = field(default_factory=dict)
    env_ids: tuple[str, ...] = ()
    family: str | None = None
    spaces: tuple[str, ...] = ()
    task: str | None = None
    dims: dict[str, list[int]] = field(default_factory=dict)
    workloads: tuple[tuple[int, int | None], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "device": self.device,
            "deploy": {k: _jsonable(v) for k, v in self.deploy.items()},
            "workload": {k: [int(x) for x in v] for k, v in self.workload.items()},
            "env_ids": list(self.env_ids),
            "family": self.family,
            "spaces": list(self.spaces),
            "task": self.task,
            **({"dims": {k: [int(x) for x in v] for k, v in self.dims.items()}} if self.dims else {}),
            **(
                {"workloads": [[int(b), None if s is None else int(s)] for b, s in self.workloads]}
                if self.workloads
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "validity") -> Validity:
        if not isinstance(data, Mapping):
            raise LatbenchError(where, "expected an object")
        allowed = {"source", "device", "deploy", "workload", "env_ids", "family", "spaces", "task", "dims", "workloads"}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r}")
        if not isinstance(data.get("source"), str):
            raise LatbenchError(where, "source: expected a string")
        if not isinstance(data.get("deploy", {}), Mapping) or not isinstance(data.get("workload", {}), Mapping):
            raise LatbenchError(where, "deploy and workload must be objects")
        workload: dict[str, list[int]] = {}
        for k, v in dict(data.get("workload", {})).items():
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)):
                raise LatbenchError(where, f"workload.{k}: expected [low, high]")
            workload[k] = [int(v[0]), int(v[1])]
        dims: dict[str, list[int]] = {}
        if not isinstance(data.get("dims", {}), Mapping):
            raise LatbenchError(where, "dims must be an object")
        for k, v in dict(data.get("dims", {})).items():
            if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) for x in v)):
                raise LatbenchError(where, f"dims.{k}: expected [low, high]")
            dims[k] = [int(v[0]), int(v[1])]
        points = data.get("workloads", [])
        if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], int) and (p[1] is None or isinstance(p[1], int))
            for p in points
        ):
            raise LatbenchError(where, "workloads: expected a list of [batch, seq_len]")
        return cls(
            source=data["source"],
            device=data.get("device"),
            deploy=dict(data.get("deploy", {})),
            workload=workload,
            env_ids=tuple(data.get("env_ids", ())),
            family=data.get("family"),
            spaces=tuple(data.get("spaces", ())),
            task=data.get("task"),
            dims=dims,
            workloads=tuple((int(b), None if q is None else int(q)) for b, q in points),
        )

    def workload_kind(self, batch: int | None, seq_len: int | None) -> str:
        """``trained`` (a workload measured), ``interpolation`` (inside the ranges measured) or
        ``extrapolation`` (beyond them); ``unknown`` when the validity records no workload."""
        if not self.workload:
            return "unknown"
        for key, value in (("batch", batch), ("seq_len", seq_len)):
            rng = self.workload.get(key)
            if value is not None and rng is not None and not rng[0] <= value <= rng[1]:
                return "extrapolation"
        if not self.workloads or (batch, seq_len) in self.workloads:
            return "trained"
        return "interpolation"

    def dim_problems(
        self, ranges: Mapping[str, Sequence[int]], what: str = "the architecture", tolerance: float = DIM_TOLERANCE
    ) -> list[str]:
        """Dimensions in ``ranges`` (from :func:`arch_dim_ranges`) beyond those the predictor was trained on.

        A dimension counts as beyond when it lies more than ``tolerance`` (relative) below the
        smallest or above the largest value trained on: a few hundred architectures sampled from
        a space seldom hit its exact extremes, and one step past them is interpolation in all but name.
        """
        problems = []
        for key, (lo, hi) in ranges.items():
            if key in self.dims:
                dlo, dhi = self.dims[key]
                if lo < dlo * (1 - tolerance) or hi > dhi * (1 + tolerance):
                    seen = f"{lo}" if lo == hi else f"{lo}..{hi}"
                    problems.append(
                        f"{what}: {key} {seen} lies outside the training architectures' {dlo}..{dhi} (extrapolation)"
                    )
        return problems

    def describe(self) -> str:
        """One line: device, deployment, workload."""
        parts = [self.device or "unknown device"]
        dep = ", ".join(
            f"{k}={self.deploy[k]}" for k in ("backend", "mode", "precision", "threads") if k in self.deploy
        )
        if dep:
            parts.append(dep)
        for k, (lo, hi) in self.workload.items():
            parts.append(f"{k}={lo}" if lo == hi else f"{k}={lo}..{hi}")
        if self.task:
            parts.append(f"task={self.task}")
        return "; ".join(parts)

    def mismatches(self, data: Validity) -> list[str]:
        """Why data valid at ``data`` lies outside this validity (empty when it does not)."""
        problems: list[str] = []
        if self.device is not None:
            if data.device is None:
                problems.append(f"the data does not record its device (the predictor is for {self.device!r})")
            elif self.device.strip().lower() != data.device.strip().lower():
                problems.append(f"the predictor is for {self.device!r}, the data was measured on {data.device!r}")
        for key in ("backend", "mode", "precision", "threads", "cache"):
            have, want = self.deploy.get(key), data.deploy.get(key)
            if have is not None and want is not None and have != want:
                problems.append(f"the predictor's {key} is {have!r}, the data's {want!r}")
        have_dev, want_dev = self.deploy.get("device"), data.deploy.get("device")
        # cuda:0 and cuda:1 may be the same hardware (the device name decides); cpu and cuda never are.
        if have_dev is not None and want_dev is not None and (have_dev == "cpu") != (want_dev == "cpu"):
            problems.append(f"the predictor is for device {have_dev!r}, the data's is {want_dev!r}")
        options = sorted(k for k in set(self.deploy) | set(data.deploy) if "." in k)
        for key in options:
            if self.deploy.get(key) != data.deploy.get(key):
                problems.append(
                    f"the predictor's {key} is {self.deploy.get(key)!r}, the data's {data.deploy.get(key)!r}"
                )
        for key, (lo, hi) in data.workload.items():
            if key in self.workload:
                plo, phi = self.workload[key]
                if lo < plo or hi > phi:
                    problems.append(
                        f"the data's {key} {lo}..{hi} lies outside the predictor's {plo}..{phi} (extrapolation)"
                    )
        if self.family is not None and data.family is not None and self.family != data.family:
            problems.append(f"the predictor is for {self.family} models, the data holds {data.family} models")
        return problems

    def check(self, data: Validity, force: bool = False, where: str = "predictor") -> list[str]:
        """Refuse data from another device, deployment or workload, unless ``force``.

        Returns:
            The mismatches (with ``force``; empty otherwise).

        Raises:
            LatbenchError: On the first mismatch, unless ``force``.
        """
        problems = self.mismatches(data)
        if problems and not force:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise LatbenchError(where, f"{problems[0]}{more}; use --force to predict anyway")
        return problems


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rows to train or judge a predictor on, their targets and where they hold.

    Attributes:
        path: The parquet file.
        kind: ``store`` (architectures; features computed) or ``table`` (given feature columns).
        frame: The rows (stores: whole-model rows of one deployment, without the samples column).
        target_ms: Latency per row in ms (the chosen statistic).
        groups: Per row, what identifies its architecture (rows of a group are never split apart).
        statistic: The statistic ``target_ms`` is (``median``, ``p10``, ``min``, ``mean``).
        validity: Device, deployment, workload and environments of the rows.
        sha256: Hash of the file's bytes.
        feature_columns: The given feature columns (tables).
        fingerprints: ``env_id -> fingerprint`` (stores).
        drift_correction: The exponent ``beta`` of the machine-speed correction applied to the
            targets (0: none); see :func:`load_store_dataset`.
    """

    path: str
    kind: str
    frame: Any
    target_ms: np.ndarray
    groups: np.ndarray
    statistic: str
    validity: Validity
    sha256: str
    feature_columns: tuple[str, ...] = ()
    fingerprints: dict[str, Any] = field(default_factory=dict)
    drift_correction: float = 0.0

    def __len__(self) -> int:
        return int(self.target_ms.size)

    @property
    def n_groups(self) -> int:
        return int(np.unique(self.groups).size)

    def subset(self, index: Any) -> Dataset:
        """The rows at ``index`` (same file, hash and validity)."""
        return Dataset(
            path=self.path,
            kind=self.kind,
            frame=self.frame.iloc[index].reset_index(drop=True),
            target_ms=self.target_ms[index],
            groups=self.groups[index],
            statistic=self.statistic,
            validity=self.validity,
            sha256=self.sha256,
            feature_columns=self.feature_columns,
            fingerprints=self.fingerprints,
            drift_correction=self.drift_correction,
        )


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes, hex."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise LatbenchError(str(path), exc.strerror or str(exc)) from None
    return h.hexdigest()


def _schema_metadata(path: Path) -> dict[bytes, bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise LatbenchError(str(path), "no such file")
    if path.is_dir():
        raise LatbenchError(str(path), "is a directory, expected a parquet file")
    try:
        return dict(pq.read_schema(path).metadata or {})
    except (pa.ArrowException, OSError) as exc:
        raise LatbenchError(str(path), f"not a parquet file ({' '.join(str(exc).split())[:120]})") from None


def deployment_of(deploy_key: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The deployment (without workload) of a store row, from its deploy key, else from its columns."""
    try:
        from latbench.profiling.config import DeployConfig

        cfg = DeployConfig.from_key(deploy_key).to_dict()
        options = cfg.pop("options", {})
        return {**{k: cfg[k] for k in DEPLOY_FIELDS}, **options}
    except (LatbenchError, ImportError, TypeError, ValueError):
        out = {k: _jsonable(row[k]) for k in DEPLOY_FIELDS if k in row and row[k] is not None}
        return {k: v for k, v in out.items() if not (isinstance(v, float) and np.isnan(v))}


def _hardware_name(device: str, env: Mapping[str, Any] | None) -> str | None:
    if not env:
        return None
    if device == "cpu":
        model = (env.get("cpu") or {}).get("model")
        return str(model) if model else None
    idx = int(str(device).partition(":")[2] or 0)
    for i, g in enumerate(env.get("gpus") or []):
        if g.get("index", i) == idx and g.get("name"):
            return str(g["name"])
    return None


#: The dimensions whose training ranges a predictor records (:attr:`Validity.dims`).
ARCH_DIMS: tuple[str, ...] = ("hidden", "layers", "heads", "qk_dim", "v_dim", "mlp")


def arch_dim_ranges(archs: Iterable[Any]) -> dict[str, list[int]]:
    """``{dim: [lo, hi]}`` over ``archs`` (:class:`~latbench.space.Arch`), every layer counted."""
    lo: dict[str, int] = {}
    hi: dict[str, int] = {}

    def see(key: str, value: int) -> None:
        lo[key] = min(lo.get(key, value), value)
        hi[key] = max(hi.get(key, value), value)

    for a in archs:
        see("hidden", a.hidden)
        see("layers", a.n_layers)
        for spec in a.layers:
            for key in ("heads", "qk_dim", "v_dim", "mlp"):
                see(key, int(getattr(spec, key)))
    return {k: [lo[k], hi[k]] for k in ARCH_DIMS if k in lo}


def _workload_ranges(frame: Any) -> dict[str, list[int]]:
    import pandas as pd

    out: dict[str, list[int]] = {}
    for col in ("batch", "seq_len"):
        if col in frame.columns:
            values = pd.to_numeric(frame[col], errors="coerce").dropna()
            if len(values):
                out[col] = [int(values.min()), int(values.max())]
    return out


def row_workloads(frame: Any) -> list[tuple[int | None, int | None]]:
    """Per row of ``frame``: its (batch, seq_len), ``None`` where a column is missing or empty."""
    import pandas as pd

    def col(name: str) -> list[int | None]:
        if name not in frame.columns:
            return [None] * len(frame)
        values = pd.to_numeric(frame[name], errors="coerce").astype("Float64").to_numpy(np.float64, na_value=np.nan)
        return [int(v) if np.isfinite(v) else None for v in values]

    return list(zip(col("batch"), col("seq_len")))


def _workload_points(frame: Any) -> tuple[tuple[int, int | None], ...]:
    points = {(b, s) for b, s in row_workloads(frame) if b is not None}
    return tuple(sorted(points, key=lambda p: (p[0], -1 if p[1] is None else p[1])))


def _store_dims(arch_jsons: list[str], where: str) -> dict[str, list[int]]:
    from latbench.space.arch import Arch

    try:
        return arch_dim_ranges(Arch.from_json(a) for a in arch_jsons)
    except LatbenchError as exc:
        raise LatbenchError(where, f"an architecture in the store: {exc.what}") from None


def _strip_workload(key: str) -> str:
    return ",".join(p for p in str(key).split(",") if not p.startswith(("batch=", "seq_len=")))


def load_store_dataset(
    path: str | os.PathLike[str],
    statistic: str = "median",
    deployment: str | None = None,
    drift_correction: float = 0.0,
) -> Dataset:
    """Whole-model rows of a result store as a :class:`Dataset`.

    Args:
        path: The store.
        statistic: ``median`` (``median_ms``), ``p10``, ``min`` or ``mean``.
        deployment: When the store holds several deployments, the one to use: a
            deploy key (its workload part is ignored) or a unique substring of one.
        drift_correction: ``beta`` in ``target * (median(ref_ms) / ref_ms) ** beta``: each row's
            latency brought to the store's median machine speed, read from the reference
            workload the protocol times in every round (``ref_ms``). A shared machine's speed
            drifts by a few percent over a long profile, for every workload alike; 1 corrects by
            the reference fully, values below 1 shrink the correction (the reference is itself a
            noisy reading of the speed). 0: the targets as measured.
    """
    from latbench.profiling.store import ResultStore

    where = str(path)
    if statistic not in STATISTIC_COLUMNS:
        raise LatbenchError("--statistic", f"expected one of {', '.join(STATISTIC_COLUMNS)}, got {statistic!r}")
    store = ResultStore.open_readonly(path)
    df = store.to_frame()
    envs = store.fingerprints()
    df = df[df["scope"] == "model"]
    if df.empty:
        raise LatbenchError(where, "no whole-model rows (scope 'model'); profile whole models to train a predictor")
    df = df[~df["arch"].astype(str).str.startswith("user:")]
    if df.empty:
        raise LatbenchError(where, "only user models (no architectures to compute features from)")
    deploys = df["deploy_key"].map(_strip_workload)
    kinds = sorted(deploys.unique())
    if deployment is not None:
        want = _strip_workload(deployment)
        chosen = [k for k in kinds if k == want] or [k for k in kinds if deployment in k]
        if len(chosen) != 1:
            what = "matches no" if not chosen else f"matches {len(chosen)}"
            raise LatbenchError("--deployment", f"{deployment!r} {what} deployment of {where} ({', '.join(kinds)})")
        df = df[deploys == chosen[0]]
    elif len(kinds) > 1:
        raise LatbenchError(
            where, f"holds {len(kinds)} deployments ({kinds[0]} | {kinds[1]} ...); choose one with --deployment"
        )
    column = STATISTIC_COLUMNS[statistic]
    if column not in df.columns:
        raise LatbenchError(where, f"has no {column} column (statistic {statistic!r}); use --statistic median")
    import pandas as pd

    target = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(target) | (target <= 0)
    if bad.any():
        raise LatbenchError(where, f"{int(bad.sum())} model row(s) have no positive {column}")
    if not (isinstance(drift_correction, (int, float)) and 0.0 <= drift_correction <= 1.0):
        raise LatbenchError("--drift-correction", f"expected a number in [0, 1], got {drift_correction!r}")
    if drift_correction > 0:
        ref = pd.to_numeric(df["ref_ms"], errors="coerce").to_numpy(np.float64) if "ref_ms" in df else None
        if ref is None or not (np.isfinite(ref) & (ref > 0)).all():
            raise LatbenchError(
                "--drift-correction",
                f"{where} lacks the machine-speed reference (ref_ms) on some rows (CPU rows profiled by this "
                "latbench carry it)",
            )
        from latbench.profiling.reference import row_reference

        protocols = df["protocol"] if "protocol" in df else [None] * len(df)
        names = sorted({row_reference({"protocol": p}) for p in protocols})
        if len(names) > 1:
            raise LatbenchError(
                "--drift-correction",
                f"{where} holds rows timed with {len(names)} reference workloads ({', '.join(names)}), whose "
                "times are not one scale; correct a store of one reference",
            )
        target = target * (np.median(ref) / ref) ** drift_correction
    frame = df.drop(columns=[c for c in ("samples_ms",) if c in df.columns]).reset_index(drop=True)
    first = frame.iloc[0]
    deploy = deployment_of(str(first["deploy_key"]), first.to_dict())
    env_ids = tuple(sorted(frame["env_id"].astype(str).unique()))
    names = {_hardware_name(str(first["device"]), envs.get(e)) for e in env_ids}
    names.discard(None)
    if len(names) > 1:
        raise LatbenchError(
            where, f"rows come from {len(names)} devices ({', '.join(sorted(names))}); train one predictor per device"
        )
    families = {json.loads(a).get("family") for a in frame["arch"].astype(str).unique()}
    if len(families) != 1:
        raise LatbenchError(where, f"rows hold several model families ({', '.join(sorted(map(str, families)))})")
    validity = Validity(
        source="latbench-store",
        device=next(iter(names)) if names else None,
        deploy=deploy,
        workload=_workload_ranges(frame),
        workloads=_workload_points(frame),
        env_ids=env_ids,
        family=next(iter(families)),
        spaces=tuple(sorted(frame["space"].astype(str).unique())),
        dims=_store_dims(frame["arch"].astype(str).unique().tolist(), where),
    )
    return Dataset(
        path=where,
        kind="store",
        frame=frame,
        target_ms=target,
        groups=frame["arch"].astype(str).to_numpy(),
        statistic=statistic,
        validity=validity,
        sha256=file_sha256(path),
        fingerprints={e: envs.get(e, {}) for e in env_ids},
        drift_correction=float(drift_correction),
    )


def _table_meta(raw: bytes, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LatbenchError(where, "malformed data set metadata (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != DATASET_FORMAT:
        raise LatbenchError(where, f'data set metadata without "format": "{DATASET_FORMAT}"')
    version = meta.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= DATASET_SCHEMA_VERSION:
        raise LatbenchError(where, f"unsupported data set schema_version {version!r}")
    feats = meta.get("features")
    if not isinstance(feats, list) or not feats or not all(isinstance(f, str) for f in feats):
        raise LatbenchError(where, "data set metadata: features must be a non-empty list of column names")
    if not isinstance(meta.get("target"), str):
        raise LatbenchError(where, "data set metadata: target must be a column name")
    if meta.get("unit") != "ms":
        raise LatbenchError(where, f"data set metadata: unit must be 'ms', got {meta.get('unit')!r}")
    return meta


def load_table_dataset(path: str | os.PathLike[str], statistic: str | None = None) -> Dataset:
    """An imported table (``latbench import hat``) as a :class:`Dataset`."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = str(path)
    meta = _table_meta(_schema_metadata(Path(path))[META_DATASET], where)
    try:
        frame = pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise LatbenchError(where, f"cannot read the table ({' '.join(str(exc).split())[:120]})") from None
    feats, target_col = tuple(meta["features"]), meta["target"]
    missing = [c for c in (*feats, target_col) if c not in frame.columns]
    if missing:
        raise LatbenchError(where, f"missing column {missing[0]!r} named in its metadata")
    table_stat = str(meta.get("statistic", "mean"))
    if statistic is not None and statistic != table_stat:
        raise LatbenchError("--statistic", f"{where} holds one statistic ({table_stat}), not {statistic!r}")
    target = pd.to_numeric(frame[target_col], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(target) | (target <= 0)
    if bad.any():
        raise LatbenchError(where, f"row {int(np.argmax(bad))}: {target_col} is not a positive number")
    x = frame[list(feats)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(x).all():
        row, col = np.argwhere(~np.isfinite(x))[0]
        raise LatbenchError(where, f"row {row}: feature {feats[col]!r} is not a finite number")
    # Rows with equal features are one architecture: they must not straddle a split.
    groups = np.array([",".join(repr(v) for v in r) for r in x.tolist()])
    validity = Validity(
        source=str(meta.get("source", "table")),
        device=meta.get("device"),
        deploy=dict(meta.get("deploy") or {}),
        task=meta.get("task"),
    )
    return Dataset(
        path=where,
        kind="table",
        frame=frame,
        target_ms=target,
        groups=groups,
        statistic=table_stat,
        validity=validity,
        sha256=file_sha256(path),
        feature_columns=feats,
    )


def dataset_kind(path: str | os.PathLike[str]) -> str:
    """``store`` or ``table``, from a parquet file's metadata (a one-line error for anything else)."""
    from latbench.profiling.store import META_SCHEMA

    meta = _schema_metadata(Path(path))
    if META_SCHEMA in meta:
        return "store"
    if META_DATASET in meta:
        return "table"
    raise LatbenchError(
        str(path),
        "neither a latbench result store nor an imported data set (no latbench metadata); "
        "import foreign data first, e.g. latbench import hat FILE.csv --out data.parquet",
    )


def load_dataset(
    path: str | os.PathLike[str],
    statistic: str | None = None,
    deployment: str | None = None,
    drift_correction: float = 0.0,
) -> Dataset:
    """A result store or an imported table, told apart by the file's metadata.

    Args:
        path: A parquet file.
        statistic: For a store: ``median`` (default), ``p10``, ``min`` or ``mean``. For a table:
            None, or the table's own statistic.
        deployment: For a store holding several deployments, which one (see :func:`load_store_dataset`).
        drift_correction: For a store: the machine-speed correction (see :func:`load_store_dataset`).
    """
    if dataset_kind(path) == "store":
        return load_store_dataset(path, statistic or "median", deployment, drift_correction)
    if deployment is not None:
        raise LatbenchError("--deployment", "applies to result stores, not to an imported table")
    if drift_correction:
        raise LatbenchError("--drift-correction", "applies to result stores, not to an imported table")
    return load_table_dataset(path, statistic)


# ------------------------------------------------------------------- HAT
def hat_source_info(path: str | os.PathLike[str]) -> tuple[str | None, str | None]:
    """(task, device name) from a HAT file name such as ``wmt14ende_cpu_xeon_all.csv``."""
    m = _HAT_NAME.match(Path(path).stem.lower())
    if not m:
        return None, None
    return m.group("task"), HAT_DEVICES.get(m.group("device"))


def write_table_dataset(
    frame: Any,
    out: str | os.PathLike[str],
    features: Sequence[str],
    target: str,
    source: str,
    device: str | None,
    task: str | None = None,
    statistic: str = "mean",
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a table of features and a target in ms as an imported data set (parquet, atomically)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from latbench import __version__
    from latbench.io import atomic_write

    meta = {
        "format": DATASET_FORMAT,
        "schema_version": DATASET_SCHEMA_VERSION,
        "source": source,
        "device": device,
        "task": task,
        "unit": "ms",
        "target": target,
        "statistic": statistic,
        "features": list(features),
        "latbench_version": __version__,
        **dict(extra or {}),
    }
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({META_DATASET: json.dumps(meta, sort_keys=True).encode()})
    return atomic_write(out, lambda tmp: pq.write_table(table, tmp, compression="zstd"))


def import_hat(csv_path: str | os.PathLike[str], out: str | os.PathLike[str], device: str | None = None) -> Dataset:
    """Import one of HAT's latency CSVs as a table data set (target: encoder + decoder mean, ms).

    Args:
        csv_path: HAT's ``latency_dataset/<task>_<cpu|gpu>_<device>_all.csv``.
        out: The parquet file to write.
        device: The hardware, when the file name does not say it (HAT's names do).

    Returns:
        The written data set, read back.
    """
    from latbench.lut.formats import HAT_FEATURES, read_hat_csv

    frame = read_hat_csv(csv_path)
    task, named = hat_source_info(csv_path)
    device = device or named
    if device is None:
        raise LatbenchError(
            str(csv_path), "its name does not say the device (HAT names end in _cpu_xeon, _gpu_titanxp); give --device"
        )
    write_table_dataset(
        frame,
        out,
        features=HAT_FEATURES,
        target="latency_ms",
        source="hat",
        device=device,
        task=task,
        statistic="mean",
        extra={"source_file": Path(csv_path).name, "target_definition": "latency_mean_encoder + latency_mean_decoder"},
    )
    return load_table_dataset(out)
