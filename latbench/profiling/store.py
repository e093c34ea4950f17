"""The result store: one parquet file of measurements, resumable, atomic, locked for writing.

One row per *measurement key* ``(arch, scope, block_index, deploy_key, batch,
seq_len)`` (see :data:`KEY_COLUMNS`). The environment fingerprints the rows refer
to by ``env_id`` live in the same file's key-value schema metadata, so rows and
fingerprints are written together and can never disagree.

Why the file is rewritten whole on every append: parquet cannot be appended to
in place, and a rename of a complete temporary file is the only way for a run
killed at any instant (``kill -9``) to leave behind the previous complete state.
The store keeps its table in memory, so an append costs one parquet write of the
whole table (about 0.1 s for 5 000 rows of 500 samples each).

Only one process may write a store at a time: :class:`ResultStore` takes an
exclusive ``fcntl.flock`` on the sibling ``<file>.lock`` for as long as it is
open. The OS drops the lock when the holder dies, so a killed run never leaves a
stale lock. Reading (:meth:`ResultStore.open_readonly`, :func:`read_store`)
takes no lock: the file on disk is always complete.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from latbench import __version__
from latbench.errors import LatbenchError
from latbench.io import atomic_write
from latbench.profiling.stats import relative_spread

#: Version of the store's layout, written into the file's metadata and checked on read.
STORE_SCHEMA_VERSION = 1

#: Schema-metadata keys of the parquet file.
META_SCHEMA = b"latbench_store_schema"
META_VERSION = b"latbench_version"
META_ENVS = b"latbench_envs"

#: The columns that identify a measurement; at most one row per key.
KEY_COLUMNS: tuple[str, ...] = ("arch", "scope", "block_index", "deploy_key", "batch", "seq_len")

#: ``(arch, scope, block_index, deploy_key, batch, seq_len)``; ``seq_len`` is ``None`` for ViT.
MeasurementKey = tuple[str, str, int, str, int, int | None]

SCOPES: tuple[str, ...] = ("model", "block")

#: Every store has these columns, with these types (checked on write and on read).
REQUIRED_COLUMNS: dict[str, pa.DataType] = {
    "arch": pa.string(),
    "space": pa.string(),
    "scope": pa.string(),
    "block_index": pa.int64(),
    "deploy_key": pa.string(),
    "backend": pa.string(),
    "mode": pa.string(),
    "precision": pa.string(),
    "device": pa.string(),
    "batch": pa.int64(),
    "seq_len": pa.int64(),
    "median_ms": pa.float64(),
    "mean_ms": pa.float64(),
    "min_ms": pa.float64(),
    "p90_ms": pa.float64(),
    "ci_low_ms": pa.float64(),
    "ci_high_ms": pa.float64(),
    "n": pa.int64(),
    "unstable": pa.bool_(),
    "build_ms": pa.float64(),
    "env_id": pa.string(),
    "flops": pa.int64(),
    "params": pa.int64(),
    "roofline_ms": pa.float64(),
}

#: Required columns that may hold nulls: no sequence length for ViT; build time,
#: cost and roofline can be unknown for a user's own model.
NULLABLE_COLUMNS: frozenset[str] = frozenset({"seq_len", "build_ms", "flops", "params", "roofline_ms"})

#: Optional columns the profiler writes; when present they are cast to these types
#: so that appends from different runs concatenate. Any other column is kept as given.
KNOWN_EXTRA_COLUMNS: dict[str, pa.DataType] = {
    "p10_ms": pa.float64(),
    "p25_ms": pa.float64(),
    "p75_ms": pa.float64(),
    "p99_ms": pa.float64(),
    "max_ms": pa.float64(),
    "std_ms": pa.float64(),
    "iqr_ratio": pa.float64(),
    "samples_ms": pa.list_(pa.float64()),
    "threads": pa.int64(),
    "wall_s": pa.float64(),
    "ref_ms": pa.float64(),  # the CPU reference workload's median over the row's rounds: the machine's speed
    "ref_spread": pa.float64(),  # how much that reference moved over the row's rounds (p10-p90, relative)
    "round_spread": pa.float64(),  # (p90-p10)/median of the row's per-round medians: how much it moved
    "other_cores": pa.float64(),  # CPU use of other processes while the row was sampled, in cores
    "placement": pa.string(),  # JSON: threads and the CPUs they were pinned to
    "median_ms_normalised": pa.float64(),  # --normalise-drift: median_ms at the anchor speed of the reference
    "ref_anchor_ms": pa.float64(),  # the reference time that anchor is
    "protocol": pa.string(),  # JSON: the ProtocolConfig the row was measured with
}


# ------------------------------------------------------------------------ keys
def normalize_key(key: Sequence[Any], where: str = "key") -> MeasurementKey:
    """Turn any spelling of a key (numpy ints, NaN or ``pd.NA`` for no seq_len) into the canonical tuple."""
    if len(key) != len(KEY_COLUMNS):
        raise LatbenchError(where, f"a measurement key has {len(KEY_COLUMNS)} fields {KEY_COLUMNS}, got {len(key)}")
    arch, scope, block_index, deploy_key, batch, seq_len = key
    try:
        return (str(arch), str(scope), int(block_index), str(deploy_key), int(batch), _opt_int(seq_len))
    except (TypeError, ValueError) as exc:
        raise LatbenchError(where, f"malformed measurement key ({exc})") from None


def measurement_key(row: Mapping[str, Any]) -> MeasurementKey:
    """The key of a row (a mapping with at least the :data:`KEY_COLUMNS`)."""
    absent = [c for c in KEY_COLUMNS if c not in row and c != "seq_len"]
    if absent:
        raise LatbenchError("row", f"missing key column(s) {', '.join(absent)}")
    return normalize_key([row.get(c) for c in KEY_COLUMNS], "row")


def _opt_int(value: Any) -> int | None:
    try:
        absent = value is None or bool(pd.isna(value))  # None, NaN of any float type, pd.NA
    except (TypeError, ValueError):
        absent = False
    return None if absent else int(value)


def _describe_key(key: MeasurementKey) -> str:
    arch = key[0] if len(key[0]) <= 60 else key[0][:57] + "..."
    return f"(arch={arch}, scope={key[1]}, block_index={key[2]}, deploy_key={key[3]}, batch={key[4]}, seq_len={key[5]})"


def _table_keys(table: pa.Table) -> list[MeasurementKey]:
    cols = [table.column(c).to_pylist() for c in KEY_COLUMNS]
    return list(zip(*cols))  # type: ignore[arg-type]


# ------------------------------------------------------------ table building
def _empty_table() -> pa.Table:
    return pa.schema([pa.field(n, t) for n, t in REQUIRED_COLUMNS.items()]).empty_table()


def _rows_to_table(rows: Iterable[Mapping[str, Any]] | pd.DataFrame, where: str) -> pa.Table:
    """Build an arrow table from rows (dicts) or a DataFrame, typing the columns we know."""
    if isinstance(rows, pd.DataFrame):
        if rows.columns.duplicated().any():
            raise LatbenchError(where, f"duplicate column names {sorted(set(rows.columns[rows.columns.duplicated()]))}")
        try:
            table = pa.Table.from_pandas(rows, preserve_index=False)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise LatbenchError(where, f"cannot convert the rows to a table ({_first_line(exc)})") from None
        return table.replace_schema_metadata(None)
    if isinstance(rows, Mapping):
        rows = [rows]
    rows = list(rows)
    names: dict[str, None] = {}  # ordered union of the rows' columns (from_pylist only looks at the first row)
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise LatbenchError(where, f"row {i} is a {type(row).__name__}, expected a dict")
        names.update(dict.fromkeys(row))
    arrays, fields = [], []
    for name in names:
        if not isinstance(name, str):
            raise LatbenchError(where, f"column names must be strings, got {name!r}")
        values = [row.get(name) for row in rows]
        typ = REQUIRED_COLUMNS.get(name) or KNOWN_EXTRA_COLUMNS.get(name)
        try:
            arr = pa.array(values, type=typ, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            expected = f"expected {typ}" if typ is not None else "mixed or unsupported values"
            raise LatbenchError(where, f"column {name!r}: {expected} ({_first_line(exc)})") from None
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _conform(table: pa.Table, where: str) -> pa.Table:
    """Check the required columns and their values; cast known columns to their types."""
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise LatbenchError(where, f"missing column(s) {', '.join(missing)}")
    if len(set(table.column_names)) != len(table.column_names):
        raise LatbenchError(where, "duplicate column names")
    for name in table.column_names:
        typ = REQUIRED_COLUMNS.get(name) or KNOWN_EXTRA_COLUMNS.get(name)
        col = table.column(name)
        if typ is None or col.type == typ:
            continue
        try:
            cast = col.cast(typ)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise LatbenchError(
                where, f"column {name!r} has type {col.type}, expected {typ} ({_first_line(exc)})"
            ) from None
        table = table.set_column(table.column_names.index(name), pa.field(name, typ), cast)
    for name in REQUIRED_COLUMNS:
        col = table.column(name)
        if name not in NULLABLE_COLUMNS and col.null_count:
            raise LatbenchError(
                where, f"column {name!r} has {col.null_count} missing value(s) (row {_first_true(col.is_null())})"
            )
    scope, block_index = table.column("scope"), table.column("block_index")
    bad = pc.invert(pc.is_in(scope, value_set=pa.array(SCOPES)))
    if pc.any(bad).as_py():
        i = _first_true(bad)
        raise LatbenchError(where, f"row {i}: scope {scope[i].as_py()!r} is not one of {', '.join(SCOPES)}")
    is_model = pc.equal(scope, "model")
    bad = pc.if_else(is_model, pc.not_equal(block_index, -1), pc.less(block_index, 0))
    if pc.any(bad).as_py():
        i = _first_true(bad)
        raise LatbenchError(
            where,
            f"row {i}: block_index {block_index[i].as_py()} with scope {scope[i].as_py()!r} "
            "(-1 for a whole model, >= 0 for a block)",
        )
    for name in ("batch", "seq_len"):
        bad = pc.fill_null(pc.less(table.column(name), 1), False)
        if pc.any(bad).as_py():
            i = _first_true(bad)
            raise LatbenchError(where, f"row {i}: {name} must be >= 1, got {table.column(name)[i].as_py()}")
    return table


def _first_true(mask: pa.ChunkedArray | pa.Array) -> int:
    return int(pc.index(mask, True).as_py())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# ------------------------------------------------------------- fingerprints
def _fingerprint_dicts(fingerprints: Mapping[str, Any] | None, where: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for env_id, fp in (fingerprints or {}).items():
        data = fp.to_dict() if hasattr(fp, "to_dict") else fp
        if not isinstance(env_id, str) or not isinstance(data, Mapping):
            raise LatbenchError(
                where, f"fingerprints must map env_id (str) to a dict, got {env_id!r}: {type(fp).__name__}"
            )
        if "env_id" in data and data["env_id"] != env_id:
            raise LatbenchError(where, f"fingerprint filed under env_id {env_id!r} says env_id {data['env_id']!r}")
        try:
            out[env_id] = json.loads(json.dumps(dict(data)))  # a JSON-clean copy, or a clear error now
        except (TypeError, ValueError) as exc:
            raise LatbenchError(where, f"fingerprint {env_id!r} is not JSON-serialisable ({exc})") from None
    return out


def describe_fingerprint(fp: Mapping[str, Any]) -> str:
    """A short description of an environment: CPU model, threads, GPU names."""
    parts = []
    cpu = fp.get("cpu")
    if isinstance(cpu, Mapping) and cpu.get("model"):
        parts.append(str(cpu["model"]))
    if fp.get("threads") is not None:
        parts.append(f"{fp['threads']} threads")
    gpus = fp.get("gpus")
    if isinstance(gpus, list):
        parts.extend(str(g["name"]) for g in gpus if isinstance(g, Mapping) and g.get("name"))
    return " · ".join(parts) if parts else "(no description)"


# ------------------------------------------------------------------- reading
def _load(path: Path) -> tuple[pa.Table, dict[str, dict[str, Any]]]:
    """Read and validate a store file; one-line LatbenchError naming it on any problem."""
    where = str(path)
    if path.is_dir():
        raise LatbenchError(where, "is a directory, expected a latbench result store (.parquet)")
    if not path.exists():
        raise LatbenchError(where, "no such file")
    try:
        with pq.ParquetFile(path) as pf:
            table = pf.read()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise LatbenchError(where, f"not a readable parquet file ({_first_line(exc)})") from None
    meta = table.schema.metadata or {}
    if META_SCHEMA not in meta:
        raise LatbenchError(where, "not a latbench result store (no latbench_store_schema in its metadata)")
    try:
        version = int(meta[META_SCHEMA])
    except ValueError:
        raise LatbenchError(where, f"malformed store schema version {meta[META_SCHEMA][:20]!r}") from None
    if version != STORE_SCHEMA_VERSION:
        raise LatbenchError(
            where, f"store schema version {version}, this latbench {__version__} reads version {STORE_SCHEMA_VERSION}"
        )
    try:
        envs = json.loads(meta.get(META_ENVS, b"{}"))
    except ValueError:
        raise LatbenchError(where, "malformed environment fingerprints in the metadata (not JSON)") from None
    if not isinstance(envs, dict) or not all(isinstance(v, dict) for v in envs.values()):
        raise LatbenchError(where, "malformed environment fingerprints in the metadata (expected env_id -> object)")
    table = _conform(table.replace_schema_metadata(None), where)
    keys = _table_keys(table)
    if len(set(keys)) != len(keys):
        seen: set[MeasurementKey] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise LatbenchError(
            where, f"{len(keys) - len(set(keys))} duplicated measurement key(s), e.g. {_describe_key(dup)}"
        )
    return table.combine_chunks(), envs


def read_store(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a store's rows as a DataFrame, without taking the write lock."""
    return ResultStore.open_readonly(path).to_frame()


