"""A name -> class registry whose entries may be ``"module:Class"`` strings, imported on first use.

So ``import latbench.predictors`` loads neither xgboost nor torch, and ``import latbench.search``
no searcher it does not run. Users register their own classes under new names.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

from latbench.errors import LatbenchError


class Registry:
    """Named classes of one kind (predictors, searchers ...).

    Args:
        kind: What the entries are, for messages (``predictor``, ``searcher``).
        option: The CLI option that names an entry (``--model``, ``--method``), for messages.
        entries: The built-in entries: name -> class or ``"module:Class"``.
        listed: The names an error lists as expected (default: all).
    """

    def __init__(
        self, kind: str, option: str, entries: Mapping[str, str | type], listed: Sequence[str] | None = None
    ) -> None:
        self.kind = kind
        self.option = option
        self._entries: dict[str, str | type] = dict(entries)
        self._listed = tuple(listed) if listed is not None else None

    def register(self, name: str, target: str | type) -> None:
        """Register a class (or its ``"module:Class"`` path) under ``name``."""
        if not name or not isinstance(name, str):
            raise LatbenchError(f"register_{self.kind}", f"a {self.kind} needs a non-empty name")
        self._entries[name] = target

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def get(self, name: str) -> Any:
        """The class registered under ``name`` (imported now)."""
        target = self._entries.get(name)
        if target is None:
            listed = self._listed if self._listed is not None else self.names()
            raise LatbenchError(self.option, f"unknown {self.kind} {name!r} (expected one of {', '.join(listed)})")
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            self._entries[name] = target
        return target

    def copy(self) -> Registry:
        return Registry(self.kind, self.option, self._entries, self._listed)
