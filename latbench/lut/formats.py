"""Latency tables and data sets of other projects, read (and, for NViT, written) exactly.

NViT (NVlabs/NViT, ``nvit/latency_head.json``)
----------------------------------------------
A nested JSON object ``EMB_e → QK_h_d → V_d → MLP_m → latency`` for one DeiT
block: embedding width ``e``, ``h`` heads of Q/K width ``d`` per head, V width
per head, MLP width ``m``. The shipped table has e ∈ {256, 512, 768},
h ∈ {1, 3, 6, 9, 12}, d ∈ {1, 16, 32, 48, 64} (Q/K and V), m ∈ {1, 128, …, 3072}:
9,375 values. Its authors state neither unit nor device; the paper measured on
a V100 and the values fit seconds per block at batch 256. :func:`read_nvit`
therefore records the unit as ``unknown`` with that note, unless told
(``unit="s"`` converts to ms, ``unit="ms"`` keeps the numbers).

How NViT uses it (``nvit/pruning_core/pruning_engine_general.py``,
``pytorch_pruning.__init__`` and ``compute_latency``, commit cf0ec5e):

- It builds ``scipy.interpolate.RegularGridInterpolator((EMB, head, QK, V, MLP), data)``
  with the default ``method="linear"`` and ``bounds_error=True`` (a query outside
  the grid raises), where ``EMB = [0, 256, 512, 768]``, ``head = [1, 3, 6, 9, 12]``,
  ``QK = V = [1, 16, 32, 48, 64]`` and ``MLP = [0, 128, …, 3072]``.
- **The zero row at EMB 0**: ``data[0]`` is left at zero, so a block of width 0
  costs 0 and widths below 256 interpolate linearly down to 0.
- **MLP_1 is the 0 point**: the MLP axis starts at 0, and the value stored there
  is read from the file's ``MLP_1`` key. The Q/K and V axes keep their 1.
- A block is queried as ``(emb, heads, qk_per_head, v_per_head, mlp)``; the model's
  latency is the sum over its 12 blocks (``original_latency = interp([768, 12, 64,
  64, 3072]) * 12``), and the pruner's latency gain of a channel is the difference
  ``lat(dim) - lat(dim - 1)`` along one axis.

``read_nvit(..., nvit_conventions=True)`` (or :func:`with_nvit_conventions`)
builds that same grid, so :meth:`LookupTable.interpolate` returns NViT's numbers;
:func:`to_nvit` undoes the conventions when writing, so a round trip gives the
same keys, nesting, order and values (and the same bytes: NViT's file is
``json.dumps`` of the dict, without a trailing newline).

On import the workload is recorded as DeiT's (224 px images, 16 px patches: 197
tokens), the model NViT prunes; batch, device and statistic stay unknown.

Data sets for predictors (pandas DataFrames)
--------------------------------------------
- **HAT** (mit-han-lab/hardware-aware-transformers, ``latency_dataset/*.csv``):
  :func:`read_hat_csv`. Columns: the 10 features :data:`HAT_FEATURES`, the 4
  measurements :data:`HAT_LATENCY_COLUMNS` (ms), and ``latency_ms`` = encoder mean
  + decoder mean, HAT's training target.
- **AutoTinyBERT** (``latency_dataset/lat.tmp``, written by its
  ``inference_time_evaluation.py`` as ``f"{arch}\\t{ms}"``: the ``str`` of its
  ``sample_*`` dict, a tab, the mean CPU time in ms at batch 1, seq 128, 1 thread):
  :func:`read_autotinybert_lat`. Columns: ``arch`` (canonical latbench JSON),
  ``hidden``, ``n_layers``, ``heads_mean``, ``qkv_mean``, ``mlp_mean`` (its
  predictor's features are hidden, layers, mean MLP and mean QKV size) and ``latency_ms``.
- **once-for-all** (mit-han-lab/once-for-all, ``<res>_lookup_table.yaml``, read by
  ``ofa/nas/efficiency_predictor/latency_lookup_table.py``): one entry per
  operator key, e.g. ``expanded_conv-input:40x40x32-output:20x20x48-expand:128-kernel:3-stride:2-idskip:0-se:1-hs:0``,
  with ``count``, ``mean`` (ms) and ``std`` (or ``var``), in block style
  (``key:`` then indented ``count: N`` lines) or flow style (``key: {count: N,
  mean: X, var: Y}``). :func:`read_ofa_yaml` parses exactly that shape with a small
  parser of its own (no PyYAML: one code path, the same one-line errors
  everywhere). Columns: ``key``, ``op``, ``input``, ``output``, ``expand``,
  ``kernel``, ``stride``, ``idskip``, ``se``, ``hs`` (those the key has, else
  missing), ``count``, ``mean_ms``, ``std_ms``.

Every reader turns a malformed file into one :class:`LatbenchError` naming the
file and the problem.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.lut.table import Axis, LookupTable, TableMeta

if TYPE_CHECKING:
    import pandas as pd

NVIT_UNIT_NOTE = "not stated by NViT; per its paper, seconds per block at batch 256 on a V100"
NVIT_AXES: tuple[str, ...] = ("emb", "heads", "qk_dim", "v_dim", "mlp")
_UNIT_SCALE_TO_MS: dict[str, float] = {"s": 1e3, "ms": 1.0}

_EMB = re.compile(r"^EMB_(\d+)$")
_QK = re.compile(r"^QK_(\d+)_(\d+)$")
_V = re.compile(r"^V_(\d+)$")
_MLP = re.compile(r"^MLP_(\d+)$")


def _check_unit(unit: str | None, where: str) -> None:
    if unit is not None and unit not in _UNIT_SCALE_TO_MS:
        raise LatbenchError(where, f"unknown unit {unit!r} (expected s or ms)")


# --------------------------------------------------------------------- NViT
def _nvit_level(obj: Any, pattern: re.Pattern[str], path: str, level: str, where: str) -> dict[tuple[int, ...], Any]:
    if not isinstance(obj, Mapping):
        kind = "a number" if isinstance(obj, (int, float)) and not isinstance(obj, bool) else type(obj).__name__
        raise LatbenchError(where, f"{path}: missing level, expected an object of {level} keys, got {kind}")
    if not obj:
        raise LatbenchError(where, f"{path}: empty object, expected {level} keys")
    out: dict[tuple[int, ...], Any] = {}
    for key, value in obj.items():
        m = pattern.match(key) if isinstance(key, str) else None
        if m is None:
            raise LatbenchError(where, f"{path}: unexpected key {key!r}, expected {level}")
        coords = tuple(int(g) for g in m.groups())
        if coords in out:
            raise LatbenchError(where, f"{path}: key {key!r} repeats a {level} value")
        out[coords] = value
    return out


def nvit_to_table(data: Any, where: str = "latency_head.json", unit: str | None = None) -> LookupTable:
    """A :class:`LookupTable` (axes emb, heads, qk_dim, v_dim, mlp) from NViT's parsed dict.

    Args:
        data: The parsed ``latency_head.json``.
        where: Name for error messages (the file).
        unit: The unit of the file's values, ``s`` or ``ms`` (converted to ms); None keeps
            the numbers and records the unit as unknown.
    """
    _check_unit(unit, "--unit")
    top = "" if not isinstance(data, Mapping) else "top level"
    embs = _nvit_level(data, _EMB, top or "top level", "EMB_e", where)
    cells: dict[tuple[int, int, int, int, int], float] = {}
    for (e,), by_qk in embs.items():
        p1 = f"EMB_{e}"
        for (h, d), by_v in _nvit_level(by_qk, _QK, p1, "QK_h_d", where).items():
            p2 = f"{p1} → QK_{h}_{d}"
            for (v,), by_mlp in _nvit_level(by_v, _V, p2, "V_d", where).items():
                p3 = f"{p2} → V_{v}"
                for (m,), x in _nvit_level(by_mlp, _MLP, p3, "MLP_m", where).items():
                    p4 = f"{p3} → MLP_{m}"
                    if isinstance(x, Mapping):
                        raise LatbenchError(where, f"{p4}: expected a number, got an object (one level too many)")
                    if isinstance(x, bool) or not isinstance(x, (int, float)):
                        raise LatbenchError(where, f"{p4}: non-numeric value {x!r}")
                    if not math.isfinite(x) or x < 0:
                        raise LatbenchError(where, f"{p4}: latency must be a finite non-negative number, got {x!r}")
                    cells[(e, h, d, v, m)] = float(x)
    grid = [sorted({c[k] for c in cells}) for k in range(5)]
    # heads and QK dim share one key level, so the grid must be checked as a product, not per level.
    expected = math.prod(len(g) for g in grid)
    if len(cells) != expected:
        for e in grid[0]:
            for h in grid[1]:
                for d in grid[2]:
                    for v in grid[3]:
                        for m in grid[4]:
                            if (e, h, d, v, m) not in cells:
                                raise LatbenchError(
                                    where,
                                    f"not a full grid: EMB_{e} → QK_{h}_{d} → V_{v} → MLP_{m} is missing "
                                    f"({len(cells)} of {expected} values)",
                                )
    values = np.empty(tuple(len(g) for g in grid))
    index = [{x: i for i, x in enumerate(g)} for g in grid]
    for coords, x in cells.items():
        values[tuple(index[k][c] for k, c in enumerate(coords))] = x
    if unit is not None:
        values = values * _UNIT_SCALE_TO_MS[unit]
    meta = TableMeta(
        family="vit",
        unit="unknown" if unit is None else "ms",
        unit_note=NVIT_UNIT_NOTE if unit is None else f"converted from {unit} as stated on import",
        statistic="unknown",
        source=f"imported from NViT latency_head.json ({where})",
        workload={"image_size": 224, "patch_size": 16},
    )
    axes = tuple(Axis(name, tuple(g)) for name, g in zip(NVIT_AXES, grid))
    return LookupTable(axes=axes, values=values, meta=meta, origin=where)


def with_nvit_conventions(table: LookupTable) -> LookupTable:
    """The table as NViT's interpolator sees it: a zero row at emb 0 and the MLP 1 point moved to 0.

    Raises:
        LatbenchError: The table is not on NViT's axes, already has emb 0 or mlp 0, or has no mlp 1.
    """
    if table.meta.grid_conventions == "nvit":
        return table
    if table.axis_names != NVIT_AXES:
        raise LatbenchError(table.origin, f"NViT's conventions need axes {', '.join(NVIT_AXES)}")
    emb, mlp = table.axis("emb"), table.axis("mlp")
    if emb.lo <= 0:
        raise LatbenchError(table.origin, "emb axis already reaches 0; cannot add NViT's zero row")
    if mlp.lo != 1:
        raise LatbenchError(table.origin, f"NViT maps MLP_1 to 0, but the mlp axis starts at {mlp.lo}")
    values = np.concatenate([np.zeros((1, *table.shape[1:])), table.values], axis=0)
    unstable = None
    if table.unstable is not None:
        unstable = np.concatenate([np.zeros((1, *table.shape[1:]), dtype=bool), table.unstable], axis=0)
    axes = (
        Axis("emb", (0, *emb.values)),
        *table.axes[1:4],
        Axis("mlp", (0, *mlp.values[1:])),
    )
    return LookupTable(
        axes=axes,
        values=values,
        meta=TableMeta(**{**table.meta.to_dict(), "grid_conventions": "nvit"}),
        unstable=unstable,
        origin=table.origin,
    )


def without_nvit_conventions(table: LookupTable) -> LookupTable:
    """Undo :func:`with_nvit_conventions`: drop the zero emb row and move mlp 0 back to 1."""
    if table.meta.grid_conventions != "nvit":
        return table
    emb, mlp = table.axis("emb"), table.axis("mlp")
    if emb.lo != 0 or mlp.lo != 0 or (len(mlp) > 1 and mlp.values[1] <= 1):
        raise LatbenchError(table.origin, "grid_conventions says nvit, but the axes do not start at emb 0 and mlp 0")
    axes = (Axis("emb", emb.values[1:]), *table.axes[1:4], Axis("mlp", (1, *mlp.values[1:])))
    return LookupTable(
        axes=axes,
        values=table.values[1:],
        meta=TableMeta(**{**table.meta.to_dict(), "grid_conventions": "none"}),
        unstable=None if table.unstable is None else table.unstable[1:],
        origin=table.origin,
    )


def read_nvit(
    source: str | os.PathLike[str] | Mapping[str, Any],
    unit: str | None = None,
    nvit_conventions: bool = False,
    where: str | None = None,
) -> LookupTable:
    """Read NViT's ``latency_head.json`` (a path, or the parsed dict).

    Args:
        source: The file, or its parsed content.
        unit: Unit of the file's values (``s`` or ``ms``, converted to ms); None: unknown.
        nvit_conventions: Apply NViT's zero EMB row and MLP 1 → 0 (see the module docstring),
            so that :meth:`LookupTable.interpolate` gives NViT's numbers.
        where: Name for error messages (defaults to the path).
    """
    if isinstance(source, Mapping):
        data, name = source, where or "latency_head.json"
    else:
        from latbench.io import read_json

        data, name = read_json(source), where or str(source)
    table = nvit_to_table(data, name, unit=unit)
    return with_nvit_conventions(table) if nvit_conventions else table


def _key_num(x: float) -> str:
    if not float(x).is_integer():
        raise LatbenchError("--to nvit", f"NViT keys are integers, the grid has {x!r}")
    return str(int(x))


def to_nvit(table: LookupTable, unit: str | None = None) -> dict[str, Any]:
    """NViT's nested dict ``EMB_e → QK_h_d → V_d → MLP_m → value``, keys in grid order.

    Args:
        table: A full table on axes emb, heads, qk_dim, v_dim, mlp (NViT's conventions, if
            applied, are undone first).
        unit: Write values in ``s`` or ``ms`` (the table must be in ms); None writes the
            table's numbers as they are.

    Raises:
        LatbenchError: Other axes, missing points (NViT's format has no gaps), or a unit
            conversion asked of a table whose unit is unknown.
    """
    _check_unit(unit, "--unit")
    table = without_nvit_conventions(table)
    if table.axis_names != NVIT_AXES:
        raise LatbenchError(
            table.origin,
            f"NViT's format needs axes {', '.join(NVIT_AXES)}, the table has {', '.join(table.axis_names)}",
        )
    cov = table.coverage()
    if cov.missing:
        p = cov.missing_points[0]
        first = ", ".join(f"{k}={v}" for k, v in p.items())
        raise LatbenchError(
            table.origin, f"NViT's format has no gaps, but {cov.missing} points are missing (first: {first})"
        )
    values = table.values
    if unit is not None:
        if table.meta.unit != "ms":
            raise LatbenchError(table.origin, f"cannot write values in {unit}: the table's unit is unknown")
        values = values / _UNIT_SCALE_TO_MS[unit]
    emb, heads, qk, v, mlp = (tuple(_key_num(x) for x in a.values) for a in table.axes)
    out: dict[str, Any] = {}
    for i, e in enumerate(emb):
        by_qk: dict[str, Any] = {}
        for j, h in enumerate(heads):
            for k, d in enumerate(qk):
                by_v: dict[str, Any] = {}
                for l_, vd in enumerate(v):
                    by_v[f"V_{vd}"] = {f"MLP_{m}": float(values[i, j, k, l_, n]) for n, m in enumerate(mlp)}
                by_qk[f"QK_{h}_{d}"] = by_v
        out[f"EMB_{e}"] = by_qk
    return out


def write_nvit(table: LookupTable, path: str | os.PathLike[str], unit: str | None = None) -> Path:
    """Write ``table`` as NViT's ``latency_head.json`` (same layout as NViT's file), atomically."""
    from latbench.io import atomic_write_text

    return atomic_write_text(path, json.dumps(to_nvit(table, unit=unit)))


# ---------------------------------------------------------------------- HAT
HAT_FEATURES: tuple[str, ...] = (
    "encoder_embed_dim",
    "encoder_layer_num",
    "encoder_ffn_embed_dim_avg",
    "encoder_self_attention_heads_avg",
    "decoder_embed_dim",
    "decoder_layer_num",
    "decoder_ffn_embed_dim_avg",
    "decoder_self_attention_heads_avg",
    "decoder_ende_attention_heads_avg",
    "decoder_arbitrary_ende_attn_avg",
)
HAT_LATENCY_COLUMNS: tuple[str, ...] = (
    "latency_mean_encoder",
    "latency_mean_decoder",
    "latency_std_encoder",
    "latency_std_decoder",
)


def read_hat_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """HAT's latency data set: 10 feature columns, 4 latency columns (ms) and ``latency_ms``.

    ``latency_ms`` = ``latency_mean_encoder + latency_mean_decoder``, the target HAT
    trains its predictor on. ``df.attrs`` holds the source file and the unit.
    """
    import io

    import pandas as pd

    from latbench.io import read_text

    where = str(path)
    text = read_text(path)
    if not text.strip():
        raise LatbenchError(where, "empty file, expected HAT's latency CSV")
    try:
        df = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise LatbenchError(where, f"not a CSV file ({' '.join(str(exc).split())})") from None
    expected = (*HAT_FEATURES, *HAT_LATENCY_COLUMNS)
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise LatbenchError(where, f"missing column {missing[0]!r} (HAT's CSV has {', '.join(expected)})")
    extra = [c for c in df.columns if c not in expected]
    if extra:
        raise LatbenchError(where, f"unexpected column {extra[0]!r} (HAT's CSV has {', '.join(expected)})")
    if df.empty:
        raise LatbenchError(where, "no rows")
    df = df[list(expected)]
    for col in expected:
        numeric = pd.to_numeric(df[col], errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.argmax(bad.to_numpy()))
            raise LatbenchError(where, f"line {row + 2}: column {col}: non-numeric value {df[col].iloc[row]!r}")
        if (numeric < 0).any():
            row = int(np.argmax((numeric < 0).to_numpy()))
            raise LatbenchError(where, f"line {row + 2}: column {col}: negative value {numeric.iloc[row]!r}")
        df[col] = numeric.astype(float)
    df["latency_ms"] = df["latency_mean_encoder"] + df["latency_mean_decoder"]
    df.attrs.update({"source": where, "format": "hat", "unit": "ms", "target": "latency_ms"})
    return df


# ------------------------------------------------------------- AutoTinyBERT
def read_autotinybert_lat(path: str | os.PathLike[str]) -> pd.DataFrame:
    """AutoTinyBERT's ``lat.tmp``: one ``<arch dict>\\t<ms>`` per line.

    Columns: ``arch`` (canonical latbench JSON), ``hidden``, ``n_layers``,
    ``heads_mean``, ``qkv_mean``, ``mlp_mean`` and ``latency_ms``.
    """
    import pandas as pd

    from latbench.io import read_text
    from latbench.space.formats import from_autotinybert

    where = str(path)
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        at = f"{where}:{lineno}"
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) != 2:
            raise LatbenchError(at, f"expected '<arch dict><TAB><ms>', got {len(parts) - 1} tabs")
        try:
            ms = float(parts[1])
        except ValueError:
            raise LatbenchError(at, f"non-numeric latency {parts[1].strip()!r}") from None
        if not math.isfinite(ms) or ms < 0:
            raise LatbenchError(at, f"latency must be a finite non-negative number, got {parts[1].strip()!r}")
        # Errors from the arch parser already start with ``file:line``.
        arch = from_autotinybert(parts[0], at)
        layers = arch.layers
        rows.append(
            {
                "arch": arch.to_json(),
                "hidden": arch.hidden,
                "n_layers": arch.n_layers,
                "heads_mean": float(np.mean([s.heads for s in layers])),
                "qkv_mean": float(np.mean([s.qk_size for s in layers])),
                "mlp_mean": float(np.mean([s.mlp for s in layers])),
                "latency_ms": ms,
            }
        )
    if not rows:
        raise LatbenchError(where, "no measurements (expected '<arch dict><TAB><ms>' lines)")
    df = pd.DataFrame(rows)
    df.attrs.update({"source": where, "format": "autotinybert", "unit": "ms", "target": "latency_ms"})
    return df


# ---------------------------------------------------------------------- OFA
_OFA_STATS = ("count", "mean", "std", "var")
_OFA_PARAMS = ("expand", "kernel", "stride", "idskip", "se", "hs")


def _ofa_number(text: str, at: str, name: str) -> float:
    try:
        x = float(text.strip())
    except ValueError:
        raise LatbenchError(at, f"{name}: non-numeric value {text.strip()!r}") from None
    if not math.isfinite(x) or x < 0:
        raise LatbenchError(at, f"{name}: must be a finite non-negative number, got {text.strip()!r}")
    return x


def _ofa_stats(pairs: list[tuple[str, str, str]], key: str) -> dict[str, float]:
    stats: dict[str, float] = {}
    for name, raw, at in pairs:
        if name not in _OFA_STATS:
            raise LatbenchError(at, f"{key}: unknown field {name!r} (expected count, mean, std or var)")
        if name in stats:
            raise LatbenchError(at, f"{key}: field {name!r} given twice")
        stats[name] = _ofa_number(raw, at, name)
        if name == "count" and not stats[name].is_integer():
            raise LatbenchError(at, f"{key}: count must be an integer, got {raw.strip()!r}")
    return stats


def parse_ofa_yaml(text: str, where: str = "lookup_table.yaml") -> dict[str, dict[str, float]]:
    """Parse OFA's latency-table YAML into ``{key: {count, mean, std|var}}``.

    Accepts exactly the two shapes OFA's tables take: block style (``key:`` on its own
    line, then indented ``name: number`` lines) and flow style (``key: {count: N,
    mean: X, var: Y}``). Comments (``#``) and blank lines are skipped.
    """
    entries: dict[str, list[tuple[str, str, str]]] = {}
    current: str | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        at = f"{where}:{lineno}"
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line.strip() in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise LatbenchError(at, "tab in indentation (YAML indents with spaces)")
        indented = line[0] == " "
        if indented:
            if current is None:
                raise LatbenchError(at, "indented line before any table key")
            name, sep, value = line.strip().partition(":")
            if not sep or not value.strip():
                raise LatbenchError(at, f"expected 'name: number' under {current!r}, got {line.strip()!r}")
            entries[current].append((name.strip(), value, at))
            continue
        flow = re.match(r"^(.+?):\s+\{(.*)\}\s*$", line)
        if flow:
            key, body = flow.group(1).strip(), flow.group(2)
            current = None
            if key in entries:
                raise LatbenchError(at, f"key {key!r} appears twice")
            pairs = []
            for item in filter(None, (s.strip() for s in body.split(","))):
                name, sep, value = item.partition(":")
                if not sep or not value.strip():
                    raise LatbenchError(at, f"expected 'name: number' in {{...}}, got {item!r}")
                pairs.append((name.strip(), value, at))
            entries[key] = pairs
            continue
        if line.endswith(":"):
            key = line[:-1].strip()
            if key in entries:
                raise LatbenchError(at, f"key {key!r} appears twice")
            entries[key] = []
            current = key
            continue
        raise LatbenchError(at, f"expected 'key:' or 'key: {{count: N, mean: X, ...}}', got {line.strip()!r}")
    if not entries:
        raise LatbenchError(where, "no entries (expected OFA's 'key: {count, mean, std|var}' latency table)")
    out: dict[str, dict[str, float]] = {}
    for key, pairs in entries.items():
        stats = _ofa_stats(pairs, key)
        if "mean" not in stats:
            raise LatbenchError(where, f"entry {key!r} has no mean")
        out[key] = stats
    return out


def read_ofa_yaml(path: str | os.PathLike[str]) -> pd.DataFrame:
    """once-for-all's ``*_lookup_table.yaml`` as a data set (one row per operator key).

    Columns: ``key``, ``op``, ``input``, ``output``, the key's parameters
    (``expand``, ``kernel``, ``stride``, ``idskip``, ``se``, ``hs``; missing where the
    key has none), ``count``, ``mean_ms``, ``std_ms`` (from ``std``, or ``sqrt(var)``).
    """
    import pandas as pd

    from latbench.io import read_text

    where = str(path)
    table = parse_ofa_yaml(read_text(path), where)
    rows = []
    for key, stats in table.items():
        op, *parts = key.split("-")
        row: dict[str, Any] = {"key": key, "op": op, "input": None, "output": None}
        row.update({p: np.nan for p in _OFA_PARAMS})
        for part in parts:
            name, sep, value = part.partition(":")
            if not sep:
                raise LatbenchError(where, f"key {key!r}: piece {part!r} is not 'name:value'")
            if name in ("input", "output"):
                row[name] = value
            elif name in _OFA_PARAMS:
                try:
                    row[name] = int(value)
                except ValueError:
                    raise LatbenchError(where, f"key {key!r}: {name} {value!r} is not an integer") from None
            else:
                raise LatbenchError(where, f"key {key!r}: unknown piece {name!r}")
        std = stats.get("std")
        if std is None and "var" in stats:
            std = math.sqrt(stats["var"])
        row.update(
            {"count": stats.get("count", np.nan), "mean_ms": stats["mean"], "std_ms": np.nan if std is None else std}
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    for p in _OFA_PARAMS:
        df[p] = df[p].astype("Int64")
    df["count"] = df["count"].astype("Int64") if df["count"].notna().all() else df["count"]
    df.attrs.update({"source": where, "format": "ofa", "unit": "ms", "target": "mean_ms"})
    return df


# ------------------------------------------------------------------ detect
def detect_table_format(data: Any) -> str:
    """``latbench`` or ``nvit`` for a parsed table file."""
    if isinstance(data, Mapping):
        if data.get("format") == "latbench-lut":
            return "latbench"
        if data and all(isinstance(k, str) and _EMB.match(k) for k in data):
            return "nvit"
    raise LatbenchError("table", "not a known table format (latbench-lut JSON, NViT latency_head.json)")


def load_table(path: str | os.PathLike[str], unit: str | None = None, nvit_conventions: bool = False) -> LookupTable:
    """Read a table in any supported format (latbench JSON or NViT's), detecting which."""
    from latbench.io import read_json

    where = str(path)
    data = read_json(path)
    try:
        fmt = detect_table_format(data)
    except LatbenchError as exc:
        raise LatbenchError(where, exc.what) from None
    if fmt == "latbench":
        if unit is not None:
            raise LatbenchError("--unit", "a latbench table records its unit; --unit is for NViT files")
        table = LookupTable.from_dict(data, where)
        return with_nvit_conventions(table) if nvit_conventions else table
    return read_nvit(data, unit=unit, nvit_conventions=nvit_conventions, where=where)
