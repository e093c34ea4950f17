"""How the CPU defaults were chosen: one long interleaved trace, replayed as many protocols.

Instead of running each candidate protocol twice (and comparing runs taken at different times of
a drifting machine), this records one long trace: the architectures of the default command
(6 bert architectures, seq 128, batch 1, whole models) are timed round-robin for ``--minutes``,
``--calls`` calls each per round, every call timestamped, with the CPU reference workload timed at
the start of every round, exactly as the profiler does (one process, one thread, pinned).

A candidate protocol (``calls_per_round`` x ``rounds``) then corresponds to a run of consecutive
trace rounds; two back-to-back runs are two consecutive such blocks. For every candidate the
script replays all consecutive pairs of blocks in the trace and reports the rerun difference of
each statistic (median, mean, p10, min): its mean over pairs and architectures, the mean of the
per-pair worst architecture, and the wall time one run of the default command would take.

    python benchmarks/protocol_choice.py --minutes 8 --write      # section protocol-choice-cpu
    python benchmarks/protocol_choice.py --threads 2 --no-pin     # the same with other placements
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

STATS = ("median", "mean", "p10", "min")


def stat(x: np.ndarray, name: str) -> float:
    if name == "median":
        return float(np.median(x))
    if name == "mean":
        return float(np.mean(x))
    if name == "p10":
        return float(np.percentile(x, 10))
    return float(np.min(x))


def timed_calls(module, inputs: tuple, n: int) -> list[float]:
    """One untimed call (the protocol's at a switch between configurations), then ``n`` timed ones (ms)."""
    module(*inputs)
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        module(*inputs)
        out.append((time.perf_counter_ns() - t0) / 1e6)
    return out


def record(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """Trace: samples[round, arch, call] (ms), round start times (s), reference per round (ms), placement."""
    import torch

    from latbench.models import build_model, example_inputs
    from latbench.profiling.placement import pinned, plan
    from latbench.profiling.reference import cpu_reference
    from latbench.space import get_space

    archs = list(dict.fromkeys(get_space("bert").sample(args.seed, n=args.n)))
    torch.set_num_threads(args.threads)
    models = [build_model(a, seed=args.seed).eval() for a in archs]
    inputs = [example_inputs(a, 1, args.seq, seed=args.seed) for a in archs]
    samples, starts, refs = [], [], []
    placement = plan(args.threads, pin=not args.no_pin)
    with pinned(placement) as in_force, torch.inference_mode():
        for m, x in zip(models, inputs):  # warm-up, as the protocol's (>= 10 calls and 0.2 s)
            t0 = time.perf_counter()
            for _ in range(10):
                m(*x)
            while time.perf_counter() - t0 < 0.2:
                m(*x)
        end = time.perf_counter() + 60 * args.minutes
        while time.perf_counter() < end:
            starts.append(time.perf_counter())
            refs.append(float(np.median(cpu_reference(3))))
            torch.set_num_threads(args.threads)
            rnd = []
            for m, x in zip(models, inputs):
                rnd.append(timed_calls(m, x, args.calls))
            samples.append(rnd)
    return np.asarray(samples), np.asarray(starts), np.asarray(refs), in_force.summary()


def replay(samples: np.ndarray, starts: np.ndarray, calls: int, rounds: int, trace_calls: int) -> dict:
    """Rerun differences of consecutive blocks, each block one run of (calls x rounds)."""
    per_round = max(1, calls // trace_calls)  # trace rounds per protocol round
    block = per_round * rounds
    n_blocks = len(samples) // block
    if n_blocks < 2:
        return {}
    values = {s: [] for s in STATS}
    for b in range(n_blocks):
        chunk = samples[b * block : (b + 1) * block]  # [round, arch, call]
        chunk = chunk[:, :, : min(calls, trace_calls)] if calls < trace_calls else chunk
        flat = chunk.transpose(1, 0, 2).reshape(samples.shape[1], -1)  # [arch, samples]
        for s in STATS:
            values[s].append([stat(row, s) for row in flat])
    out = {"pairs": n_blocks - 1, "run_s": float(np.median(np.diff(starts)) * block)}
    for s in STATS:
        v = np.asarray(values[s])  # [block, arch]
        d = np.abs(v[1:] - v[:-1]) / ((v[1:] + v[:-1]) / 2)
        out[s] = (100 * float(d.mean()), 100 * float(d.max(axis=1).mean()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--calls", type=int, default=5, help="calls per architecture per trace round")
    ap.add_argument("--save", type=Path, default=None, help="keep the trace (.npz)")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    samples, starts, refs, where = record(args)
    load_after = os.getloadavg()[0]
    if args.save:
        np.savez(args.save, samples=samples, starts=starts, refs=refs)
    lines = [
        f"Trace: {samples.shape[1]} architectures of the default command (bert, seed {args.seed}, seq {args.seq}, "
        f"batch 1, whole models), {len(samples)} rounds of {args.calls} calls each over {args.minutes:g} min, "
        f"{where}; load {load_before:.2f} -> {load_after:.2f}. The reference moved "
        f"{100 * (np.percentile(refs, 90) - np.percentile(refs, 10)) / np.median(refs):.1f}% (p10-p90) over it.",
        "",
        "| calls per round x rounds | samples per model | one run of the command, s | pairs | "
        + " | ".join(f"{s}: mean / worst" for s in STATS)
        + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in STATS) + " |",
    ]
    for calls, rounds in [(5, 1), (10, 1), (10, 5), (5, 10), (10, 10), (15, 10), (10, 20), (5, 30)]:
        if calls < args.calls and args.calls % calls:
            continue
        r = replay(samples, starts, calls, rounds, args.calls)
        if not r:
            continue
        cells = " | ".join(f"{r[s][0]:.2f}% / {r[s][1]:.2f}%" for s in STATS)
        lines.append(f"| {calls} x {rounds} | {calls * rounds} | {r['run_s']:.0f} | {r['pairs']} | {cells} |")
    body = "\n".join(lines)
    print(body)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _results import write_section

        tag = f"{args.threads}t{'-nopin' if args.no_pin else ''}"
        write_section(f"protocol-choice-cpu-{tag}", f"Choosing the CPU protocol from one trace ({tag})", body)


if __name__ == "__main__":
    main()
