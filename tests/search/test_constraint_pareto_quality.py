"""Constraints, Pareto machinery and quality objectives: small pure functions, checked against brute force."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.search.constraint import LatencyConstraint, Reference, parse_window
from latbench.search.pareto import crowding_distance, hypervolume_2d, non_dominated_sort, pareto_front
from latbench.search.quality import CallableQuality, ScalingLawProxy, get_quality, non_embedding_params
from latbench.space import Arch, get_space


def test_speedup_constraint_bound_window_and_margin():
    c = LatencyConstraint.speedup_over(700.0, 7.0)
    assert c.target_ms == pytest.approx(100.0) and c.bound_ms == pytest.approx(100.0) and c.floor_ms == 0
    assert list(c.feasible([99.0, 100.0, 101.0])) == [True, True, False]
    w = LatencyConstraint.speedup_over(700.0, 7.0, low=0.85, high=1.1)
    assert list(w.feasible([84.0, 86.0, 109.0, 111.0])) == [False, True, True, False]
    m = LatencyConstraint(target_ms=100.0, margin=True)
    # the point fits, the interval's upper end does not: refused with a margin, accepted without
    assert list(m.feasible([95.0], [90.0], [104.0])) == [False]
    assert list(LatencyConstraint(target_ms=100.0).feasible([95.0], [90.0], [104.0])) == [True]
    assert m.violation([95.0], [90.0], [104.0])[0] == pytest.approx(0.04)
    assert LatencyConstraint.from_dict(w.to_dict()) == w
    # an interval that collapsed onto its point still gets the floor's margin
    floored = LatencyConstraint(target_ms=100.0, margin=True, margin_floor=1.08)
    assert list(floored.feasible([95.0, 92.0], [90.0, 90.0], [95.0, 92.0])) == [False, True]
    assert LatencyConstraint.from_dict(floored.to_dict()) == floored
    with pytest.raises(LatbenchError, match="ratio >= 1"):
        LatencyConstraint(target_ms=100.0, margin=True, margin_floor=0.9)


@pytest.mark.parametrize(
    "kwargs, where",
    [
        ({"target_ms": -1.0}, "--latency-ms"),
        ({"target_ms": 1.0, "speedup": 0.0}, "--latency-constraint"),
        ({"target_ms": 1.0, "low": 1.2, "high": 1.1}, "--window"),
    ],
)
def test_bad_constraints_name_their_option(kwargs, where):
    with pytest.raises(LatbenchError) as info:
        LatencyConstraint(**kwargs)
    assert info.value.where == where


def test_parse_window():
    assert parse_window("0.85,1.1") == (0.85, 1.1)
    assert parse_window(None) is None
    for bad in ("1", "a,b", "1.1,0.9", "-1,1"):
        with pytest.raises(LatbenchError, match="--window"):
            parse_window(bad)


def test_reference_round_trip_and_checks():
    r = Reference('{"x": 1}', 12.5, "measured", 12.0, 13.0, "backend=torch")
    assert Reference.from_dict(r.to_dict()) == r
    with pytest.raises(LatbenchError, match="--reference-ms"):
        Reference("{}", 0.0, "given")


def _brute_front(pts: np.ndarray) -> set[int]:
    return {
        i
        for i in range(len(pts))
        if not any(np.all(pts[j] <= pts[i]) and np.any(pts[j] < pts[i]) for j in range(len(pts)))
    }


def test_non_dominated_sort_matches_brute_force():
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 6, size=(60, 2)).astype(float)  # ties on purpose
    fronts = non_dominated_sort(pts)
    assert sorted(itertools.chain.from_iterable(f.tolist() for f in fronts)) == list(range(60))
    remaining = np.arange(60)
    for front in fronts:
        expect = {int(remaining[i]) for i in _brute_front(pts[remaining])}
        assert set(front.tolist()) == expect
        remaining = np.array([i for i in remaining if i not in expect])
    assert set(pareto_front(pts).tolist()) == _brute_front(pts)


def test_constrained_domination_puts_feasible_first():
    pts = np.array([[1.0, 1.0], [5.0, 5.0], [0.0, 0.0]])
    fronts = non_dominated_sort(pts, violation=np.array([0.0, 0.0, 0.5]))
    assert fronts[0].tolist() == [0] and fronts[1].tolist() == [1] and fronts[2].tolist() == [2]


def test_hypervolume_of_known_staircases():
    assert hypervolume_2d(np.array([[1.0, 1.0]]), (2.0, 2.0)) == pytest.approx(1.0)
    # two points: union of [1,3]x[2,3] and [2,3]x[1,3] = 2 + 2 - 1
    assert hypervolume_2d(np.array([[1.0, 2.0], [2.0, 1.0]]), (3.0, 3.0)) == pytest.approx(3.0)
    # a dominated point and a point beyond the reference add nothing
    assert hypervolume_2d(np.array([[1.0, 2.0], [2.0, 1.0], [2.5, 2.5], [4.0, 0.0]]), (3.0, 3.0)) == pytest.approx(3.0)
    assert hypervolume_2d(np.zeros((0, 2)), (1.0, 1.0)) == 0.0


def test_hypervolume_matches_a_monte_carlo_estimate():
    rng = np.random.default_rng(1)
    pts = rng.random((25, 2))
    samples = rng.random((200_000, 2))
    dominated = np.zeros(len(samples), dtype=bool)
    for p in pts:
        dominated |= np.all(samples >= p, axis=1)
    assert hypervolume_2d(pts, (1.0, 1.0)) == pytest.approx(dominated.mean(), abs=0.005)


def test_crowding_distance_boundaries_are_infinite():
    d = crowding_distance(np.array([[0.0, 3.0], [1.0, 2.0], [2.0, 1.0], [3.0, 0.0]]))
    assert np.isinf(d[0]) and np.isinf(d[3]) and d[1] == pytest.approx(d[2]) and d[1] > 0


def test_proxy_is_the_scaling_law_of_block_parameters():
    import torch

    arch = Arch.uniform_arch("bert", hidden=768, n_layers=12, heads=12, qk_dim=64, mlp=3072)
    proxy = ScalingLawProxy()
    n = 12 * (4 * 768 * 768 + 2 * 768 * 3072)  # Q, K, V, O and the two MLP matrices
    assert proxy([arch])[0] == pytest.approx((8.8e13 / n) ** 0.076)
    t = proxy.torch_value(*(torch.tensor([float(x)]) for x in (768, 12, 12, 64, 64, 3072)))
    assert float(t[0]) == pytest.approx(proxy([arch])[0])
    per_layer = non_embedding_params(
        np.array([[768.0] * 2]),
        None,
        np.array([[12.0, 6.0]]),
        np.array([[64.0] * 2]),
        np.array([[64.0] * 2]),
        np.array([[3072.0, 0.0]]),
    )
    assert per_layer[0] == 768 * 12 * 256 + 2 * 768 * 3072 + 768 * 6 * 256
    small = get_space("bert").min_arch()
    assert proxy([small])[0] > proxy([arch])[0]  # bigger is better, i.e. lower


def test_user_callable_quality(tmp_path, monkeypatch):
    (tmp_path / "myquality.py").write_text(
        "def loss(arch):\n    return 1.0 / arch.hidden\n"
        "def broken(arch):\n    raise RuntimeError('boom')\n"
        "def nan(arch):\n    return float('nan')\n"
    )
    monkeypatch.chdir(tmp_path)
    q = get_quality("myquality:loss")
    arch = get_space("bert").min_arch()
    assert q([arch])[0] == pytest.approx(1.0 / arch.hidden)
    assert pickle.loads(pickle.dumps(q))([arch])[0] == pytest.approx(1.0 / arch.hidden)
    with pytest.raises(LatbenchError, match=r"myquality:broken\(.*\) failed: RuntimeError: boom"):
        CallableQuality("myquality:broken")([arch])
    with pytest.raises(LatbenchError, match="expected a finite number"):
        CallableQuality("myquality:nan")([arch])
    with pytest.raises(LatbenchError, match="has no 'absent'"):
        get_quality("myquality:absent")
    with pytest.raises(LatbenchError, match="no such run directory"):
        get_quality(f"supernet:{tmp_path / 'nope'}")
    with pytest.raises(LatbenchError, match="unknown objective"):
        get_quality("accuracy")
