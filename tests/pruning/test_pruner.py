"""The global pruner: ranking, exit at the target, floors, granularity, rounding, veto, momentum, state."""

from __future__ import annotations

import copy

import pytest
import torch

from latbench.errors import LatbenchError
from latbench.models.build import build_model
from latbench.pruning.config import PruneConfig
from latbench.pruning.dense import to_dense
from latbench.pruning.importance import Importance, MagnitudeImportance
from latbench.pruning.latency import LatencyCost
from latbench.pruning.pruner import Pruner

from .helpers import linear_lut, perturbed_model, tiny_vit, vit_inputs


class FixedImportance(Importance):
    """Preset scores per group name (what a test wants ranked)."""

    name = "fixed"
    needs_grad = False

    def __init__(self, scores: dict[str, torch.Tensor]) -> None:
        self.scores = scores

    def __call__(self, group):
        return self.scores[group.name].double()


def _random_scores(model, seed: int = 0) -> dict[str, torch.Tensor]:
    from latbench.pruning.groups import build_groups

    gen = torch.Generator().manual_seed(seed)
    return {g.name: torch.rand(g.size, generator=gen, dtype=torch.float64) for g in build_groups(model)}


def _cfg(**kw) -> PruneConfig:
    base = {"latency_target": None, "params_target": 1, "prune_per_iter": 7, "interval_prune": 1}
    return PruneConfig(**{**base, **kw})


def test_global_ranking_removes_the_lowest_units_of_all_groups():
    model = build_model(tiny_vit())
    scores = _random_scores(model)
    pruner = Pruner(model, _cfg(), importance=FixedImportance(scores))
    everything = sorted((float(s[u]), name, u) for name, s in scores.items() for u in range(len(s)))
    expected = {(name, u) for _, name, u in everything[:7]}
    for name in scores:  # the 7 lowest must not empty a group, or its floor would (rightly) interfere
        assert sum(1 for n, _ in expected if n == name) < len(scores[name])
    pruner.accumulate()
    assert pruner.due
    report = pruner.step()
    removed = {(g.name, int(u)) for g in pruner.groups for u in torch.nonzero(~g.keep).flatten()}
    assert removed == expected
    assert report.n_removed == 7 and not report.finished


def test_stops_as_soon_as_the_latency_target_is_reached():
    arch = tiny_vit()
    cost = LatencyCost(linear_lut(arch), arch)
    model = perturbed_model(arch)
    cfg = PruneConfig(latency_target=0.6, prune_per_iter=10_000, interval_prune=1)
    pruner = Pruner(model, cfg, cost, importance=MagnitudeImportance())
    pruner.accumulate()
    actions = list(pruner.iter_step())
    assert pruner.finished and pruner.reason == "latency target reached"
    assert pruner.latency_ratio() <= 0.6
    last = actions[-1]
    last.group.keep[list(last.units)] = True  # one chunk fewer: still above the target
    assert pruner.latency_ratio() > 0.6
    last.group.keep[list(last.units)] = False
    assert pruner.step() is None  # finished: nothing more happens
    assert pruner.history[-1].latency_ratio == pytest.approx(pruner.latency_ratio())


def test_floors_are_never_crossed_and_pruning_ends_when_all_groups_sit_on_them():
    arch = tiny_vit()
    model = perturbed_model(arch)
    cfg = _cfg(prune_per_iter=10_000, floors={"heads": 2, "qk": 3})
    pruner = Pruner(model, cfg, importance=MagnitudeImportance())
    while not pruner.finished:
        pruner.accumulate()
        pruner.step()
    assert pruner.reason.startswith("nothing left to prune")
    floors = {"emb": 1, "heads": 2, "qk": 3, "v": 1, "mlp": 1}
    assert all(g.active == floors[g.kind] for g in pruner.groups)
    dense, small = to_dense(model, pruner.groups)
    assert small.hidden == 1 and small.layers[0].heads == 2
    assert torch.allclose(dense(vit_inputs(2)), model(vit_inputs(2)), atol=1e-5)


def test_a_lut_grid_raises_the_floor():
    arch = tiny_vit()
    cost = LatencyCost(linear_lut(arch, lo=4), arch)
    pruner = Pruner(build_model(arch), _cfg(prune_per_iter=10_000), cost, importance=MagnitudeImportance())
    pruner.accumulate()
    pruner.step()
    assert {g.kind: g.active for g in pruner.groups if g.block in (None, 0)} == {
        "emb": 4,
        "heads": 1,
        "qk": 4,
        "v": 4,
        "mlp": 4,
    }


def test_granularity_removes_whole_chunks():
    model = build_model(tiny_vit(mlp=32))
    cfg = _cfg(prune_per_iter=20, granularity={"mlp": 8, "qk": 4}, kinds=("qk", "mlp"))
    pruner = Pruner(model, cfg, importance=FixedImportance(_random_scores(model, 1)))
    pruner.accumulate()
    pruner.step()
    for g in pruner.groups:
        if g.kind == "mlp":
            assert (g.size - g.active) % 8 == 0
        if g.kind == "qk":
            assert (g.size - g.active) % 4 == 0
        if g.kind not in ("qk", "mlp"):
            assert g.active == g.size


