"""Fleet profiling: wall time of one fixed LUT grid on 1 vs 2 devices of one target, and Ray's overhead.

A local Ray cluster offers two custom resources: ``one`` (1 unit) and ``two`` (2
units), each unit standing for one CPU "device" running 1 thread. The same grid is
measured (fresh store each time) by:

- ``local``: ``profile_items`` in this process, no Ray (the baseline);
- ``fleet 1 device``: one target on ``one``;
- ``fleet 2 devices``: one target on ``two``, the two units sharing the grid.

The configurations alternate over ``--repeats`` rounds so drift spreads over all of
them. Besides wall time, the median latency of every grid point is compared with
the 1-device run of the same round: on a machine with only 2 cores, two devices
measure each other (and the driver, Ray's own processes, and the rest of the
host), so a speed-up here says little about 8 GPUs on one node, and the latency
ratio shows what sharing the cores costs the measurements themselves.

    python benchmarks/fleet.py                    # prints markdown
    python benchmarks/fleet.py --repeats 3 --budget-s 0.5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

GRID = {
    "family": "bert",
    "axes": {"hidden": [128, 256], "heads": [2, 4], "qk_dim": [32, 64], "mlp": [256, 512]},
    "extras": {"vocab_size": 1000, "max_seq_len": 64},
}


def _targets(threads: int) -> Any:
    from latbench.fleet import parse_targets

    def entry(label: str, resource: str) -> dict[str, Any]:
        return {
            "label": label,
            "resource": resource,
            "device": "cpu",
            "deploy": {"backend": "torch", "threads": threads},
        }

    return {t.label: t for t in parse_targets({"targets": [entry("one-device", "one"), entry("two-devices", "two")]})}


def _medians(store: Path) -> dict[str, float]:
    from latbench.profiling.store import read_store

    df = read_store(store)
    return dict(zip(df.arch, df.median_ms))


def _run_local(grid: Path, target: Any, proto: Any, store: Path, seq: int, group_size: int) -> float:
    from latbench.fleet import lut_plan
    from latbench.profiling.job import profile_items

    plan = lut_plan(grid, [target], proto, seq_len=seq, group_size=group_size, peaks=False)
    t0 = time.perf_counter()
    profile_items(
        plan.items(), plan.space_name, plan.targets[0].deploy, proto, store, group_size=group_size, peaks=False
    )
    return time.perf_counter() - t0


def _run_fleet(grid: Path, target: Any, proto: Any, store: Path, seq: int, group_size: int, seed: int) -> float:
    from latbench.fleet import lut_plan, run_plan

    plan = lut_plan(grid, [target], proto, seq_len=seq, seed=seed, group_size=group_size, peaks=False)
    t0 = time.perf_counter()
    report = run_plan(plan, store, address="local", flush_s=1.0)
    wall = time.perf_counter() - t0
    if not report.complete:
        raise SystemExit(f"fleet run incomplete: {report.errors()}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="Rounds over the three configurations.")
    ap.add_argument("--budget-s", type=float, default=0.3, help="Time budget of one measurement.")
    ap.add_argument("--min-samples", type=int, default=30, help="Samples always taken per measurement.")
    ap.add_argument("--threads", type=int, default=1, help="Threads per device.")
    ap.add_argument("--seq", type=int, default=32, help="Sequence length.")
    ap.add_argument("--group-size", type=int, default=2, help="Grid points per task.")
    args = ap.parse_args()

    import ray

    from latbench.profiling.config import ProtocolConfig

    proto = ProtocolConfig(budget_s=args.budget_s, min_samples=args.min_samples)
    targets = _targets(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="latbench-fleet-bench-"))
    grid = tmp / "grid.json"
    grid.write_text(json.dumps(GRID))
    n_points = 1
    for values in GRID["axes"].values():
        n_points *= len(values)

    t0 = time.perf_counter()
    ray.init(
        address="local",
        num_cpus=2,
        resources={"one": 1, "two": 2},
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )
    init_s = time.perf_counter() - t0
    # Warm-up (untimed): start the workers of both resources and import torch in them.
    warm = tmp / "warm.json"
    warm.write_text(json.dumps({**GRID, "axes": {"hidden": [64], "heads": [1, 2], "qk_dim": [16], "mlp": [64, 128]}}))
    quick = ProtocolConfig(budget_s=0.05, min_samples=5)
    for t in targets.values():
        _run_fleet(warm, t, quick, tmp / f"warm-{t.label}.parquet", args.seq, 1, 0)
    _run_local(warm, targets["one-device"], quick, tmp / "warm-local.parquet", args.seq, 1)
    load_before = os.getloadavg()

    walls: dict[str, list[float]] = {"local": [], "fleet 1 device": [], "fleet 2 devices": []}
    ratios: dict[str, list[float]] = {"local": [], "fleet 2 devices": []}
    for r in range(args.repeats):
        stores = {name: tmp / f"r{r}-{i}.parquet" for i, name in enumerate(walls)}
        walls["local"].append(
            _run_local(grid, targets["one-device"], proto, stores["local"], args.seq, args.group_size)
        )
        walls["fleet 1 device"].append(
            _run_fleet(grid, targets["one-device"], proto, stores["fleet 1 device"], args.seq, args.group_size, r)
        )
        walls["fleet 2 devices"].append(
            _run_fleet(grid, targets["two-devices"], proto, stores["fleet 2 devices"], args.seq, args.group_size, r)
        )
        ref = _medians(stores["fleet 1 device"])
        for name in ratios:
            other = _medians(stores[name])
            ratios[name].append(statistics.median(other[a] / ref[a] for a in ref))
    load_after = os.getloadavg()
    ray.shutdown()

    from latbench.profiling.fingerprint import collect, cpu_info

    cpu = cpu_info()
    fp = collect()
    one = statistics.median(walls["fleet 1 device"])
    print("## Fleet profiling: one grid on 1 vs 2 devices of one target\n")
    print(f"- machine: {cpu['model']} ({cpu['usable_cores']} usable cores), no GPU")
    print(f"- libraries: ray {fp.libraries.get('ray', '?')}, torch {fp.libraries.get('torch', '?')}")
    print(f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    print(
        f"- command: `python benchmarks/fleet.py --repeats {args.repeats} --budget-s {args.budget_s} "
        f"--min-samples {args.min_samples} --threads {args.threads} --seq {args.seq} --group-size {args.group_size}`"
    )
    print(
        f"- grid: {n_points} bert blocks (hidden 128/256, heads 2/4, qk 32/64, mlp 256/512), seq {args.seq}, "
        f"batch 1, torch eager fp32, {args.threads} thread(s) per device, {args.group_size} points per task"
    )
    print(
        f"- load average (1 min) before / after the timed runs: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(other jobs share this host)"
    )
    print(f"- Ray local cluster start: {init_s:.1f} s (not in the wall times)\n")
    print(
        "| configuration | devices | wall s (median) | runs | speed-up vs fleet 1 device "
        "| median latency vs 1-device run |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in walls.items():
        med = statistics.median(values)
        devices = {"local": "1 (no Ray)", "fleet 1 device": "1", "fleet 2 devices": "2"}[name]
        ratio = f"{statistics.median(ratios[name]):.3f}" if name in ratios else "1 (reference)"
        runs = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {devices} | {med:.1f} | {runs} | {one / med:.2f}x | {ratio} |")
    print(
        "\nTwo devices here are two single-thread workers on a 2-core shared machine that also runs the driver "
        "and Ray's own processes: they measure each other, so neither the speed-up nor the latencies carry over "
        "to a node with several GPUs. What this shows: the work is split and complete, Ray's overhead against a "
        "local run, and how much sharing the cores moves the medians. Not shown on these machines: several GPUs "
        "of one kind sharing a grid (no multi-GPU node), and a multi-node cluster."
    )


if __name__ == "__main__":
    main()
