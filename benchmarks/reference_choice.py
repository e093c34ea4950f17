"""Which reference workload follows the models' drift: the matmuls, or a transformer block (the protocol's)?

One trace, as `protocol_choice.py` records it (the default command's 6 bert architectures, round-robin,
5 timed calls each per round, one thread, pinned), with two reference workloads timed at the start of every
round, each after one untimed call: the two of :mod:`latbench.profiling.reference`, ``matmul`` (three
128x1024x1024 fp32 matmuls, the protocol's reference until issue 17) and ``bert-block`` (one transformer
block, hidden 512, 8 heads of 64, MLP 2048, seq 128, batch 1: the protocol's reference since). The table in
RESULTS was recorded before ``bert-block`` was written as a reference, with the bert space's own block of
that shape; a new recording times the reference itself.

Reported: the correlation of each reference with the models' common drift (10-round bins), and
the rerun difference of blocks of rounds (consecutive, and the first against the last, minutes apart)
raw and divided by each reference: what ``--normalise-drift`` would give with it.

    python benchmarks/reference_choice.py --minutes 8 --save trace.npz --write
    python benchmarks/reference_choice.py --load trace.npz --write      # the tables from a saved trace
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol_choice import timed_calls  # the sibling script: this one runs as benchmarks/reference_choice.py


def record(minutes: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    import torch

    from latbench.models import build_model, example_inputs
    from latbench.profiling.placement import pinned, plan
    from latbench.profiling.reference import cpu_reference
    from latbench.space import get_space

    torch.set_num_threads(1)
    archs = list(dict.fromkeys(get_space("bert").sample(seed, n=6)))
    models = [build_model(a, seed=seed).eval() for a in archs]
    inputs = [example_inputs(a, 1, 128, seed=seed) for a in archs]
    samples, matmul, blk = [], [], []
    with pinned(plan(1)) as where, torch.inference_mode():
        for m, x in zip(models, inputs):
            for _ in range(10):
                m(*x)
        end = time.time() + 60 * minutes
        while time.time() < end:
            matmul.append(float(np.median(cpu_reference(3, "matmul"))))
            blk.append(float(np.median(cpu_reference(3, "bert-block"))))
            samples.append([timed_calls(m, x, 5) for m, x in zip(models, inputs)])
    return np.asarray(samples), np.asarray(matmul), np.asarray(blk), where.summary()


def analyse(s: np.ndarray, refs: dict[str, np.ndarray]) -> list[str]:
    rounds, archs = s.shape[0], s.shape[1]
    bins = rounds // 10
    mb = np.array(
        [np.median(s[i * 10 : (i + 1) * 10].transpose(1, 0, 2).reshape(archs, -1), axis=1) for i in range(bins)]
    )
    common = (mb / np.median(mb, axis=0)).mean(axis=1)
    lines = [
        "| reference | correlation with the models' common drift (10-round bins) | blocks of 10 rounds: consecutive, "
        "mean / worst | first against last | blocks of 20 rounds: consecutive, mean / worst | first against last |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, ref in [("none (raw medians)", None), *refs.items()]:
        corr = "-"
        if ref is not None:
            rb = np.array([np.median(ref[i * 10 : (i + 1) * 10]) for i in range(bins)])
            corr = f"{np.corrcoef(common, rb)[0, 1]:.2f}"
        cells = []
        for block in (10, 20):
            v = []
            for b in range(rounds // block):
                chunk = s[b * block : (b + 1) * block]
                med = np.array([np.median(chunk[:, a]) for a in range(archs)])
                if ref is not None:
                    med = med / np.median(ref[b * block : (b + 1) * block])
                v.append(med)
            v = np.array(v)
            d = np.abs(v[1:] - v[:-1]) / ((v[1:] + v[:-1]) / 2)
            far = np.abs(v[0] - v[-1]) / ((v[0] + v[-1]) / 2)
            cells += [f"{100 * d.mean():.2f}% / {100 * d.max(axis=1).mean():.2f}%", f"{100 * far.mean():.2f}%"]
        lines.append(f"| {name} | {corr} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--save", type=Path, default=None)
    ap.add_argument("--load", type=Path, default=None, help="analyse a saved trace instead of recording one")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    if args.load:
        data = np.load(args.load)
        s, matmul, blk = data["samples"], data["r1"], data["r2"]
        where = "1 thread pinned (as recorded)"
    else:
        s, matmul, blk, where = record(args.minutes, args.seed)
        if args.save:
            np.savez(args.save, samples=s, r1=matmul, r2=blk)
    head = (
        f"Trace: the default command's 6 bert architectures, {len(s)} rounds of 5 calls each, {where}; both "
        f"references timed at the start of every round (matmul reference {np.median(matmul):.2f} ms, bert block "
        f"{np.median(blk):.2f} ms, medians)."
    )
    body = "\n".join([head, "", *analyse(s, {"matmul": matmul, "bert-block (the protocol's)": blk})])
    print(body)
    if args.write:
        from _results import write_section

        write_section("reference-choice-cpu", "Which reference workload follows the drift (cpu)", body)


if __name__ == "__main__":
    main()