# --------------------------------------------------------------------- store
class ResultStore:
    """A resumable parquet store of measurements, one row per :data:`KEY_COLUMNS` key.

    Opened for writing (the default), it holds an exclusive lock on
    ``<path>.lock`` until :meth:`close` (or the end of a ``with`` block); a second
    writer, in any process, is refused with a one-line :class:`LatbenchError`.
    A path that does not exist yet is an empty store; the file appears with the
    first :meth:`append`.

    Example::

        with ResultStore("runs/x.parquet") as store:
            for key in store.missing(planned_keys):
                store.append([measure(key)], {fp.env_id: fp.to_dict()})

    Args:
        path: The parquet file.
        readonly: Read without locking; :meth:`append` is refused. The file must exist.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self._path = Path(path)
        self._readonly = readonly
        self._lock_fd: int | None = None
        self._table: pa.Table = _empty_table()
        self._envs: dict[str, dict[str, Any]] = {}
        self._keys: set[MeasurementKey] = set()
        self._stat: tuple[int, int, int] | None = None
        if self._path.is_dir():
            raise LatbenchError(str(self._path), "is a directory, expected a latbench result store (.parquet)")
        if readonly:
            self._reload()
            return
        self._acquire_lock()
        try:
            self._remove_stale_temporaries()
            if self._path.exists():
                self._reload()
        except BaseException:
            self.close()
            raise

    @classmethod
    def open_readonly(cls, path: str | os.PathLike[str]) -> ResultStore:
        """Open an existing store for reading only (no lock; safe while a run writes it)."""
        return cls(path, readonly=True)

    # ------------------------------------------------------------ lifecycle
    @property
    def path(self) -> Path:
        return self._path

    @property
    def readonly(self) -> bool:
        return self._readonly

    @property
    def lock_path(self) -> Path:
        """The sibling file that carries the write lock and the holder's pid."""
        return self._path.with_name(self._path.name + ".lock")

    def close(self) -> None:
        """Release the write lock (idempotent). The lock file stays: deleting it would race a waiting writer."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale pid for a reader of the file between our unlock and the next holder
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        mode = "readonly" if self._readonly else "write"
        return f"ResultStore({str(self._path)!r}, {mode}, rows={self._table.num_rows})"

    def _acquire_lock(self) -> None:
        lock = self.lock_path
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LatbenchError(str(self._path), f"cannot create the lock file {lock} ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise LatbenchError(
                str(self._path), f"locked by another latbench process{pid}; wait for it or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def _remove_stale_temporaries(self) -> None:
        # atomic_write's temporaries are ".<name>.<random>.tmp"; with the lock held none is ours to keep.
        prefix = f".{self._path.name}."
        parent = self._path.parent
        if not parent.is_dir():
            return
        for entry in parent.iterdir():
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp"):
                entry.unlink(missing_ok=True)

    # ----------------------------------------------------------------- state
    def _file_stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _reload(self) -> None:
        stat = self._file_stat()
        self._table, self._envs = _load(self._path)
        self._keys = set(_table_keys(self._table))
        self._stat = stat

    def _current(self) -> pa.Table:
        """The table, re-read if the file changed on disk (a reader following a live run)."""
        stat = self._file_stat()
        if stat != self._stat:
            if stat is None:
                if self._readonly:
                    raise LatbenchError(str(self._path), "no such file (removed while open)")
                self._table, self._envs, self._keys, self._stat = _empty_table(), {}, set(), None
            else:
                self._reload()
        return self._table

    # ---------------------------------------------------------------- writes
    def append(
        self,
        rows: Iterable[Mapping[str, Any]] | pd.DataFrame,
        fingerprints: Mapping[str, Any] | None = None,
    ) -> int:
        """Add rows (and the fingerprints they refer to) and rewrite the file atomically.

        All or nothing: if any row is invalid or already stored, nothing is written.

        Args:
            rows: Dicts or a DataFrame with at least :data:`REQUIRED_COLUMNS`; extra
                columns are kept (``samples_ms`` as a list of floats).
            fingerprints: ``env_id -> fingerprint dict`` (or :class:`Fingerprint`).
                An env_id already stored keeps its fingerprint; fields it lacks are
                filled from the new one (e.g. attainable peaks measured later).

        Returns:
            The number of rows added.

        Raises:
            LatbenchError: invalid rows, a key already in the store or repeated in
                ``rows`` (a resumed run should append only :meth:`missing` keys),
                a row whose ``env_id`` has no fingerprint, or a read-only store.
        """
        where = str(self._path)
        if self._readonly:
            raise LatbenchError(where, "opened read-only; open a ResultStore without readonly to append")
        if self._lock_fd is None:
            raise LatbenchError(where, "store is closed")
        current = self._current()
        new_envs = _fingerprint_dicts(fingerprints, where)
        new = _conform(_rows_to_table(rows, where), where)

        new_keys = _table_keys(new)
        if len(set(new_keys)) != len(new_keys):
            seen: set[MeasurementKey] = set()
            dup = next(k for k in new_keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
            raise LatbenchError(where, f"the rows repeat a measurement key {_describe_key(dup)}")
        present = [k for k in new_keys if k in self._keys]
        if present:
            raise LatbenchError(
                where,
                f"{len(present)} measurement(s) already in the store, e.g. {_describe_key(present[0])}; "
                "append only the keys that store.missing() returns",
            )

        envs = {k: dict(v) for k, v in self._envs.items()}
        for env_id, fp in new_envs.items():
            envs[env_id] = {**fp, **envs[env_id]} if env_id in envs else fp
        unknown = sorted(set(new.column("env_id").to_pylist()) - set(envs))
        if unknown:
            raise LatbenchError(
                where, f"rows refer to env_id {unknown[0]!r} with no fingerprint; pass it in append(fingerprints=...)"
            )
        if new.num_rows == 0 and envs == self._envs:
            return 0

        try:
            merged = pa.concat_tables([current, new], promote_options="permissive") if new.num_rows else current
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise LatbenchError(where, f"the rows' columns do not match the store's ({_first_line(exc)})") from None
        merged = merged.combine_chunks()
        self._write(merged, envs)
        self._table, self._envs = merged, envs
        self._keys.update(new_keys)
        return new.num_rows

    def _write(self, table: pa.Table, envs: dict[str, dict[str, Any]]) -> None:
        meta = {
            META_SCHEMA: str(STORE_SCHEMA_VERSION).encode(),
            META_VERSION: __version__.encode(),
            META_ENVS: json.dumps(envs, sort_keys=True).encode(),
        }
        table = table.replace_schema_metadata(meta)
        atomic_write(self._path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        self._stat = self._file_stat()

    # ----------------------------------------------------------------- reads
    def keys(self) -> set[MeasurementKey]:
        """The keys of all stored measurements (a copy)."""
        self._current()
        return set(self._keys)

    def has(self, key: Sequence[Any]) -> bool:
        """Whether the measurement ``key`` (see :data:`KEY_COLUMNS`) is stored."""
        self._current()
        return normalize_key(key) in self._keys

    def missing(self, keys: Iterable[Sequence[Any]]) -> list[MeasurementKey]:
        """The keys of ``keys`` not yet stored, in their order (first occurrence of repeats)."""
        self._current()
        out: list[MeasurementKey] = []
        seen: set[MeasurementKey] = set()
        for key in keys:
            k = normalize_key(key)
            if k not in self._keys and k not in seen:
                seen.add(k)
                out.append(k)
        return out

    def __len__(self) -> int:
        return self._current().num_rows

    def __contains__(self, key: object) -> bool:
        return isinstance(key, Sequence) and not isinstance(key, str) and self.has(key)

    def fingerprints(self) -> dict[str, dict[str, Any]]:
        """``env_id -> fingerprint dict`` of every environment the store knows (a copy)."""
        self._current()
        return json.loads(json.dumps(self._envs))

    def to_table(self) -> pa.Table:
        """The rows as an arrow table (no metadata)."""
        return self._current()

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, in the order they were appended.

        Nullable integer columns (``seq_len``, ``flops``, ``params``) use pandas'
        ``Int64`` so that a missing sequence length is ``pd.NA``, not a float NaN.
        """
        table = self._current()
        df = table.to_pandas()
        for name in ("seq_len", "flops", "params"):
            df[name] = table.column(name).to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
        return df

    read = to_frame

    def summary(self) -> dict[str, Any]:
        """What ``latbench show`` prints: counts, stability, CI width, environments.

        Returns:
            A JSON-able dict: ``path``, ``rows``, ``models``, ``blocks``, ``archs``,
            ``spaces``, ``deployments`` (count), ``rows_by_deployment``,
            ``unstable_rows``, ``stable_share``, ``median_ci_rel_width`` (median over
            rows of (ci_high - ci_low) / median), ``median_ci_rel_halfwidth`` (the
            larger half, as the ±1% stopping rule counts it), and ``envs``:
            ``env_id -> {"description", "rows", "ref_ms", "ref_spread"}``, where ``ref_ms`` is the
            median over that environment's rows of the CPU reference workload's time (the machine's
            speed while it measured; ``None`` where no row timed it) and ``ref_spread`` its p10-p90
            range relative to that median (how far the machine's speed moved during the run), of
            ``reference``, the reference workload most rows were timed with (``references``: rows per
            reference; the times of two references are not one scale and are never put together).
        """
        t = self._current()
        rows = t.num_rows
        scope = t.column("scope")
        median = t.column("median_ms")
        lo, hi = t.column("ci_low_ms"), t.column("ci_high_ms")
        unstable = int(pc.sum(t.column("unstable")).as_py() or 0)
        width = pc.divide(pc.subtract(hi, lo), median)
        half = pc.divide(pc.max_element_wise(pc.subtract(median, lo), pc.subtract(hi, median)), median)
        by_deploy = pc.value_counts(t.column("deploy_key").combine_chunks()) if rows else []
        by_env = pc.value_counts(t.column("env_id").combine_chunks()) if rows else []
        env_rows = {d["values"]: d["counts"] for d in (by_env.to_pylist() if rows else [])}
        refs = _reference_by_env(t)
        envs = {
            env_id: {
                "description": describe_fingerprint(self._envs[env_id]) if env_id in self._envs else "(no fingerprint)",
                "rows": int(env_rows.get(env_id, 0)),
                **refs.get(env_id, {"ref_ms": None, "ref_spread": None}),
            }
            for env_id in sorted(set(self._envs) | set(env_rows))
        }
        return {
            "path": str(self._path),
            "rows": rows,
            "models": int(pc.sum(pc.equal(scope, "model")).as_py() or 0),
            "blocks": int(pc.sum(pc.equal(scope, "block")).as_py() or 0),
            "archs": pc.count_distinct(t.column("arch")).as_py() if rows else 0,
            "spaces": sorted(set(t.column("space").to_pylist())),
            "deployments": len(by_deploy) if rows else 0,
            "rows_by_deployment": {d["values"]: d["counts"] for d in by_deploy.to_pylist()} if rows else {},
            "unstable_rows": unstable,
            "stable_share": (rows - unstable) / rows if rows else None,
            "median_ci_rel_width": _median_or_none(width),
            "median_ci_rel_halfwidth": _median_or_none(half),
            "envs": envs,
            **_steadiness(t),
        }