def test_finalize_rounds_sizes_down_to_multiples_by_the_last_scores():
    model = build_model(tiny_vit(mlp=32, qk=8))
    scores = _random_scores(model, 2)
    cfg = _cfg(prune_per_iter=3, kinds=("mlp",), round_to={"mlp": 8, "qk": 4})
    pruner = Pruner(model, cfg, importance=FixedImportance(scores))
    pruner.accumulate()
    pruner.step()
    assert sorted(g.active for g in pruner.groups if g.kind == "mlp") in ([29, 32], [30, 31])
    done = pruner.finalize()
    assert all(g.active % 8 == 0 for g in pruner.groups if g.kind == "mlp")
    assert all(g.active == g.size for g in pruner.groups if g.kind == "qk")  # qk is not being pruned
    for action in done:
        s = scores[action.group.name]
        kept = s[action.group.keep]
        assert s[list(action.units)].max() <= kept.min()  # the lowest went
    assert pruner.finalize() == []  # idempotent


def test_finalize_leaves_a_group_below_one_multiple_alone():
    model = build_model(tiny_vit(heads=3))
    cfg = _cfg(prune_per_iter=1, kinds=("heads",), round_to=8)
    pruner = Pruner(model, cfg, importance=MagnitudeImportance())
    assert pruner.finalize() == []
    assert all(g.active == 3 for g in pruner.groups if g.kind == "heads")


def test_a_vetoed_group_keeps_its_units():
    model = build_model(tiny_vit())
    scores = _random_scores(model)
    pruner = Pruner(model, _cfg(prune_per_iter=10), importance=FixedImportance(scores))
    pruner.accumulate()
    vetoed = None
    for action in pruner.iter_step():
        vetoed = vetoed or action.group.name  # veto the group of the lowest-ranked unit
        if action.group.name == vetoed:
            action.veto()
    assert pruner.group(vetoed).active == pruner.group(vetoed).size
    assert pruner.history[-1].n_removed == 10


def test_momentum_averages_scores_across_steps():
    model = build_model(tiny_vit())
    scores = _random_scores(model)
    imp = FixedImportance(scores)
    pruner = Pruner(model, _cfg(prune_per_iter=1, momentum=0.75), importance=imp)
    pruner.accumulate()
    pruner.step()
    first = pruner.state_dict()["avg"]["emb"].clone()
    imp.scores = {k: 2.0 * v for k, v in scores.items()}
    pruner.accumulate()
    pruner.accumulate()  # the mean over the interval's batches, then momentum
    pruner.step()
    assert torch.allclose(pruner.state_dict()["avg"]["emb"], 0.75 * first + 0.25 * 2.0 * scores["emb"])


def test_state_dict_restores_a_pruner_exactly():
    arch = tiny_vit()
    model = perturbed_model(arch)
    cost = LatencyCost(linear_lut(arch), arch)
    cfg = PruneConfig(latency_target=0.3, prune_per_iter=5, interval_prune=2, momentum=0.5)
    a = Pruner(model, cfg, cost, importance=MagnitudeImportance())
    for _ in range(3):
        a.accumulate(1.0)
    a.step()
    twin = copy.deepcopy(model)
    b = Pruner(twin, cfg, cost, importance=MagnitudeImportance())
    b.load_state_dict(a.state_dict())
    assert b.arch == a.arch and b.batches == a.batches and b.since_step == a.since_step
    for _ in range(2):
        a.accumulate(1.0)
        b.accumulate(1.0)
    a.step()
    b.step()
    assert [g.keep.tolist() for g in a.groups] == [g.keep.tolist() for g in b.groups]
    assert a.history[-1].to_dict() == b.history[-1].to_dict()
    other = Pruner(build_model(tiny_vit(mlp=16)), cfg.replace(latency_target=None, params_target=1))
    with pytest.raises(LatbenchError, match="does not match the model"):
        other.load_state_dict(a.state_dict())


def test_max_prune_iters_loss_threshold_and_start_after():
    model = build_model(tiny_vit())
    cfg = _cfg(prune_per_iter=1, max_prune_iters=2, loss_threshold=5.0, start_after=1)
    pruner = Pruner(model, cfg, importance=MagnitudeImportance())
    pruner.accumulate(100.0)  # inside start_after: ignored
    assert not pruner.due
    pruner.accumulate(9.0)
    report = pruner.step()
    assert report.n_removed == 0 and report.reason.startswith("skipped: mean loss 9")
    pruner.accumulate(1.0)
    report = pruner.step()
    assert report.n_removed == 1 and report.finished and report.reason == "max_prune_iters reached"


def test_a_latency_target_needs_a_table():
    with pytest.raises(LatbenchError, match="needs a latency table"):
        Pruner(build_model(tiny_vit()), PruneConfig(latency_target=0.5))
