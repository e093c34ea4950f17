"""The noise floor: profile the same architectures twice, with latbench's protocol and with a naive loop.

Each protocol measures the same set of architectures in two runs, and the runs
of one protocol are separated by a run of the other (minutes apart: back-to-back
agreement is not stability, MEASUREMENT.md). The figure is the relative
difference between the two runs per architecture, |a - b| / mean(a, b), its
mean and max over the set; plus profiling throughput and the stable share.

The naive loop is what the field's tools do: a few warm-up calls, then a few
short loops timed with ``time.time()`` around the loop, median of the loop means.

    python benchmarks/noise.py                      # CPU, 20 bert architectures, seq 128, 1 thread
    python benchmarks/noise.py --device cuda:0      # GPU, graph mode (on a lent GPU)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def naive_ms(archs, deploy, seed: int) -> list[float]:
    import torch

    from latbench.models import build_model, example_inputs

    out = []
    dev = torch.device(deploy.device)
    if deploy.threads:
        torch.set_num_threads(deploy.threads)
    for arch in archs:
        model = build_model(arch, seed=seed).to(dev).eval()
        inputs = tuple(t.to(dev) for t in example_inputs(arch, deploy.batch, deploy.seq_len, seed=seed))
        with torch.inference_mode():
            for _ in range(5):
                model(*inputs)
            loops = []
            for _ in range(5):
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.time()
                for _ in range(5):
                    model(*inputs)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                loops.append((time.time() - t0) / 5 * 1e3)
        out.append(float(np.median(loops)))
        del model
    return out


def rel_diff(a: list[float], b: list[float]) -> np.ndarray:
    x, y = np.asarray(a), np.asarray(b)
    return np.abs(x - y) / ((x + y) / 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="bert")
    ap.add_argument("--n", type=int, default=20, help="architectures")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--mode", default=None)
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds per measurement (CPU protocol)")
    ap.add_argument("--calls-per-round", type=int, default=15)
    ap.add_argument("--budget-s", type=float, default=10.0)
    ap.add_argument("--group-size", type=int, default=20)
    ap.add_argument("--write", action="store_true", help="write the section into benchmarks/RESULTS.md")
    args = ap.parse_args()

    from latbench.profiling.config import DeployConfig, ProtocolConfig
    from latbench.profiling.job import profile_archs
    from latbench.space import get_space

    space = get_space(args.space)
    archs = list(dict.fromkeys(space.sample(args.seed, n=args.n)))
    seq = None if space.family == "vit" else args.seq
    deploy = DeployConfig(
        backend="torch",
        device=args.device,
        mode=args.mode,
        precision=args.precision,
        threads=args.threads if args.device == "cpu" else None,
        batch=args.batch,
        seq_len=seq,
    )
    protocol = ProtocolConfig(
        min_rounds=args.rounds, calls_per_round=args.calls_per_round, budget_s=args.budget_s, max_samples=5000
    )
    stats = ("median_ms", "p10_ms", "min_ms")
    results: dict[str, list[list[float]]] = {f"protocol, {s.removesuffix('_ms')}": [] for s in stats}
    results["naive"] = []
    load_before = os.getloadavg()
    stable, rows, secs = 0, 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(2):
            t0 = time.perf_counter()
            rep = profile_archs(
                archs,
                space.name,
                deploy,
                protocol,
                Path(tmp) / f"run{run}.parquet",
                blocks=False,
                seed=args.seed,
                group_size=args.group_size,
            )
            secs += time.perf_counter() - t0
            by_arch = {r["arch"]: r for r in rep.rows}
            for stat in stats:
                results[f"protocol, {stat.removesuffix('_ms')}"].append([by_arch[a.to_json()][stat] for a in archs])
            stable += sum(not r["unstable"] for r in rep.rows)
            rows += len(rep.rows)
            print(f"protocol run {run}: {time.perf_counter() - t0:.0f} s", flush=True)
            t0 = time.perf_counter()
            results["naive"].append(naive_ms(archs, deploy, args.seed))
            print(f"naive run {run}: {time.perf_counter() - t0:.0f} s", flush=True)

    lines = [
        f"{len(archs)} architectures of the `{space.name}` space, deployment `{deploy.label()}`, "
        f"protocol: {args.rounds} interleaved rounds of {args.calls_per_round} calls at least, "
        f"adaptive stop at ±1% CI of the median or {args.budget_s:g} s, all {len(archs)} models interleaved "
        "(one store row per model holds every statistic). "
        "Naive: 5 warm-up calls, 5 loops of 5 calls timed with `time.time()`, "
        "median of loop means. Two runs of each, the other protocol's run between them. "
        f"Load average (1 min) before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}.",
        "",
        "| protocol | rerun difference, mean | max |",
        "| --- | --- | --- |",
    ]
    for name, (a, b) in results.items():
        d = rel_diff(a, b)
        lines.append(f"| {name} | {100 * d.mean():.2f}% | {100 * d.max():.2f}% |")
    lines += [
        "",
        f"Profiling throughput (protocol, whole models only): {60 * 2 * len(archs) / secs:.1f} architectures per "
        f"minute; stable rows: {stable}/{rows} ({100 * stable / rows:.0f}%).",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        from _results import write_section  # the sibling module: this script runs as benchmarks/noise.py

        dev = "gpu" if args.device.startswith("cuda") else "cpu"
        write_section(f"noise-{dev}", f"Noise floor ({args.device})", body)


if __name__ == "__main__":
    main()
