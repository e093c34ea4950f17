"""``latbench runs`` (and ``latbench show`` with no argument): what the commands wrote under ``runs/``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from latbench.cli._app import console

_TITLES = {
    "store": "stores",
    "predictor": "predictors",
    "lut": "look-up tables",
    "search": "searches",
    "prune": "prune runs",
}


def runs(
    folder: Path = typer.Option(Path("runs"), "--dir", help="The runs folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """List the stores, predictors, look-up tables, searches and prune runs under runs/, each with its key figure."""
    list_runs(folder, as_json)


def list_runs(folder: Path, as_json: bool = False) -> None:
    from latbench.runs import KINDS
    from latbench.runs import list_runs as find

    entries = find(folder)
    if as_json:
        doc = [{"kind": e.kind, "path": str(e.path), "mtime": e.mtime, "figure": e.figure} for e in entries]
        typer.echo(json.dumps(doc, indent=2))
        return
    if not entries:
        console.print(f"nothing under {folder}/ yet: start with latbench profile --device cpu", markup=False)
        return
    for kind in KINDS:
        of_kind = [e for e in entries if e.kind == kind]
        if of_kind:
            console.print(f"{_TITLES[kind]} (oldest first)", markup=False)
        for e in of_kind:
            console.print(f"  {e.path}  {e.figure}", markup=False)
