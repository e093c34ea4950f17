"""Statistics of a latency sample: order, the median's CI at MEASUREMENT.md's ranks, convergence, round trips."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latbench.errors import LatbenchError
from latbench.profiling.stats import Stats, ci_converged, median_ci


def test_median_ci_uses_order_statistics_at_n_over_2_plus_minus_098_sqrt_n() -> None:
    data = np.arange(100, dtype=float)
    # n = 100: 0.98·√100 = 9.8, ranks floor(50 - 9.8) = 40 and ceil(50 + 9.8) - 1 = 59.
    assert median_ci(data) == (40.0, 59.0)
    assert median_ci(np.array([3.0])) == (3.0, 3.0)
    lo, hi = median_ci(np.array([]))
    assert math.isnan(lo) and math.isnan(hi)


def test_ci_converged_needs_min_samples_and_a_tight_interval() -> None:
    steady = [1.0 + 0.001 * (i % 3) for i in range(60)]
    assert ci_converged(steady, 0.01, 50)
    assert not ci_converged(steady[:40], 0.01, 50)
    spread = list(np.linspace(1.0, 2.0, 60))
    assert not ci_converged(spread, 0.01, 50)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-4, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
def test_stats_are_ordered_for_any_positive_sample(samples: list[float]) -> None:
    s = Stats.from_samples(samples)
    assert s.n == len(samples)
    eps = 1e-9 * s.max_ms
    chain = [s.min_ms, s.p10_ms, s.p25_ms, s.median_ms, s.p75_ms, s.p90_ms, s.p99_ms, s.max_ms]
    assert all(a <= b + eps for a, b in itertools.pairwise(chain))
    assert s.ci_low_ms <= s.median_ms + eps and s.median_ms <= s.ci_high_ms + eps
    assert s.min_ms - eps <= s.mean_ms <= s.max_ms + eps
    assert s.iqr_ratio >= 0 and s.ci_rel_halfwidth >= 0


def test_stats_round_trip_and_refusals() -> None:
    s = Stats.from_samples([1.0, 2.0, 3.0, 4.0, 10.0])
    d = json.loads(json.dumps(s.to_dict()))
    assert d["iqr_ratio"] == pytest.approx(s.iqr_ratio)
    assert Stats.from_dict(d) == s
    with pytest.raises(LatbenchError, match="median_ms"):
        Stats.from_dict({k: v for k, v in d.items() if k != "median_ms"})
    with pytest.raises(ValueError):
        Stats.from_samples([])
    assert Stats.from_samples([2.0]).std_ms == 0.0