def _steadiness(table: pa.Table) -> dict[str, Any]:
    """Where CPU rows were measured and how steady the machine was: ``placements`` (summary -> rows),
    ``round_spread`` (median over rows of each row's own round spread), ``other_cores_max``
    (the most CPU other processes used while a row was sampled); ``None``/empty for stores
    written before these columns existed."""
    out: dict[str, Any] = {"placements": {}, "round_spread": None, "other_cores_max": None}
    if not table.num_rows:
        return out
    names = table.column_names
    if "placement" in names:
        for text in table.column("placement").to_pylist():
            if text:
                try:
                    summary = json.loads(text).get("summary", "?")
                except (ValueError, AttributeError):
                    summary = "?"
                out["placements"][summary] = out["placements"].get(summary, 0) + 1
    if "round_spread" in names:
        out["round_spread"] = _median_or_none(table.column("round_spread"))
    if "other_cores" in names:
        values = [v for v in table.column("other_cores").to_pylist() if v is not None and v == v]
        out["other_cores_max"] = max(values) if values else None
    return out


def _reference_by_env(table: pa.Table) -> dict[str, dict[str, Any]]:
    """Per environment: the median ``ref_ms`` over its rows and the p10-p90 range relative to it, of the
    reference workload most of them were timed with (``reference``; times of two references never mix)."""
    if "ref_ms" not in table.column_names or not table.num_rows:
        return {}
    from latbench.profiling.reference import row_reference

    cols = ["env_id", "ref_ms", *(["protocol"] if "protocol" in table.column_names else [])]
    frame = table.select(cols).to_pandas()
    frame = frame[_positive(frame["ref_ms"])]
    frame["reference"] = [row_reference({"protocol": p}) for p in frame.get("protocol", [None] * len(frame))]
    out = {}
    for env_id, rows in frame.groupby("env_id"):
        counts = rows["reference"].value_counts()
        reference = counts.idxmax()
        ref = rows.loc[rows["reference"] == reference, "ref_ms"].astype(float)
        out[str(env_id)] = {
            "ref_ms": float(ref.median()),
            "ref_spread": relative_spread(ref.to_numpy(), min_n=1),
            "reference": str(reference),
            "references": {str(k): int(v) for k, v in sorted(counts.items())},
        }
    return out


def _positive(values: Any) -> Any:
    """Finite and > 0 (a pandas series of floats, NaN/None where unknown)."""
    import pandas as pd

    v = pd.to_numeric(values, errors="coerce")
    return v.notna() & (v > 0)


def _median_or_none(values: pa.ChunkedArray) -> float | None:
    finite = [v for v in values.to_pylist() if v is not None and math.isfinite(v)]
    if not finite:
        return None
    finite.sort()
    mid = len(finite) // 2
    return finite[mid] if len(finite) % 2 else (finite[mid - 1] + finite[mid]) / 2
