"""Predictor throughput (architectures per second on one core) and few-shot transfer between devices.

Throughput: each predictor is trained on a synthetic bert store (a roofline-shaped
latency with 1% noise: the data does not matter for speed), then predicts 10^6
random uniform bert architectures held as arrays (``ArchArrays.uniform_from_dims``:
no Python object per architecture), end to end (features + model), with this
process pinned to one core and one thread in torch and xgboost. Reported: the
best and the median of several passes, in architectures per second.

Few-shot transfer (HAT's data): a predictor trained on wmt14ende_gpu_titanxp
(HAT's shuffled 80/10/10 split) is adapted to iwslt14deen_gpu_titanxp (same GPU,
another task and vocabulary) and to wmt14ende_cpu_xeon (another device) from k
measured architectures, k in {5, 10, 20, 50}, each k drawn ``--repeats`` times
from half of the target's architectures and judged on the other half. Methods:
see :mod:`latbench.predictors.transfer`; ``scratch`` trains the source's model
class on the k samples alone; ``target, all`` trains it on the whole pool
(~1000 architectures) as a reference.

    python benchmarks/predictors.py [--repeats 10] [--skip-throughput] [--skip-transfer]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

N_ARCHS = 1_000_000


def _pin_one_core() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[0]})
    import torch

    torch.set_num_threads(1)
    return f"pinned to CPU {cpus[0]} of {len(cpus)}"


def _random_bert_arrays(n: int, seed: int = 0):
    """Uniform bert architectures in the ``bert`` space's ranges, as arrays."""
    from latbench.predictors import ArchArrays

    rng = np.random.default_rng(seed)
    heads = rng.integers(1, 13, n)
    return ArchArrays.uniform_from_dims(
        "bert",
        hidden=rng.integers(8, 49, n) * 16,
        n_layers=rng.integers(1, 9, n),
        heads=heads,
        qk_dim=rng.integers(16, 65, n),
        mlp=rng.integers(4, 97, n) * 32,
    )


def _rates(fn, n: int, passes: int) -> tuple[float, float]:
    times = []
    for _ in range(passes):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / min(times), n / statistics.median(times)


