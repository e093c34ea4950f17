"""Latency-constrained search on this CPU: speed, measured speed-up, violations over seeds, hypervolume.

Given a result store of whole bert models measured on this machine (``latbench profile ...
--no-blocks``), it trains an XGBoost predictor (and an MLP for the gradient searcher), measures
BERT-base, and then:

1. runs every searcher once for ``--latency-constraint 7`` and reports its wall time and the time
   until its first feasible architecture (target: under 10 s);
2. validates the evolutionary search's result by measuring it with BERT-base, plainly and with
   ``--measure-top 8`` (target: measured speed-up within ±10% of 7x);
3. runs the evolutionary search with the safety margin over 20 seeds and measures all results in one
   interleaved run with BERT-base (target: measured latency over the bound in <= 5% of runs);
4. compares nsga2's and random's hypervolume at equal evaluations over 10 seeds.

    python benchmarks/search.py --store runs/bert_cpu.parquet --write
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

SPEEDUP = 7.0
METHODS = ("random", "candidate", "fast", "evolutionary", "gradient", "nsga2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="Result store of whole bert models measured on this CPU.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=20, help="Seeds of the violation test.")
    ap.add_argument("--hv-seeds", type=int, default=10)
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
        choose_by_measurement,
        hypervolume,
        make_problem,
        measured_reference,
        run_search,
    )
    from latbench.space import get_space

    torch.set_num_threads(args.threads)
    space = get_space("bert")
    ds = load_dataset(args.store)
    seq = int(ds.validity.workload["seq_len"][0])
    t0 = time.perf_counter()
    xgb = train_predictor(ds, "xgboost", seed=0)
    mlp = train_predictor(ds, "mlp", seed=0)
    fit_s = time.perf_counter() - t0
    deploy = DeployConfig(backend="torch", device="cpu", threads=args.threads, batch=1, seq_len=seq)
    proto = ProtocolConfig(budget_s=args.budget_s, min_samples=30, min_rounds=5)
    load_before = os.getloadavg()[0]
    reference = measured_reference(space, deploy, proto)
    proxy = get_quality("proxy")

    def problem(pred, margin=False):
        return make_problem(space, pred, proxy, reference, speedup=SPEEDUP, margin=margin, seq_len=seq)[0]

    lines = []
    # 1. speed
    speed_rows = []
    for m in METHODS:
        pred = mlp.predictor if m == "gradient" else xgb.predictor
        window = (0.85, 1.1) if m in ("candidate", "fast") else (0.0, 1.0)
        prob = make_problem(space, pred, proxy, reference, speedup=SPEEDUP, window=window, seq_len=seq)[0]
        first = [None]
        start = time.perf_counter()

        def on_progress(done, total, best, first=first, start=start):
            if best is not None and first[0] is None:
                first[0] = time.perf_counter() - start

        out = run_search(prob, m, budget=1000, seed=0, on_progress=on_progress)
        speed_rows.append(
            (m, len(out.history), out.wall_s, first[0] or out.wall_s, reference.latency_ms / out.best.latency_ms)
        )
        print(f"{m}: {out.wall_s:.2f} s", flush=True)

    # 2. validation of one search, plain and choosing by measurement
    prob = problem(xgb.predictor)
    plain = run_search(prob, "evolutionary", budget=1000, seed=0)
    plain_best = plain.best
    with tempfile.TemporaryDirectory() as tmp:
        choice = choose_by_measurement(plain, prob, deploy, proto, 8, keep=Path(tmp) / "m.parquet")
    ref_ms = choice.reference_ms
    by_arch = {r["arch_json"]: r for r in choice.rows}
    plain_ms = by_arch[plain_best.arch.to_json()]["measured_ms"]
    chosen = choice.rows[choice.chosen] if choice.chosen is not None else None
    rows = measure_models(
        [space.reference, plain_best.arch] + ([plain.best.arch] if chosen else []), "bert", deploy, proto
    )
    v_ref = float(rows[0]["median_ms"])
    v_plain = v_ref / float(rows[1]["median_ms"])
    v_chosen = v_ref / float(rows[2]["median_ms"]) if chosen else None

    # 3. violations over seeds, with and without the margin
    viol = {}
    for margin in (True, False):
        prob = problem(xgb.predictor, margin)
        bests = [run_search(prob, "evolutionary", budget=1000, seed=s).best for s in range(args.seeds)]
        distinct = list({b.arch.to_json(): b for b in bests}.values())
        rows = measure_models([space.reference] + [b.arch for b in distinct], "bert", deploy, proto)
        r_ms = float(rows[0]["median_ms"])
        ms = {b.arch.to_json(): float(r["median_ms"]) for b, r in zip(distinct, rows[1:])}
        measured = np.array([ms[b.arch.to_json()] for b in bests])
        speedups = r_ms / measured
        viol[margin] = (float(np.mean(measured > r_ms / SPEEDUP)), speedups, len(distinct))
        print(f"margin={margin}: violated {viol[margin][0]:.0%}", flush=True)

    # 4. hypervolume, nsga2 vs random
    prob = problem(xgb.predictor)
    ref_point = (prob.constraint.bound_ms, float(prob.quality([space.min_arch()])[0]))
    hv = {"nsga2": [], "random": []}
    for s in range(args.hv_seeds):
        for m in hv:
            hv[m].append(hypervolume(run_search(problem(xgb.predictor), m, budget=500, seed=s).history, ref_point))
    load_after = os.getloadavg()[0]

    xm, mm = xgb.metrics["test"], mlp.metrics["test"]
    lines.append(
        f"Store `{args.store}`: {len(ds)} whole bert models measured on this CPU (seq {seq}, {args.threads} thread). "
        f"Predictors fit in {fit_s:.1f} s: XGBoost test MAPE {xm.mape:.2f}% (±10%: {100 * xm.within_10pct:.0f}%), "
        f"MLP {mm.mape:.2f}%. BERT-base measured {reference.latency_ms:.1f} ms; 7x bound "
        f"{reference.latency_ms / SPEEDUP:.2f} ms. Quality: the scaling-law proxy. Load average (1 min) before "
        f"{load_before:.2f}, after {load_after:.2f}."
    )
    lines += ["", "**1. Time to a feasible architecture** (budget 1000 evaluations, seed 0):", ""]
    lines += [
        "| method | evaluations | wall s | first feasible s | predicted speed-up |",
        "| --- | --: | --: | --: | --: |",
    ]
    for m, n, wall, first_s, sp in speed_rows:
        lines.append(f"| {m} | {n} | {wall:.2f} | {first_s:.2f} | {sp:.2f}x |")
    lines += [
        "",
        "**2. Measured speed-up** of the evolutionary search's result (seed 0), measured with BERT-base "
        "in one interleaved run:",
        "",
    ]
    lines.append(
        f"- predicted best alone: {plain_best.arch.describe()}, predicted {plain_best.latency_ms:.2f} ms, "
        f"measured {plain_ms:.2f} ms in the --measure-top run; validation run: **{v_plain:.2f}x** "
        f"({100 * (v_plain / SPEEDUP - 1):+.1f}% from 7x)"
    )
    if chosen:
        lines.append(
            f"- with `--measure-top 8` ({sum(r['meets_constraint'] for r in choice.rows)}/{len(choice.rows)} "
            f"candidates met 7x as measured; BERT-base {ref_ms:.1f} ms there): {chosen['describe']}, "
            f"validation run: **{v_chosen:.2f}x** ({100 * (v_chosen / SPEEDUP - 1):+.1f}% from 7x)"
        )
    else:
        lines.append("- with `--measure-top 8`: no candidate met 7x as measured")
    lines += [
        "",
        f"**3. Violations over {args.seeds} seeds** (evolutionary, budget 1000; all results measured in one "
        "interleaved run with BERT-base):",
        "",
    ]
    lines += [
        "| safety margin | distinct results | measured over the bound | measured speed-up min / median / max |",
        "| --- | --: | --: | --- |",
    ]
    for margin in (True, False):
        rate, sp, nd = viol[margin]
        lines.append(
            f"| {'on' if margin else 'off'} | {nd} | {100 * rate:.0f}% | "
            f"{sp.min():.2f}x / {np.median(sp):.2f}x / {sp.max():.2f}x |"
        )
    hv_n, hv_r = np.array(hv["nsga2"]), np.array(hv["random"])
    lines += [
        "",
        f"**4. Hypervolume** (predicted ms x proxy, reference point = the bound and the smallest member's "
        f"quality), 500 evaluations, {args.hv_seeds} seeds: nsga2 {hv_n.mean():.4g} ± {hv_n.std():.2g}, random "
        f"{hv_r.mean():.4g} ± {hv_r.std():.2g}; nsga2 ahead in {(hv_n >= hv_r).sum()}/{args.hv_seeds} seeds.",
    ]
    body = "\n".join(lines)
    print(body)
    if args.write:
        from _results import write_section

        cmd = f"python benchmarks/search.py --store {args.store}"
        write_section(
            "search-cpu", "Latency-constrained search on the CPU (bert, 7x faster than BERT-base)", body, command=cmd
        )


if __name__ == "__main__":
    main()
