"""A heat map of a two-axis slice of a look-up table (the ``plot`` extra: matplotlib, imported lazily).

A table has four or five axes; a picture has two. :func:`table_slice` picks an
``x`` and a ``y`` axis and holds every other axis at one grid value (by default
its largest: the full-size block, whose neighbourhood a pruner or searcher
starts from); :func:`plot_slice` draws it, values in the table's unit with a
colour bar, unmeasured points grey. Slices hold grid values only: a heat map
shows what was measured, never an interpolation of it.

Axis names may be given as the table spells them (``qk_dim``) or as NViT and
the issue do (``qk``, ``v``, ``EMB``); ``hidden`` and ``emb`` stand for each other.
Errors name the option (``--x``, ``--y``, ``--at``) and what the table offers.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.lut.table import Axis, LookupTable, _fmt

#: Other spellings of axis names (NViT's keys, short forms).
ALIASES: dict[str, tuple[str, ...]] = {
    "qk": ("qk_dim",),
    "v": ("v_dim",),
    "emb": ("emb", "hidden"),
    "hidden": ("hidden", "emb"),
    "width": ("hidden", "emb"),
    "head": ("heads",),
}
#: Preferred default axes of a heat map, in order: the two a pruner trades most often.
DEFAULT_X = ("mlp",)
DEFAULT_Y = ("heads",)
#: Annotate each cell with its value when the slice is at most this many cells a side.
_ANNOTATE_MAX = 12


@dataclass(frozen=True)
class TableSlice:
    """Two axes of a table, the others held at one grid value each.

    Attributes:
        x, y: The axes drawn (columns and rows of ``values``).
        at: The fixed axes and their values, in the table's axis order.
        values: Shape ``(len(y), len(x))``; NaN where not measured.
        unit: The table's unit (``ms`` or ``unknown``).
    """

    x: Axis
    y: Axis
    at: dict[str, float]
    values: np.ndarray
    unit: str = "ms"

    def describe(self) -> str:
        """E.g. ``y=heads, x=mlp; at emb=768, qk_dim=64, v_dim=64``."""
        fixed = ", ".join(f"{k}={_fmt(v)}" for k, v in self.at.items())
        return f"y={self.y.name}, x={self.x.name}" + (f"; at {fixed}" if fixed else "")


def resolve_axis(table: LookupTable, name: str, option: str) -> str:
    """The table's name of axis ``name`` (exact, case-insensitive, or an alias); errors name ``option``."""
    names = table.axis_names
    key = name.strip()
    if key in names:
        return key
    low = key.lower()
    for n in names:
        if n.lower() == low:
            return n
    for candidate in ALIASES.get(low, ()):
        if candidate in names:
            return candidate
    raise LatbenchError(option, f"no axis {name!r} in this table (axes: {', '.join(names)})")


def parse_at(items: Iterable[str] | None) -> dict[str, float]:
    """``["hidden=768,qk=64", "mlp=3072"]`` → ``{"hidden": 768, "qk": 64, "mlp": 3072}`` (names not resolved)."""
    out: dict[str, float] = {}
    for item in items or ():
        for part in item.split(","):
            if not part.strip():
                continue
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise LatbenchError("--at", f"expected AXIS=VALUE[,AXIS=VALUE...], got {part.strip()!r}")
            try:
                number = float(value)
            except ValueError:
                raise LatbenchError("--at", f"{name.strip()}: expected a number, got {value.strip()!r}") from None
            if name.strip() in out:
                raise LatbenchError("--at", f"{name.strip()} is given twice")
            out[name.strip()] = number
    return out


def _default(table: LookupTable, preferred: Sequence[str], taken: set[str], last: bool) -> str:
    for n in preferred:
        if n in table.axis_names and n not in taken:
            return n
    free = [n for n in table.axis_names if n not in taken]
    return free[-1] if last else free[0]


