"""``latbench lut``: convert, show and query latency look-up tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from latbench.cli._app import console, sub_app
from latbench.errors import LatbenchError

app = sub_app("Latency look-up tables: latbench JSON or NViT's latency_head.json.")

TO_FORMATS = ("latbench", "nvit")
UNIT_HELP = "Unit of the NViT file's values, read or written: s or ms (default: unknown, numbers kept as they are)."


@app.command("convert")
def convert(
    file: Path = typer.Argument(..., help="Table: latbench JSON or NViT's latency_head.json (detected)."),
    to: str = typer.Option(..., "--to", help=f"Target format: {', '.join(TO_FORMATS)}."),
    out: Path = typer.Option(..., "--out", help="Where to write the converted table."),
    unit: str | None = typer.Option(None, "--unit", help=UNIT_HELP),
) -> None:
    """Convert a table between latbench JSON and NViT's format (a round trip keeps keys and values)."""
    from latbench.lut.formats import load_table, write_nvit

    if to not in TO_FORMATS:
        raise LatbenchError("--to", f"unknown format {to!r} (expected one of {', '.join(TO_FORMATS)})")
    src_is_nvit = _is_nvit(file)
    if unit is not None and not src_is_nvit and to == "latbench":
        raise LatbenchError("--unit", "is the unit of an NViT file; a latbench table records its own")
    # --unit names the NViT side's unit: on reading, values are converted to ms; on
    # writing NViT, ms are converted back to it (a round trip keeps the file's unit).
    table = load_table(file, unit=unit if src_is_nvit else None)
    if to == "latbench":
        table.save(out)
    else:
        write_nvit(table, out, unit=unit)
    console.print(f"wrote {to} table ({table.size} points, unit {table.meta.unit}) to {out}")


def _is_nvit(file: Path) -> bool:
    from latbench.io import read_json
    from latbench.lut.formats import detect_table_format

    try:
        return detect_table_format(read_json(file)) == "nvit"
    except LatbenchError as exc:
        if exc.where == "table":
            raise LatbenchError(str(file), exc.what) from None
        raise


@app.command("show")
def show(
    file: Path = typer.Argument(..., help="Table: latbench JSON or NViT's latency_head.json."),
    as_json: bool = typer.Option(False, "--json", help="Print axes, coverage and metadata as JSON."),
    missing: int = typer.Option(5, "--missing", help="How many missing grid points to list."),
    unit: str | None = typer.Option(None, "--unit", help=UNIT_HELP),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a heat-map PNG of a two-axis slice (needs the plot extra: matplotlib)."
    ),
    x: str | None = typer.Option(None, "--x", help="With --plot: axis along x (default mlp, else the last axis)."),
    y: str | None = typer.Option(None, "--y", help="With --plot: axis along y (default heads, else the first)."),
    at: list[str] | None = typer.Option(
        None,
        "--at",
        help="With --plot: grid values of the other axes, e.g. emb=768,qk_dim=64 (default: each axis' largest).",
    ),
) -> None:
    """Show a table's axes, coverage and metadata; with --plot, draw a heat map of a slice."""
    import numpy as np

    from latbench.lut.formats import load_table

    if plot is None:
        for name, value in (("--x", x), ("--y", y), ("--at", at)):
            if value:
                raise LatbenchError(name, "chooses the slice of a heat map; give --plot FILE.png too")
    table = load_table(file, unit=unit)
    cov = table.coverage()
    meta = table.meta
    plotted = _plot(table, file, plot, x, y, at) if plot is not None else None
    if as_json:
        summary = {
            "file": str(file),
            "axes": {a.name: list(a.values) for a in table.axes},
            "coverage": {**cov.to_dict(), "missing_points": [dict(p) for p in cov.missing_points[: max(missing, 0)]]},
            "meta": meta.to_dict(),
        }
        if plotted is not None:
            summary["plot"] = {"file": str(plot), "x": plotted.x.name, "y": plotted.y.name, "at": plotted.at}
        typer.echo(json.dumps(summary, indent=2))
        return
    measured = table.values[~np.isnan(table.values)]
    console.print(f"table       {file}")
    console.print(f"family      {meta.family or 'unknown'}")
    unit = meta.unit + (f" ({meta.unit_note})" if meta.unit_note else "")
    console.print(f"unit        {unit}")
    console.print(f"statistic   {meta.statistic}")
    console.print(f"device      {meta.device or 'unknown'}")
    console.print("deploy      " + (", ".join(f"{k}={v}" for k, v in meta.deploy.items()) or "unknown"))
    console.print("workload    " + (", ".join(f"{k}={v}" for k, v in meta.workload.items()) or "unknown"))
    console.print(f"env         {meta.env_id or 'unknown'}")
    console.print(f"source      {meta.source or 'unknown'}")
    console.print(f"latbench    {meta.latbench_version or 'unknown'}")
    if meta.grid_conventions != "none":
        console.print(f"conventions {meta.grid_conventions}")
    for i, a in enumerate(table.axes):
        console.print(f"{'axes' if i == 0 else '':<12}{a.describe()}")
    console.print(f"points      {table.size} = {' x '.join(str(n) for n in table.shape)}")
    console.print(
        f"coverage    {cov.measured} measured ({cov.stable} stable, {cov.unstable} unstable), {cov.missing} missing"
    )
    if len(measured):
        console.print(f"values      {measured.min():.6g} .. {measured.max():.6g} {meta.unit}")
    for p in cov.missing_points[: max(missing, 0)]:
        console.print("missing     " + ", ".join(f"{k}={v}" for k, v in p.items()))
    if cov.missing > missing > 0:
        console.print(f"            ... and {cov.missing - missing} more")
    if plotted is not None:
        console.print(f"slice       {plotted.describe()}")
        console.print(f"plot        {plot}")


