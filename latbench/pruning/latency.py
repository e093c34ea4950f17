"""The latency regulariser: a LUT that prices a model's block dimensions, and what removing one unit saves.

A model's predicted latency is the sum of its blocks' LUT values (NViT:
``original_latency = interp([768, 12, 64, 64, 3072]) * 12``; embeddings and head
are not in the table). The gain of a group is NViT's ``compute_latency`` difference
``LUT(dims) - LUT(dims with that group one smaller)``: for a block's heads, QK, V
or MLP group the one block changes, for the embedding width every block does.

With an overhead fit (:class:`~latbench.lut.LutSumModel`, ``--overhead``) the price is the
whole model's: ``a · Σ blocks + b · n_blocks + c + d · rest_gflop`` (embeddings and head by
their GFLOPs), so a latency target holds for the model as deployed, not for its blocks alone.
A block group's gain is then ``a`` times its LUT difference; the embedding width's also
carries ``d`` times the head's and embeddings' saving.

A table is either latbench's (``format: latbench-lut``) or NViT's
``latency_head.json``, read with NViT's interpolator conventions (zero row at
EMB 0, ``MLP_1`` as the 0 point; see :mod:`latbench.lut.formats`). Only ratios
and differences are used, so NViT's unstated unit does no harm; λ is in "score
per unit of the table".
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import LatbenchError
from latbench.lut.latency_model import LutSumModel, load_overhead
from latbench.lut.table import LookupTable
from latbench.space.arch import Arch, LayerSpec

__all__ = ["LatencyCost", "load_lut", "load_overhead"]

_KIND_AXIS: dict[str, tuple[str, ...]] = {
    "emb": ("emb", "hidden"),
    "heads": ("heads",),
    "qk": ("qk_dim",),
    "v": ("v_dim",),
    "mlp": ("mlp",),
}


def load_lut(path: str | os.PathLike[str], nvit_unit: str | None = None) -> LookupTable:
    """Read a latbench LUT JSON or NViT's ``latency_head.json`` (detected from the content).

    Args:
        path: The file.
        nvit_unit: For an NViT table, the unit of its values (``s`` or ``ms``); None keeps it unknown.

    Raises:
        LatbenchError: Neither format, or a malformed file (one line naming the file).
    """
    from latbench.io import read_json
    from latbench.lut.formats import read_nvit

    data = read_json(path)
    if isinstance(data, Mapping) and data.get("format") == "latbench-lut":
        return LookupTable.load(path)
    if isinstance(data, Mapping) and data and all(isinstance(k, str) and k.startswith("EMB_") for k in data):
        return read_nvit(data, unit=nvit_unit, nvit_conventions=True, where=str(Path(path)))
    raise LatbenchError(str(path), "not a latency table: expected a latbench LUT or NViT's latency_head.json")


class LatencyCost:
    """Prices architectures of one model with a block LUT.

    Args:
        table: The LUT (axes ``emb``/``hidden``, ``heads``, ``qk_dim``, optional ``v_dim``, ``mlp``).
        base: The unpruned architecture; the table must cover it.
        force: Use a table recorded for another family or workload (image size, patch size) anyway.
        overhead: A LUT-sum fit: prices whole models (see the module docstring); the table must be in ms.

    Raises:
        LatbenchError: The table does not cover ``base`` (naming the axis and its bounds), has an
            axis with no counterpart in a block, was made for another family/workload (unless forced),
            or is in an unknown unit while an overhead fit is given.
    """

    def __init__(
        self, table: LookupTable, base: Arch, force: bool = False, overhead: LutSumModel | None = None
    ) -> None:
        self.table = table
        self.base = base
        self.overhead = overhead
        if overhead is not None:
            if table.meta.unit != "ms":
                raise LatbenchError(
                    table.origin, "values are in an unknown unit; an overhead fit (--overhead) needs a table in ms"
                )
            overhead.check_table(table, force)
        self._axes = table.axis_names
        known = {a for names in _KIND_AXIS.values() for a in names}
        for name in self._axes:
            if name not in known:
                raise LatbenchError(table.origin, f"axis {name!r} has no counterpart in a transformer block")
        for kind in ("emb", "heads", "qk", "mlp"):  # v may go without: it is priced through the Q/K/V width
            names = _KIND_AXIS[kind]
            if not any(n in self._axes for n in names):
                width = "hidden" if base.family != "vit" else "emb"
                missing = width if kind == "emb" else names[0]
                raise LatbenchError(
                    table.origin, f"the LUT does not cover the model: it has no {missing!r} axis to price {kind} by"
                )
        if "v_dim" not in self._axes:
            # The table's own check refuses v != qk without a V axis; its family/workload check is what we want.
            check = base.with_layers(LayerSpec(s.heads, s.qk_dim, s.qk_dim, s.mlp) for s in base.layers)
        else:
            check = base
        try:
            table.arch_latency(check, force=force)
            self.original = self.latency(base)
        except LatbenchError as exc:
            if "outside the grid" in exc.what or "not measured" in exc.what:
                raise LatbenchError(exc.where, f"the LUT does not cover the model: {exc.what}") from None
            raise
        if not self.original > 0:
            raise LatbenchError(table.origin, f"the model's predicted latency is {self.original}, not positive")

    @property
    def unit(self) -> str:
        return self.table.meta.unit

    def floor(self, kind: str) -> int:
        """The smallest size of a ``kind`` group that stays inside the table's grid (at least 1)."""
        for name in _KIND_AXIS[kind]:
            if name in self._axes:
                return max(1, math.ceil(self.table.axis(name).lo))
        return 1

    def _point(self, hidden: float, heads: float, qk: float, v: float, mlp: float) -> list[float]:
        dims = {"emb": hidden, "hidden": hidden, "heads": heads, "qk_dim": qk, "v_dim": v, "mlp": mlp}
        if "v_dim" not in self._axes:
            # A table without a V axis was measured with v = qk; price the block at the Q/K/V
            # projections' mean width, which is what its cost grows with.
            dims["qk_dim"] = (2.0 * qk + v) / 3.0
        return [dims[n] for n in self._axes]

    def points(self, arch: Arch) -> np.ndarray:
        """One grid point per block of ``arch``: ``[n_layers, n_axes]``."""
        return np.array([self._point(arch.hidden, s.heads, s.qk_dim, s.v_dim, s.mlp) for s in arch.layers])

    def block_latencies(self, arch: Arch) -> np.ndarray:
        """Predicted latency of each block (the table's unit)."""
        return self.table.interpolate(self.points(arch)).values

    def latency(self, arch: Arch) -> float:
        """Predicted latency of ``arch``: the sum of its blocks, or with an overhead fit the whole model's."""
        return self._whole(arch, float(self.block_latencies(arch).sum()))

    def _whole(self, arch: Arch, block_sum: float) -> float:
        if self.overhead is None:
            return block_sum
        from latbench.predictors.lut_sum import MIN_LATENCY_MS

        return max(self.overhead.end_to_end_ms(arch, block_sum, self.table), MIN_LATENCY_MS)

    def _rest_gain(self, arch: Arch) -> float:
        """What one embedding unit less saves outside the blocks (0 without an overhead fit's ``d``)."""
        oh = self.overhead
        if oh is None or not oh.has_rest_term:
            return 0.0
        return oh.d * (oh.rest_gflop(arch, self.table) - oh.rest_gflop(arch.with_hidden(arch.hidden - 1), self.table))

    def ratio(self, arch: Arch) -> float:
        """Predicted latency of ``arch`` over the unpruned model's."""
        return self.latency(arch) / self.original

    def gains(self, arch: Arch, candidates: Sequence[tuple[str, int | None]]) -> dict[tuple[str, int | None], float]:
        """``LUT(arch) - LUT(arch with the group one unit smaller)`` for each ``(kind, block)``.

        Every candidate must be able to lose a unit (size above :meth:`floor`).
        """
        if not candidates:
            return {}
        per_block = self.block_latencies(arch)
        rows: list[list[float]] = []
        where: list[tuple[tuple[str, int | None], slice]] = []
        for kind, block in candidates:
            start = len(rows)
            if kind == "emb":
                for s in arch.layers:
                    rows.append(self._point(arch.hidden - 1, s.heads, s.qk_dim, s.v_dim, s.mlp))
            else:
                assert block is not None
                s = arch.layers[block]
                dims = {"heads": s.heads, "qk": s.qk_dim, "v": s.v_dim, "mlp": s.mlp}
                dims[kind] -= 1
                rows.append(self._point(arch.hidden, dims["heads"], dims["qk"], dims["v"], dims["mlp"]))
            where.append(((kind, block), slice(start, len(rows))))
        reduced = self.table.interpolate(np.array(rows)).values
        scale = 1.0 if self.overhead is None else self.overhead.a
        out: dict[tuple[str, int | None], float] = {}
        for key, sl in where:
            kind, block = key
            before = float(per_block.sum()) if kind == "emb" else float(per_block[block])
            out[key] = scale * (before - float(reduced[sl].sum())) + (self._rest_gain(arch) if kind == "emb" else 0.0)
        return out

    def describe(self) -> dict[str, Any]:
        """Where the table came from and what it predicts for the unpruned model."""
        out = {
            "origin": self.table.origin,
            "unit": self.unit,
            "source": self.table.meta.source,
            "device": self.table.meta.device,
            "original_latency": self.original,
            "priced": "blocks" if self.overhead is None else "whole model",
        }
        if self.overhead is not None:
            oh = self.overhead
            out["overhead"] = {"a": oh.a, "b": oh.b, "c": oh.c, "d": oh.d}
        return out


