"""``latbench profile``, ``measure``, ``show``: measure sampled architectures or a user's model, read a store."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from latbench.cli._app import console
from latbench.cli.options import (
    BATCH,
    DEPLOYMENT,
    DEVICE,
    PROTOCOL,
    DeployOptions,
    ProtocolOptions,
    deploy_options,
    protocol_options,
)
from latbench.errors import LatbenchError

#: Re-exported for the commands that import them from here.
__all__ = ["BATCH", "DEVICE", "build_lut", "measure", "profile", "progress_bar", "show"]


def parse_int_list(text: str, flag: str) -> list[int]:
    """``"8"`` or ``"1,2,4"`` as positive integers, in the order given (a one-line error naming ``flag``)."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            value = int(part)
        except ValueError:
            raise LatbenchError(flag, f"expected an integer or a comma-separated list of them, got {text!r}") from None
        if value < 1:
            raise LatbenchError(flag, f"must be >= 1, got {value}")
        out.append(value)
    return list(dict.fromkeys(out))


def _describe_row(row: dict[str, Any]) -> str:
    return f"{row['scope']} {row['median_ms']:.3f} ms" + (" (unstable)" if row["unstable"] else "")


def progress_bar(title: str, describe: Any = _describe_row) -> tuple[Any, Any]:
    """A rich progress bar with ETA and the ``on_progress(done, total, item)`` callback that drives it.

    ``describe(item)`` is the text beside the bar for an item (default: a store row's scope and median).
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn(f"[bold]{title}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    task = None

    def on_progress(done: int, total: int, row: Any) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task("", total=total, completed=done)
            return
        desc = "" if row is None else describe(row)
        progress.update(task, completed=done, description=desc)

    return progress, on_progress


NORMALISE_DRIFT = typer.Option(
    False,
    "--normalise-drift",
    help="CPU: also store each median at one fixed speed of this machine (median_ms_normalised, through the "
    "reference workload timed in every round); median_ms stays as measured.",
)


@deploy_options()
@protocol_options
def profile(
    space: str = typer.Option("bert", "--space", help="Preset (bert, vit, gpt) or a space JSON file."),
    deployment: DeployOptions = DEPLOYMENT,
    batch: str = typer.Option(
        "1",
        "--batch",
        help="Batch size, or a list (1,2,4,8,16,32): a design over workloads (see --workloads-per-arch).",
    ),
    seq: str | None = typer.Option(
        None,
        "--seq",
        help="Sequence length (bert, gpt; default 128), or a list (64,128,256,512); vit takes its image size.",
    ),
    workloads_per_arch: int = typer.Option(
        2,
        "--workloads-per-arch",
        help="With several batches or sequence lengths: the workloads of the grid (batch x seq) each architecture "
        "is measured at, balanced over the grid (0: all).",
    ),
    samples: int | None = typer.Option(
        None,
        "--samples",
        help="How many architectures to sample from the space. Default: 30 on a CPU (about 4.5 minutes on a "
        "2-core machine), 150 on a GPU (about 5 minutes).",
        show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: same seed, same architectures (and weights)."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Result store (parquet); an existing one is resumed. Default: runs/<space>_<device>_<deployment>.parquet.",
    ),
    blocks: bool = typer.Option(True, "--blocks/--no-blocks", help="Also measure each distinct block alone."),
    protocol: ProtocolOptions = PROTOCOL,
    group_size: int = typer.Option(4, "--group-size", help="Architectures prepared and interleaved together."),
    normalise_drift: bool = NORMALISE_DRIFT,
) -> None:
    """Sample architectures from a space and measure whole models (and blocks) on a device, into a result store.

    With no options: 30 architectures of the bert space at seq 128, batch 1, on this CPU, into runs/.
    """
    from latbench import runs
    from latbench.profiling.job import profile_space
    from latbench.space import get_space

    sp = get_space(space)
    batches = parse_int_list(batch, "--batch")
    seqs: list[int | None] = (
        [runs.default_seq(sp.family, dict(sp.extras).get("max_seq_len"))]
        if seq is None
        else parse_int_list(seq, "--seq")  # type: ignore[list-item]
    )
    workloads = [(b, s) for b in batches for s in seqs]
    deploy = deployment.config(batches[0], seqs[0])
    proto = protocol.config()
    n = samples if samples is not None else runs.default_samples(deploy.device)
    out = out if out is not None else runs.store_path(sp.name, deploy, workloads=workloads)
    progress, on_progress = progress_bar("profile")
    console.print(f"deployment  {deploy.label()}")
    if len(workloads) > 1:
        k = min(workloads_per_arch or len(workloads), len(workloads))
        console.print(
            f"workloads   batch {','.join(map(str, batches))} x seq {','.join(map(str, seqs))}: "
            f"{k} of {len(workloads)} per architecture, balanced"
        )
    if deploy.device_type == "cpu":
        from latbench.profiling.placement import plan

        console.print(f"placement   {plan(deploy.threads or 1, proto.pin_threads).summary()}")
    with progress:
        report = profile_space(
            sp,
            n,
            seed,
            deploy,
            proto,
            out,
            blocks=blocks,
            group_size=group_size,
            normalise_drift=normalise_drift,
            on_progress=on_progress,
            workloads=workloads,
            workloads_per_arch=workloads_per_arch,
        )
    console.print(
        f"wrote {report.measured} rows to {out} ({report.already_done} already there, "
        f"{report.unstable} unstable) in {report.wall_s:.1f} s; env {report.env_id}"
    )
    if report.ref_anchor_ms is not None:
        console.print(
            f"drift       medians also stored at the reference speed {report.ref_anchor_ms:.3f} ms of this machine "
            "(median_ms_normalised)"
        )
    if report.busy is not None:
        busy = report.busy.message()
        if busy:
            console.print(f"[yellow]warning[/yellow]     {busy}", soft_wrap=True)
        else:
            console.print(f"steadiness  {report.busy.figures()}", soft_wrap=True)
    data = "" if runs.is_latest("store", out) else f" --data {out}"
    console.print(f"next        latbench train-predictor{data}")


@deploy_options()
@protocol_options
def measure(
    model: str = typer.Argument(..., help="MODEL.onnx, or module:factory (a callable returning an nn.Module)."),
    input_: list[str] = typer.Option(..., "--input", help="name:shape[:dtype[:high]], e.g. ids:1x128:int64:30522"),
    deployment: DeployOptions = DEPLOYMENT,
    protocol: ProtocolOptions = PROTOCOL,
    out: Path | None = typer.Option(None, "--out", help="Also append the row to this result store."),
    as_json: bool = typer.Option(False, "--json", help="Print the measurement as JSON."),
    normalise_drift: bool = NORMALISE_DRIFT,
) -> None:
    """Measure a user's own model with the same protocol and output as ``profile``."""
    from latbench.profiling.job import measure_user_model
    from latbench.profiling.user_model import InputSpec

    specs = [InputSpec.parse(s) for s in input_]
    batch = specs[0].shape[0]
    seq = specs[0].shape[1] if len(specs[0].shape) == 2 and specs[0].dtype.startswith("int") else None
    deploy = deployment.config(batch, seq)
    proto = protocol.config()
    row = measure_user_model(model, specs, deploy, proto, out=out, normalise_drift=normalise_drift)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in row.items() if k != "samples_ms"}, indent=2, default=str))
        return
    _print_row(row)
    if out is not None:
        console.print(f"appended to {out}")


