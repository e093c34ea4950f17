"""The :class:`Searcher` base class (ask/tell), the problem it searches, and the registry.

A searcher proposes architectures (:meth:`Searcher.ask`) and is told how they did
(:meth:`Searcher.tell`), as in syne-tune: any loop can drive any searcher, and the
driver (:func:`latbench.search.run.run_search`) counts evaluations, keeps the history
and picks the best. Predicted latency is cheap (a predictor call on a batch), so a
searcher may consult :attr:`SearchProblem.latency` while proposing, HAT-style: a
candidate that breaks the constraint is rejected and redrawn before it costs an
evaluation of its quality.

The registry maps names to ``"module:Class"`` strings imported on first use.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from latbench.config import Config
from latbench.errors import LatbenchError
from latbench.predictors.base import Prediction, Predictor
from latbench.predictors.features import ArchArrays, arch_features
from latbench.registry import Registry
from latbench.search.constraint import LatencyConstraint
from latbench.search.quality import QualityObjective
from latbench.space import Arch, SearchSpace


class LatencyOracle:
    """Predicted latency (ms, with an interval) of architectures at one workload, cached by architecture."""

    def __init__(self, predictor: Predictor, batch: int = 1, seq_len: int | None = None) -> None:
        if predictor.features is None or predictor.features.kind != "arch":
            raise LatbenchError(
                "--predictor", "a search needs a predictor trained on architectures (a result store), not on a table"
            )
        self.predictor = predictor
        self.batch = batch
        self.seq_len = seq_len
        self._cache: dict[str, tuple[float, float, float]] = {}
        self.calls = 0

    def __call__(self, archs: Sequence[Arch]) -> Prediction:
        keys = [a.to_json() for a in archs]
        missing = {k: a for k, a in zip(keys, archs) if k not in self._cache}
        if missing:
            todo = list(missing.values())
            p = self.predictor.predict_archs(todo, batch=self.batch, seq_len=self.seq_len)
            self.calls += 1
            for k, ms, lo, hi in zip(missing, p.ms, p.low_ms, p.high_ms):
                self._cache[k] = (float(ms), float(lo), float(hi))
        rows = np.array([self._cache[k] for k in keys], dtype=np.float64).reshape(-1, 3)
        return Prediction(rows[:, 0], rows[:, 1], rows[:, 2])

    def arrays(self, arrays: ArchArrays, chunk_size: int = 65536) -> Prediction:
        """Predictions for many architectures held as arrays (grids): no cache, no Arch objects."""
        spec = self.predictor.features
        n = len(arrays)
        out = np.empty((3, n), dtype=np.float64)
        for start in range(0, n, chunk_size):
            sl = slice(start, min(n, start + chunk_size))
            p = self.predictor.predict_interval(arch_features(arrays.take(sl), self.batch, self.seq_len, spec))
            out[0, sl], out[1, sl], out[2, sl] = p.ms, p.low_ms, p.high_ms
        self.calls += 1
        return Prediction(out[0], out[1], out[2])


@dataclass(frozen=True, eq=False)
class Evaluation:
    """One evaluated architecture: predicted latency and quality (lower is better)."""

    arch: Arch
    latency_ms: float
    low_ms: float
    high_ms: float
    quality: float
    feasible: bool
    violation: float = 0.0


@dataclass(eq=False)
class SearchProblem:
    """What a searcher searches: a space, a latency oracle, a constraint and a quality objective."""

    space: SearchSpace
    latency: LatencyOracle
    constraint: LatencyConstraint
    quality: QualityObjective

    def feasible(self, archs: Sequence[Arch]) -> np.ndarray:
        """Whether each architecture's predicted latency meets the constraint."""
        if not archs:
            return np.zeros(0, dtype=bool)
        p = self.latency(archs)
        return self.constraint.feasible(p.ms, p.low_ms, p.high_ms)

    def sample_feasible(
        self, rng: np.random.Generator, n: int, propose: Any = None, max_draws: int | None = None
    ) -> list[Arch]:
        """``n`` architectures that meet the constraint, drawn by ``propose(rng, k)`` (default: the space's sampler).

        Rejection sampling in batches; raises when ``max_draws`` draws (default ``2000 * n``,
        at least 20000) found none at all, and returns fewer than ``n`` when they found some.
        """
        propose = propose or (lambda g, k: self.space.sample(g, n=k))
        max_draws = max_draws or max(20000, 2000 * n)
        found: list[Arch] = []
        draws = 0
        batch = max(64, 4 * n)
        while len(found) < n and draws < max_draws:
            cand = propose(rng, batch)
            draws += len(cand)
            if not cand:
                break
            ok = self.feasible(cand)
            found.extend(a for a, f in zip(cand, ok) if f)
        if not found:
            raise LatbenchError(
                "constraint",
                f"no architecture of {draws} drawn meets {self.constraint.describe()}; "
                "loosen the constraint or the window",
            )
        return found[:n]


class SearcherConfig(Config):
    """Mixin for a searcher's frozen dataclass config."""


@dataclass(frozen=True)
class NoConfig(SearcherConfig):
    pass


class Searcher(ABC):
    """Ask/tell searcher. Subclasses set :attr:`name` and :attr:`config_class`.

    Attributes:
        problem: The problem it searches.
        config: Its frozen dataclass config.
        rng: Its own generator, from the seed (same seed, same proposals).
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[SearcherConfig]] = NoConfig
    #: Whether it needs a differentiable (MLP) predictor.
    needs_gradients: ClassVar[bool] = False

    def __init__(
        self, problem: SearchProblem, config: SearcherConfig | Mapping[str, Any] | None = None, seed: int = 0
    ) -> None:
        if config is None or isinstance(config, Mapping):
            config = self.config_class.from_dict(config, f"{self.name} searcher")
        if not isinstance(config, self.config_class):
            raise LatbenchError(self.name, f"expected a {self.config_class.__name__}, got {type(config).__name__}")
        self.problem = problem
        self.config = config
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    @abstractmethod
    def ask(self) -> list[Arch]:
        """The next architectures to evaluate; an empty list when the searcher has nothing left to propose."""

    def tell(self, evaluations: Sequence[Evaluation]) -> None:  # noqa: B027 (stateless searchers learn nothing)
        """Learn from the evaluations of the architectures :meth:`ask` proposed."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed}, config={self.config})"


_REGISTRY: dict[str, str | type[Searcher]] = {
    "random": "latbench.search.random:RandomSearcher",
    "candidate": "latbench.search.grid:CandidateSearcher",
    "fast": "latbench.search.grid:FastSearcher",
    "evolutionary": "latbench.search.evolutionary:EvolutionarySearcher",
    "gradient": "latbench.search.gradient:GradientSearcher",
    "nsga2": "latbench.search.nsga2:NSGA2Searcher",
}


_SEARCHERS = Registry("searcher", "--method", _REGISTRY)


def register_searcher(name: str, target: str | type[Searcher]) -> None:
    """Register a searcher class (or a ``"module:Class"`` string) under ``name``."""
    _SEARCHERS.register(name, target)


def searcher_names() -> tuple[str, ...]:
    return _SEARCHERS.names()


def get_searcher_class(name: str) -> type[Searcher]:
    return _SEARCHERS.get(name)  # type: ignore[no-any-return]


def create_searcher(
    name: str, problem: SearchProblem, config: SearcherConfig | Mapping[str, Any] | None = None, seed: int = 0
) -> Searcher:
    return get_searcher_class(name)(problem, config, seed)
