"""``latbench arch``: convert an architecture between formats, check it, cost it."""

from __future__ import annotations

import json

import typer

from latbench.cli._app import console, sub_app
from latbench.space.formats import FORMATS, convert, load_arch

app = sub_app("One architecture: ARCH is JSON (latbench, NViT, whittle), an AutoTinyBERT arch dict, or a file.")


@app.command("convert")
def convert_cmd(
    arch: str = typer.Argument(..., help="Architecture: JSON / arch dict string, or a file holding one."),
    to: str = typer.Option(..., "--to", help=f"Target format: {', '.join(FORMATS)}."),
) -> None:
    """Print ARCH in another format, exactly as that tool prints it."""
    typer.echo(convert(load_arch(arch), to))


@app.command("check")
def check(
    arch: str = typer.Argument(..., help="Architecture: JSON / arch dict string, or a file."),
    space: str = typer.Option(..., "--space", help="Preset name or space JSON file."),
) -> None:
    """Check that ARCH lies inside a search space (exit 2 naming the first dimension outside)."""
    from latbench.space import get_space

    a = load_arch(arch)
    get_space(space).check(a)
    console.print(f"ok: {a.describe()} is in space {space!r}")


@app.command("cost")
def cost(
    arch: str = typer.Argument(..., help="Architecture: JSON / arch dict string, or a file."),
    batch: int = typer.Option(1, "--batch", help="Batch size."),
    seq: int | None = typer.Option(None, "--seq", help="Sequence length (text families; required for bert/gpt)."),
    precision: str = typer.Option("fp32", "--precision", help="fp32, fp16, bf16 or int8 (bytes per value)."),
    peak_tflops: float | None = typer.Option(None, "--peak-tflops", help="Attainable TFLOP/s, for roofline time."),
    peak_gbps: float | None = typer.Option(None, "--peak-gbps", help="Attainable GB/s, for roofline time."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Analytic cost: parameters, FLOPs and minimum bytes per block and for the model; roofline time with peaks."""
    from rich.table import Table

    from latbench.errors import LatbenchError
    from latbench.models.cost import model_cost

    if (peak_tflops is None) != (peak_gbps is None):
        raise LatbenchError("--peak-tflops/--peak-gbps", "give both peaks for a roofline time, or neither")
    if peak_tflops is not None and (peak_tflops <= 0 or peak_gbps <= 0):  # type: ignore[operator]
        raise LatbenchError("--peak-tflops/--peak-gbps", "peaks must be positive")
    a = load_arch(arch)
    mc = model_cost(a, batch, seq, precision)

    def roof(c) -> float | None:
        return None if peak_tflops is None else c.roofline_ms(peak_tflops * 1e12, peak_gbps * 1e9)  # type: ignore[operator]

    parts = [("embedding", mc.embedding)] + [(f"block {i}", b) for i, b in enumerate(mc.blocks)]
    parts += [("head", mc.head), ("total", mc.total)]
    if as_json:
        rows = [{"part": name, **c.to_dict(), "roofline_ms": roof(c)} for name, c in parts]
        typer.echo(
            json.dumps(
                {"arch": a.to_dict(), "batch": batch, "seq_len": seq, "precision": precision, "parts": rows}, indent=2
            )
        )
        return
    table = Table(title=f"{a.describe()}  batch {batch}" + (f" seq {seq}" if seq else "") + f" {precision}")
    for col in ("part", "params", "GFLOPs", "MB moved") + (("roofline ms",) if peak_tflops else ()):
        table.add_column(col, justify="left" if col == "part" else "right")
    for name, c in parts:
        cells = [name, f"{c.params:,}", f"{c.flops / 1e9:.3f}", f"{c.bytes / 1e6:.2f}"]
        if peak_tflops:
            cells.append(f"{roof(c):.4f}")
        table.add_row(*cells)
    console.print(table)
