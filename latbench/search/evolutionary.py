"""Evolutionary search as HAT and AutoTinyBERT run it.

A population of feasible architectures; each generation keeps the ``parent_size`` best
(by quality), breeds ``mutation_size`` children by mutating a random parent (each gene
redrawn with ``mutation_prob``) and ``crossover_size`` by crossing two, and forms the next
population from parents and children. A child whose predicted latency breaks the
constraint is rejected and redrawn (it costs no evaluation). Defaults are HAT's
(``configs/*/supertransformer/space0.yml``: population 125, parents 25, 50 mutations,
50 crossovers, probability 0.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.config import check_positive
from latbench.errors import LatbenchError
from latbench.search.base import Evaluation, Searcher, SearcherConfig
from latbench.space import Arch


@dataclass(frozen=True)
class EvolutionaryConfig(SearcherConfig):
    """Attributes:
    population_size: Architectures of the first generation (all feasible).
    parent_size: The best kept as parents each generation.
    mutation_size: Children by mutation per generation.
    crossover_size: Children by crossover per generation.
    mutation_prob: Probability of redrawing each gene of a mutated child.
    max_redraws: Draws per child before giving up on it (a tight constraint).
    """

    population_size: int = 125
    parent_size: int = 25
    mutation_size: int = 50
    crossover_size: int = 50
    mutation_prob: float = 0.3
    max_redraws: int = 100

    def __post_init__(self) -> None:
        check_positive(self, "population_size", "parent_size", "max_redraws")
        if self.parent_size > self.population_size:
            raise LatbenchError("parent_size", f"must be <= population_size ({self.population_size})")
        if self.mutation_size < 0 or self.crossover_size < 0 or self.mutation_size + self.crossover_size == 0:
            raise LatbenchError("mutation_size", "mutation_size + crossover_size must be positive (both >= 0)")
        if not 0.0 < self.mutation_prob <= 1.0:
            raise LatbenchError("mutation_prob", f"must be in (0, 1], got {self.mutation_prob}")


class EvolutionarySearcher(Searcher):
    name = "evolutionary"
    config_class = EvolutionaryConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.population: list[Evaluation] = []
        self.generation = 0

    def _children(self, parents: Sequence[Arch]) -> list[Arch]:
        cfg, space, rng = self.config, self.problem.space, self.rng

        def mutant(g: np.random.Generator, k: int) -> list[Arch]:
            return [space.mutate(parents[int(g.integers(len(parents)))], g, cfg.mutation_prob) for _ in range(k)]

        def cross(g: np.random.Generator, k: int) -> list[Arch]:
            out = []
            for _ in range(k):
                i, j = g.choice(len(parents), 2, replace=len(parents) < 2)
                out.append(space.crossover(parents[int(i)], parents[int(j)], g))
            return out

        children: list[Arch] = []
        for make, n in ((mutant, cfg.mutation_size), (cross, cfg.crossover_size)):
            if n:
                try:
                    children += self.problem.sample_feasible(rng, n, propose=make, max_draws=n * cfg.max_redraws)
                except LatbenchError:
                    pass  # no feasible child this way this generation; the other operator may do
        return children

    def ask(self) -> list[Arch]:
        if not self.population:
            return self.problem.sample_feasible(self.rng, self.config.population_size)
        parents = [e.arch for e in self._ranked()[: self.config.parent_size]]
        return self._children(parents)

    def _ranked(self) -> list[Evaluation]:
        # Feasible first, then by quality (a told infeasible one only arrives with feasible_only off).
        return sorted(self.population, key=lambda e: (not e.feasible, e.violation, e.quality))

    def tell(self, evaluations: Sequence[Evaluation]) -> None:
        if not self.population:
            self.population = list(evaluations)
        else:
            parents = self._ranked()[: self.config.parent_size]
            self.population = parents + list(evaluations)
        self.generation += 1
