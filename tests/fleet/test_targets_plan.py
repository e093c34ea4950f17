"""Targets files, plans, dealing and environment comparison: no Ray needed."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from latbench.errors import LatbenchError
from latbench.fleet import (
    FleetPlan,
    Target,
    deal,
    env_differences,
    item_key,
    parse_targets,
    plan_path,
    profile_plan,
    read_plan,
    read_targets,
    split_deploy_key,
)
from latbench.fleet.envs import label_warning
from latbench.fleet.plan import write_plan
from latbench.fleet.targets import targets_json
from latbench.profiling.config import DeployConfig
from latbench.profiling.job import WorkItem
from latbench.space import SearchSpace
from tests.fleet.conftest import FAST, TINY_SPACE, target_entry, two_targets


def test_targets_json_and_yaml_read_alike(tmp_path: Path):
    data = two_targets()
    j = tmp_path / "t.json"
    j.write_text(json.dumps(data))
    from_json = read_targets(j)
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with latbench[ray])")
    y = tmp_path / "t.yaml"
    y.write_text(yaml.safe_dump(data))
    assert read_targets(y) == from_json
    assert [t.label for t in from_json] == ["dev-a", "dev-b"]
    t = from_json[0]
    assert t.resource == "cpu_dev_a" and t.deploy.threads == 1 and t.num_cpus == 1.0 and t.num_gpus == 0
    assert t.deploy.mode == "eager"  # resolved from backend and device
    # targets_json writes what read_targets reads.
    again = tmp_path / "again.json"
    again.write_text(targets_json(from_json))
    assert read_targets(again) == from_json
    assert Target.from_dict(t.to_dict()) == t


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"label": "a,b", "resource": "r", "device": "cpu", "deploy": {"backend": "torch", "threads": 1}}, "label"),
        ({"label": "a", "device": "cpu", "deploy": {"backend": "torch", "threads": 1}}, "missing 'resource'"),
        ({"label": "a", "resource": "GPU", "device": "cuda:0", "deploy": {"backend": "torch"}}, "Ray's own"),
        ({"label": "a", "resource": "r", "device": "cpu", "deploy": {"backend": "torch"}}, "needs deploy.threads"),
        ({"label": "a", "resource": "r", "device": "cuda:1", "deploy": {"backend": "torch"}}, "cuda:0"),
        (
            {"label": "a", "resource": "r", "device": "cuda:0", "deploy": {"backend": "torch"}, "num_gpus": 0.5},
            "0 or 1",
        ),
        (
            {"label": "a", "resource": "r", "device": "cpu", "deploy": {"backend": "torch", "threads": 1, "batch": 2}},
            "--batch",
        ),
        ({"label": "a", "resource": "r", "device": "cpu", "deploy": {"backend": "tensorrt", "threads": 1}}, "tensorrt"),
        (
            {"label": "a", "resource": "r", "device": "cpu", "deploy": {"backend": "torch", "threads": 1}, "gpu": 1},
            "'gpu'",
        ),
        ({"label": "a", "resource": "r", "device": "cpu", "deploy": {"threads": 1}}, "missing 'backend'"),
    ],
)
def test_bad_target_entries_are_one_line_errors_naming_the_target(entry, fragment):
    with pytest.raises(LatbenchError) as err:
        parse_targets({"targets": [entry]}, "t.yaml")
    msg = str(err.value)
    assert msg.startswith("t.yaml: target ") and fragment in msg and "\n" not in msg


def test_bad_targets_files(tmp_path: Path):
    with pytest.raises(LatbenchError, match="no such file"):
        read_targets(tmp_path / "absent.json")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps({"targets": [target_entry("x", "r1"), target_entry("x", "r2")]}))
    with pytest.raises(LatbenchError, match="used by two targets"):
        read_targets(dup)
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    with pytest.raises(LatbenchError, match="non-empty list"):
        read_targets(empty)
    broken = tmp_path / "broken.json"
    broken.write_text("{targets: [")
    with pytest.raises(LatbenchError, match=re.escape(str(broken))):
        read_targets(broken)
    pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with latbench[ray])")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("targets:\n  - label: [unclosed\n")
    with pytest.raises(LatbenchError, match="invalid YAML at line"):
        read_targets(bad_yaml)


def test_the_label_makes_two_identical_deployments_distinct_keys():
    a, b = parse_targets(two_targets())
    assert a.deploy.key() == b.deploy.key()  # same machine kind, same deployment ...
    assert a.store_key != b.store_key  # ... different rows
    label, rest = split_deploy_key(a.store_key)
    assert label == "dev-a" and DeployConfig.from_key(rest) == a.deploy
    assert split_deploy_key(a.deploy.key()) == (None, a.deploy.key())
    space = SearchSpace.from_dict(TINY_SPACE)
    item = WorkItem(space.sample(0), "model", -1)
    assert item_key(item, a)[:3] == item_key(item, b)[:3] and item_key(item, a) != item_key(item, b)


def test_deal_is_seeded_keeps_archs_together_and_mixes_the_grid():
    space = SearchSpace.from_dict(TINY_SPACE)
    from latbench.profiling.job import work_items

    items = work_items(space.sample(3, n=12), blocks=True)
    chunks = deal(items, seed=7, group_size=2)
    assert deal(items, seed=7, group_size=2) == chunks and deal(items, seed=8, group_size=2) != chunks
    flat = [it for c in chunks for it in c]
    assert Counter(flat) == Counter(items)  # every item once
    for c in chunks:
        assert len({it.arch for it in c}) <= 2  # group_size architectures per chunk, blocks with their model
    # A chunk of a shuffled deal is not a contiguous slice of the sampling order.
    order = {it.arch: i for i, it in reversed(list(enumerate(items)))}
    firsts = [order[c[0].arch] for c in chunks]
    assert firsts != sorted(firsts)


def test_plan_round_trips_and_is_written_beside_the_store(tmp_path: Path):
    space = SearchSpace.from_dict(TINY_SPACE)
    plan = profile_plan(space, 3, parse_targets(two_targets()), FAST, seq_len=8, seed=1)
    assert FleetPlan.from_dict(plan.to_dict()) == plan
    assert len(plan.items()) >= 3 and all(t.deploy.seq_len == 8 for t in plan.targets)
    store = tmp_path / "x.parquet"
    assert read_plan(store) is None
    write_plan(store, plan)
    assert plan_path(store).name == "x.parquet.fleet.json"
    back = read_plan(store)
    assert back == plan and [k for k in back.keys(back.targets[0])] == plan.keys(plan.targets[0])
    plan_path(store).write_text(json.dumps({"schema_version": 99, "plan": {}}))
    with pytest.raises(LatbenchError, match="schema version 99"):
        read_plan(store)


def test_plan_checks_the_workload_per_target():
    space = SearchSpace.from_dict(TINY_SPACE)
    with pytest.raises(LatbenchError, match=r"target 'dev-a'.*sequence length"):
        profile_plan(space, 2, parse_targets(two_targets()), FAST)


def _fp(driver: str, uuid: str) -> dict:
    return {
        "cpu": {"model": "EPYC", "arch": "x86_64", "logical_cores": 16, "flags": ["avx2"]},
        "threads": 1,
        "python": "3.11",
        "platform": "linux",
        "libraries": {"torch": "2.13.0"},
        "gpus": [{"index": 0, "name": "H100", "uuid": uuid, "driver_version": driver, "power_limit_w": 700.0}],
    }


def test_environments_that_differ_only_in_gpu_uuid_are_alike_others_warn():
    same = {"e1": _fp("550.54", "GPU-1"), "e2": _fp("550.54", "GPU-2")}
    assert env_differences(same) == [] and label_warning("h100", same) is None
    other = {"e1": _fp("550.54", "GPU-1"), "e3": _fp("535.104", "GPU-3")}
    assert env_differences(other) == ["gpus[0].driver_version: 535.104 vs 550.54"]
    message = label_warning("h100", other)
    assert message is not None and "'h100'" in message and "driver_version" in message and "kept apart" in message


def test_importing_the_fleet_imports_neither_ray_nor_torch():
    import subprocess
    import sys

    code = "import sys, latbench.fleet, latbench.cli.fleet; print('ray' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