class PredictorCost:
    """Prices architectures of one model with a trained predictor (``train-predictor``'s directory).

    The predictor prices whole models (in ms), so a latency target holds for the model. A group's
    gain is a finite difference: ``(P(arch) - P(arch with the group `step` units smaller)) / step``
    with ``step`` an eighth of the group's size: a tree model (xgboost) is flat between its split
    points, so one unit less often changes nothing, while a few units less give the slope.

    Args:
        predictor: A loaded predictor trained on architectures (a result store).
        base: The unpruned architecture.
        origin: Where the predictor was read from (for messages and the report).
        seq_len: The sequence length the model runs at (text families), or None (images).
        force: Use a predictor of another family or workload, or beyond its training dimensions, anyway.

    Raises:
        LatbenchError: The predictor was trained on an imported table, is for another family, or its
            workload or training dimensions do not cover the model (unless ``force``).
    """

    unit = "ms"

    def __init__(
        self, predictor: Any, base: Arch, origin: str, seq_len: int | None = None, force: bool = False
    ) -> None:
        self.predictor = predictor
        self.base = base
        self.origin = origin
        features = predictor.features
        if features is None or features.kind != "arch":
            raise LatbenchError(origin, "was trained on an imported table; pruning needs one trained on architectures")
        v = predictor.validity
        workload = {} if v is None else v.workload
        batch = workload.get("batch")
        self.batch = int(batch[0]) if batch else 1
        self.seq_len = seq_len if base.family != "vit" else None
        problems: list[str] = []
        if v is not None:
            if v.family is not None and v.family != base.family:
                problems.append(f"the predictor is for {v.family} models, the model is {base.family}")
            rng = workload.get("seq_len")
            if self.seq_len is not None and rng is not None and not rng[0] <= self.seq_len <= rng[1]:
                problems.append(
                    f"the predictor covers seq_len {rng[0]}..{rng[1]}, the data's windows are {self.seq_len} tokens "
                    "(use --seq-len)"
                )
            from latbench.predictors.data import arch_dim_ranges

            problems += v.dim_problems(arch_dim_ranges([base]), what="the model")
        if problems and not force:
            raise LatbenchError(origin, f"{problems[0]}; use --force to prune with it anyway")
        self.original = self.latency(base)
        if not self.original > 0:
            raise LatbenchError(origin, f"the model's predicted latency is {self.original}, not positive")

    def _predict(self, archs: Sequence[Arch]) -> np.ndarray:
        p = self.predictor.predict_archs(list(archs), batch=self.batch, seq_len=self.seq_len)
        return np.asarray(p.ms, dtype=np.float64)

    def floor(self, kind: str) -> int:
        """The smallest size of a ``kind`` group (1: a predictor has no grid)."""
        return 1

    def latency(self, arch: Arch) -> float:
        """The predicted latency of ``arch`` (ms)."""
        return float(self._predict([arch])[0])

    def ratio(self, arch: Arch) -> float:
        """Predicted latency of ``arch`` over the unpruned model's."""
        return self.latency(arch) / self.original

    def gains(self, arch: Arch, candidates: Sequence[tuple[str, int | None]]) -> dict[tuple[str, int | None], float]:
        """Per ``(kind, block)``: what one unit less saves, as the slope over a step of an eighth of the group."""
        if not candidates:
            return {}
        archs: list[Arch] = [arch]
        steps: list[int] = []
        for kind, block in candidates:
            if kind == "emb":
                step = max(1, min(arch.hidden - 1, arch.hidden // 8))
                archs.append(arch.with_hidden(arch.hidden - step))
            else:
                assert block is not None
                s = arch.layers[block]
                dims = {"heads": s.heads, "qk": s.qk_dim, "v": s.v_dim, "mlp": s.mlp}
                step = max(1, min(dims[kind] - 1, dims[kind] // 8))
                dims[kind] -= step
                layers = list(arch.layers)
                layers[block] = LayerSpec(dims["heads"], dims["qk"], dims["v"], dims["mlp"])
                archs.append(arch.with_layers(layers))
            steps.append(step)
        ms = self._predict(archs)
        return {key: float(ms[0] - ms[i + 1]) / steps[i] for i, key in enumerate(candidates)}

    def describe(self) -> dict[str, Any]:
        """Where the predictor came from and what it predicts for the unpruned model."""
        v = self.predictor.validity
        return {
            "origin": self.origin,
            "unit": self.unit,
            "source": f"{self.predictor.name} predictor",
            "device": None if v is None else v.device,
            "original_latency": self.original,
            "priced": "whole model",
        }


def load_latency_model(
    path: str | os.PathLike[str],
    base: Arch,
    *,
    nvit_unit: str | None = None,
    seq_len: int | None = None,
    force: bool = False,
    overhead: LutSumModel | None = None,
) -> LatencyCost | PredictorCost:
    """What ``--lut`` names, ready to price ``base``: a LUT file (latbench's or NViT's) or a predictor directory.

    A ``lut-sum`` predictor directory gives its table and its fit (whole-model prices); another
    predictor prices whole models itself (:class:`PredictorCost`).
    """
    p = Path(path)
    if not p.is_dir():
        table = load_lut(p, nvit_unit=nvit_unit)
        recorded = table.meta.workload.get("seq_len")
        if seq_len is not None and recorded is not None and recorded != seq_len and not force:
            raise LatbenchError(
                str(p),
                f"measured at seq_len {recorded}, the data's windows are {seq_len} tokens; use --seq-len or --force",
            )
        return LatencyCost(table, base, force=force, overhead=overhead)
    from latbench.predictors.persist import load_predictor

    predictor = load_predictor(p)
    if predictor.name == "lut-sum":
        table = predictor.table  # type: ignore[attr-defined]
        return LatencyCost(table, base, force=force, overhead=overhead or predictor.model)  # type: ignore[attr-defined]
    if overhead is not None:
        raise LatbenchError("--overhead", "prices a LUT's block sum; a predictor directory prices whole models itself")
    return PredictorCost(predictor, base, str(p), seq_len=seq_len, force=force)
