"""Exports: extracted == super-net; safetensors reload exact; ONNX Runtime and transformers within 1e-4;
architectures transformers cannot express get a one-line reason."""

from __future__ import annotations

import json

import pytest
import torch

from latbench.checkpoints.export import CONFIG_FILE, export_model, load_extracted, read_export_config
from latbench.checkpoints.hf import hf_unfit_reason
from latbench.errors import LatbenchError
from latbench.models.build import build_supernet, example_inputs
from latbench.space.arch import Arch, LayerSpec
from tests.supernet.helpers import FAMILIES, tiny_space

ATOL = 1e-4


def trained_like(family: str, seed: int = 0):
    """A super-net of the tiny space with every weight (biases, norms too) random: slicing errors cannot hide."""
    space = tiny_space(family)
    net = build_supernet(space.supernet_arch(), seed)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return space, net.eval()


def inputs(arch: Arch, batch: int = 3) -> tuple[torch.Tensor, ...]:
    return example_inputs(arch, batch, None if arch.family == "vit" else 12, seed=5)


def uniform_sub(family: str) -> Arch:
    """A sub-network transformers can express: heads x qk_dim == hidden, v_dim == qk_dim, layers equal."""
    space = tiny_space(family)
    return Arch.uniform_arch(family, hidden=16, n_layers=2, heads=2, qk_dim=8, mlp=32, **space.supernet_arch().extras)


@pytest.mark.parametrize("family", FAMILIES)
def test_extracted_sub_network_gives_the_super_nets_outputs(family) -> None:
    space, net = trained_like(family)
    for seed in range(3):
        sub = space.sample(seed)
        dense = net.extract(sub).eval()
        x = inputs(sub)
        net.set_sub_network(sub)
        with torch.no_grad():
            assert torch.allclose(net(*x), dense(*x), atol=1e-6, rtol=0)
        net.reset_super_network()


@pytest.mark.parametrize("family", FAMILIES)
def test_safetensors_export_reloads_bit_identical(family, tmp_path) -> None:
    space, net = trained_like(family)
    dense = net.extract(space.sample(1)).eval()
    result = export_model(dense, tmp_path, "safetensors", source={"run": "test"})
    assert result.max_abs_diff == 0.0 and set(result.files) == {"model.safetensors", CONFIG_FILE}
    back = load_extracted(tmp_path)
    x = inputs(dense.arch)
    with torch.no_grad():
        assert torch.equal(back(*x), dense(*x))
    config = read_export_config(tmp_path)
    assert config["arch"] == dense.arch and config["source"] == {"run": "test"}
    if family == "bert":  # the tied decoder is stored once and tied again
        assert config["tied"] == {"head.decoder.weight": "embeddings.word.weight"}
        assert back.head.decoder.weight is back.embeddings.word.weight


def test_load_extracted_names_the_problem(tmp_path) -> None:
    space, net = trained_like("gpt")
    with pytest.raises(LatbenchError, match="not a latbench export"):
        load_extracted(tmp_path)
    export_model(net.extract(space.min_arch()), tmp_path, "safetensors")
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["arch"]["hidden"] = 32  # the weights no longer fit the architecture
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(LatbenchError, match="has shape"):
        load_extracted(tmp_path)
    config["schema_version"] = 99
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(LatbenchError, match="schema_version 99"):
        load_extracted(tmp_path)
    with pytest.raises(LatbenchError, match="unknown format 'tflite'"):
        export_model(net.extract(space.min_arch()), tmp_path, "tflite")


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export_matches_onnxruntime(family, tmp_path) -> None:
    pytest.importorskip("onnx", reason="onnx is not installed (extra: onnx)")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (extra: onnx)")
    from latbench.checkpoints.onnx import run_onnx

    space, net = trained_like(family)
    dense = net.extract(space.sample(2)).eval()
    result = export_model(dense, tmp_path, "onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff <= ATOL
    x = inputs(dense.arch, batch=2)
    (got,) = run_onnx(tmp_path / "model.onnx", x)
    with torch.no_grad():
        assert float((torch.from_numpy(got) - dense(*x)).abs().max()) <= ATOL
    with pytest.raises(LatbenchError, match="cannot be loaded as a torch model"):
        load_extracted(tmp_path)


@pytest.mark.parametrize("family", FAMILIES)
def test_hf_export_reloads_in_transformers_with_the_same_outputs(family, tmp_path) -> None:
    pytest.importorskip("transformers", reason="transformers is not installed (extra: hf)")
    from latbench.checkpoints.hf import HF_CLASSES, load_hf

    _, net = trained_like(family)
    sub = uniform_sub(family)
    dense = net.extract(sub).eval()
    result = export_model(dense, tmp_path, "hf")
    assert result.max_abs_diff is not None and result.max_abs_diff <= ATOL
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes  # the weights as readable as the configs
    hf_model = load_hf(tmp_path, sub)
    assert type(hf_model).__name__ == HF_CLASSES[family]
    x = inputs(sub)
    with torch.no_grad():
        assert float((hf_model(*x).logits - dense(*x)).abs().max()) <= ATOL
        # And back: the hf export loads into latbench (the reverse weight mapping).
        assert float((load_extracted(tmp_path)(*x) - dense(*x)).abs().max()) <= ATOL


@pytest.mark.parametrize(
    ("family", "arch", "fragment"),
    [
        (
            "vit",
            Arch(family="vit", hidden=16, layers=(LayerSpec(2, 8, 8, 32), LayerSpec(1, 16, 16, 32))),
            "layers differ",
        ),
        ("bert", Arch.uniform_arch("bert", 16, 2, heads=2, qk_dim=8, v_dim=4, mlp=32), "qk_dim 8 != v_dim 4"),
        ("bert", Arch.uniform_arch("bert", 32, 2, heads=2, qk_dim=8, mlp=32), "2 x 8 = 16 != hidden 32"),
        ("gpt", Arch.uniform_arch("gpt", 24, 2, heads=2, qk_dim=12, mlp=32), "GPT-NeoX rotates 3 dims"),
    ],
)
def test_architectures_transformers_cannot_express_get_a_reason(family, arch, fragment) -> None:
    reason = hf_unfit_reason(arch)
    assert reason is not None and fragment in reason and "\n" not in reason


def test_hf_export_of_an_unfit_architecture_is_a_one_line_error(tmp_path) -> None:
    pytest.importorskip("transformers", reason="transformers is not installed (extra: hf)")
    space, net = trained_like("gpt")
    with pytest.raises(LatbenchError, match="derives the head width from hidden"):
        export_model(net.extract(space.min_arch()), tmp_path, "hf")
    assert hf_unfit_reason(uniform_sub("gpt")) is None


def test_an_onnx_export_without_onnxruntime_writes_nothing(monkeypatch, tmp_path) -> None:
    import sys

    from latbench.errors import MissingDependencyError

    pytest.importorskip("onnx", reason="onnx is not installed (extra: onnx)")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    space, net = trained_like("bert")
    with pytest.raises(MissingDependencyError, match="onnxruntime"):
        export_model(net.extract(space.sample(2)).eval(), tmp_path / "x", "onnx")
    assert not (tmp_path / "x" / "model.onnx").exists()
