"""Metrics on known inputs; splits grouped by architecture, seeded, never leaking."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latbench.errors import LatbenchError
from latbench.predictors import Metrics, compute_metrics, grouped_split, shuffled_split


def test_metrics_on_known_inputs():
    measured = [100.0, 100.0, 200.0, 400.0]
    predicted = [105.0, 90.0, 200.0, 500.0]  # errors 5%, 10%, 0%, 25%
    m = compute_metrics(predicted, measured)
    assert m.n == 4
    assert m.mape == pytest.approx((5 + 10 + 0 + 25) / 4)
    assert m.rmse_ms == pytest.approx(math.sqrt((25 + 100 + 0 + 10000) / 4))
    assert m.within_5pct == pytest.approx(0.5)  # exactly 5% counts as within
    assert m.within_10pct == pytest.approx(0.75)
    assert m.max_ape == pytest.approx(25.0)
    # The ranking: predicted [105, 90, 200, 500] vs measured [100, 100, 200, 400] (one tie).
    from scipy.stats import kendalltau, spearmanr

    assert m.kendall_tau == pytest.approx(kendalltau(predicted, measured).statistic)
    assert m.spearman_rho == pytest.approx(spearmanr(predicted, measured).statistic)


def test_rank_correlations_perfect_reversed_and_undefined():
    meas = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert compute_metrics(meas * 1.5, meas).kendall_tau == pytest.approx(1.0)
    assert compute_metrics(meas[::-1], meas).spearman_rho == pytest.approx(-1.0)
    flat = compute_metrics(np.full(5, 3.0), meas)
    assert math.isnan(flat.kendall_tau) and flat.to_dict()["kendall_tau"] is None
    assert Metrics.from_dict(flat.to_dict()).mape == flat.mape


@pytest.mark.parametrize(
    ("pred", "meas", "message"),
    [([1.0], [1.0, 2.0], "equally many"), ([1.0], [0.0], "positive"), ([float("nan")], [1.0], "finite")],
)
def test_metrics_refuse_bad_inputs(pred, meas, message):
    with pytest.raises(LatbenchError, match=message):
        compute_metrics(pred, meas)


def _world(rng, truth, sigma):
    return truth * np.exp(rng.normal(0.0, sigma, truth.size))


@pytest.mark.parametrize("sigma", [0.02, 0.05])
def test_label_noise_ceiling_matches_a_perfect_predictor(sigma):
    """From two noisy runs alone, the ceiling matches what the truth itself scores against one run."""
    from latbench.predictors.metrics import label_noise_ceiling

    rng = np.random.default_rng(1)
    truth = np.exp(rng.uniform(np.log(10), np.log(100), 200))
    # what a perfect predictor scores against one run, averaged over many runs (the answer)
    runs = [compute_metrics(truth, _world(rng, truth, sigma)) for _ in range(300)]
    want_tau = np.mean([m.kendall_tau for m in runs])
    want_10 = np.mean([m.within_10pct for m in runs])
    want_mape = np.mean([m.mape for m in runs])
    # the estimate, from two runs, the second 7% slower overall (the machine at another hour)
    got = label_noise_ceiling(_world(rng, truth, sigma), 1.07 * _world(rng, truth, sigma), n_sim=200)
    assert got.shift == pytest.approx(7.0, abs=1.5)
    assert got.kendall_tau == pytest.approx(want_tau, abs=0.01)
    assert got.within_10pct == pytest.approx(want_10, abs=0.03)
    assert got.mape == pytest.approx(want_mape, rel=0.15)
    assert got.floor_mape == pytest.approx(want_mape, rel=0.15)
    # the runs' τ against each other understates what a perfect predictor reaches
    assert got.rerun_tau < got.kendall_tau


def test_label_noise_ceiling_of_noiseless_runs_is_perfect():
    from latbench.predictors.metrics import label_noise_ceiling

    a = np.linspace(10, 50, 40)
    got = label_noise_ceiling(a, 1.1 * a, n_sim=10)
    assert (got.floor_mape, got.mape, got.within_10pct, got.kendall_tau) == pytest.approx((0, 0, 1, 1))


def test_label_noise_ceiling_refuses_bad_runs():
    from latbench.predictors.metrics import label_noise_ceiling

    with pytest.raises(LatbenchError, match="same >= 3"):
        label_noise_ceiling([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(LatbenchError, match="positive"):
        label_noise_ceiling([1.0, 2.0, 0.0], [1.0, 2.0, 3.0])


def test_grouped_split_never_puts_an_architecture_in_two_parts():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 97, size=1000).astype(str)  # ~10 rows per architecture
    s = grouped_split(groups, seed=3)
    parts = [set(groups[s.train]), set(groups[s.val]), set(groups[s.test])]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(1000))
    assert abs(len(parts[0]) - 0.8 * 97) <= 1 and len(parts[1]) >= 1 and len(parts[2]) >= 1


def test_grouped_split_is_seeded_and_capped():
    groups = np.repeat(np.arange(50), 3).astype(str)
    a, b, c = grouped_split(groups, 1), grouped_split(groups, 1), grouped_split(groups, 2)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.train, c.train)
    capped = grouped_split(groups, 1, max_train_groups=10, max_test_groups=2)
    assert len(set(groups[capped.train])) == 10 and len(set(groups[capped.test])) == 2
    with pytest.raises(LatbenchError, match="at least 3"):
        grouped_split(np.array(["a", "a", "b"]), 0)


def test_shuffled_split_is_hats():
    s = shuffled_split(2000, seed=0)
    assert s.sizes() == {"train": 1600, "val": 200, "test": 200}
    s = shuffled_split(1999, seed=0)  # HAT floors 0.8n and 0.1n; the test set takes the rest
    assert s.sizes() == {"train": 1599, "val": 199, "test": 201}
