"""The ``latbench`` command line: a thin map from commands to library functions."""

from __future__ import annotations

from latbench.cli import arch, fleet, lut, predictors, profile, prune, runs, search, space, supernet
from latbench.cli._app import make_app
from latbench.cli.env import env

app = make_app("latbench: how fast will this architecture run on that hardware, deployed that way.")
app.command("env")(env)
app.command("profile")(profile.profile)
app.command("measure")(profile.measure)
app.command("show")(profile.show)
app.command("runs")(runs.runs)
app.command("build-lut")(profile.build_lut)
app.command("train-predictor")(predictors.train_predictor)
app.command("predict")(predictors.predict)
app.command("evaluate-predictor")(predictors.evaluate_predictor)
app.command("search")(search.search)
app.command("validate")(search.validate)
app.command("train-supernet")(supernet.train_supernet)
app.command("evaluate")(supernet.evaluate)
app.command("extract")(supernet.extract)
app.command("compress")(supernet.compress)
app.command("prune")(prune.prune)
app.command("finetune")(prune.finetune)
app.add_typer(space.app, name="space")
app.add_typer(arch.app, name="arch")
app.add_typer(lut.app, name="lut")
app.add_typer(fleet.app, name="fleet")
app.add_typer(predictors.import_app, name="import")


def main() -> None:
    """Console-script entry point."""
    app()
