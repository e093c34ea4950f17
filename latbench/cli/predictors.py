"""``latbench import``, ``train-predictor``, ``predict``, ``evaluate-predictor``: latency predictors.

Each command turns its options into arguments of one :mod:`latbench.predictors`
function and prints the result. The lead registers them on the app:

    app.add_typer(predictors.import_app, name="import")
    app.command("train-predictor")(predictors.train_predictor)
    app.command("predict")(predictors.predict)
    app.command("evaluate-predictor")(predictors.evaluate_predictor)
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import typer

from latbench.cli._app import console, sub_app
from latbench.errors import LatbenchError

import_app = sub_app("Import other projects' latency data sets as parquet files a predictor trains on.")

STATISTIC_HELP = (
    "Target of a result store: median (default; for a trained predictor, the statistic it predicts), p10, min, mean."
)
DEPLOYMENT_HELP = "For a store holding several deployments: the deploy key (or a unique part of it) to use."
FORCE_HELP = "Use data from another device, deployment, workload or statistic than the predictor's."
DRIFT_HELP = (
    "Bring each row's latency to the store's median machine speed: x (median ref_ms / ref_ms)^BETA, "
    "ref_ms being the reference workload timed in the row's rounds (1: full, 0.5: shrunk, 0: off)."
)


def _parse_params(params: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in params:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise LatbenchError("--param", f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.split(","))
    except ValueError:
        raise LatbenchError("--split", f"expected three shares like 0.8,0.1,0.1, got {text!r}") from None
    if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] <= 0 or abs(sum(parts) - 1.0) > 1e-3:
        raise LatbenchError("--split", f"expected three non-negative shares summing to 1 (train > 0), got {text!r}")
    return parts  # type: ignore[return-value]


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0, suffix: str = "") -> str:
    if value is None or value != value:  # NaN: a rank correlation of a constant
        return "-"
    return f"{value * scale:.{digits}f}{suffix}"


def _metrics_table(metrics: Mapping[str, Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for col in ("part", "n", "MAPE", "RMSE ms", "±5%", "±10%", "Kendall τ", "Spearman ρ", "max APE"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for part, m in metrics.items():
        table.add_row(
            part,
            str(m.n),
            _fmt(m.mape, suffix="%"),
            _fmt(m.rmse_ms, 3),
            _fmt(m.within_5pct, 1, 100, "%"),
            _fmt(m.within_10pct, 1, 100, "%"),
            _fmt(m.kendall_tau, 3),
            _fmt(m.spearman_rho, 3),
            _fmt(m.max_ape, 1, suffix="%"),
        )
    return table


def _workload_table(rows: list[Mapping[str, Any]], title: str) -> Any:
    """Metrics per workload (:func:`latbench.predictors.train.workload_metrics`) as a table."""
    from rich.table import Table

    from latbench.predictors.metrics import Metrics

    table = Table(title=title, title_justify="left")
    for col in ("batch", "seq", "kind", "archs", "MAPE", "±10%", "Kendall τ", "max APE"):
        table.add_column(col, justify="left" if col == "kind" else "right")
    for r in rows:
        m = Metrics.from_dict(r["metrics"])
        table.add_row(
            str(r["batch"]),
            "-" if r["seq_len"] is None else str(r["seq_len"]),
            str(r["kind"]),
            str(r["architectures"]),
            _fmt(m.mape, suffix="%"),
            _fmt(m.within_10pct, 1, 100, "%"),
            _fmt(m.kendall_tau, 3),
            _fmt(m.max_ape, 1, suffix="%"),
        )
    return table


@import_app.command("hat")
def import_hat(
    file: Path = typer.Argument(..., help="HAT's latency CSV (latency_dataset/<task>_<cpu|gpu>_<device>_all.csv)."),
    out: Path = typer.Option(..., "--out", help="The parquet file to write."),
    device: str | None = typer.Option(None, "--device", help="The hardware, when the file name does not say it."),
) -> None:
    """Import HAT's latency data set: 10 feature columns, target = encoder + decoder mean latency (ms)."""
    from latbench.predictors.data import import_hat as run_import

    ds = run_import(file, out, device=device)
    task = f", task {ds.validity.task}" if ds.validity.task else ""
    console.print(
        f"wrote {len(ds)} rows to {out} (device {ds.validity.device}{task}; "
        f"{len(ds.feature_columns)} features, target latency_ms = encoder + decoder mean, ms)"
    )


