"""NSGA-II (Deb et al. 2002): latency against quality, returning the Pareto front.

Objectives, both minimised: the predicted latency (ms) and the quality objective.
Each generation breeds ``population_size`` children by binary tournaments on
(front rank, crowding distance), crossover with probability ``crossover_prob`` and
mutation, then keeps the best ``population_size`` of parents and children by
non-dominated sorting and crowding. Children that break the latency constraint are
redrawn (as the evolutionary searcher does); the run's front is taken over every
feasible evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.config import check_positive
from latbench.errors import LatbenchError
from latbench.search.base import Evaluation, Searcher, SearcherConfig
from latbench.search.pareto import crowding_distance, non_dominated_sort
from latbench.space import Arch


@dataclass(frozen=True)
class NSGA2Config(SearcherConfig):
    """Attributes:
    population_size: Parents kept per generation (and children bred).
    crossover_prob: Probability that a child is a crossover of two parents (else a copy) before mutation.
    mutation_prob: Probability of redrawing each gene of a child.
    max_redraws: Draws per child before giving up on it.
    """

    population_size: int = 50
    crossover_prob: float = 0.9
    mutation_prob: float = 0.2
    max_redraws: int = 100

    def __post_init__(self) -> None:
        check_positive(self, "population_size", "max_redraws")
        for name in ("crossover_prob", "mutation_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise LatbenchError(name, f"must be in [0, 1], got {getattr(self, name)}")


def _objectives(evals: Sequence[Evaluation]) -> tuple[np.ndarray, np.ndarray]:
    pts = np.array([(e.latency_ms, e.quality) for e in evals], dtype=np.float64).reshape(-1, 2)
    viol = np.array([0.0 if e.feasible else max(e.violation, 1e-12) for e in evals], dtype=np.float64)
    return pts, viol


def rank_and_crowding(evals: Sequence[Evaluation]) -> tuple[np.ndarray, np.ndarray]:
    """Per evaluation: its front's rank (0 best) and its crowding distance within the front."""
    pts, viol = _objectives(evals)
    rank = np.zeros(len(evals), dtype=np.int64)
    crowd = np.zeros(len(evals))
    for r, front in enumerate(non_dominated_sort(pts, viol)):
        rank[front] = r
        crowd[front] = crowding_distance(pts[front])
    return rank, crowd


class NSGA2Searcher(Searcher):
    name = "nsga2"
    config_class = NSGA2Config

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population: list[Evaluation] = []
        self.generation = 0

    def _tournament(self, g: np.random.Generator, rank: np.ndarray, crowd: np.ndarray) -> Arch:
        i, j = (int(x) for x in g.integers(len(self.population), size=2))
        better = i if (rank[i], -crowd[i]) <= (rank[j], -crowd[j]) else j
        return self.population[better].arch

    def ask(self) -> list[Arch]:
        cfg, space = self.config, self.problem.space
        if not self.population:
            return self.problem.sample_feasible(self.rng, cfg.population_size)
        rank, crowd = rank_and_crowding(self.population)

        def breed(g: np.random.Generator, k: int) -> list[Arch]:
            out = []
            for _ in range(k):
                a = self._tournament(g, rank, crowd)
                if g.random() < cfg.crossover_prob:
                    a = space.crossover(a, self._tournament(g, rank, crowd), g)
                out.append(space.mutate(a, g, cfg.mutation_prob) if cfg.mutation_prob > 0 else a)
            return out

        try:
            return self.problem.sample_feasible(
                self.rng, cfg.population_size, propose=breed, max_draws=cfg.population_size * cfg.max_redraws
            )
        except LatbenchError:
            return self.problem.sample_feasible(self.rng, cfg.population_size)

    def tell(self, evaluations: Sequence[Evaluation]) -> None:
        merged = {e.arch.to_json(): e for e in [*self.population, *evaluations]}
        pool = list(merged.values())
        n = self.config.population_size
        if len(pool) > n:
            pts, viol = _objectives(pool)
            keep: list[int] = []
            for front in non_dominated_sort(pts, viol):
                if len(keep) + len(front) <= n:
                    keep.extend(int(i) for i in front)
                else:
                    crowd = crowding_distance(pts[front])
                    order = np.argsort(-crowd, kind="stable")
                    keep.extend(int(front[i]) for i in order[: n - len(keep)])
                    break
            pool = [pool[i] for i in keep]
        self.population = pool
        self.generation += 1