def table_slice(
    table: LookupTable, x: str | None = None, y: str | None = None, at: Mapping[str, float] | None = None
) -> TableSlice:
    """The slice of ``table`` over axes ``x`` and ``y``, every other axis fixed (``at``, else its largest value).

    Args:
        table: The table.
        x: Axis along the columns (default ``mlp``, else the last axis).
        y: Axis along the rows (default ``heads``, else the first other axis).
        at: Grid values of some other axes (axis names as in :func:`resolve_axis`).

    Raises:
        LatbenchError: Naming ``--x``, ``--y`` or ``--at``: an unknown axis, the same axis
            twice, or a value that is not a grid value of its axis.
    """
    if len(table.axes) < 2:
        raise LatbenchError("--x/--y", f"a heat map needs two axes; the table has one ({table.axis_names[0]})")
    x_name = resolve_axis(table, x, "--x") if x is not None else None
    y_name = resolve_axis(table, y, "--y") if y is not None else None
    if x_name is not None and x_name == y_name:
        raise LatbenchError("--y", f"is the same axis as --x ({x_name})")
    if x_name is None:
        x_name = _default(table, DEFAULT_X, {y_name} if y_name else set(), last=True)
    if y_name is None:
        y_name = _default(table, DEFAULT_Y, {x_name}, last=False)
    fixed: dict[str, float] = {}
    for given, value in (at or {}).items():
        name = resolve_axis(table, given, "--at")
        if name in (x_name, y_name):
            raise LatbenchError("--at", f"{name} is the {'--x' if name == x_name else '--y'} axis; it cannot be fixed")
        if name in fixed:
            raise LatbenchError("--at", f"{name} is given twice")
        axis = table.axis(name)
        if value not in axis.values:
            where = (
                f"outside the grid ({_fmt(axis.lo)}..{_fmt(axis.hi)})"
                if not axis.lo <= value <= axis.hi
                else f"not a grid value of {axis.describe()}"
            )
            raise LatbenchError("--at", f"{name}={_fmt(value)} is {where}")
        fixed[name] = value
    index: list[Any] = []
    at_ordered: dict[str, float] = {}
    for axis in table.axes:
        if axis.name in (x_name, y_name):
            index.append(slice(None))
            continue
        value = fixed.get(axis.name, axis.hi)
        at_ordered[axis.name] = value
        index.append(axis.values.index(value))
    sub = table.values[tuple(index)]
    # The remaining dimensions are in the table's order; rows must be y.
    names = [a.name for a in table.axes if a.name in (x_name, y_name)]
    values = sub if names == [y_name, x_name] else sub.T
    return TableSlice(
        x=table.axis(x_name), y=table.axis(y_name), at=at_ordered, values=np.array(values), unit=table.meta.unit
    )


def _ticks(axis: Axis, max_labels: int = 16) -> tuple[list[int], list[str]]:
    step = max(1, -(-len(axis) // max_labels))
    pos = list(range(0, len(axis), step))
    return pos, [_fmt(axis.values[i]) for i in pos]


def plot_slice(sl: TableSlice, path: str | os.PathLike[str], title: str = "") -> Path:
    """Write ``sl`` as a PNG heat map (axes labelled with their names, a colour bar in the unit).

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install 'latbench[plot]'``).
    """
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError(
            "--plot", "drawing a heat map needs matplotlib (pip install 'latbench[plot]')"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from latbench.io import atomic_write

    data = np.ma.masked_invalid(sl.values)
    width = min(12.0, max(5.5, 3.0 + 0.45 * len(sl.x)))  # wide enough for the two-line title
    height = min(9.0, 2.5 + 0.4 * len(sl.y))
    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    try:
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d0d0d0")
        image = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, interpolation="nearest")
        bar = fig.colorbar(image, ax=ax)
        bar.set_label("latency (ms)" if sl.unit == "ms" else "latency (unit unknown)")
        pos, labels = _ticks(sl.x)
        ax.set_xticks(pos, labels, rotation=90 if len(sl.x) > 8 else 0)
        pos, labels = _ticks(sl.y)
        ax.set_yticks(pos, labels)
        ax.set_xlabel(sl.x.name)
        ax.set_ylabel(sl.y.name)
        if len(sl.x) <= _ANNOTATE_MAX and len(sl.y) <= _ANNOTATE_MAX:
            finite = sl.values[np.isfinite(sl.values)]
            mid = float(finite.min() + finite.max()) / 2 if finite.size else 0.0
            for (i, j), v in np.ndenumerate(sl.values):
                text = "n/a" if np.isnan(v) else f"{v:.3g}"
                colour = "black" if np.isnan(v) or v > mid else "white"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
        import textwrap

        text = "\n".join(textwrap.fill(line, 70) for line in (title or sl.describe()).splitlines())
        ax.set_title(text, fontsize=8)
        fig.tight_layout()
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)
