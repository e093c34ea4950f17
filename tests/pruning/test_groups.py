"""Groups and masks: a masked model equals its dense conversion; pruned entries are zeroed everywhere."""

from __future__ import annotations

import pytest
import torch

from latbench.errors import LatbenchError
from latbench.models.build import build_model, build_supernet
from latbench.pruning.checkpoint import load_model, save_model
from latbench.pruning.dense import to_dense
from latbench.pruning.groups import Masker, build_groups
from latbench.pruning.pruner import count_params

from .helpers import perturbed_model, tiny_bert, tiny_vit, vit_inputs


def _random_masks(groups, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for g in groups:
        n = int(torch.randint(0, g.size, (1,), generator=gen))  # keep at least one unit
        g.keep[torch.randperm(g.size, generator=gen)[:n]] = False


def _inputs(arch, seed: int = 0) -> torch.Tensor:
    if arch.family == "vit":
        return vit_inputs(5, seed)
    return torch.randint(0, arch.vocab_size, (3, 9), generator=torch.Generator().manual_seed(seed))


def test_group_structure_of_a_vit():
    arch = tiny_vit(layers=3)
    groups = build_groups(build_model(arch))
    assert [g.name for g in groups[:5]] == ["emb", "blocks.0.heads", "blocks.0.qk", "blocks.0.v", "blocks.0.mlp"]
    assert len(groups) == 1 + 4 * 3
    s = arch.layers[0]
    assert [g.size for g in groups[1:5]] == [s.heads, s.qk_dim, s.v_dim, s.mlp]


@pytest.mark.parametrize("family", ["vit", "bert"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_model_equals_dense_conversion(family, seed):
    arch = tiny_vit() if family == "vit" else tiny_bert()
    model = perturbed_model(arch, seed).eval()
    groups = build_groups(model)
    masker = Masker(model, groups)
    _random_masks(groups, seed)
    masker.refresh()
    x = _inputs(arch, seed)
    masked = model(x)
    dense, small = to_dense(model, groups)
    assert small.hidden < arch.hidden or any(a != b for a, b in zip(small.layers, arch.layers))
    assert torch.allclose(dense(x), masked, atol=1e-5)
    assert sum(p.numel() for p in dense.parameters()) == count_params(small)
    masker.zero_pruned()  # zeroing the removed entries changes nothing the hooks let through
    assert torch.allclose(model(x), masked, atol=1e-5)


def test_zero_pruned_zeroes_every_tensor_of_a_removed_unit_and_nothing_else():
    arch = tiny_vit()
    model = perturbed_model(arch)
    groups = build_groups(model)
    masker = Masker(model, groups)
    mlp = next(g for g in groups if g.name == "blocks.1.mlp")
    mlp.keep[[3, 7]] = False
    masker.refresh()
    masker.zero_pruned()
    b = model.blocks[1].mlp
    assert torch.count_nonzero(b.fc1.weight[[3, 7]]) == 0 and torch.count_nonzero(b.fc1.bias[[3, 7]]) == 0
    assert torch.count_nonzero(b.fc2.weight[:, [3, 7]]) == 0
    assert torch.count_nonzero(b.fc1.weight) == b.fc1.weight.numel() - 2 * arch.hidden
    masker.remove()


def test_a_supernet_at_its_full_network_prunes_like_a_dense_model():
    arch = tiny_vit()
    supernet = build_supernet(arch, seed=4).eval()
    dense_model = build_model(arch, seed=4)
    groups_s, groups_d = build_groups(supernet), build_groups(dense_model)
    masks = (Masker(supernet, groups_s), Masker(dense_model, groups_d))
    for gs, gd in zip(groups_s, groups_d):
        gs.keep[0] = gd.keep[0] = False
    for m in masks:
        m.refresh()
    x = vit_inputs(4)
    assert torch.allclose(supernet(x), dense_model(x), atol=1e-6)
    smaller = arch.with_hidden(8)
    supernet.set_sub_network(smaller)
    with pytest.raises(LatbenchError, match="full network"):
        build_groups(supernet)


def test_dense_checkpoint_is_smaller_and_loads_back(tmp_path):
    arch = tiny_vit()
    model = perturbed_model(arch).eval()
    groups = build_groups(model)
    masker = Masker(model, groups)
    for g in groups:
        g.keep[g.size // 2 :] = False
    masker.refresh()
    masker.zero_pruned()
    dense, small = to_dense(model, groups)
    masker.remove()
    save_model(tmp_path / "masked.pt", model)
    save_model(tmp_path / "dense.pt", dense)
    assert (tmp_path / "dense.pt").stat().st_size < 0.6 * (tmp_path / "masked.pt").stat().st_size
    loaded, _ = load_model(tmp_path / "dense.pt")
    assert loaded.arch == small
    assert loaded.arch.to_json() == small.to_json()
    x = vit_inputs(3)
    assert torch.equal(loaded(x), dense(x))


def test_families_outside_the_pruner_are_refused():
    from latbench.space.arch import Arch

    gpt = build_model(Arch.uniform_arch("gpt", 16, 1, 2, 8, 32, vocab_size=30, max_seq_len=8))
    with pytest.raises(LatbenchError, match="vit and bert"):
        build_groups(gpt)
    with pytest.raises(LatbenchError, match="not a latbench family model"):
        build_groups(torch.nn.Linear(2, 2))
