"""Training spaces fitted to the data, sub-network plans of each strategy, batch order, objectives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latbench.errors import LatbenchError
from latbench.space import get_space
from latbench.space.spaces import SearchSpace
from latbench.supernet.config import DataConfig, TrainConfig
from latbench.supernet.data import MASK_ID
from latbench.supernet.objectives import IGNORE, distill_loss_sum, label_loss_sum, make_batch, mask_tokens
from latbench.supernet.spaces import SpaceCaps, training_space
from latbench.supernet.train import batch_indices, plan_sub_networks
from tests.supernet.helpers import SPACE_DICTS, tiny_config, tiny_space


@pytest.mark.parametrize("name", ["bert", "vit", "gpt"])
def test_training_space_takes_the_data_settings_and_scale_shrinks_it(name: str) -> None:
    space = training_space(get_space(name), 16, SpaceCaps(scale=0.1))
    big = space.supernet_arch()
    if name == "vit":
        assert (big.image_size, big.patch_size, big.in_channels, big.num_classes) == (8, 2, 1, 10)
    else:
        assert (big.vocab_size, big.max_seq_len) == (260, 16)
    assert big.hidden <= 77 and big.n_layers <= 2
    for seed in range(5):
        space.check(space.sample(seed))  # type: ignore[arg-type]


def test_training_space_refuses_settings_that_do_not_fit_the_data() -> None:
    bad = dict(SPACE_DICTS["gpt"], extras={"vocab_size": 100})
    with pytest.raises(LatbenchError, match="vocab_size 100 is below"):
        training_space(SearchSpace.from_dict(bad), 16)
    bad = dict(SPACE_DICTS["vit"], extras={"image_size": 32})
    with pytest.raises(LatbenchError, match="image_size 32 does not fit"):
        training_space(SearchSpace.from_dict(bad), 16)
    with pytest.raises(LatbenchError, match="--scale"):
        SpaceCaps(scale=2.0)


def test_explicit_caps_bound_every_dimension() -> None:
    space = training_space(get_space("bert"), 16, SpaceCaps(max_layers=2, max_hidden=64, max_heads=2, max_mlp=128))
    big = space.max_arch()
    assert big.n_layers == 2 and big.hidden <= 64 and big.layers[0].heads <= 2 and big.layers[0].mlp <= 128


def test_sandwich_trains_largest_then_k_random_then_smallest() -> None:
    config = tiny_config("vit", None, num_random=3)
    space = config.space
    assert space is not None
    for step in range(6):
        plan = plan_sub_networks(config, step)
        roles = [r for r, _ in plan]
        assert roles == ["max", "random", "random", "random", "min"]
        assert plan[0][1] == space.max_arch() and plan[-1][1] == space.min_arch()
        for _, arch in plan:
            space.check(arch)
    assert plan_sub_networks(config, 2) == plan_sub_networks(config, 2)  # seeded by (seed, step)
    draws = {tuple(a.to_json() for _, a in plan_sub_networks(config, s)[1:-1]) for s in range(6)}
    assert len(draws) > 1


def test_random_and_standard_plans() -> None:
    random_cfg = tiny_config("gpt", None, strategy="random", num_random=2)
    plan = plan_sub_networks(random_cfg, 0)
    assert [r for r, _ in plan] == ["random", "random"]
    standard = tiny_config("gpt", None, strategy="standard")
    assert plan_sub_networks(standard, 0) == [("full", standard.supernet)]
    other_seed = tiny_config("gpt", None, strategy="random", num_random=2, seed=1)
    assert [plan_sub_networks(other_seed, s) for s in range(4)] != [plan_sub_networks(random_cfg, s) for s in range(4)]


def test_config_validation_is_one_line() -> None:
    space = tiny_space("gpt")
    data = DataConfig("gpt")
    with pytest.raises(LatbenchError, match="unknown strategy 'zigzag'"):
        TrainConfig(supernet=space.supernet_arch(), data=data, space=space, strategy="zigzag")
    with pytest.raises(LatbenchError, match="--inplace-distill"):
        TrainConfig(supernet=space.supernet_arch(), data=data, space=space, strategy="random", inplace_distill=True)
    with pytest.raises(LatbenchError, match="a dense model has none"):
        TrainConfig(supernet=space.supernet_arch(), data=data, space=None, strategy="sandwich")
    config = TrainConfig(supernet=space.supernet_arch(), data=data, space=space)
    assert TrainConfig.from_dict(config.to_dict()) == config
    with pytest.raises(LatbenchError, match="unknown key 'colour'"):
        TrainConfig.from_dict({**config.to_dict(), "colour": 1})


def test_batches_cover_each_epoch_once_in_a_seeded_order() -> None:
    n, batch = 20, 6
    order = np.concatenate([batch_indices(n, batch, seed=0, step=s) for s in range(10)])
    assert sorted(order[:20].tolist()) == list(range(20)) and sorted(order[20:40].tolist()) == list(range(20))
    assert np.array_equal(batch_indices(n, batch, 0, 3), batch_indices(n, batch, 0, 3))
    assert not np.array_equal(batch_indices(n, batch, 1, 3), batch_indices(n, batch, 0, 3))


def test_mlm_masks_like_bert_and_always_predicts_something() -> None:
    ids = torch.randint(0, 256, (64, 16), generator=torch.Generator().manual_seed(0))
    batch = mask_tokens(ids, 0.15, 256, np.random.default_rng(0))
    chosen = batch.targets != IGNORE
    assert 0.12 < float(chosen.float().mean()) < 0.18
    assert torch.equal(batch.targets[chosen], ids[chosen]) and torch.equal(batch.inputs[~chosen], ids[~chosen])
    masked = float((batch.inputs[chosen] == MASK_ID).float().mean())
    assert 0.7 < masked < 0.9
    one = mask_tokens(ids[:1, :2], 1e-9, 256, np.random.default_rng(0))
    assert one.count == 1


def test_causal_lm_targets_are_the_next_tokens() -> None:
    from torch.utils.data import TensorDataset

    ids = torch.arange(32).reshape(2, 16)
    batch = make_batch("causal-lm", TensorDataset(ids), np.array([0, 1]), np.random.default_rng(0))
    assert torch.equal(batch.targets[:, :-1], ids[:, 1:]) and bool((batch.targets[:, -1] == IGNORE).all())
    assert batch.count == 30


def test_losses_are_sums_and_distillation_vanishes_for_the_teacher_itself() -> None:
    logits = torch.randn(4, 5, 7, generator=torch.Generator().manual_seed(0))
    targets = torch.randint(0, 7, (4, 5), generator=torch.Generator().manual_seed(1))
    targets[0, 0] = IGNORE
    expected = F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1), ignore_index=IGNORE, reduction="sum")
    assert torch.allclose(label_loss_sum(logits, targets), expected)
    assert float(distill_loss_sum(logits, logits, targets, 2.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(distill_loss_sum(logits, logits.flip(0), targets, 2.0)) > 0


def test_compare_strategies_gives_equal_pass_budgets(corpus, tmp_path) -> None:
    from latbench.supernet.compare import compare_strategies, passes_per_step

    config = tiny_config("gpt", corpus, steps=2, num_random=1)  # sandwich: 3 passes per step, 6 in all
    rows = compare_strategies(config, tmp_path)
    by_strategy = {r["strategy"]: r for r in rows}
    assert {r["strategy"]: r["steps"] for r in rows} == {"standard": 6, "random": 6, "sandwich": 2}
    assert all(r["passes"] == 6 for r in by_strategy.values()) and passes_per_step(config) == 3
    params = [r["params"] for r in rows if r["strategy"] == "sandwich"]
    assert params == sorted(params) and len(params) >= 3