def _plot(table: Any, file: Path, out: Path, x: str | None, y: str | None, at: list[str] | None) -> Any:
    """Draw the heat map of the chosen slice; the title names the table, device, statistic and slice."""
    from latbench.lut.plot import parse_at, plot_slice, table_slice

    sl = table_slice(table, x=x, y=y, at=parse_at(at))
    meta = table.meta
    unit = "ms" if meta.unit == "ms" else "unit unknown"
    blocks = f"{meta.family} blocks" if meta.family else "blocks"
    head = f"{file.name}: {blocks} on {meta.device or 'an unrecorded device'}"
    head += f" (statistic {meta.statistic}, {unit})"
    plot_slice(sl, out, title=f"{head}\n{sl.describe()}")
    return sl


@app.command("query")
def query(
    file: Path = typer.Argument(..., help="Table: latbench JSON or NViT's latency_head.json."),
    arch: str = typer.Option(..., "--arch", help="Architecture: JSON / arch dict string, or a file holding one."),
    extrapolate: bool = typer.Option(False, "--extrapolate", help="Extrapolate linearly outside the grid (flagged)."),
    force: bool = typer.Option(False, "--force", help="Use the table even for another device, deployment or family."),
    device: str | None = typer.Option(None, "--device", help="The device you will run on; checked against the table."),
    deploy: str | None = typer.Option(None, "--deploy", help="Deployment to check against the table: JSON or a file."),
    nvit_conventions: bool = typer.Option(
        False, "--nvit-conventions", help="Query an NViT table as NViT does (zero EMB row, MLP_1 as 0)."
    ),
    overhead: Path | None = typer.Option(
        None, "--overhead", help="A LUT-sum fit (its JSON, or a lut-sum predictor directory) for end-to-end ms."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: total, per-block values, extrapolation flags."),
) -> None:
    """Latency of an architecture: the sum of its blocks' latencies, interpolated in the table."""
    from latbench.io import json_or_file
    from latbench.lut.formats import load_table
    from latbench.space.formats import load_arch

    table = load_table(file, nvit_conventions=nvit_conventions)
    a = load_arch(arch, "--arch")
    deploy_dict = None
    if deploy is not None:
        deploy_dict, where = json_or_file(deploy, "--deploy")
        if not isinstance(deploy_dict, dict):
            raise LatbenchError(where, "expected a JSON object of deployment fields")
    if device is not None and (device == "cpu" or device.startswith("cuda")):
        from latbench.lut.build import hardware_name

        device = hardware_name(device)  # the table records hardware: `cpu` means this machine's CPU
    res = table.arch_latency(a, extrapolate=extrapolate, device=device, deploy=deploy_dict, force=force)
    total, unit = res.total, table.meta.unit
    e2e = None
    if overhead is not None:
        from latbench.lut.latency_model import load_overhead

        if unit != "ms":
            raise LatbenchError(str(file), "values are in an unknown unit; an overhead model needs a table in ms")
        e2e = load_overhead(overhead).end_to_end_ms(a, total, table)
    flagged = [i for i, e in enumerate(res.extrapolated) if e]
    if as_json:
        out = {
            "arch": a.describe(),
            "sum_of_blocks": total,
            "unit": unit,
            "blocks": list(res.blocks),
            "extrapolated": list(res.extrapolated),
        }
        if e2e is not None:
            out["end_to_end_ms"] = e2e
        typer.echo(json.dumps(out))
        return
    unit_label = "ms" if unit == "ms" else f"(unit unknown: {table.meta.unit_note or 'not recorded'})"
    flag = f"; EXTRAPOLATED outside the grid in block(s) {', '.join(map(str, flagged))}" if flagged else ""
    console.print(f"arch        {a.describe()}")
    console.print(f"latency     {total:.6g} {unit_label} (sum of {res.n_blocks} blocks{flag})")
    if e2e is not None:
        console.print(f"end-to-end  {e2e:.6g} ms (with the fitted overhead from {overhead})")
