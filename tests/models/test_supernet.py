"""Super-nets: a sub-network run in place equals its extracted dense model; extraction keeps the analytic cost."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latbench.errors import LatbenchError
from latbench.models import (
    BertMaskedLM,
    ElasticLayer,
    GPTCausalLM,
    ViTClassifier,
    build_supernet,
    example_inputs,
    model_cost,
)
from latbench.space.arch import Arch, LayerSpec
from tests.models.helpers import BATCH, FAMILIES, SEQ_LEN, random_sub_arch, randomise, super_arch

N_SUB_ARCHS = 20
DENSE_CLASSES = {"bert": BertMaskedLM, "vit": ViTClassifier, "gpt": GPTCausalLM}


@pytest.fixture(scope="module", params=FAMILIES)
def supernet(request: pytest.FixtureRequest):
    net = build_supernet(super_arch(request.param), seed=0)
    randomise(net, seed=1)  # biases and LayerNorms non-trivial, so a wrong slice shows
    return net.eval()


def outputs(model: torch.nn.Module, arch: Arch, seed: int = 0) -> torch.Tensor:
    with torch.no_grad():
        return model(*example_inputs(arch, BATCH, SEQ_LEN, seed=seed))


def test_random_sub_networks_equal_their_extracted_dense_models(supernet) -> None:
    rng = np.random.default_rng(1234)
    archs = [random_sub_arch(supernet.max_arch, rng) for _ in range(N_SUB_ARCHS)]
    assert any(not a.uniform for a in archs), "the sample should hold heterogeneous layers"
    assert any(a.n_layers < supernet.max_arch.n_layers for a in archs)
    assert any(a.hidden < supernet.max_arch.hidden for a in archs)
    for arch in archs:
        supernet.set_sub_network(arch)
        in_place = outputs(supernet, arch)
        dense = supernet.extract(arch)
        assert type(dense) is DENSE_CLASSES[arch.family]
        assert not any(isinstance(m, ElasticLayer) for m in dense.modules())
        diff = (in_place - outputs(dense, arch)).abs().max().item()
        assert diff <= 1e-5, f"{arch.describe()}: max abs diff {diff}"
        mc = model_cost(arch, BATCH, SEQ_LEN)
        assert sum(p.numel() for p in dense.parameters()) == mc.total.params, arch.describe()
    supernet.reset_super_network()


def test_reset_restores_the_full_network(supernet) -> None:
    big = supernet.max_arch
    reference = outputs(supernet.extract(big), big)
    small = Arch(family=big.family, hidden=8, layers=(LayerSpec(1, 2, 3, 4),), **big.extras)
    supernet.set_sub_network(small)
    assert outputs(supernet, big).shape == reference.shape
    supernet.reset_super_network()
    assert supernet.active_arch == big
    torch.testing.assert_close(outputs(supernet, big), reference, rtol=0, atol=1e-5)


def test_extract_leaves_the_selection_alone(supernet) -> None:
    big = supernet.max_arch
    a = Arch(family=big.family, hidden=16, layers=(LayerSpec(2, 4, 4, 8),) * 2, **big.extras)
    supernet.set_sub_network(a)
    before = outputs(supernet, a)
    supernet.extract(big)
    assert supernet.active_arch == a
    torch.testing.assert_close(outputs(supernet, a), before, rtol=0, atol=0)
    default = supernet.extract()  # no arch: the active sub-network
    assert default.arch == a
    supernet.reset_super_network()


@pytest.mark.parametrize("family", FAMILIES)
def test_extracted_parts_match_the_analytic_parameter_split(family: str) -> None:
    big = super_arch(family)
    arch = Arch(family=family, hidden=24, layers=(LayerSpec(3, 5, 7, 11), LayerSpec(1, 8, 2, 9)), **big.extras)
    dense = build_supernet(big).extract(arch)
    mc = model_cost(arch, BATCH, SEQ_LEN)
    embedding_ids = {id(p) for p in dense.embeddings.parameters()}
    assert sum(p.numel() for p in dense.embeddings.parameters()) == mc.embedding.params
    for block, cost in zip(dense.blocks, mc.blocks):
        assert sum(p.numel() for p in block.parameters()) == cost.params
    # bert's decoder weight is the word-embedding matrix: model_cost counts it once, with the embeddings.
    head = sum(p.numel() for p in dense.head.parameters() if id(p) not in embedding_ids)
    assert head == mc.head.params
    if family == "bert":
        assert dense.head.decoder.weight is dense.embeddings.word.weight


def too_big(big: Arch) -> list[tuple[Arch, str]]:
    def layer(i: int, **change: int) -> Arch:
        layers = list(big.layers)
        s = layers[i]
        layers[i] = LayerSpec(**{**s.to_dict(), **change})
        return big.with_layers(layers)

    last = big.n_layers - 1
    other_family = "gpt" if big.family != "gpt" else "bert"
    return [
        (big.with_layers(big.layers + big.layers[-1:]), "layers"),
        (big.with_hidden(big.hidden + 1), "hidden"),
        (layer(last, heads=big.layers[last].heads + 1), "heads"),
        (layer(0, qk_dim=big.layers[0].qk_dim + 1), "qk_dim"),
        (layer(last, v_dim=big.layers[last].v_dim + 1), "v_dim"),
        (layer(0, mlp=big.layers[0].mlp + 1), "mlp"),
        (Arch(family=other_family, hidden=8, layers=big.layers[:1]), "family"),
    ]


def test_an_arch_that_does_not_fit_is_refused_naming_the_dimension(supernet) -> None:
    big = supernet.max_arch
    for arch, dimension in too_big(big):
        with pytest.raises(LatbenchError, match=dimension):
            supernet.set_sub_network(arch)
        with pytest.raises(LatbenchError, match=dimension):
            supernet.extract(arch)
        assert supernet.active_arch == big
    extra = "num_classes" if big.family == "vit" else "vocab_size"
    changed = Arch.from_dict({**big.to_dict(), extra: 7})
    with pytest.raises(LatbenchError, match=extra):
        supernet.set_sub_network(changed)


def test_a_heterogeneous_super_net_checks_each_layer_against_its_own_maximum() -> None:
    big = super_arch("vit")  # layer 1 has 3 heads of 8/16, the others 4 heads
    net = build_supernet(big)
    fits = big.with_layers([big.layers[0], LayerSpec(3, 8, 16, 64)])
    net.set_sub_network(fits)
    with pytest.raises(LatbenchError, match="layer 1: heads 4"):
        net.set_sub_network(big.with_layers([big.layers[0], LayerSpec(4, 8, 16, 64)]))
