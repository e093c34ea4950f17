"""Choosing a search's result by measurement, and the margin that keeps it under the bound when measured again.

``latbench search --measure-top K`` measures K candidates near the bound together with the reference and
keeps the best that meets the constraint as measured. The best of several candidates measured near the
bound is the one whose noise fell lowest, so measured again it tends to land higher (the winner's curse).
``--measure-margin F`` keeps only candidates measured at least F under the bound. This benchmark asks how
often the kept result breaks the bound when measured once more, for several margins:

1. trains an XGBoost predictor on a store of whole bert models measured on this CPU, measures BERT-base;
2. runs the evolutionary search (budget 1000) for 7x over ``--seeds`` seeds and takes each seed's K
   measurement candidates exactly as ``--measure-top K`` does;
3. selection run: every seed's candidates and BERT-base in one interleaved run (the same protocol as the
   quickstart's ``search``: 5 rounds, 30 samples at least, 5 s budget); each seed's choice is made from it
   for each margin as ``--measure-top`` makes it (:func:`latbench.search.run.pick_by_measurement`);
4. validation run: every chosen result and BERT-base in a second interleaved run; a result breaks the
   bound when its latency there is over BERT-base's / 7.

    python benchmarks/search_measured.py --store datasets/bert_cpu_b1_s128.parquet --write
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPEEDUP = 7.0
MARGINS = (0.0, 0.01, 0.02, 0.03)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="Result store of whole bert models measured on this CPU.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--k", type=int, default=8, help="Candidates measured per seed (--measure-top K).")
    ap.add_argument("--budget-s", type=float, default=5.0, help="Measurement budget per model.")
    ap.add_argument("--write", action="store_true", help="Write the section of benchmarks/RESULTS.md.")
    args = ap.parse_args()

    import torch

    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import train_predictor
    from latbench.profiling.config import DeployConfig, ProtocolConfig
    from latbench.search.measure import measure_models
    from latbench.search.quality import get_quality
    from latbench.search.run import (
        make_problem,
        measured_reference,
        measurement_candidates,
        pick_by_measurement,
        run_search,
    )
    from latbench.space import get_space

    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    space = get_space("bert")
    ds = load_dataset(args.store)
    seq = int(ds.validity.workload["seq_len"][0])
    xgb = train_predictor(ds, "xgboost", seed=0)
    deploy = DeployConfig(backend="torch", device="cpu", threads=args.threads, batch=1, seq_len=seq)
    proto = ProtocolConfig(budget_s=args.budget_s, min_samples=30, min_rounds=5)
    load_before = os.getloadavg()[0]
    reference = measured_reference(space, deploy, proto)
    problem = make_problem(space, xgb.predictor, get_quality("proxy"), reference, speedup=SPEEDUP, seq_len=seq)[0]

    per_seed = []
    for s in range(args.seeds):
        outcome = run_search(problem, "evolutionary", budget=1000, seed=s)
        per_seed.append(measurement_candidates(outcome, problem, args.k))
    union = list({e.arch.to_json(): e.arch for cands in per_seed for e in cands}.values())
    print(f"selection run: {len(union)} distinct candidates of {args.seeds} seeds", flush=True)
    t_sel = time.perf_counter()
    rows = measure_models([space.reference, *union], "bert", deploy, proto)
    sel_s = time.perf_counter() - t_sel
    ref_row, by_arch = rows[0], {a.to_json(): r for a, r in zip(union, rows[1:])}

    chosen = {}  # (margin, seed) -> Evaluation or None
    for m in MARGINS:
        for s, cands in enumerate(per_seed):
            choice = pick_by_measurement(
                cands, ref_row, [by_arch[e.arch.to_json()] for e in cands], problem.constraint, deploy.key(), m
            )
            chosen[m, s] = None if choice.chosen is None else cands[choice.chosen]
    picked = list({e.arch.to_json(): e.arch for e in chosen.values() if e is not None}.values())
    print(f"validation run: {len(picked)} distinct chosen results", flush=True)
    t_val = time.perf_counter()
    vrows = measure_models([space.reference, *picked], "bert", deploy, proto)
    val_s = time.perf_counter() - t_val
    v_ref = float(vrows[0]["median_ms"])
    v_ms = {a.to_json(): float(r["median_ms"]) for a, r in zip(picked, vrows[1:])}
    load_after = os.getloadavg()[0]

    s_ref = float(ref_row["median_ms"])
    lines = [
        f"Store `{args.store}`: {len(ds)} whole bert models measured on this CPU (seq {seq}, {args.threads} "
        f"thread); XGBoost predictor (test MAPE {xgb.metrics['test'].mape:.2f}%). Evolutionary search for 7x, "
        f"budget 1000, seeds 0-{args.seeds - 1}; each seed's {args.k} candidates as `--measure-top {args.k}` "
        f"takes them ({len(union)} distinct over all seeds). Selection run: all of them with BERT-base in one "
        f"interleaved run ({sel_s / 60:.1f} min; BERT-base {s_ref:.1f} ms, bound {s_ref / SPEEDUP:.2f} ms). "
        f"Validation run: the {len(picked)} distinct chosen results with BERT-base in a second one "
        f"({val_s / 60:.1f} min; BERT-base {v_ref:.1f} ms, bound {v_ref / SPEEDUP:.2f} ms). Protocol of both: "
        f"5 interleaved rounds, 30 samples at least, {args.budget_s:g} s budget (the quickstart's `search`). "
        f"Load average (1 min) before {load_before:.2f}, after {load_after:.2f}; "
        f"{(time.perf_counter() - start) / 60:.0f} min in all.",
        "",
        "| `--measure-margin` | seeds with a result | distinct results | over the bound when measured again "
        "| speed-up measured again: min / median / max | mean quality (proxy, lower is better) |",
        "| --- | --: | --: | --: | --- | --: |",
    ]
    for m in MARGINS:
        got = [chosen[m, s] for s in range(args.seeds) if chosen[m, s] is not None]
        if not got:
            lines.append(f"| {m:g} | 0 | 0 | - | - | - |")
            continue
        ms = np.array([v_ms[e.arch.to_json()] for e in got])
        sp = v_ref / ms
        over = int((ms > v_ref / SPEEDUP).sum())
        quality = float(np.mean([e.quality for e in got]))
        distinct = len({e.arch.to_json() for e in got})
        lines.append(
            f"| {m:g} | {len(got)}/{args.seeds} | {distinct} | {over}/{len(got)} | "
            f"{sp.min():.2f}x / {np.median(sp):.2f}x / {sp.max():.2f}x | {quality:.4f} |"
        )
    body = "\n".join(lines)
    print(body)
    if args.write:
        from _results import write_section

        cmd = f"python benchmarks/search_measured.py --store {args.store}"
        write_section(
            "search-measured-cpu",
            "Choosing a search's result by measurement: the margin against the winner's curse (CPU, bert 7x)",
            body,
            command=cmd,
        )


if __name__ == "__main__":
    main()
