"""Atomic writes and validated reads of the files latbench produces and consumes."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError

SCHEMA_VERSION = 1


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Write a file through a temporary sibling and rename it into place.

    A reader (or a run killed half-way) never sees a half-written file.

    Args:
        path: Destination.
        write: Called with the temporary path; must write the whole file there.
    """
    dest = Path(path)
    if dest.is_dir():
        raise LatbenchError(str(dest), "is a directory, expected a file")
    ensure_dir(dest.parent, where=str(dest))
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    except OSError as exc:  # a directory we may not write in
        raise LatbenchError(str(dest), f"cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp creates the temporary 0600; the result gets the replaced file's mode, else the umask's.
        os.chmod(tmp, _file_mode(dest))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            os.replace(tmp, dest)
        except IsADirectoryError:  # a directory appeared there since the check above
            raise LatbenchError(str(dest), "is a directory, expected a file") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def ensure_dir(path: str | os.PathLike[str], where: str | None = None) -> Path:
    """Create directory ``path`` (and its parents) if missing; return it.

    A file standing where the directory or one of its parents should be, or a directory
    that cannot be created, is a :class:`LatbenchError` naming ``where`` (default: ``path``)
    rather than an ``OSError`` traceback.
    """
    p = check_dir_path(path, where)
    name = str(p) if where is None else where
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LatbenchError(name, f"cannot create directory {p} ({exc.strerror or exc})") from None
    return p


def check_dir_path(path: str | os.PathLike[str], where: str | None = None) -> Path:
    """Check, creating nothing, that ``path`` can be a directory: neither it nor a parent is a file.

    For a command's output directory, checked before the work that fills it. The error names
    ``where`` (default: ``path``).
    """
    p = Path(path)
    name = str(p) if where is None else where
    for d in (p, *p.parents):
        if d.is_dir():
            break
        if d.exists() or d.is_symlink():  # a file, a broken link, a device...
            what = "is a file, not a directory" if d.is_file() else "is not a directory"
            raise LatbenchError(name, what if d == p and where is None else f"{d} {what}")
    return p


def _file_mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent) + "\n")


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file, turning OS errors into one-line errors naming the file."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LatbenchError(str(p), "no such file") from None
    except IsADirectoryError:
        raise LatbenchError(str(p), "is a directory, expected a file") from None
    except UnicodeDecodeError:
        raise LatbenchError(str(p), "not a UTF-8 text file") from None
    except OSError as exc:
        raise LatbenchError(str(p), exc.strerror or str(exc)) from None


def parse_json(text: str, where: str) -> Any:
    """Parse JSON text; a syntax error names ``where`` with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LatbenchError(where, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read and parse a JSON file with one-line errors."""
    return parse_json(read_text(path), str(path))


def json_or_file(value: str, what: str = "argument") -> tuple[Any, str]:
    """Interpret a CLI value as inline JSON, or else as the path of a JSON file.

    Returns:
        The parsed object and a name for error messages (the path, or ``what``).
    """
    stripped = value.lstrip()
    if stripped.startswith(("{", "[")):
        return parse_json(value, what), what
    p = Path(value)
    if not p.exists():
        raise LatbenchError(what, f"{value!r} is neither JSON nor an existing file")
    return read_json(p), str(p)


def import_object(target: str, where: str) -> Any:
    """Import ``module:name`` (or ``path/to/file.py:name``) and return the named object.

    The current directory is importable, as on ``python -m``. Every failure is one
    :class:`LatbenchError` naming ``where`` (the option or argument that gave ``target``).
    """
    import importlib
    import importlib.util
    import sys

    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise LatbenchError(where, f"{target!r}: expected module:name or path/to/file.py:name")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.is_file():
                raise LatbenchError(where, f"{module_name}: no such file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
            sys.modules[path.stem] = mod
            spec.loader.exec_module(mod)  # type: ignore[union-attr]
        else:
            if str(Path.cwd()) not in sys.path:
                sys.path.insert(0, str(Path.cwd()))
            mod = importlib.import_module(module_name)
    except LatbenchError:
        raise
    except ImportError as exc:
        raise LatbenchError(where, f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise LatbenchError(where, f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj = getattr(mod, attr, None)
    if obj is None:
        raise LatbenchError(where, f"{module_name!r} has no {attr!r}")
    return obj
