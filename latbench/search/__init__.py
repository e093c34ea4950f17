"""Latency-constrained architecture search: ask/tell searchers over a predictor, validated by measurement.

- :mod:`~latbench.search.base`: :class:`Searcher`, :class:`SearchProblem`, the registry.
- :mod:`~latbench.search.constraint`: speed-up / absolute / window constraints, the reference.
- :mod:`~latbench.search.quality`: quality objectives (proxy, super-net, a user's callable).
- searchers: :mod:`~latbench.search.random`, :mod:`~latbench.search.grid` (``candidate``, ``fast``),
  :mod:`~latbench.search.evolutionary`, :mod:`~latbench.search.gradient`, :mod:`~latbench.search.nsga2`.
- :mod:`~latbench.search.run`: the driver and its outputs; :mod:`~latbench.search.validate`: measurement.
"""

from __future__ import annotations

from latbench.search.base import (
    Evaluation,
    LatencyOracle,
    Searcher,
    SearcherConfig,
    SearchProblem,
    create_searcher,
    get_searcher_class,
    register_searcher,
    searcher_names,
)
from latbench.search.constraint import LatencyConstraint, Reference
from latbench.search.quality import QualityObjective, ScalingLawProxy, get_quality

__all__ = [
    "Evaluation",
    "LatencyConstraint",
    "LatencyOracle",
    "QualityObjective",
    "Reference",
    "ScalingLawProxy",
    "SearchProblem",
    "Searcher",
    "SearcherConfig",
    "create_searcher",
    "get_quality",
    "get_searcher_class",
    "register_searcher",
    "searcher_names",
]