def throughput(passes: int) -> str:
    from latbench.predictors import arch_features, default_feature_spec, load_dataset, train_predictor
    from tests.predictors.conftest import write_synthetic_store

    pinned = _pin_one_core()
    with tempfile.TemporaryDirectory() as tmp:
        ds = load_dataset(write_synthetic_store(Path(tmp) / "bert.parquet", n_archs=600, seq_lens=(128,)))
    arrays = _random_bert_arrays(N_ARCHS)
    spec = default_feature_spec(ds)
    chunk = 16384

    def featurize_only() -> None:
        for start in range(0, N_ARCHS, chunk):
            arch_features(arrays.take(slice(start, start + chunk)), 1, 128, spec)

    lines = [
        f"{N_ARCHS:,} random bert architectures (arrays), batch 1, seq 128, {pinned}, 1 thread; "
        f"best / median of {passes} passes, architectures per second.",
        "",
        "| stage | model | trees / params | best archs/s | median archs/s | ≥ 1e6/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    best, med = _rates(featurize_only, N_ARCHS, passes)
    lines.append(f"| features only | - | {spec.n_features} features | {best:,.0f} | {med:,.0f} | - |")
    configs = {
        "xgboost": {"n_jobs": 1},
        "xgboost, 300 trees": {"n_jobs": 1, "rounds_without_validation": 300},
        "mlp": {"threads": 1},
        "roofline-linear": {},
    }
    for label, cfg in configs.items():
        model = label.split(",")[0]
        if label == "xgboost, 300 trees":
            # On this smooth synthetic latency the log-linear base leaves the trees little to do and early
            # stopping keeps a handful; real data keeps tens to hundreds. This row fixes 300 (no early stopping).
            result = train_predictor(ds, model, seed=0, config=cfg, fractions=(1.0, 0.0, 0.0))
        else:
            result = train_predictor(ds, model, seed=0, config=cfg)
        pred = result.predictor
        if model == "xgboost":
            pred.set_threads(1)
            size = f"{pred.best_rounds} tree(s), depth {pred.config.max_depth}"
        elif model == "mlp":
            size = f"{sum(p.numel() for p in pred.module.parameters()):,} params, hidden {pred.config.hidden}"
        else:
            size = f"{len(pred.coef) + 1} coefficients"
        pred.predict_arrays(arrays.take(slice(0, chunk)), 1, 128)
        best, med = _rates(lambda p=pred: p.predict_arrays(arrays, 1, 128, chunk_size=chunk), N_ARCHS, passes)
        ok = "yes" if best >= 1e6 else "no"
        lines.append(f"| features + point prediction | {label} | {size} | {best:,.0f} | {med:,.0f} | {ok} |")
        sub = arrays.take(slice(0, 100_000))
        x = arch_features(sub, 1, 128, spec)
        best_i, med_i = _rates(lambda p=pred, x=x: p.predict_interval(x), 100_000, passes)
        lines.append(f"| interval (from features, 1e5) | {label} | {size} | {best_i:,.0f} | {med_i:,.0f} | - |")
        if "test" in result.metrics:
            lines.append(f"| (test MAPE on the synthetic store) | {label} | | {result.metrics['test'].mape:.2f}% | | |")
    from latbench.space import get_space

    archs = get_space("bert").sample(0, n=20_000)
    best_o, med_o = _rates(lambda: pred.featurize_archs(archs, 1, 128), len(archs), passes)
    lines.append(f"| features from 2e4 Arch objects (Python loop) | - | - | {best_o:,.0f} | {med_o:,.0f} | - |")
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return "\n".join(lines)


def transfer(hat_dir: Path, repeats: int) -> str:
    import torch

    from latbench.predictors import (
        compute_metrics,
        create_predictor,
        default_feature_spec,
        import_hat,
        shuffled_split,
    )
    from latbench.predictors.split import grouped_split
    from latbench.predictors.transfer import fewshot_evaluation

    torch.set_num_threads(2)
    ks = (5, 10, 20, 50)
    out: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = {
            name: import_hat(hat_dir / f"{name}_all.csv", Path(tmp) / f"{name}.parquet")
            for name in ("wmt14ende_gpu_titanxp", "iwslt14deen_gpu_titanxp", "wmt14ende_cpu_xeon")
        }
    src_ds = data["wmt14ende_gpu_titanxp"]
    spec = default_feature_spec(src_ds)
    x_src = src_ds.frame[list(spec.columns)].to_numpy(dtype=np.float64)
    split = shuffled_split(len(src_ds), 0)
    for model in ("xgboost", "mlp"):
        source = create_predictor(model, features=spec)
        source.fit(x_src[split.train], src_ds.target_ms[split.train], x_src[split.val], src_ds.target_ms[split.val])
        methods = ("recalibrate", "residual-xgboost") + (("finetune",) if model == "mlp" else ()) + ("scratch",)
        table: dict[str, dict[tuple[str, int], tuple[float, float]]] = {}
        for target in ("iwslt14deen_gpu_titanxp", "wmt14ende_cpu_xeon"):
            ds = data[target]
            t0 = time.perf_counter()
            rows = fewshot_evaluation(source, ds, ks=ks, methods=methods, repeats=repeats, seed=0)
            secs = time.perf_counter() - t0
            cells = {(r.method, r.k): (r.within_10pct, r.kendall_tau) for r in rows}
            # Reference: the same model class trained on the target's whole pool (the k's draw from it).
            pool = grouped_split(ds.groups, 0, (0.5, 0.0, 0.5))
            x = source.featurize(ds.frame)
            inner = grouped_split(ds.groups[pool.train], 1, (0.9, 0.1, 0.0))
            tr, va = pool.train[inner.train], pool.train[inner.val]
            full = create_predictor(model, features=spec).fit(x[tr], ds.target_ms[tr], x[va], ds.target_ms[va])
            m = compute_metrics(full.predict(x[pool.test]), ds.target_ms[pool.test])
            cells[("target, all", tr.size + va.size)] = (m.within_10pct, m.kendall_tau)
            table[target] = cells
            out.append(f"<!-- {model} -> {target}: {secs:.0f} s -->")
        targets = list(table)
        keys = list(table[targets[0]])
        out += [
            "",
            f"Source: latbench `{model}` trained on wmt14ende_gpu_titanxp (HAT split, seed 0). "
            f"Cells: share within ±10% / Kendall τ on half of the target's architectures, "
            f"mean over {repeats} draws of the k samples.",
            "",
            "| method | k | " + " | ".join(f"→ {t}" for t in targets) + " |",
            "| --- | --- | " + " | ".join("---" for _ in targets) + " |",
        ]
        for method, k in keys:
            vals = " | ".join(
                f"{100 * table[t][(method, k)][0]:.1f}% / {table[t][(method, k)][1]:.3f}" for t in targets
            )
            out.append(f"| {method} | {k} | {vals} |")
    return "\n".join(out)


def main() -> None:
    default_dir = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "hat"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hat-dir", type=Path, default=default_dir, help="Folder with HAT's latency CSVs.")
    parser.add_argument("--repeats", type=int, default=10, help="Draws of the k samples per k.")
    parser.add_argument("--passes", type=int, default=5, help="Timed passes over the 10^6 architectures.")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-transfer", action="store_true")
    args = parser.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.predictors' synthetic store
    try:
        from _results import machine  # the sibling module: this script runs as benchmarks/predictors.py

        where = machine()
    except Exception:  # the machine line is informative only
        import platform

        where = platform.processor() or platform.machine()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print("## Latency predictors: throughput and few-shot transfer\n")
    print(f"- command: `python benchmarks/predictors.py --repeats {args.repeats} --passes {args.passes}`")
    print(f"- machine: {where}\n- date: {stamp}\n")
    if not args.skip_throughput:
        print("### Prediction throughput (one core)\n")
        print(throughput(args.passes) + "\n")
    if not args.skip_transfer:
        print("### Few-shot transfer to another device or task (HAT's data)\n")
        print(transfer(args.hat_dir, args.repeats))


if __name__ == "__main__":
    main()
