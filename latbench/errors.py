"""The one error type that reaches the user as a single line.

Every check on user input (a file, an option, an architecture) raises
:class:`LatbenchError` with *where* the problem is and *what* it is; the CLI
prints ``latbench: error: <where>: <what>`` and exits with code 2.
"""

from __future__ import annotations


class LatbenchError(ValueError):
    """A problem with the user's input, worth one line and exit code 2."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = what
        super().__init__(f"{where}: {what}" if where else what)

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Two constructor arguments: without this, pickling (a Ray worker's error) loses the class.
        return (type(self), (self.where, self.what))


class MissingDependencyError(LatbenchError):
    """An optional library (an extra) or a piece of hardware is missing."""
