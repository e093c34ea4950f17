"""AutoTinyBERT's grid searchers: ``candidate`` and ``fast``.

Both enumerate the space's grid of *uniform* architectures (every layer the same, as
AutoTinyBERT's space is; for a per-block space such as ``vit`` only its uniform members),
predict every grid point's latency in one vectorised pass, and keep those whose predicted
latency lies in a window around the target (``[0.85, 1.1] x target`` by default, AutoTinyBERT's
``candidate`` window). The window's members are then evaluated for quality in a seeded
random order until the budget runs out; the driver keeps the best.

``fast`` first applies AutoTinyBERT's efficient-architecture rule
(``1.6 h <= FFN <= 1.9 h`` and ``0.7 h <= qkv <= h``, with ``h`` the hidden width)
and evaluates only a sample of the survivors.

A grid larger than ``max_grid`` points is enumerated on a seeded uniform sample of that many.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from latbench.config import check_positive
from latbench.errors import LatbenchError
from latbench.predictors.features import ArchArrays
from latbench.search.base import Searcher, SearcherConfig
from latbench.space import Arch, SearchSpace


@dataclass(frozen=True)
class Grid:
    """The uniform members of a space as a mixed-radix grid (layers x hidden x attention x MLP)."""

    space: SearchSpace
    n_layers: np.ndarray
    hidden: np.ndarray
    attention: np.ndarray  # (K, 3): heads, qk_dim, v_dim
    mlp: np.ndarray

    @classmethod
    def of(cls, space: SearchSpace) -> Grid:
        pairs = np.array(space.attention_choices(), dtype=np.int64)
        if space.v_dim is None:
            attention = np.column_stack([pairs, pairs[:, 1]])
        else:
            v = np.array(space.v_dim.values(), dtype=np.int64)
            attention = np.column_stack([np.repeat(pairs, len(v), axis=0), np.tile(v, len(pairs))])
        return cls(
            space=space,
            n_layers=np.array(space.n_layers.values(), dtype=np.int64),
            hidden=np.array(space.hidden.values(), dtype=np.int64),
            attention=attention,
            mlp=np.array(space.mlp.values(), dtype=np.int64),
        )

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.n_layers), len(self.hidden), len(self.attention), len(self.mlp))

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.float64))

    def indices(self, rng: np.random.Generator, max_points: int) -> np.ndarray:
        """All grid indices, or a seeded uniform sample of ``max_points`` distinct ones."""
        size = self.size
        if size <= max_points:
            return np.arange(size, dtype=np.int64)
        if size <= 8 * max_points:
            return np.sort(rng.choice(size, max_points, replace=False))
        picked = np.unique(rng.integers(0, size, int(max_points * 1.05), dtype=np.int64))
        return np.sort(rng.permutation(picked)[:max_points])

    def dims(self, index: np.ndarray) -> dict[str, np.ndarray]:
        li, hi, ai, mi = np.unravel_index(index, self.shape)
        att = self.attention[ai]
        return {
            "n_layers": self.n_layers[li],
            "hidden": self.hidden[hi],
            "heads": att[:, 0],
            "qk_dim": att[:, 1],
            "v_dim": att[:, 2],
            "mlp": self.mlp[mi],
        }

    def arrays(self, index: np.ndarray) -> ArchArrays:
        d = self.dims(index)
        return ArchArrays.uniform_from_dims(
            self.space.family,
            hidden=d["hidden"],
            n_layers=d["n_layers"],
            heads=d["heads"],
            qk_dim=d["qk_dim"],
            mlp=d["mlp"],
            v_dim=d["v_dim"],
            extras=dict(self.space.extras),
        )

    def archs(self, index: np.ndarray) -> list[Arch]:
        d = self.dims(np.asarray(index, dtype=np.int64))
        extras = dict(self.space.extras)
        return [
            Arch.uniform_arch(
                self.space.family,
                hidden=int(d["hidden"][i]),
                n_layers=int(d["n_layers"][i]),
                heads=int(d["heads"][i]),
                qk_dim=int(d["qk_dim"][i]),
                mlp=int(d["mlp"][i]),
                v_dim=int(d["v_dim"][i]),
                **extras,
            )
            for i in range(len(index))
        ]


@dataclass(frozen=True)
class CandidateConfig(SearcherConfig):
    """Attributes:
    max_grid: Grid points to enumerate at most (a seeded uniform sample beyond).
    batch_size: Candidates handed out per ask.
    """

    max_grid: int = 1_000_000
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_positive(self, "max_grid", "batch_size")


class CandidateSearcher(Searcher):
    """Every grid point predicted inside the window is a candidate; candidates are evaluated in random order."""

    name = "candidate"
    config_class: ClassVar[type[SearcherConfig]] = CandidateConfig
    #: The window a run uses when the user gives none (fractions of the target).
    default_window: ClassVar[tuple[float, float]] = (0.85, 1.1)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: np.ndarray | None = None
        self._pos = 0
        self.grid = Grid.of(self.problem.space)
        self.grid_points = 0
        self.in_window = 0

    def _keep(self, dims: dict[str, np.ndarray]) -> np.ndarray:
        return np.ones(len(dims["hidden"]), dtype=bool)

    def _enumerate(self) -> np.ndarray:
        index = self.grid.indices(self.rng, self.config.max_grid)
        self.grid_points = len(index)
        index = index[self._keep(self.grid.dims(index))]
        if len(index) == 0:
            return index
        p = self.problem.latency.arrays(self.grid.arrays(index))
        ok = self.problem.constraint.feasible(p.ms, p.low_ms, p.high_ms)
        index = index[ok]
        self.in_window = len(index)
        if len(index) == 0:
            raise LatbenchError(
                "constraint",
                f"no point of the {self.name} grid ({self.grid_points} enumerated) is predicted inside "
                f"{self.problem.constraint.describe()}; widen --window",
            )
        return self.rng.permutation(index)

    def ask(self) -> list[Arch]:
        if self._queue is None:
            self._queue = self._enumerate()
        take = self._queue[self._pos : self._pos + self.config.batch_size]
        self._pos += len(take)
        return self.grid.archs(take)


@dataclass(frozen=True)
class FastConfig(SearcherConfig):
    """Attributes:
    ffn_ratio: Allowed FFN width as multiples of hidden (AutoTinyBERT: 1.6 to 1.9).
    qkv_ratio: Allowed total Q/K width (heads x qk_dim) as multiples of hidden (0.7 to 1.0).
    samples: Candidates evaluated at most (a sample of those in the window).
    max_grid, batch_size: As for ``candidate``.
    """

    ffn_ratio: tuple[float, ...] = (1.6, 1.9)
    qkv_ratio: tuple[float, ...] = (0.7, 1.0)
    samples: int = 100
    max_grid: int = 1_000_000
    batch_size: int = 256

    def __post_init__(self) -> None:
        check_positive(self, "samples", "max_grid", "batch_size")
        for name in ("ffn_ratio", "qkv_ratio"):
            r = getattr(self, name)
            if len(r) != 2 or not 0 <= r[0] <= r[1]:
                raise LatbenchError(name, f"expected LOW,HIGH with 0 <= LOW <= HIGH, got {r}")


class FastSearcher(CandidateSearcher):
    """AutoTinyBERT's efficient-architecture rule, then a sample of the window's members."""

    name = "fast"
    config_class = FastConfig

    def _keep(self, dims: dict[str, np.ndarray]) -> np.ndarray:
        h = dims["hidden"].astype(np.float64)
        qkv = (dims["heads"] * dims["qk_dim"]).astype(np.float64)
        f_lo, f_hi = self.config.ffn_ratio
        q_lo, q_hi = self.config.qkv_ratio
        keep = (dims["mlp"] >= f_lo * h) & (dims["mlp"] <= f_hi * h) & (qkv >= q_lo * h) & (qkv <= q_hi * h)
        if not keep.any():
            raise LatbenchError(
                "fast",
                f"no grid point satisfies the efficient-architecture rule ({f_lo}h <= FFN <= {f_hi}h, "
                f"{q_lo}h <= qkv <= {q_hi}h) in space {self.problem.space.name!r}",
            )
        return keep

    def _enumerate(self) -> np.ndarray:
        return super()._enumerate()[: self.config.samples]
