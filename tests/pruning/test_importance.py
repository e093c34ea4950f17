"""Importance formulas on known tensors, against a brute-force computation, and the registry."""

from __future__ import annotations

import pytest
import torch

from latbench.errors import LatbenchError
from latbench.models.build import build_model
from latbench.pruning.groups import Group, build_groups
from latbench.pruning.importance import IMPORTANCES, Importance, get_importance, register_importance

from .helpers import perturbed_model, tiny_bert, tiny_vit


def _set(model: torch.nn.Module, weight: float, grad: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(weight)
            p.grad = torch.full_like(p, grad)


def _group(groups: list[Group], name: str) -> Group:
    return next(g for g in groups if g.name == name)


def test_known_values_for_mlp_and_heads():
    arch = tiny_vit(hidden=16, heads=4, qk=8, v=8, mlp=32)
    model = build_model(arch)
    _set(model, weight=1.0, grad=2.0)  # w·g = 2 at every entry
    groups = build_groups(model)
    h, d = 16, 8
    mlp = _group(groups, "blocks.0.mlp")
    per_neuron = h + 1 + h  # a row of fc1, its bias, a column of fc2
    assert torch.equal(get_importance("taylor22")(mlp), torch.full((32,), 4.0 * per_neuron, dtype=torch.float64))
    assert torch.equal(get_importance("taylor23")(mlp), torch.full((32,), (2.0 * per_neuron) ** 2, dtype=torch.float64))
    assert torch.equal(get_importance("magnitude")(mlp), torch.full((32,), float(per_neuron), dtype=torch.float64))
    heads = _group(groups, "blocks.1.heads")
    per_head = 3 * (d * h + d) + h * d  # Q, K, V rows and biases of the head, its O columns
    assert torch.allclose(get_importance("taylor23")(heads), torch.full((4,), (2.0 * per_head / 6.0) ** 2).double())
    emb = _group(groups, "emb")
    assert emb.taylor23_divisor == arch.n_layers  # NViT's EMB / 12 is DeiT-B's block count


@pytest.mark.parametrize("family", ["vit", "bert"])
def test_formulas_match_brute_force_over_unit_masks(family):
    arch = tiny_vit() if family == "vit" else tiny_bert()
    model = perturbed_model(arch, seed=3)
    gen = torch.Generator().manual_seed(7)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    for group in build_groups(model):
        exp22 = torch.zeros(group.size, dtype=torch.float64)
        exp23 = torch.zeros(group.size, dtype=torch.float64)
        exp2 = torch.zeros(group.size, dtype=torch.float64)
        for u in range(group.size):
            onehot = torch.zeros(group.size)
            onehot[u] = 1.0
            for slot in group.slots:
                p = slot.param
                sel = slot.unit_mask(onehot, p.shape).bool()
                wg = (p.detach().double() * p.grad.double())[sel]
                exp22[u] += wg.pow(2).sum()
                exp23[u] += wg.sum()
                exp2[u] += p.detach()[sel].double().pow(2).sum()
        exp23 = (exp23 / group.taylor23_divisor).pow(2)
        assert torch.allclose(get_importance("taylor22")(group), exp22, rtol=1e-9), group.name
        assert torch.allclose(get_importance("taylor23")(group), exp23, rtol=1e-9), group.name
        assert torch.allclose(get_importance("magnitude")(group), exp2, rtol=1e-9), group.name


def test_missing_gradients_count_as_zero():
    model = build_model(tiny_vit())
    group = build_groups(model)[0]
    assert torch.equal(get_importance("taylor23")(group), torch.zeros(group.size, dtype=torch.float64))


def test_registry_is_extensible_and_refuses_unknown_names():
    assert {"taylor22", "taylor23", "magnitude"} <= set(IMPORTANCES)
    with pytest.raises(LatbenchError, match="unknown criterion 'fisher'"):
        get_importance("fisher")

    @register_importance("test-ones")
    class Ones(Importance):
        def __call__(self, group: Group) -> torch.Tensor:
            return torch.ones(group.size, dtype=torch.float64)

    try:
        assert isinstance(get_importance("test-ones"), Ones)
        with pytest.raises(LatbenchError, match="registered twice"):
            register_importance("test-ones")(Ones)
    finally:
        IMPORTANCES.pop("test-ones")
