"""Configs as frozen dataclasses, built from dicts whose values may be CLI strings (``--param k=v``)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from latbench.errors import LatbenchError

C = TypeVar("C", bound="Config")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Turn a CLI string (``--param depth=4``) into the field's type; pass other values through."""
    if not isinstance(value, str):
        if isinstance(value, list):
            return tuple(value)
        return value
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value.lower() in ("none", "null") and type(None) in args:
            return None
        for arg in args:
            if arg is not type(None):
                return coerce(value, arg, where)
    if annotation is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise LatbenchError(where, f"expected true or false, got {value!r}")
    if origin is tuple:
        inner = args[0] if args else str
        return tuple(coerce(v.strip(), inner, where) for v in value.split(",") if v.strip())
    try:
        if annotation is int:
            return int(value)
        if annotation is float:
            return float(value)
    except ValueError:
        raise LatbenchError(where, f"expected {annotation.__name__}, got {value!r}") from None
    return value


class Config:
    """Mixin for a frozen dataclass config (a predictor's, a searcher's): checked ``to_dict``/``from_dict``."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, where: str = "config") -> C:
        """Build from a dict (values may be strings, as from ``--param key=value``)."""
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise LatbenchError(where, f"unknown parameter {unknown[0]!r} (known: {', '.join(names)})")
        kwargs = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in data.items()}
        try:
            return cls(**kwargs)
        except LatbenchError as exc:
            raise LatbenchError(where, f"{exc.where}: {exc.what}") from None
        except TypeError as exc:
            raise LatbenchError(where, str(exc)) from None


def check_positive(config: Any, *names: str) -> None:
    """Raise a one-line error naming the first of ``names`` that is not positive."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise LatbenchError(name, f"must be positive, got {value!r}")
