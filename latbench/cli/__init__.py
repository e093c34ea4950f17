"""The ``latbench`` command line: a thin map from commands to library functions."""

from __future__ import annotations

from latbench.cli import arch, lut, profile, space
from latbench.cli._app import make_app
from latbench.cli.env import env

app = make_app("latbench: how fast will this architecture run on that hardware, deployed that way.")
app.command("env")(env)
app.command("profile")(profile.profile)
app.command("measure")(profile.measure)
app.command("show")(profile.show)
app.command("build-lut")(profile.build_lut)
app.add_typer(space.app, name="space")
app.add_typer(arch.app, name="arch")
app.add_typer(lut.app, name="lut")


def main() -> None:
    """Console-script entry point."""
    app()
