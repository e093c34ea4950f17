"""``latbench space``: show a search space, sample architectures from it."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from latbench.cli._app import console, sub_app
from latbench.errors import LatbenchError
from latbench.space import get_space

app = sub_app("Search spaces: presets (bert, vit, gpt) or your own JSON file.")


@app.command("show")
def show(
    space: str = typer.Argument(..., help="Preset name (bert, vit, gpt) or a space JSON file."),
    as_json: bool = typer.Option(False, "--json", help="Print the space as JSON (a valid space file)."),
) -> None:
    """Show a space's domains, its reference architecture and where it comes from."""
    sp = get_space(space)
    if as_json:
        typer.echo(json.dumps(sp.to_dict(), indent=2))
        return
    console.print(f"space       {sp.name} (family {sp.family})")
    console.print(f"layers      {sp.n_layers.describe()}")
    console.print(f"hidden      {sp.hidden.describe()}")
    console.print(f"heads       {sp.heads.describe()}")
    console.print(f"qk_dim      {sp.qk_dim.describe()} per head")
    console.print(f"v_dim       {'= qk_dim' if sp.v_dim is None else sp.v_dim.describe() + ' per head'}")
    if sp.qkv is not None:
        console.print(f"qkv size    {sp.qkv.describe()} (heads x qk_dim)")
    console.print(f"mlp         {sp.mlp.describe()}")
    console.print(f"layers are  {'all the same' if sp.uniform_layers else 'free per block'}")
    console.print("settings    " + ", ".join(f"{k}={v}" for k, v in sp.reference.extras.items()))
    console.print(f"reference   {sp.reference.describe()}")
    console.print(f"super-net   {sp.supernet_arch().describe()}")
    if sp.description:
        console.print(f"about       {sp.description}")


@app.command("sample")
def sample(
    space: str = typer.Option(..., "--space", help="Preset name (bert, vit, gpt) or a space JSON file."),
    n: int = typer.Option(5, "--n", help="How many architectures."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same architectures."),
    out: Path | None = typer.Option(None, "--out", help="Write the JSON lines to this file instead of stdout."),
) -> None:
    """Sample architectures: one canonical Arch JSON per line."""
    if n < 1:
        raise LatbenchError("--n", f"must be >= 1, got {n}")
    archs = get_space(space).sample(seed, n=n)
    text = "\n".join(a.to_json() for a in archs)  # type: ignore[union-attr]
    if out is None:
        typer.echo(text)
    else:
        from latbench.io import atomic_write_text

        atomic_write_text(out, text + "\n")
        console.print(f"wrote {n} architectures to {out}")
