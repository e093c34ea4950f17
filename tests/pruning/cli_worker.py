"""The prune/finetune commands on an app built here, for ``torchrun ... -m tests.pruning.cli_worker prune ...``."""

from __future__ import annotations

from latbench.cli._app import make_app
from latbench.cli.prune import finetune, prune

app = make_app("test app")
app.command("prune")(prune)
app.command("finetune")(finetune)

if __name__ == "__main__":
    app()
