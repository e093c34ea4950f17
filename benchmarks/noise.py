"""The noise floor: profile the same architectures twice, with latbench's protocol and with a naive loop.

Each protocol measures the same set of architectures in two runs, and the runs
of one protocol are separated by a run of the other (minutes apart: back-to-back
agreement is not stability, MEASUREMENT.md). The figure is the relative
difference between the two runs per architecture, |a - b| / mean(a, b), its
mean and max over the set; plus profiling throughput and the stable share.

The naive loop is what the field's tools do: a few warm-up calls, then a few
short loops timed with ``time.time()`` around the loop, median of the loop means.

The machine's own speed is measured beside every latency: the protocol times a
fixed reference workload (:func:`latbench.profiling.reference.cpu_reference`) at
the start of each round and stores its median per row (``ref_ms``); the naive
loop times the same reference before each architecture. The table gives the
rerun difference of the latencies as measured (the figure the target is about),
the shift of run 2 against run 1 common to all architectures (median ratio - 1)
next to the reference's own shift, and two labelled diagnostics: the rerun
difference of latency / reference (what is left once the machine's drift, as
the reference saw it, is divided out), and the rerun difference once the common
shift is divided out (how well each architecture's latency *relative to the
others* repeats).

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


def naive_ms(archs, deploy, seed: int) -> tuple[list[float], list[float]]:
    """The naive loop's latency of each architecture, and the CPU reference timed just before it (ms)."""
    import torch

    from latbench.models import build_model, example_inputs
    from latbench.profiling.reference import cpu_reference

    out, refs = [], []
    dev = torch.device(deploy.device)
    if deploy.threads:
        torch.set_num_threads(deploy.threads)
    for arch in archs:
        model = build_model(arch, seed=seed).to(dev).eval()
        inputs = tuple(t.to(dev) for t in example_inputs(arch, deploy.batch, deploy.seq_len, seed=seed))
        refs.append(float(np.median(cpu_reference(3))) if dev.type == "cpu" else float("nan"))
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
    return out, refs


def rel_diff(a: list[float], b: list[float]) -> np.ndarray:
    x, y = np.asarray(a), np.asarray(b)
    return np.abs(x - y) / ((x + y) / 2)


def shift(a: list[float], b: list[float]) -> float:
    """The change from run 1 to run 2 common to all architectures: median of b / a, minus 1, in percent."""
    return 100 * (float(np.median(np.divide(b, a))) - 1)


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
    ap.add_argument("--reference-calls", type=int, default=3, help="CPU reference timings per round")
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
        min_rounds=args.rounds,
        calls_per_round=args.calls_per_round,
        budget_s=args.budget_s,
        max_samples=5000,
        reference_calls=args.reference_calls,
    )
    stats = ("median_ms", "p10_ms", "min_ms")
    results: dict[str, list[list[float]]] = {f"protocol, {s.removesuffix('_ms')}": [] for s in stats}
    results["naive"] = []
    refs: dict[str, list[list[float]]] = {"protocol": [], "naive": []}
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
            refs["protocol"].append([by_arch[a.to_json()]["ref_ms"] for a in archs])
            stable += sum(not r["unstable"] for r in rep.rows)
            rows += len(rep.rows)
            print(f"protocol run {run}: {time.perf_counter() - t0:.0f} s", flush=True)
            t0 = time.perf_counter()
            naive, naive_refs = naive_ms(archs, deploy, args.seed)
            results["naive"].append(naive)
            refs["naive"].append(naive_refs)
            print(f"naive run {run}: {time.perf_counter() - t0:.0f} s", flush=True)

    ref_text = (
        f"Reference: {args.reference_calls} timings of the fixed CPU workload per round (protocol) and before "
        "each architecture (naive). "
        if args.device == "cpu"
        else "No reference workload on a GPU: NVML's clocks and throttle reasons, recorded before and after "
        "each measurement, mark a row unstable instead. "
    )
    lines = [
        f"{len(archs)} architectures of the `{space.name}` space, deployment `{deploy.label()}`, "
        f"protocol: {args.rounds} interleaved rounds of {args.calls_per_round} calls at least "
        "(the budget never stops a model before its rounds are done), "
        f"adaptive stop at ±1% CI of the median or {args.budget_s:g} s, all {len(archs)} models interleaved "
        "(one store row per model holds every statistic). "
        "Naive: 5 warm-up calls, 5 loops of 5 calls timed with `time.time()`, "
        "median of loop means. Two runs of each, the other protocol's run between them. "
        f"{ref_text}"
        f"Load average (1 min) before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}.",
        "",
        "| protocol | rerun difference, mean | max | run 2 / run 1, common shift | reference's shift "
        "| latency / reference: rerun difference, mean | max | common shift divided out: mean | max |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, (a, b) in results.items():
        ra, rb = (np.asarray(r, dtype=float) for r in refs["naive" if name == "naive" else "protocol"])  # None: nan
        with np.errstate(invalid="ignore"):
            d, dn = rel_diff(a, b), rel_diff(np.divide(a, ra), np.divide(b, rb))
        dc = rel_diff(np.multiply(a, 1 + shift(a, b) / 100), b)
        has_ref = bool(np.isfinite(ra).all() and np.isfinite(rb).all())  # no CPU reference on a GPU
        ref_cols = (
            f"{shift(ra, rb):+.2f}% | {100 * dn.mean():.2f}% | {100 * dn.max():.2f}%" if has_ref else "n/a | n/a | n/a"
        )
        lines.append(
            f"| {name} | {100 * d.mean():.2f}% | {100 * d.max():.2f}% | {shift(a, b):+.2f}% | {ref_cols} "
            f"| {100 * dc.mean():.2f}% | {100 * dc.max():.2f}% |"
        )
        print(name, "per-architecture run 2 / run 1:", np.round(np.divide(b, a), 3).tolist())
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
