"""HAT's data sets: latbench's default xgboost stays at or below HAT's own MLP recipe on HAT's split.

HAT's recipe (its ``latency_predictor.py``: normalised features, 10-400x3-1 MLP, Adam, 5000 steps)
reaches these test MAPEs on HAT's shuffled 80/10/10 split, mean over 3 seeds (benchmarks/hat_baseline.py,
RESULTS hat-baseline). As the predictors change, latbench's default must not fall behind it.
"""

from __future__ import annotations

import pytest

from latbench.predictors import compute_metrics, create_predictor, default_feature_spec, import_hat, shuffled_split

#: HAT's MLP recipe, test MAPE % on HAT's split (benchmarks/hat_baseline.py --seeds 3, mean).
HAT_RECIPE_MAPE = {
    "wmt14ende_gpu_titanxp_all.csv": 5.90,
    "wmt14ende_cpu_xeon_all.csv": 5.05,
    "iwslt14deen_gpu_titanxp_all.csv": 7.94,
}


@pytest.mark.parametrize("name", sorted(HAT_RECIPE_MAPE))
def test_default_xgboost_is_at_or_below_hats_mlp_recipe(hat_dir, tmp_path, name):
    ds = import_hat(hat_dir / name, tmp_path / "hat.parquet")
    x = ds.frame[list(ds.feature_columns)].to_numpy(dtype=float)
    y = ds.target_ms
    mapes = []
    for seed in (0, 1):
        split = shuffled_split(len(ds), seed)
        p = create_predictor("xgboost", features=default_feature_spec(ds))
        p.fit(x[split.train], y[split.train], x[split.val], y[split.val], seed=seed)
        mapes.append(compute_metrics(p.predict(x[split.test]), y[split.test]).mape)
    assert sum(mapes) / len(mapes) <= HAT_RECIPE_MAPE[name], (name, mapes)
