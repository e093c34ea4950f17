"""ResultStore: round trip, validation, duplicates, resume, the write lock, and kill -9 during writes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from latbench import __version__
from latbench.errors import LatbenchError
from latbench.profiling import store as store_mod
from latbench.profiling.store import (
    KEY_COLUMNS,
    REQUIRED_COLUMNS,
    STORE_SCHEMA_VERSION,
    ResultStore,
    measurement_key,
    read_store,
)
from tests.profiling.store_worker import ENV_ID, FINGERPRINT, make_row

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("store_worker.py")


def small_row(i: int, **changes: object) -> dict[str, object]:
    row = make_row(i, samples=20)
    row.update(changes)
    return row


def start_worker(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_worker(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(WORKER), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


def wait_for_line(proc: subprocess.Popen[str], expected: str) -> None:
    line = proc.stdout.readline().strip() if proc.stdout else ""
    if line != expected:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"worker printed {line!r}, expected {expected!r}; stderr: {err[-2000:]}")


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode in (-signal.SIGKILL, 0)


def assert_rows_equal(df: pd.DataFrame, rows: list[dict[str, object]]) -> None:
    assert len(df) == len(rows)
    for rec, row in zip(df.to_dict("records"), rows):
        for name, value in row.items():
            got = rec[name]
            if isinstance(value, (list, np.ndarray)):  # list columns come back as numpy arrays
                np.testing.assert_array_equal(np.asarray(got), np.asarray(value))
            elif value is None:
                assert got is pd.NA or got is None or (isinstance(got, float) and np.isnan(got)), name
            else:
                assert got == value, name


# ------------------------------------------------------------------ round trip
def test_round_trip_rows_fingerprints_and_metadata(tmp_path):
    path = tmp_path / "runs" / "x.parquet"
    rows = [small_row(i) for i in range(6)]
    rows[1].update(seq_len=None, roofline_ms=None, flops=None, unstable_reasons=["iqr"], target="h100")
    rows[2]["unstable_reasons"] = []
    with ResultStore(path) as store:
        assert len(store) == 0 and store.keys() == set()
        assert list(store.to_frame().columns) == list(REQUIRED_COLUMNS)
        assert store.append(rows[:4], {ENV_ID: FINGERPRINT}) == 4
        assert store.append(pd.DataFrame(rows[4:])) == 2

    back = ResultStore.open_readonly(path)
    assert back.fingerprints() == {ENV_ID: FINGERPRINT}
    assert back.keys() == {measurement_key(r) for r in rows}
    df = back.to_frame()
    assert list(df.columns[: len(REQUIRED_COLUMNS)]) == list(REQUIRED_COLUMNS)
    assert_rows_equal(df, rows)
    assert df["seq_len"].dtype == "Int64" and df["seq_len"].isna().tolist() == [False, True] + [False] * 4
    assert df.loc[1, "unstable_reasons"].tolist() == ["iqr"] and df.loc[1, "target"] == "h100"
    assert pd.isna(df.loc[0, "target"])  # a column that only later rows have is null before them
    assert read_store(path).equals(df)

    meta = pq.read_schema(path).metadata
    assert meta[b"latbench_store_schema"] == str(STORE_SCHEMA_VERSION).encode()
    assert meta[b"latbench_version"] == __version__.encode()
    assert json.loads(meta[b"latbench_envs"]) == {ENV_ID: FINGERPRINT}


def test_frame_from_one_store_appends_to_another(tmp_path):
    with ResultStore(tmp_path / "a.parquet") as a:
        a.append([small_row(i) for i in range(3)] + [small_row(3, seq_len=None)], {ENV_ID: FINGERPRINT})
        df = a.to_frame()
    with ResultStore(tmp_path / "b.parquet") as b:
        b.append(df, a.fingerprints())
        assert b.keys() == a.keys()
        pd.testing.assert_frame_equal(b.to_frame(), df)


def test_fingerprints_are_kept_per_env_id_and_filled_in(tmp_path):
    with ResultStore(tmp_path / "x.parquet") as store:
        store.append([small_row(0)], {ENV_ID: FINGERPRINT})
        later = {**FINGERPRINT, "threads": 99, "peaks": {"matmul_flops": 1e12}}
        store.append([small_row(1)], {ENV_ID: later, "other": {"cpu": {"model": "B"}}})
        fps = store.fingerprints()
    assert fps[ENV_ID] == {**FINGERPRINT, "peaks": {"matmul_flops": 1e12}}  # first seen wins, new fields added
    assert fps["other"] == {"cpu": {"model": "B"}}


def test_rows_need_a_fingerprint_for_their_env_id(tmp_path):
    with ResultStore(tmp_path / "x.parquet") as store:
        with pytest.raises(LatbenchError, match="env_id 'env0123456789' with no fingerprint"):
            store.append([small_row(0)])
        with pytest.raises(LatbenchError, match="says env_id"):
            store.append([small_row(0)], {"wrong": FINGERPRINT})
        assert not store.path.exists()


def test_summary(tmp_path):
    rows = [small_row(i) for i in range(8)]
    with ResultStore(tmp_path / "x.parquet") as store:
        assert store.summary()["rows"] == 0
        store.append(rows, {ENV_ID: FINGERPRINT})
        s = store.summary()
    assert s["rows"] == 8 and s["models"] == 2 and s["blocks"] == 6
    assert s["archs"] == 2 and s["spaces"] == ["bert"] and s["deployments"] == 1
    assert s["unstable_rows"] == 2 and s["stable_share"] == pytest.approx(6 / 8)
    widths = sorted((r["ci_high_ms"] - r["ci_low_ms"]) / r["median_ms"] for r in rows)
    assert s["median_ci_rel_width"] == pytest.approx((widths[3] + widths[4]) / 2)
    assert 0 < s["median_ci_rel_halfwidth"] <= s["median_ci_rel_width"]
    assert s["envs"] == {ENV_ID: {"description": "Test CPU · 1 threads", "rows": 8, "ref_ms": None, "ref_spread": None}}
    json.dumps(s)


def test_summary_gives_the_machine_speed_each_environment_measured_at(tmp_path):
    # ref_ms 10..18 ms over 9 rows (one row without a reference): median 14, p10 10.8, p90 17.2.
    rows = [small_row(i, ref_ms=10.0 + i) for i in range(9)] + [small_row(9, ref_ms=None)]
    with ResultStore(tmp_path / "x.parquet") as store:
        store.append(rows, {ENV_ID: FINGERPRINT})
        s = store.summary()
    env = s["envs"][ENV_ID]
    assert env["rows"] == 10
    assert env["ref_ms"] == pytest.approx(14.0)
    assert env["ref_spread"] == pytest.approx((17.2 - 10.8) / 14.0)


# ----------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"median_ms": None}, "column 'median_ms' has 1 missing value"),
        ({"scope": "layer"}, "scope 'layer' is not one of model, block"),
        ({"scope": "model", "block_index": 2}, "block_index 2 with scope 'model'"),
        ({"scope": "block", "block_index": -1}, "block_index -1 with scope 'block'"),
        ({"batch": 0}, "batch must be >= 1"),
        ({"n": "many"}, "column 'n': expected int64"),
    ],
)
def test_invalid_rows_are_refused_in_one_line(tmp_path, change, message):
    path = tmp_path / "x.parquet"
    with ResultStore(path) as store, pytest.raises(LatbenchError) as err:
        store.append([small_row(0), small_row(1, **change)], {ENV_ID: FINGERPRINT})
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(str(path))
    assert not path.exists()


def test_missing_column_is_named(tmp_path):
    row = small_row(0)
    del row["roofline_ms"], row["env_id"]
    with ResultStore(tmp_path / "x.parquet") as store, pytest.raises(LatbenchError) as err:
        store.append([row], {ENV_ID: FINGERPRINT})
    assert str(err.value) == f"{tmp_path / 'x.parquet'}: missing column(s) env_id, roofline_ms"


def _write_parquet(path: Path, rows: list[dict[str, object]], metadata: dict[bytes, bytes] | None) -> None:
    table = pa.Table.from_pylist(rows)
    pq.write_table(table.replace_schema_metadata(metadata), path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_text("arch,median_ms\n{},1.0\n"), "not a readable parquet file"),
        (lambda p: p.write_bytes(b""), "not a readable parquet file"),
        (lambda p: _write_parquet(p, [small_row(0)], None), "not a latbench result store"),
        (
            lambda p: _write_parquet(
                p, [{k: v for k, v in small_row(0).items() if k != "median_ms"}], {b"latbench_store_schema": b"1"}
            ),
            "missing column(s) median_ms",
        ),
        (
            lambda p: _write_parquet(p, [small_row(0)], {b"latbench_store_schema": b"99"}),
            "store schema version 99",
        ),
        (
            lambda p: _write_parquet(p, [small_row(0), small_row(0)], {b"latbench_store_schema": b"1"}),
            "1 duplicated measurement key(s)",
        ),
        (
            lambda p: _write_parquet(p, [small_row(0)], {b"latbench_store_schema": b"1", b"latbench_envs": b"{"}),
            "malformed environment fingerprints",
        ),
    ],
    ids=["csv", "empty", "foreign-parquet", "missing-column", "schema-version", "duplicates", "bad-envs"],
)
def test_bad_files_get_one_line_naming_them(tmp_path, make, message):
    path = tmp_path / "x.parquet"
    make(path)
    for opener in (ResultStore.open_readonly, ResultStore, read_store):
        with pytest.raises(LatbenchError) as err:
            opener(path)
        text = str(err.value)
        assert text.startswith(f"{path}: ") and message in text and "\n" not in text


def test_truncated_file_and_directory_and_absent_file(tmp_path):
    path = tmp_path / "x.parquet"
    with ResultStore(path) as store:
        store.append([small_row(i) for i in range(4)], {ENV_ID: FINGERPRINT})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(LatbenchError, match="not a readable parquet file"):
        ResultStore.open_readonly(path)
    with pytest.raises(LatbenchError, match="is a directory"):
        ResultStore(tmp_path)
    with pytest.raises(LatbenchError, match=r"absent\.parquet: no such file"):
        ResultStore.open_readonly(tmp_path / "absent.parquet")


# ------------------------------------------------------ duplicates and resume
def test_duplicates_are_refused_and_nothing_is_written(tmp_path):
    path = tmp_path / "x.parquet"
    with ResultStore(path) as store:
        store.append([small_row(0), small_row(1)], {ENV_ID: FINGERPRINT})
        before = path.read_bytes()
        with pytest.raises(LatbenchError, match=r"1 measurement\(s\) already in the store"):
            store.append([small_row(2), small_row(1, median_ms=9.0)])
        with pytest.raises(LatbenchError, match="the rows repeat a measurement key"):
            store.append([small_row(3), small_row(3)])
        assert path.read_bytes() == before and len(store) == 2
        # A missing sequence length is one key however it is spelled.
        store.append([small_row(4, seq_len=None)])
        with pytest.raises(LatbenchError, match="already in the store"):
            store.append(pd.DataFrame([small_row(4, seq_len=float("nan"))]))


def test_resume_with_missing_keeps_order(tmp_path):
    rows = [small_row(i) for i in range(10)]
    planned = [measurement_key(r) for r in rows]
    with ResultStore(tmp_path / "x.parquet") as store:
        store.append([rows[i] for i in (0, 3, 4, 8)], {ENV_ID: FINGERPRINT})
        assert store.missing(planned) == [planned[i] for i in (1, 2, 5, 6, 7, 9)]
        assert store.missing(planned[1:2] * 3) == planned[1:2]
        assert store.has(planned[3]) and not store.has(planned[1])
        spelled = (planned[0][0], "model", np.int64(-1), planned[0][3], np.int32(1), np.float64(128.0))
        assert store.has(spelled) and spelled in store
        for key in store.missing(planned):
            store.append([rows[planned.index(key)]])
        assert store.missing(planned) == [] and store.keys() == set(planned)
        assert [measurement_key(r) for r in store.to_frame().to_dict("records")] == [
            planned[i] for i in (0, 3, 4, 8, 1, 2, 5, 6, 7, 9)
        ]
    assert KEY_COLUMNS == ("arch", "scope", "block_index", "deploy_key", "batch", "seq_len")


def test_single_append_to_a_large_store_is_fast(tmp_path):
    rows = [make_row(i, samples=100) for i in range(5001)]
    with ResultStore(tmp_path / "x.parquet") as store:
        store.append(rows[:5000], {ENV_ID: FINGERPRINT})
        start = time.perf_counter()
        store.append(rows[5000:])
        elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"one-row append to 5000 rows took {elapsed:.2f} s"
    assert len(ResultStore.open_readonly(tmp_path / "x.parquet")) == 5001


# ------------------------------------------------------------------ atomicity
def test_failed_write_leaves_previous_file_and_state(tmp_path, monkeypatch):
    path = tmp_path / "x.parquet"
    with ResultStore(path) as store:
        store.append([small_row(0)], {ENV_ID: FINGERPRINT})
        before = path.read_bytes()

        def half_write(table: pa.Table, where: Path, **kwargs: object) -> None:
            Path(where).write_bytes(b"PAR1 half of a file")
            raise OSError("disk full")

        monkeypatch.setattr(store_mod.pq, "write_table", half_write)
        with pytest.raises(OSError, match="disk full"):
            store.append([small_row(1)])
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert {p.name for p in tmp_path.iterdir()} == {"x.parquet", "x.parquet.lock"}  # no temporary left
        assert len(store) == 1 and not store.has(measurement_key(small_row(1)))
        store.append([small_row(1)])
    assert len(ResultStore.open_readonly(path)) == 2


def test_leftover_temporaries_are_ignored_then_cleaned(tmp_path):
    path = tmp_path / "x.parquet"
    with ResultStore(path) as store:
        store.append([small_row(0)], {ENV_ID: FINGERPRINT})
    stale = tmp_path / ".x.parquet.k1ll3d.tmp"
    stale.write_bytes(b"PAR1 truncated by kill -9")
    other = tmp_path / ".y.parquet.k1ll3d.tmp"
    other.write_bytes(b"not ours")
    assert len(ResultStore.open_readonly(path)) == 1 and stale.exists()
    with ResultStore(path) as store:
        assert not stale.exists() and other.exists() and len(store) == 1


def test_readonly_store_refuses_to_write_and_follows_the_file(tmp_path):
    path = tmp_path / "x.parquet"
    with ResultStore(path) as writer:
        writer.append([small_row(0)], {ENV_ID: FINGERPRINT})
        reader = ResultStore.open_readonly(path)  # no lock needed while the writer holds it
        with pytest.raises(LatbenchError, match="read-only"):
            reader.append([small_row(1)])
        writer.append([small_row(1)])
        assert len(reader) == 2  # re-read because the file changed
    with pytest.raises(LatbenchError, match="store is closed"):
        writer.append([small_row(2)])


# ----------------------------------------------------------------------- lock
def test_second_writer_in_another_process_is_refused_until_the_first_closes(tmp_path):
    path = tmp_path / "runs" / "x.parquet"
    with ResultStore(path):
        with pytest.raises(LatbenchError, match="locked by another latbench process"):
            ResultStore(path)  # the same process counts too: the lock is per open store
        refused = run_worker("try", str(path))
    assert refused.returncode == 3, refused.stderr
    assert refused.stdout == (
        f"{path}: locked by another latbench process (pid {os.getpid()}); wait for it or use another --out\n"
    )
    allowed = run_worker("try", str(path))
    assert (allowed.returncode, allowed.stdout) == (0, "ok\n"), allowed.stderr


def test_lock_of_a_killed_holder_is_free(tmp_path):
    path = tmp_path / "x.parquet"
    holder = start_worker("hold", str(path))
    try:
        wait_for_line(holder, "locked")
        with pytest.raises(LatbenchError) as err:
            ResultStore(path)
        assert str(err.value) == (
            f"{path}: locked by another latbench process (pid {holder.pid}); wait for it or use another --out"
        )
    finally:
        kill9(holder)
    with ResultStore(path) as store:
        assert len(store) == 0


# ------------------------------------------------------------ kill -9 mid-run
def test_kill_9_during_writes_leaves_a_prefix_and_resume_completes(tmp_path):
    path = tmp_path / "runs" / "x.parquet"
    n_rows = 80
    expected = [make_row(i) for i in range(n_rows)]
    rng = random.Random(20240607)
    stored: list[int] = []
    for _ in range(4):
        writer = start_worker("write", str(path), str(n_rows))
        wait_for_line(writer, "ready")
        time.sleep(rng.uniform(0.02, 0.3))
        kill9(writer)
        if path.exists():
            store = ResultStore.open_readonly(path)
            df = store.to_frame()
            assert_rows_equal(df, expected[: len(df)])  # a prefix: nothing partial, nothing duplicated
            assert store.fingerprints() == {ENV_ID: FINGERPRINT}
            stored.append(len(df))
    assert stored and min(stored) < n_rows, f"no kill landed before the run finished: {stored}"
    assert stored == sorted(stored)

    done = run_worker("write", str(path), str(n_rows))
    assert done.returncode == 0, done.stderr
    assert_rows_equal(read_store(path), expected)
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")]
