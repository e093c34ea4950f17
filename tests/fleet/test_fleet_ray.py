"""Fleet runs on a local Ray cluster whose custom resources stand for CPU "devices".

Every run here is small (a tiny space, tiny budgets, one thread per device); the
assertions are about completeness, keys and tags, never about latencies.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from latbench.errors import LatbenchError
from latbench.fleet import fleet_build_lut, fleet_profile, fleet_status, parse_targets, read_plan
from latbench.lut.table import LookupTable
from latbench.profiling.job import profile_space
from latbench.profiling.store import KEY_COLUMNS, read_store
from latbench.space import SearchSpace
from tests.fleet.conftest import FAST, TINY_GRID, TINY_SPACE, target_entry, two_targets

pytest.importorskip("ray", reason="ray is not installed (pip install 'latbench[ray]')")

SPACE = SearchSpace.from_dict(TINY_SPACE)


def run(targets: Any, out: Path, samples: int = 4, **kwargs: Any) -> Any:
    kwargs.setdefault("group_size", 1)
    return fleet_profile(SPACE, samples, targets, FAST, out, seq_len=8, seed=0, peaks=False, **kwargs)


def assert_no_duplicate_keys(df: Any) -> None:
    keys = list(zip(*(df[c] for c in KEY_COLUMNS)))
    assert len(keys) == len(set(keys))


def test_two_targets_each_measure_what_a_single_machine_run_measures(ray_cluster, tmp_path):
    targets = parse_targets(two_targets())
    out = tmp_path / "fleet.parquet"
    report = run(targets, out)
    assert report.complete and not report.warnings and report.measured == 2 * report.targets[0].requested
    df = read_store(out)
    assert_no_duplicate_keys(df)
    local = tmp_path / "local.parquet"
    profile_space(SPACE, 4, 0, targets[0].with_workload(1, 8).deploy, FAST, local, peaks=False)
    single = read_store(local)
    want = set(zip(single.arch, single.scope, single.block_index))
    for t in targets:
        mine = df[df.target == t.label]
        assert set(zip(mine.arch, mine.scope, mine.block_index)) == want
        assert (mine.deploy_key == f"target={t.label},{single.deploy_key.iloc[0]}").all()
    assert (df.median_ms > 0).all() and (df.p90_ms >= df.median_ms).all() and df.node.notna().all()
    assert set(df.env_id) <= set(read_store(out).env_id) and df.env_id.nunique() == 1
    # The plan is kept beside the store; status reads it back.
    assert read_plan(out).samples == 4
    st = fleet_status(out)
    assert [(t.label, t.done, t.requested) for t in st.targets] == [
        (t.label, report.targets[0].requested, report.targets[0].requested) for t in targets
    ]
    assert all(len(t.envs) == 1 and t.envs[0].rows == t.done for t in st.targets) and not st.warnings


def test_identical_devices_share_one_target_and_a_killed_worker_is_retried(ray_cluster, tmp_path):
    # One target on a resource with two units: two "devices" share the sample.
    targets = parse_targets({"targets": [target_entry("pair", "cpu_pair")]})
    marker = tmp_path / "killed-once"

    def kill_first_attempt(*args: Any, **kwargs: Any) -> Any:
        import os
        import signal

        from latbench.profiling.job import measure_group

        try:  # O_EXCL: exactly one task in the whole run claims the marker, and dies
            os.close(os.open(str(marker), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return measure_group(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    out = tmp_path / "pair.parquet"
    report = run(targets, out, samples=6, measure_fn=kill_first_attempt, max_retries=2)
    assert marker.exists(), "no worker was killed"
    (tr,) = report.targets
    assert report.complete and tr.units == 2 and tr.measured == tr.requested
    df = read_store(out)
    assert_no_duplicate_keys(df)
    assert len(df) == tr.requested and (df.target == "pair").all()


def test_a_restarted_driver_resumes_without_duplicates(ray_cluster, tmp_path):
    targets = parse_targets(two_targets())
    out = tmp_path / "resume.parquet"
    landed: list[int] = []

    def crash_after_first_chunk(label: str, done: int, total: int) -> None:
        landed.append(done)
        if done > 0:
            raise KeyboardInterrupt  # the driver dies with tasks still running on the devices

    with pytest.raises(KeyboardInterrupt):  # rows that arrived are written even before a flush is due
        run(targets, out, on_progress=crash_after_first_chunk, flush_s=3600.0)
    partial = read_store(out)
    assert 0 < len(partial)
    report = run(targets, out)
    assert report.complete
    assert sum(t.already_done for t in report.targets) == len(partial)
    df = read_store(out)
    assert_no_duplicate_keys(df)
    assert len(df) == sum(t.requested for t in report.targets)
    # Nothing left: a third run measures nothing and does not even need the cluster.
    again = run(targets, out, address="ray://127.0.0.1:1")
    assert again.measured == 0 and again.complete


def test_build_lut_writes_one_complete_table_per_target(ray_cluster, tmp_path, grid_file):
    targets = parse_targets(two_targets())
    result = fleet_build_lut(grid_file, targets, FAST, tmp_path / "luts", seq_len=8, peaks=False, group_size=2)
    assert result.run.complete and set(result.tables) == {"dev-a", "dev-b"}
    n_points = 1
    for values in TINY_GRID["axes"].values():
        n_points *= len(values)
    for label, path in result.tables.items():
        table = LookupTable.load(path)
        cov = table.coverage()
        assert cov.measured == cov.total == n_points and cov.missing == 0
        assert table.meta.family == "bert" and table.meta.env_id is not None and label in table.meta.source
        assert table.meta.deploy["threads"] == 1 and table.meta.workload == {"batch": 1, "seq_len": 8}
    df = read_store(result.store)
    assert Counter(df.target) == {"dev-a": n_points, "dev-b": n_points}
    assert set(df.space) == {"lut:grid.json"}


def test_a_target_no_node_offers_is_refused_in_one_line(ray_cluster, tmp_path):
    targets = parse_targets({"targets": [target_entry("ghost", "no_such_device")]})
    with pytest.raises(LatbenchError) as err:
        run(targets, tmp_path / "ghost.parquet")
    msg = str(err.value)
    assert "target 'ghost'" in msg and "no_such_device" in msg and "cpu_dev_a" in msg and "\n" not in msg


def test_an_error_in_the_measurement_stops_its_target_and_keeps_the_others(ray_cluster, tmp_path):
    targets = parse_targets(two_targets())

    def fail_on_dev_b(*args: Any, **kwargs: Any) -> Any:
        import ray

        from latbench.errors import LatbenchError
        from latbench.profiling.job import measure_group

        # The unit of work does not see the target; its task holds dev-b's resource.
        if "cpu_dev_b" in ray.get_runtime_context().get_assigned_resources():
            raise LatbenchError("device", "broken on purpose")
        return measure_group(*args, **kwargs)

    out = tmp_path / "err.parquet"
    report = run(targets, out, measure_fn=fail_on_dev_b)
    a, b = report.targets
    assert a.complete and b.error is not None and "broken on purpose" in b.error and not report.complete
    assert any("dev-b" in w for w in report.warnings)
    df = read_store(out)
    assert set(df.target) == {"dev-a"} and len(df) == a.requested


def test_status_json_lists_fingerprints_and_units(ray_cluster, tmp_path):
    targets = parse_targets(two_targets())
    out = tmp_path / "st.parquet"
    run(targets, out, samples=2, blocks=False)
    st = fleet_status(out, targets, address="auto")
    d = json.loads(json.dumps(st.to_dict()))
    assert [t["label"] for t in d["targets"]] == ["dev-a", "dev-b"]
    for t in d["targets"]:
        assert t["done"] == t["requested"] == 2 and t["units"] == 1.0 and t["resource"].startswith("cpu_dev_")
        assert t["envs"] and t["envs"][0]["description"]
