"""The shipped Xeon predictor against the shipped data it was judged on: issue 18's targets, from the files in the tree.

A predictor replaced by a worse one, a data set edited, or a change to the features or the model that
moves the shipped predictor's predictions fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
PREDICTOR = ROOT / "predictors" / "bert_cpu-xeon_b1_s128"
STORE = ROOT / "datasets" / "bert_cpu-xeon_b1_s128_r2.parquet"
AGAIN = ROOT / "datasets" / "bert_cpu-xeon_b1_s128_r2_again.parquet"


def test_the_shipped_xeon_predictor_is_within_issue_18s_targets_of_the_label_noise_floor():
    pytest.importorskip("xgboost")
    if not all(p.exists() for p in (PREDICTOR / "card.json", STORE, AGAIN)):
        pytest.skip("no shipped predictor or data set in this tree")
    from latbench.predictors import compute_metrics, label_noise_ceiling, load_dataset, load_predictor

    card = json.loads((PREDICTOR / "card.json").read_text())
    beta = float(card["training_data"].get("drift_correction") or 0.0)
    pred = load_predictor(PREDICTOR)
    first = load_dataset(STORE, card["statistic"], drift_correction=beta)
    second = load_dataset(AGAIN, card["statistic"], drift_correction=beta)
    # the architectures measured twice are the predictor's 200 held-out ones
    held = np.flatnonzero(np.isin(first.groups, second.groups))
    assert held.size == card["metrics"]["test"]["n"] == 200
    m = compute_metrics(pred.predict(pred.featurize(first.frame.iloc[held])), first.target_ms[held])
    assert m.mape == pytest.approx(card["metrics"]["test"]["mape"], rel=1e-6)  # the card's test set, as judged
    # both runs' labels of those architectures, in the same order
    order = {g: i for i, g in enumerate(second.groups)}
    again = second.target_ms[[order[g] for g in first.groups[held]]]
    ceiling = label_noise_ceiling(first.target_ms[held], again, n_sim=50)
    assert m.mape <= 1.5 * ceiling.floor_mape
    assert m.within_10pct >= 0.995
    assert m.kendall_tau >= 0.97
    assert card["metrics"]["train"]["n"] <= 500
