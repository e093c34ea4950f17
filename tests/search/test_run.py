"""The driver, the searchers' own promises, and the outputs of a search."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from latbench.errors import LatbenchError
from latbench.search.base import Searcher, register_searcher
from latbench.search.run import (
    check_reachable,
    choose_by_measurement,
    hypervolume,
    measurement_candidates,
    run_search,
    write_outputs,
)
from tests.search.conftest import problem_for


def test_unreachable_constraint_names_the_largest_reachable_speedup(mlp, reference_ms):
    with pytest.raises(LatbenchError) as info:
        check_reachable(problem_for(mlp, reference_ms, speedup=1000.0))
    msg = str(info.value)
    assert info.value.where == "--latency-constraint" and "1000x is not reachable" in msg
    reachable = float(msg.rsplit("is ", 1)[1].rstrip("x"))
    check_reachable(problem_for(mlp, reference_ms, speedup=reachable * 0.97))  # just under it: accepted
    with pytest.raises(LatbenchError, match="not reachable"):
        check_reachable(problem_for(mlp, reference_ms, speedup=reachable * 1.05))


def test_candidate_keeps_to_its_window_and_fast_to_its_rule(mlp, reference_ms):
    problem = problem_for(mlp, reference_ms, window=(0.85, 1.1))
    out = run_search(problem, "candidate", budget=200, seed=0, config={"max_grid": 30000})
    target = problem.constraint.target_ms
    lat = np.array([e.latency_ms for e in out.history])
    assert len(lat) == 200 and lat.min() >= 0.85 * target and lat.max() <= 1.1 * target
    fast = run_search(problem, "fast", budget=200, seed=0, config={"samples": 50})
    assert 0 < len(fast.history) <= 50 and fast.stopped == "exhausted"
    for e in fast.history:
        s, h = e.arch.layers[0], e.arch.hidden
        assert 1.6 * h <= s.mlp <= 1.9 * h and 0.7 * h <= s.qk_size <= h


def test_safety_margin_keeps_the_whole_interval_under_the_bound(mlp, reference_ms):
    plain = run_search(
        problem_for(mlp, reference_ms),
        "evolutionary",
        budget=150,
        seed=0,
        config={"population_size": 50, "parent_size": 10},
    )
    problem = problem_for(mlp, reference_ms, margin=True)
    safe = run_search(problem, "evolutionary", budget=150, seed=0, config={"population_size": 50, "parent_size": 10})
    floor = problem.constraint.margin_floor
    assert floor > 1.0
    assert all(max(e.high_ms, e.latency_ms * floor) <= problem.constraint.bound_ms for e in safe.history)
    assert safe.best.high_ms <= problem.constraint.bound_ms < plain.best.high_ms


def test_gradient_needs_a_differentiable_predictor(xgb_dir, reference_ms):
    from latbench.predictors.persist import load_predictor

    with pytest.raises(LatbenchError, match="needs a differentiable predictor"):
        run_search(problem_for(load_predictor(xgb_dir), reference_ms), "gradient", budget=10)


def test_gradient_lands_near_the_bound(mlp, reference_ms):
    problem = problem_for(mlp, reference_ms)
    out = run_search(problem, "gradient", budget=64, seed=0, config={"starts": 16, "steps": 80})
    assert out.best.feasible and out.best.latency_ms >= 0.8 * problem.constraint.bound_ms


def test_nsga2_front_dominates_random_at_equal_evaluations(mlp, reference_ms):
    problem = problem_for(mlp, reference_ms)
    ref_point = (problem.constraint.bound_ms, float(problem.quality([problem.space.min_arch()])[0]))
    hv = {m: [] for m in ("nsga2", "random")}
    for seed in range(3):
        for m in hv:
            out = run_search(problem_for(mlp, reference_ms), m, budget=300, seed=seed)
            hv[m].append(hypervolume(out.history, ref_point))
    assert np.mean(hv["nsga2"]) >= np.mean(hv["random"])


class _Stuck(Searcher):
    name = "stuck"

    def ask(self):
        return [self.problem.space.min_arch()]


def test_a_searcher_repeating_itself_costs_one_evaluation_and_stops(mlp, reference_ms, monkeypatch):
    from latbench.search import base

    monkeypatch.setattr(base, "_SEARCHERS", base._SEARCHERS.copy())
    register_searcher("stuck", _Stuck)
    out = run_search(problem_for(mlp, reference_ms), "stuck", budget=100)
    assert len(out.history) == 1 and out.stopped == "converged"


def test_outputs(tmp_path, mlp, reference_ms):
    from latbench.search.constraint import Reference
    from latbench.search.run import read_result

    problem = problem_for(mlp, reference_ms)
    out = run_search(problem, "nsga2", budget=120, seed=0, config={"population_size": 30})
    ref = Reference(problem.space.reference.to_json(), reference_ms, "given")
    write_outputs(tmp_path / "s", out, problem, ref, predictor_path="p", command="latbench search ...")
    doc = read_result(tmp_path / "s")
    best = doc["best"]
    assert best["arch_json"] == out.best.arch.to_json()
    assert best["predicted_speedup"] == pytest.approx(reference_ms / out.best.latency_ms)
    assert (
        best["predicted_speedup"] >= 7.0
        and best["predicted_low_ms"] <= best["predicted_ms"] <= best["predicted_high_ms"]
    )
    assert best["autotinybert"].startswith("{") and "sample_hidden_size" in best["autotinybert"]
    assert doc["reference"]["source"] == "given" and doc["method"] == "nsga2" and doc["evaluations"] == 120
    hist = pd.read_parquet(tmp_path / "s" / "history.parquet")
    assert len(hist) == 120 and hist["arch"].is_unique and hist["on_front"].sum() == len(out.front)
    pareto = json.loads((tmp_path / "s" / "pareto.json").read_text())
    lat = [e["predicted_ms"] for e in pareto["front"]]
    q = [e["quality"] for e in pareto["front"]]
    assert lat == sorted(lat) and q == sorted(q, reverse=True) and pareto["hypervolume"] > 0
    assert (tmp_path / "s" / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_result_refuses_what_is_not_a_search(tmp_path):
    from latbench.search.run import read_result

    with pytest.raises(LatbenchError, match="no such directory"):
        read_result(tmp_path / "absent")
    with pytest.raises(LatbenchError, match=r"no result\.json"):
        read_result(tmp_path)
    (tmp_path / "result.json").write_text('{"format": "other"}')
    with pytest.raises(LatbenchError, match="not a search result"):
        read_result(tmp_path)
    (tmp_path / "result.json").write_text("{bad json")
    with pytest.raises(LatbenchError, match=r"result\.json"):
        read_result(tmp_path)


def test_gradient_and_candidate_on_a_per_block_space(tmp_path):
    """vit: every block free (per-layer relaxation); candidate enumerates its uniform members."""
    from latbench.predictors.data import load_dataset
    from latbench.predictors.train import train_predictor
    from latbench.search.constraint import Reference
    from latbench.search.quality import get_quality
    from latbench.search.run import make_problem
    from latbench.space import get_space
    from tests.predictors.conftest import FAST, synthetic_latency_ms, write_synthetic_store

    space = get_space("vit")
    store = write_synthetic_store(tmp_path / "vit.parquet", n_archs=80, seq_lens=(None,), space=space)
    mlp = train_predictor(load_dataset(store), "mlp", seed=0, config=FAST["mlp"]).predictor
    ref = Reference(space.reference.to_json(), synthetic_latency_ms(space.reference, 1, None), "given")
    problem, _ = make_problem(space, mlp, get_quality("proxy"), ref, speedup=4.0)
    out = run_search(problem, "gradient", budget=16, seed=0, config={"starts": 4, "steps": 20})
    assert out.best.feasible and not all(a.uniform for a in (e.arch for e in out.history))
    problem, _ = make_problem(space, mlp, get_quality("proxy"), ref, speedup=4.0, window=(0.85, 1.1))
    out = run_search(problem, "candidate", budget=20, seed=0, config={"max_grid": 5000})
    assert all(e.arch.uniform and e.feasible for e in out.history)


def test_validation_takes_the_best_the_top_and_the_front(tmp_path, mlp, reference_ms):
    from latbench.search.constraint import Reference
    from latbench.search.run import read_result
    from latbench.search.validate import archs_to_validate

    problem = problem_for(mlp, reference_ms)
    out = run_search(problem, "nsga2", budget=80, seed=1, config={"population_size": 20})
    ref = Reference(problem.space.reference.to_json(), reference_ms, "given")
    write_outputs(tmp_path, out, problem, ref)
    doc = read_result(tmp_path)
    archs, predicted = archs_to_validate(tmp_path, doc, top=2, front=False)
    keys = [a.to_json() for a in archs]
    assert keys[0] == out.best.arch.to_json() and len(keys) == len(set(keys)) <= 2
    with_front, _ = archs_to_validate(tmp_path, doc, top=1, front=True)
    assert {e.arch.to_json() for e in out.front} <= {a.to_json() for a in with_front}
    assert all(a.to_json() in predicted for a in with_front)


def test_measure_margin_passes_over_a_candidate_measured_just_under_the_bound(mlp, reference_ms, monkeypatch):
    """The best-quality candidate measures 1% under the bound: it is chosen with no margin, and with a 3%
    margin the best of those measured at least 3% under it is chosen instead."""
    import latbench.search.measure as measure

    problem = problem_for(mlp, reference_ms)
    outcome = run_search(problem, "random", budget=200, seed=0)
    cands = measurement_candidates(outcome, problem, 4)
    assert len(cands) >= 3
    bound = reference_ms / 7.0
    order = sorted(range(len(cands)), key=lambda i: (cands[i].quality, cands[i].latency_ms))
    at = {order[0]: 0.99, order[1]: 0.96, **{i: 0.90 for i in order[2:]}}  # fractions of the bound

    def fake_measure(archs, *args, **kwargs):
        assert archs[0] == problem.space.reference and len(archs) == len(cands) + 1
        rows = [{"median_ms": reference_ms, "ci_high_ms": reference_ms, "unstable": False}]
        for i in range(len(cands)):
            ms = at[i] * bound
            rows.append({"median_ms": ms, "ci_high_ms": ms * 1.002, "unstable": False})
        return rows

    monkeypatch.setattr(measure, "measure_models", fake_measure)
    plain = choose_by_measurement(outcome, problem, deploy=_FakeDeploy(), protocol=None, k=4)
    assert plain.chosen == order[0] and plain.margin == 0.0 and plain.limit_ms == pytest.approx(bound)
    kept = choose_by_measurement(outcome, problem, deploy=_FakeDeploy(), protocol=None, k=4, margin=0.03)
    assert kept.chosen == order[1] and kept.limit_ms == pytest.approx(0.97 * bound)
    assert [r["meets_constraint"] for r in kept.rows] == [at[i] <= 0.97 for i in range(len(cands))]
    assert outcome.best.arch == cands[order[1]].arch
    assert kept.to_dict()["margin"] == 0.03 and kept.to_dict()["limit_ms"] == pytest.approx(0.97 * bound)
    with pytest.raises(LatbenchError, match="--measure-margin"):
        choose_by_measurement(outcome, problem, deploy=_FakeDeploy(), protocol=None, k=4, margin=0.5)


class _FakeDeploy:
    def key(self) -> str:
        return "backend=fake"
