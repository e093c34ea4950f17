"""Predictors on latbench's own profiles: at most 500 training architectures, 200 held out.

Given a result store of whole models of one space measured on one machine (``latbench profile
--no-blocks``), trains every trainable predictor on at most 500 architectures (plus a small
validation part for early stopping) and judges it on 200 others, for each statistic asked
(median, p10) and drift correction. Beside the metrics it reports the data's own noise: the median
relative half-width of the measurements' CI, below which no predictor can be judged.

The configuration (statistic, drift correction, model) is *chosen* without looking at the test
architectures: by the mean MAPE of a 5-fold cross-validation grouped by architecture over the
training and validation architectures alone; the test figures of the chosen one are then read
once. Optionally ships the chosen predictor with its card.

    python benchmarks/predictors_own.py --store runs/bert_cpu_700.parquet --write \
        [--ship predictors/bert_cpu_b1_s128]

Targets (issue 5): ±10% accuracy >= 99%, MAPE <= 3%, Kendall tau >= 0.95.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODELS = ("xgboost", "mlp", "roofline-linear")


def cv_mape(ds, model: str, split, lut, seed: int, folds: int = 5) -> float:
    """Mean MAPE of ``model`` over a grouped ``folds``-fold cross-validation on the non-test rows of ``split``."""
    from latbench.predictors.base import create_predictor
    from latbench.predictors.metrics import compute_metrics
    from latbench.predictors.train import default_feature_spec

    dev = np.concatenate([split.train, split.val])
    groups = ds.groups[dev]
    uniq = np.unique(groups)
    rng = np.random.default_rng(seed)
    fold_of = dict(zip(rng.permutation(uniq).tolist(), np.arange(uniq.size) % folds))
    fold = np.array([fold_of[g] for g in groups.tolist()])
    y = ds.target_ms
    mapes = []
    for k in range(folds):
        fit_idx, held = dev[fold != k], dev[fold == k]
        # early stopping on a tenth of the fitting architectures, as train_predictor's val part
        fit_groups = ds.groups[fit_idx]
        es = np.isin(fit_groups, rng.permutation(np.unique(fit_groups))[: max(1, np.unique(fit_groups).size // 10)])
        if model == "lut-sum":
            pred = create_predictor(model)
            pred.set_lut(lut)
        else:
            pred = create_predictor(model, None, default_feature_spec(ds))
        x = pred.featurize(ds.frame)
        pred.fit(x[fit_idx[~es]], y[fit_idx[~es]], x[fit_idx[es]], y[fit_idx[es]], seed=seed)
        mapes.append(compute_metrics(pred.predict(x[held]), y[held]).mape)
    return float(np.mean(mapes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--statistics", default="median,p10")
    ap.add_argument(
        "--drift-corrections", default="0,0.5,1", help="Exponents of the machine-speed correction (ref_ms) to try."
    )
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ship", type=Path, default=None, help="Save the best predictor (with its card) here.")
    ap.add_argument("--lut", type=Path, default=None, help="A block table of the same deployment: adds lut-sum.")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()

    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained, train_predictor
    from latbench.profiling.store import read_store

    frame = read_store(args.store)
    models = frame[frame["scope"] == "model"]
    half = (models["ci_high_ms"] - models["ci_low_ms"]) / 2 / models["median_ms"]
    n_archs = models["arch"].nunique()
    test_share = min(0.45, args.test / n_archs + 0.01)
    val_share = 0.05
    fractions = (1.0 - test_share - val_share, val_share, test_share)
    rows, best = [], None
    for stat, beta in [(s, float(b)) for s in args.statistics.split(",") for b in args.drift_corrections.split(",")]:
        ds = load_dataset(args.store, stat, drift_correction=beta)
        for model in MODELS + (("lut-sum",) if args.lut is not None else ()):
            split = ",".join(f"{f:.4g}" for f in fractions)
            command = (
                f"latbench train-predictor --data {args.store} --model {model} --statistic {stat} --seed {args.seed} "
                f"--split {split} --max-train-archs {args.train} --max-test-archs {args.test} --out DIR"
                + (f" --lut {args.lut}" if model == "lut-sum" else "")
                + (f" --drift-correction {beta:g}" if beta else "")
            )
            result = train_predictor(
                ds,
                model,
                lut=args.lut if model == "lut-sum" else None,
                seed=args.seed,
                fractions=fractions,
                max_train_archs=args.train,
                max_test_archs=args.test,
                command=command,
            )
            m = result.metrics["test"]
            n_train = result.metrics["train"].n
            cv = cv_mape(ds, model, result.split, args.lut, args.seed)
            rows.append((stat, beta, model, n_train, cv, m))
            print(stat, beta, model, n_train, m.n, f"cv {cv:.2f}%", f"test {m.mape:.2f}%", flush=True)
            if best is None or cv < best[4]:
                best = (result, stat, model, beta, cv)
    lines = [
        f"Store `{args.store}`: {n_archs} architectures, deployment {ds.validity.describe()}. The measurements' own "
        f"precision: median relative half-width of the median's 95% CI {100 * float(np.median(half)):.2f}% "
        f"(90th percentile {100 * float(np.quantile(half, 0.9)):.2f}%); {100 * float(models['unstable'].mean()):.0f}% "
        "of rows flagged unstable.",
        "",
        "Drift correction β: each row's latency times (median ref_ms / ref_ms)^β, ref_ms being the reference "
        "workload timed in the row's rounds (0: as measured).",
        "",
        "Selection: 5-fold cross-validation grouped by architecture over the training and validation "
        "architectures only (CV MAPE); the test columns are those 200 held-out architectures.",
        "",
        "| statistic | drift β | model | train archs | CV MAPE | test archs | MAPE | ±5% | ±10% | Kendall τ "
        "| max APE |",
        "| --- | --: | --- | --: | --: | --: | --: | --: | --: | --: | --: |",
    ]
    for stat, beta, model, n_train, cv, m in rows:
        lines.append(
            f"| {stat} | {beta:g} | {model} | {n_train} | {cv:.2f}% | {m.n} | {m.mape:.2f}% | "
            f"{100 * m.within_5pct:.1f}% | {100 * m.within_10pct:.1f}% | {m.kendall_tau:.3f} | {m.max_ape:.1f}% |"
        )
    result, stat, model, beta, cv = best  # type: ignore[misc]
    m = result.metrics["test"]
    met = m.within_10pct >= 0.99 and m.mape <= 3.0 and m.kendall_tau >= 0.95
    lines += [
        "",
        f"Chosen by CV MAPE ({cv:.2f}%): {model} on {stat}, drift β {beta:g}. Its test figures: MAPE {m.mape:.2f}%, "
        f"±10% {100 * m.within_10pct:.1f}%, τ {m.kendall_tau:.3f}; "
        f"the issue's targets (±10% >= 99%, MAPE <= 3%, τ >= 0.95) are {'met' if met else '**not** met'}.",
    ]
    if args.ship is not None:
        save_trained(result, args.ship)
        lines.append(f"Shipped as `{args.ship}` (its `card.json` holds the metrics and the command).")
    body = "\n".join(lines)
    print(body)
    if args.write:
        from _results import write_section

        write_section("predictors-own-cpu", "Predictors on latbench's own CPU profiles of the bert space", body)


if __name__ == "__main__":
    main()
