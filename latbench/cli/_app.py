"""The typer app, its one-line error handling, and the shared console."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup
from typer.exceptions import Abort, Exit, TyperException

from latbench.errors import LatbenchError

console = Console(highlight=False, soft_wrap=True)


def fail(message: str, code: int = 2) -> None:
    """Print ``latbench: error: <message>`` on one line to stderr and exit."""
    line = " ".join(str(message).split())
    typer.echo(f"latbench: error: {line}", err=True)
    sys.exit(code)


class LatbenchGroup(TyperGroup):
    """Runs a command; any input error becomes one stderr line and exit code 2, never a traceback."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            return super().main(
                args=args, prog_name=prog_name or "latbench", complete_var=complete_var, standalone_mode=False, **extra
            )
        except LatbenchError as exc:
            fail(str(exc))
        except Exit as exc:
            sys.exit(exc.exit_code)
        except Abort:
            fail("aborted", 1)
        except TyperException as exc:  # usage errors: unknown option, bad value, missing argument
            fail(exc.format_message(), getattr(exc, "exit_code", 2) or 2)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except OSError as exc:
            # A safety net for a file or directory the code did not check first (an --out that is a
            # file where a directory goes, a directory we may not write in): one line naming it.
            # An OSError without a file name is no input problem of this kind; it stays a traceback.
            if exc.filename is None:
                raise
            fail(os_error_message(exc))
        return None


def os_error_message(exc: OSError) -> str:
    """``<file>: <problem>`` for an ``OSError`` that names a file (its ``filename``)."""
    name = os.fsdecode(exc.filename) if isinstance(exc.filename, (str, bytes, os.PathLike)) else str(exc.filename)
    what = exc.strerror or type(exc).__name__
    if isinstance(exc, FileExistsError) and os.path.exists(name) and not os.path.isdir(name):
        what = "exists and is not a directory"  # mkdir(exist_ok=True) where a file stands
    return f"{name}: {what}"


def make_app(help_text: str) -> typer.Typer:
    return typer.Typer(
        cls=LatbenchGroup,
        help=help_text,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )


def sub_app(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
