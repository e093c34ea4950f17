"""Every registered searcher through one lifecycle: ask/tell, seeded, picklable half-way, within its constraint."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.search import create_searcher, get_searcher_class, searcher_names
from latbench.search.run import evaluate, run_search
from tests.search.conftest import problem_for

#: Small settings: the contract checks behaviour, not search quality.
SMALL = {
    "random": {"batch_size": 16},
    "candidate": {"max_grid": 20000, "batch_size": 32},
    "fast": {"max_grid": 50000, "batch_size": 32, "samples": 60},
    "evolutionary": {"population_size": 24, "parent_size": 8, "mutation_size": 8, "crossover_size": 8},
    "gradient": {"starts": 6, "steps": 30},
    "nsga2": {"population_size": 16},
}


@pytest.fixture(params=searcher_names())
def method(request: pytest.FixtureRequest) -> str:
    return request.param


def _problem(method: str, mlp, reference_ms: float):
    window = getattr(get_searcher_class(method), "default_window", (0.0, 1.0))
    return problem_for(mlp, reference_ms, window=window)


def test_every_searcher_has_small_settings_here():
    assert set(SMALL) == set(searcher_names())


def test_lifecycle_stays_in_the_space_and_the_constraint(method, mlp, reference_ms):
    problem = _problem(method, mlp, reference_ms)
    out = run_search(problem, method, budget=60, seed=3, config=SMALL[method])
    assert 0 < len(out.history) <= 60
    keys = [e.arch.to_json() for e in out.history]
    assert len(set(keys)) == len(keys), "an architecture was evaluated twice"
    for e in out.history:
        problem.space.check(e.arch)
        assert e.feasible, f"{method} proposed {e.arch.describe()} at {e.latency_ms:.3g} ms outside the constraint"
        assert problem.constraint.floor_ms <= e.latency_ms <= problem.constraint.bound_ms
    best_q = min(e.quality for e in out.history)
    assert out.best.quality == best_q and out.best.feasible


def test_same_seed_same_search_other_seed_other_search(method, mlp, reference_ms):
    runs = [
        [
            e.arch.to_json()
            for e in run_search(
                _problem(method, mlp, reference_ms), method, budget=40, seed=s, config=SMALL[method]
            ).history
        ]
        for s in (5, 5, 6)
    ]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_pickled_half_way_it_goes_on_exactly_as_the_original(method, mlp, reference_ms):
    problem = _problem(method, mlp, reference_ms)
    searcher = create_searcher(method, problem, SMALL[method], seed=11)
    for _ in range(2):
        archs = searcher.ask()
        searcher.tell(evaluate(problem, archs))
    copy = pickle.loads(pickle.dumps(searcher))
    for _ in range(2):
        a, b = searcher.ask(), copy.ask()
        assert [x.to_json() for x in a] == [x.to_json() for x in b]
        searcher.tell(evaluate(problem, a))
        copy.tell(evaluate(copy.problem, b))


def test_unknown_parameter_is_a_one_line_error(method, mlp, reference_ms):
    with pytest.raises(LatbenchError, match="unknown parameter 'nope'"):
        create_searcher(method, _problem(method, mlp, reference_ms), {"nope": 1})


def test_best_beats_the_median_random_draw(method, mlp, reference_ms):
    """Whatever it does, a searcher's best is better than a typical feasible architecture."""
    problem = _problem(method, mlp, reference_ms)
    out = run_search(problem, method, budget=60, seed=2, config=SMALL[method])
    draws = problem.sample_feasible(np.random.default_rng(0), 200)
    assert out.best.quality < float(np.median(problem.quality(draws)))
