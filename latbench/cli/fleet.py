"""``latbench fleet``: profile and build tables on many devices through Ray, one result store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from latbench.cli._app import console, sub_app
from latbench.cli.options import BATCH, PROTOCOL, ProtocolOptions, protocol_options
from latbench.errors import LatbenchError

app = sub_app("Fleet profiling on Ray: many devices (targets.yaml), one resumable result store.")

_ADDRESS_HELP = "ray://HOST:PORT (Ray client), HOST:PORT (from a cluster node), auto, or local (start one here)."
_TARGETS_HELP = "Targets file (YAML, or .json): label, Ray resource, device and deployment of each device."


def _say(text: str) -> None:
    # Labels, resources and fingerprint fields hold brackets (``[cpu_dev_a]``, ``gpus[0]``), not markup.
    console.print(text, markup=False)


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _callbacks(progress: Any) -> tuple[Any, Any]:
    tasks: dict[str, Any] = {}

    def on_progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total, completed=done)
        else:
            progress.update(tasks[label], completed=done)

    def on_warning(message: str) -> None:
        progress.console.print(f"warning: {message}", markup=False)

    return on_progress, on_warning


def _print_report(report: Any) -> None:
    for t in report.targets:
        envs = ", ".join(t.env_ids) or "-"
        where = f" over {t.units} device(s)" if t.units else ""
        where += f" on {', '.join(t.nodes)}" if t.nodes else ""
        _say(
            f"{t.label}: {t.already_done + t.measured}/{t.requested} rows ({t.measured} new, "
            f"{t.unstable} unstable){where}; env {envs}"
        )
    # Warnings were printed as they arose (on_warning).
    _say(f"fleet run took {report.wall_s:.1f} s")
    errors = report.errors()
    if errors:
        raise LatbenchError(
            "fleet",
            f"{errors[0]}" + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "") + "; rerun to resume",
        )


@app.command("profile")
@protocol_options
def profile(
    address: str = typer.Option("auto", "--address", help=_ADDRESS_HELP),
    targets: Path = typer.Option(..., "--targets", help=_TARGETS_HELP),
    space: str = typer.Option(..., "--space", help="Preset (bert, vit, gpt) or a space JSON file."),
    batch: int = BATCH,
    seq: int | None = typer.Option(None, "--seq", help="Sequence length (bert, gpt); vit takes its image size."),
    samples: int = typer.Option(20, "--samples", help="How many architectures to sample from the space."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed: same seed, same architectures (and weights)."),
    out: Path = typer.Option(..., "--out", help="Result store (parquet); an existing one is resumed."),
    blocks: bool = typer.Option(True, "--blocks/--no-blocks", help="Also measure each distinct block alone."),
    protocol: ProtocolOptions = PROTOCOL,
    group_size: int = typer.Option(4, "--group-size", help="Architectures a task prepares and interleaves together."),
    peaks: bool = typer.Option(True, "--peaks/--no-peaks", help="Measure each device's peaks once (roofline)."),
    max_retries: int = typer.Option(3, "--max-retries", help="Ray retries of a task whose worker or node died."),
    flush_s: float = typer.Option(5.0, "--flush-s", help="Append arrived rows to the store at most this often (s)."),
) -> None:
    """Measure a sample of a space on every target; identical devices share the work."""
    from latbench.fleet import fleet_profile, read_targets
    from latbench.space import get_space

    sp = get_space(space)
    tgts = read_targets(targets)
    proto = protocol.config()
    for t in tgts:
        _say(f"target      {t.describe()}")
    progress = _progress()
    on_progress, on_warning = _callbacks(progress)
    with progress:
        report = fleet_profile(
            sp,
            samples,
            tgts,
            proto,
            out,
            address=address,
            batch=batch,
            seq_len=seq,
            seed=seed,
            blocks=blocks,
            group_size=group_size,
            peaks=peaks,
            max_retries=max_retries,
            on_progress=on_progress,
            on_warning=on_warning,
            flush_s=flush_s,
        )
    _say(f"wrote {report.measured} rows to {out}")
    _print_report(report)


@app.command("build-lut")
@protocol_options
def build_lut(
    address: str = typer.Option("auto", "--address", help=_ADDRESS_HELP),
    targets: Path = typer.Option(..., "--targets", help=_TARGETS_HELP),
    grid: Path = typer.Option(..., "--grid", help="Grid JSON: family, axes and their values."),
    out: Path = typer.Option(..., "--out", help="Folder of the tables: one <label>.json per target."),
    store: Path | None = typer.Option(
        None, "--store", help="Result store of the grid's rows (default OUT/fleet.parquet)."
    ),
    batch: int = BATCH,
    seq: int | None = typer.Option(None, "--seq", help="Sequence length (bert, gpt)."),
    statistic: str = typer.Option("median", "--statistic", help="median, p10, min or mean of each point's samples."),
    protocol: ProtocolOptions = PROTOCOL,
    group_size: int = typer.Option(8, "--group-size", help="Grid points a task prepares and interleaves together."),
    seed: int = typer.Option(0, "--seed", help="Weight seed, and the seed of the order points are dealt in."),
    peaks: bool = typer.Option(True, "--peaks/--no-peaks", help="Measure each device's peaks once (roofline)."),
    max_retries: int = typer.Option(3, "--max-retries", help="Ray retries of a task whose worker or node died."),
    flush_s: float = typer.Option(5.0, "--flush-s", help="Append arrived rows to the store at most this often (s)."),
) -> None:
    """Measure every point of a LUT grid on every target and write one table per target."""
    from latbench.fleet import fleet_build_lut, read_targets
    from latbench.lut.table import LookupTable

    tgts = read_targets(targets)
    proto = protocol.config()
    for t in tgts:
        _say(f"target      {t.describe()}")
    progress = _progress()
    on_progress, on_warning = _callbacks(progress)
    with progress:
        result = fleet_build_lut(
            grid,
            tgts,
            proto,
            out,
            store=store,
            address=address,
            statistic=statistic,
            batch=batch,
            seq_len=seq,
            seed=seed,
            group_size=group_size,
            peaks=peaks,
            max_retries=max_retries,
            on_progress=on_progress,
            on_warning=on_warning,
            flush_s=flush_s,
        )
    for label, path in result.tables.items():
        cov = LookupTable.load(path).coverage()
        _say(
            f"wrote {path} ({label}): {cov.measured}/{cov.total} measured "
            f"({cov.unstable} unstable, {cov.missing} missing)"
        )
    _say(f"rows in {result.store}")
    _print_report(result.run)


@app.command("status")
def status(
    out: Path = typer.Option(..., "--out", help="The fleet's result store."),
    targets: Path | None = typer.Option(None, "--targets", help=_TARGETS_HELP + " Default: the last run's."),
    address: str | None = typer.Option(None, "--address", help="Also show each resource's units: " + _ADDRESS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> None:
    """List the targets of a fleet store, their fingerprints and progress (rows done / requested)."""
    from latbench.fleet import fleet_status, read_targets

    tgts = read_targets(targets) if targets is not None else None
    st = fleet_status(out, tgts, address=address)
    if as_json:
        typer.echo(json.dumps(st.to_dict(), indent=2))
        return
    _say(f"store       {st.store}" + (f" ({st.kind} run)" if st.kind else ""))
    if not st.targets:
        _say("no targets (no plan beside the store and no fleet rows in it)")
    for t in st.targets:
        req = "?" if t.requested is None else str(t.requested)
        pct = f" ({100 * t.done / t.requested:.0f}%)" if t.requested else ""
        res = f" [{t.resource}]" if t.resource else ""
        units = ""
        if t.units is not None:
            units = f"; {t.units:g} unit(s) in the cluster, {t.units_free:g} free"
        _say(f"{t.label}{res}: {t.done}/{req} rows{pct}; {t.deployment}{units}")
        for e in t.envs:
            nodes = f" on {', '.join(e.nodes)}" if e.nodes else ""
            _say(f"    env {e.env_id}  {e.description} ({e.rows} rows{nodes})")
    for w in st.warnings:
        _say(f"warning: {w}")
