"""Random search: architectures drawn uniformly per dimension, infeasible ones redrawn."""

from __future__ import annotations

from dataclasses import dataclass

from latbench.config import check_positive
from latbench.search.base import Searcher, SearcherConfig
from latbench.space import Arch


@dataclass(frozen=True)
class RandomConfig(SearcherConfig):
    """Attributes:
    batch_size: Architectures proposed per ask.
    feasible_only: Redraw architectures whose predicted latency breaks the constraint
        (they cost no evaluation); off, every draw is evaluated.
    """

    batch_size: int = 64
    feasible_only: bool = True

    def __post_init__(self) -> None:
        check_positive(self, "batch_size")


class RandomSearcher(Searcher):
    """The baseline every other searcher must beat at equal evaluations."""

    name = "random"
    config_class = RandomConfig

    def ask(self) -> list[Arch]:
        n = self.config.batch_size
        if self.config.feasible_only:
            return self.problem.sample_feasible(self.rng, n)
        return self.problem.space.sample(self.rng, n=n)  # type: ignore[return-value]