def train_predictor(
    data: Path | None = typer.Option(
        None,
        "--data",
        help="Training data: a result store or an imported table (parquet). "
        "Default: the most recent store under runs/.",
    ),
    model: str = typer.Option("xgboost", "--model", help="xgboost, mlp, lut-sum or roofline-linear."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Directory to write the predictor, its card.json and plot to. Default: beside the data, <data>_<model>/.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seeds the split and the model: same data and seed, same predictor."),
    statistic: str | None = typer.Option(None, "--statistic", help=STATISTIC_HELP),
    lut: Path | None = typer.Option(None, "--lut", help="Look-up table (latbench-lut JSON) for --model lut-sum."),
    deployment: str | None = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
    param: list[str] = typer.Option([], "--param", help="KEY=VALUE setting of the model (repeatable)."),
    split: str | None = typer.Option(
        None,
        "--split",
        help="Shares of architectures: train,val,test. Default: 0.8,0.1,0.1 (0.9,0.1,0 with --test-data).",
    ),
    max_train_archs: int | None = typer.Option(None, "--max-train-archs", help="Cap on training architectures."),
    max_test_archs: int | None = typer.Option(None, "--max-test-archs", help="Cap on test architectures."),
    force: bool = typer.Option(False, "--force", help="lut-sum: use a table measured elsewhere than the data."),
    drift_correction: float = typer.Option(0.0, "--drift-correction", help=DRIFT_HELP),
    test_data: Path | None = typer.Option(
        None,
        "--test-data",
        help="Judge on this store (other architectures; other workloads too) instead of a held-out part of --data; "
        "the split's test share defaults to 0 (0.9,0.1,0). Its metrics go on the card, per workload, each marked "
        "trained, interpolation or extrapolation.",
    ),
) -> None:
    """Train a latency predictor (architectures split train/val/test 80/10/10), print its metrics, write DIR.

    A store over several workloads (``profile --batch 1,4,16 --seq 64,128,256``) trains one
    predictor with the workload as input; the card records the workloads and ranges it holds for.
    """
    from latbench import runs
    from latbench.io import check_dir_path
    from latbench.predictors.base import TRAINABLE
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import save_trained
    from latbench.predictors.train import train_predictor as run_train

    if model not in TRAINABLE:
        raise LatbenchError("--model", f"unknown predictor {model!r} (expected one of {', '.join(TRAINABLE)})")
    if data is None:
        data = runs.latest_store()
        console.print(f"data        {data} (the most recent store under {runs.RUNS_DIR}/)")
    out = out if out is not None else runs.predictor_path(data, model)
    check_dir_path(out, "--out")  # before the work, not after it
    for name, value in (("--max-train-archs", max_train_archs), ("--max-test-archs", max_test_archs)):
        if value is not None and value < 1:
            raise LatbenchError(name, f"must be >= 1, got {value}")
    if split is None:
        split = "0.9,0.1,0" if test_data is not None else "0.8,0.1,0.1"
    fractions = _parse_split(split)
    ds = load_dataset(data, statistic, deployment, drift_correction)
    held = None
    if test_data is not None:
        if ds.kind != "store":
            raise LatbenchError("--test-data", "applies to result stores, not to an imported table")
        held = load_dataset(test_data, ds.statistic, deployment, drift_correction)
    result = run_train(
        ds,
        model,
        seed=seed,
        config=_parse_params(param),
        lut=lut,
        fractions=fractions,
        max_train_archs=max_train_archs,
        max_test_archs=max_test_archs,
        force=force,
        command=_train_command(
            data, model, out, seed, ds.statistic if ds.kind == "store" else None, lut, deployment, param
        )
        + (f" --drift-correction {drift_correction:g}" if drift_correction else "")
        + (f" --split {split}" if fractions != (0.8, 0.1, 0.1) else "")
        + (f" --max-train-archs {max_train_archs}" if max_train_archs is not None else "")
        + (f" --max-test-archs {max_test_archs}" if max_test_archs is not None else "")
        + (f" --test-data {shlex.quote(str(test_data))}" if test_data is not None else ""),
        test_data=held,
    )
    save_trained(result, out)
    console.print(_metrics_table(result.metrics, f"{model} on {data} ({ds.statistic}; {ds.validity.describe()})"))
    if result.card.workload_metrics:
        where = test_data if test_data is not None else "the test part"
        console.print(_workload_table(result.card.workload_metrics, f"per workload, on {where}"))
    report = getattr(getattr(result.predictor, "model", None), "report", None)
    if model == "lut-sum" and report is not None:
        console.print(_lut_sum_report(result.predictor.model))  # type: ignore[attr-defined]
    n_train = result.card.split["architectures"]["train"]
    if n_train < MIN_TRAIN_ARCHS:
        console.print(
            f"[yellow]warning:[/] only {n_train} training architecture(s): these metrics say little "
            f"(profile at least {MIN_TRAIN_ARCHS}, e.g. latbench profile --samples 100)"
        )
    console.print(f"fit in {result.card.fit_seconds:.1f} s; wrote {out}")
    if ds.kind == "store":
        pred = "" if runs.is_latest("predictor", out) else f" --predictor {out}"
        console.print(f"next        latbench search --latency-constraint 7{pred}")


#: Below this many training architectures train-predictor warns that its metrics mean little.
MIN_TRAIN_ARCHS = 20


def _lut_sum_report(fit: Any) -> str:
    """The LUT-sum fit's coefficients and its accuracy on the fitting rows: plain sum, without d, fitted."""
    rep = fit.report

    def acc(a: Any) -> str:
        return f"MAPE {a.mape:.1f}% (±10% {100 * a.within_10pct:.0f}%)"

    parts = [f"plain sum of blocks {acc(rep.plain_sum)}"]
    if rep.without_d is not None:
        parts.append(f"a·Σ+b·n+c {acc(rep.without_d)}")
    parts.append(f"fitted {acc(rep.fitted)}")
    return (
        f"lut-sum fit e2e = {fit.a:.4g}·Σblocks + {fit.b:.4g}·n_blocks + {fit.c:.4g} + {fit.d:.4g}·rest_gflop; "
        f"on its {rep.fitted.n} fitting rows: " + ", ".join(parts)
    )


def _train_command(
    data: Path,
    model: str,
    out: Path,
    seed: int,
    statistic: str | None,
    lut: Path | None,
    deployment: str | None,
    param: list[str],
) -> str:
    """The command line that rebuilds this predictor, for its card."""
    parts = [
        "latbench",
        "train-predictor",
        "--data",
        str(data),
        "--model",
        model,
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    for flag, value in (("--statistic", statistic), ("--lut", lut), ("--deployment", deployment)):
        if value is not None:
            parts += [flag, str(value)]
    for p in param:
        parts += ["--param", p]
    return " ".join(shlex.quote(p) for p in parts)


def _load(predictor: Path) -> Any:
    from latbench.predictors.persist import load_predictor

    return load_predictor(predictor)


def _note_forced(problems: list[str]) -> None:
    for p in problems:
        typer.echo(f"latbench: warning: forced: {p}", err=True)


def predict(
    predictor: Path = typer.Option(..., "--predictor", help="A predictor directory (from train-predictor)."),
    data: Path | None = typer.Option(None, "--data", help="Rows to predict: a result store or an imported table."),
    out: Path | None = typer.Option(
        None, "--out", help="CSV to write (the rows plus predicted_ms, _low_ms, _high_ms)."
    ),
    arch: str | None = typer.Option(None, "--arch", help="One architecture (JSON or a file) to predict instead."),
    batch: int | None = typer.Option(None, "--batch", help="Batch size for --arch (default: the predictor's, if one)."),
    seq: int | None = typer.Option(
        None, "--seq", help="Sequence length for --arch (default: the predictor's, if one)."
    ),
    statistic: str | None = typer.Option(None, "--statistic", help=STATISTIC_HELP),
    deployment: str | None = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
) -> None:
    """Predict latency (ms, with an interval) for the rows of a data file, or for one architecture."""
    from latbench.predictors.train import check_data, load_dataset_for, predict_dataset

    if (data is None) == (arch is None):
        raise LatbenchError("predict", "give either --data FILE.parquet --out preds.csv, or --arch ARCH")
    pred = _load(predictor)
    if data is not None:
        if out is None:
            raise LatbenchError("--out", "predicting --data needs --out preds.csv")
        if batch is not None or seq is not None:
            raise LatbenchError("--batch/--seq", "apply to --arch; data rows carry their own workload")
        from latbench.io import atomic_write_text

        ds = load_dataset_for(pred, data, statistic, deployment)
        _note_forced(check_data(pred, ds, force))
        frame = predict_dataset(pred, ds, force=True)
        atomic_write_text(out, frame.to_csv(index=False))
        console.print(f"wrote {len(frame)} predictions to {out}")
        return
    if out is not None or statistic is not None or deployment is not None:
        raise LatbenchError("--arch", "prints one prediction; --out, --statistic and --deployment apply to --data")
    _predict_arch(pred, arch, batch, seq, force)  # type: ignore[arg-type]


def _workload_default(pred: Any, key: str, given: int | None, flag: str) -> int | None:
    if given is not None:
        return given
    rng = (pred.validity.workload if pred.validity is not None else {}).get(key)
    if rng is not None and rng[0] == rng[1]:
        return int(rng[0])
    if rng is not None:
        raise LatbenchError(flag, f"the predictor covers {key} {rng[0]}..{rng[1]}; say which")
    return None


def _workload_problems(validity: Any, batch: int | None, seq_len: int | None) -> list[str]:
    """The workload values outside the range a predictor was trained on (empty when none, or no validity)."""
    problems = []
    for key, value in (("batch", batch), ("seq_len", seq_len)):
        rng = None if validity is None else validity.workload.get(key)
        if value is not None and rng is not None and not rng[0] <= value <= rng[1]:
            problems.append(f"{key} {value} lies outside the predictor's {rng[0]}..{rng[1]} (extrapolation)")
    return problems


def _predict_arch(pred: Any, arch_value: str, batch: int | None, seq: int | None, force: bool) -> None:
    from latbench.space.formats import load_arch

    if pred.features is not None and pred.features.kind == "table":
        raise LatbenchError(
            "--arch", "this predictor was trained on an imported table; it predicts from its columns (use --data)"
        )
    a = load_arch(arch_value)
    b = _workload_default(pred, "batch", batch, "--batch") or 1
    s = _workload_default(pred, "seq_len", seq, "--seq") if a.family != "vit" else None
    if a.family != "vit" and s is None:
        raise LatbenchError("--seq", f"family {a.family!r} needs a sequence length")
    problems: list[str] = []
    validity = pred.validity
    if validity is not None:
        if validity.family is not None and validity.family != a.family:
            problems.append(f"the predictor is for {validity.family} models, the architecture is {a.family}")
        problems += _workload_problems(validity, b, s)
        from latbench.predictors.data import arch_dim_ranges

        problems += validity.dim_problems(arch_dim_ranges([a]))
    if problems and not force:
        raise LatbenchError("--arch", f"{problems[0]}; use --force to predict anyway")
    _note_forced(problems)
    p = pred.predict_archs([a], batch=b, seq_len=s)
    where = f"batch {b}" + (f", seq {s}" if s is not None else "")
    kind = validity.workload_kind(b, s) if validity is not None else "unknown"
    note = {"interpolation": " (between the workloads trained on)", "extrapolation": " (extrapolation, forced)"}
    console.print(
        f"{p.ms[0]:.4g} ms (interval {p.low_ms[0]:.4g} to {p.high_ms[0]:.4g} ms) for {a.describe()} at {where}"
        + note.get(kind, "")
    )


def evaluate_predictor(
    predictor: Path = typer.Option(..., "--predictor", help="A predictor directory (from train-predictor)."),
    data: Path = typer.Option(..., "--data", help="Measured data: a result store or an imported table (parquet)."),
    statistic: str | None = typer.Option(None, "--statistic", help=STATISTIC_HELP),
    deployment: str | None = typer.Option(None, "--deployment", help=DEPLOYMENT_HELP),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON."),
    drift_correction: float = typer.Option(0.0, "--drift-correction", help=DRIFT_HELP),
) -> None:
    """Judge a predictor on measured data: MAPE, RMSE, share within ±5%/±10%, Kendall τ, Spearman ρ."""
    from latbench.predictors.train import check_data, load_dataset_for
    from latbench.predictors.train import evaluate_predictor as run_evaluate

    pred = _load(predictor)
    ds = load_dataset_for(pred, data, statistic, deployment, drift_correction)
    _note_forced(check_data(pred, ds, force))
    metrics, prediction = run_evaluate(pred, ds, force=True)
    per_workload = None
    if ds.kind == "store" and pred.validity is not None:
        from latbench.predictors.train import workload_metrics

        per_workload = workload_metrics(pred.validity, ds.frame, prediction.ms, ds.target_ms)
        per_workload = per_workload if len(per_workload) > 1 else None
    if as_json:
        out = metrics.to_dict()
        if per_workload:
            out = {**out, "workloads": per_workload}
        typer.echo(json.dumps(out, indent=2))
        return
    console.print(_metrics_table({"all": metrics}, f"{pred.name} predictor {predictor} on {data} ({ds.statistic})"))
    if per_workload:
        console.print(_workload_table(per_workload, "per workload"))