def _print_row(row: dict[str, Any]) -> None:
    console.print(f"model       {row['arch']}")
    console.print(f"deployment  {row['deploy_key']}")
    console.print(
        f"median      {row['median_ms']:.4f} ms  (95% CI {row['ci_low_ms']:.4f}..{row['ci_high_ms']:.4f}, n {row['n']})"
    )
    console.print(
        f"quantiles   min {row['min_ms']:.4f}  p10 {row['p10_ms']:.4f}  p90 {row['p90_ms']:.4f}  "
        f"p99 {row['p99_ms']:.4f}  mean {row['mean_ms']:.4f}  IQR/median {row['iqr_ratio']:.3f}"
    )
    console.print(f"build       {row['build_ms']:.1f} ms ({row['runtime']})")
    if row.get("median_ms_normalised") is not None:
        console.print(
            f"drift       {row['median_ms_normalised']:.4f} ms at the reference speed {row['ref_anchor_ms']:.3f} ms "
            f"of this machine (now {row['ref_ms']:.3f} ms)"
        )
    state = "unstable: " + row["unstable_reasons"] if row["unstable"] else "stable"
    console.print(f"status      {state} (stopped: {row['stop_reason']})")


def show(
    store: Path | None = typer.Argument(
        None, help="A result store written by latbench profile / measure (none: list what is under runs/)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Summarise a result store: rows, stable share, median CI width, deployments and fingerprints."""
    from rich.table import Table

    if store is None:
        from latbench.cli.runs import list_runs
        from latbench.runs import RUNS_DIR

        list_runs(RUNS_DIR, as_json)
        return

    from latbench.profiling.store import ResultStore

    st = ResultStore.open_readonly(store)
    s = st.summary()
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
        return

    def pct(x: float | None) -> str:
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"

    console.print(f"store       {store}")
    console.print(
        f"rows        {s['rows']} ({s['models']} models, {s['blocks']} blocks) over {s['archs']} architectures"
    )
    console.print(f"stable      {pct(s['stable_share'])} ({s['unstable_rows']} unstable rows)")
    console.print(f"median CI   ±{pct(s['median_ci_rel_halfwidth'])} of the median (median over rows)")
    console.print(f"spaces      {', '.join(s['spaces']) or '-'}")
    for where, n in s["placements"].items():
        console.print(f"placement   {where} ({n} rows)")
    if s["round_spread"] is not None:
        other = "" if s["other_cores_max"] is None else f"; other processes used up to {s['other_cores_max']:.2f} cores"
        console.print(f"steadiness  each row's rounds moved {pct(s['round_spread'])} (median p10-p90 over rows){other}")
    table = Table(title="deployments")
    table.add_column("deployment", overflow="fold")
    table.add_column("rows", justify="right")
    for key, n in s["rows_by_deployment"].items():
        table.add_row(key, str(n))
    console.print(table)
    for env_id, info in s["envs"].items():
        speed = ""
        if info.get("ref_ms") is not None:
            speed = (
                f"; CPU reference workload ({info['reference']}) {info['ref_ms']:.3f} ms, "
                f"moved {100 * info['ref_spread']:.1f}% "
                "(p10-p90) over the rows: the machine's own speed"
            )
            others = {k: v for k, v in (info.get("references") or {}).items() if k != info.get("reference")}
            if others:
                speed += "; also " + ", ".join(f"{n} rows timed with {k}" for k, n in others.items())
        console.print(f"env {env_id}  {info['description']} ({info['rows']} rows{speed})")


@deploy_options()
@protocol_options
def build_lut(
    out: Path = typer.Option(..., "--out", help="The table to write (latbench LUT JSON)."),
    grid: Path | None = typer.Option(None, "--grid", help="Grid JSON: family, axes and their values (see docs)."),
    from_store: Path | None = typer.Option(None, "--from", help="Build from the block rows of this result store."),
    store: Path | None = typer.Option(None, "--store", help="Result store for the grid's rows (default: OUT.parquet)."),
    space: str | None = typer.Option(
        None, "--space", help="Accepted for symmetry with profile; the grid names the family."
    ),
    deployment: DeployOptions = DEPLOYMENT,
    batch: int = BATCH,
    seq: int | None = typer.Option(None, "--seq", help="Sequence length (bert, gpt)."),
    statistic: str = typer.Option("median", "--statistic", help="median, p10, min or mean of each point's samples."),
    deploy_key: str | None = typer.Option(None, "--deploy-key", help="With --from: which deployment's rows."),
    protocol: ProtocolOptions = PROTOCOL,
    group_size: int = typer.Option(8, "--group-size", help="Grid points prepared and interleaved together."),
    seed: int = typer.Option(0, "--seed", help="Weight seed."),
) -> None:
    """Build a latency look-up table: profile every grid point as one block (resumable), or --from a store."""
    from latbench.lut.build import build_lut as _build
    from latbench.lut.build import lut_from_store

    if (grid is None) == (from_store is None):
        raise LatbenchError("--grid/--from", "give exactly one: a grid to profile, or a store to build from")
    if from_store is not None:
        table = lut_from_store(from_store, out, deploy_key=deploy_key, statistic=statistic)
    else:
        if space is not None:
            from latbench.space import get_space

            get_space(space)  # validated, so a typo is not silently ignored
        deploy = deployment.config(batch, seq)
        proto = protocol.config()
        console.print(f"deployment  {deploy.label()}")
        progress, on_progress = progress_bar("build-lut")
        with progress:
            table = _build(
                grid,
                deploy,
                proto,
                out,
                store=store,
                statistic=statistic,
                group_size=group_size,
                seed=seed,
                on_progress=on_progress,
            )
    cov = table.coverage()
    shape = " x ".join(f"{a.name} {len(a.values)}" for a in table.axes)
    console.print(
        f"wrote {out}: grid {shape}; {cov.measured}/{cov.total} measured "
        f"({cov.unstable} unstable, {cov.missing} missing)"
    )
