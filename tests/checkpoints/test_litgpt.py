"""LitGPT export: litgpt's own ``GPT``/``Config`` load the directory and give latbench's logits (1e-5);
architectures litgpt cannot express get a one-line reason; the export loads back into latbench without litgpt."""

from __future__ import annotations

import json
import sys
from importlib.metadata import version

import pytest
import torch

from latbench.checkpoints.export import CONFIG_FILE, export_model, load_extracted, read_export_config
from latbench.checkpoints.litgpt import (
    LITGPT_CONFIG_FILE,
    LITGPT_WEIGHTS_FILE,
    QKV_LAYOUTS,
    litgpt_config_dict,
    litgpt_state_dict,
    litgpt_unfit_reason,
    load_litgpt_as_latbench,
    rotary_percentage,
)
from latbench.errors import LatbenchError, MissingDependencyError
from latbench.models.blocks import rotary_ndims
from latbench.models.build import build_model
from latbench.space.arch import Arch, LayerSpec
from tests.checkpoints.test_export import inputs, trained_like

#: litgpt and latbench run the same fp32 kernels on the CPU; the difference seen is 0 to 4e-7.
TIGHT = 1e-5
EXTRAS = {"vocab_size": 260, "max_seq_len": 16}


def _litgpt():
    return pytest.importorskip("litgpt", reason="litgpt is not installed (extra: litgpt)")


def _noisy(arch: Arch, seed: int = 0):
    """A dense model with every weight (biases and norms too) random, so a wrong mapping cannot hide."""
    model = build_model(arch, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
    return model.eval()


def _load_as_whittle_does(path):
    """Load a checkpoint directory with litgpt's public API only: Config.from_checkpoint, GPT, lit_model.pth."""
    from litgpt import GPT, Config

    config = Config.from_checkpoint(path)
    model = GPT(config)
    model.load_state_dict(torch.load(path / LITGPT_WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return model.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sub_network_exported_to_litgpt_gives_the_super_nets_logits(seed, tmp_path) -> None:
    _litgpt()
    space, net = trained_like("gpt", seed)
    sub = space.sample(seed + 10)
    assert sub.uniform  # the tiny gpt space has uniform layers
    result = export_model(net.extract(sub), tmp_path, "litgpt")
    assert result.max_abs_diff is not None and result.max_abs_diff <= TIGHT
    assert set(result.files) == {LITGPT_WEIGHTS_FILE, LITGPT_CONFIG_FILE, CONFIG_FILE}
    lit = _load_as_whittle_does(tmp_path)
    x = inputs(sub)
    net.set_sub_network(sub)
    with torch.no_grad():
        expected = net(*x)
        got = lit(*x)
    net.reset_super_network()
    assert got.shape == expected.shape  # the vocabulary is not padded
    assert float((got - expected).abs().max()) <= TIGHT


@pytest.mark.parametrize(
    ("heads", "qk_dim", "hidden"),
    [
        (2, 8, 16),  # Pythia-like: heads x qk_dim == hidden, 2 rotated dims
        (3, 4, 16),  # heads x qk_dim != hidden (transformers cannot), and no rotated dims at all
        (2, 12, 24),  # int(12 / 4) = 3 is odd: latbench and this export rotate 2
        (3, 20, 40),  # 5 -> 4 rotated dims, heads x qk_dim = 60 > hidden
    ],
)
def test_litgpt_reproduces_shapes_that_transformers_cannot(heads, qk_dim, hidden, tmp_path) -> None:
    _litgpt()
    arch = Arch.uniform_arch("gpt", hidden, 2, heads=heads, qk_dim=qk_dim, mlp=40, **EXTRAS)
    model = _noisy(arch)
    export_model(model, tmp_path, "litgpt")
    lit = _load_as_whittle_does(tmp_path)
    assert lit.config.rope_n_elem == rotary_ndims(qk_dim)
    assert lit.config.head_size == qk_dim and lit.config.n_embd == hidden and lit.config.n_head == heads
    x = inputs(arch)
    with torch.no_grad():
        assert float((lit(*x) - model(*x)).abs().max()) <= TIGHT
        # Shorter inputs than block_size, batch 1: litgpt slices its rope cache like latbench computes it.
        assert float((lit(x[0][:1, :5]) - model(x[0][:1, :5])).abs().max()) <= TIGHT


def test_the_written_config_is_what_litgpt_reads(tmp_path) -> None:
    _litgpt()
    import yaml

    arch = Arch.uniform_arch("gpt", 24, 1, heads=2, qk_dim=12, mlp=32, **EXTRAS)
    export_model(_noisy(arch), tmp_path, "litgpt")
    raw = yaml.safe_load((tmp_path / LITGPT_CONFIG_FILE).read_text())
    assert raw == litgpt_config_dict(arch)  # every value keeps its type (1e-05 stays a float)
    assert isinstance(raw["norm_eps"], float) and raw["gelu_approximate"] == "none"
    config = read_export_config(tmp_path)
    assert config["format"] == "litgpt" and config["qkv_layout"] == "grouped"
    assert config["litgpt_version"] == version("litgpt")


def test_rotary_percentage_makes_litgpt_rotate_latbench_s_dims() -> None:
    for qk_dim in range(1, 513):
        assert int(rotary_percentage(qk_dim) * qk_dim) == rotary_ndims(qk_dim), qk_dim
    assert rotary_percentage(64) == 0.25  # Pythia's own value wherever it fits


@pytest.mark.parametrize("layout", QKV_LAYOUTS)
def test_the_export_loads_back_into_latbench_in_either_qkv_layout(layout, tmp_path) -> None:
    arch = Arch.uniform_arch("gpt", 16, 2, heads=3, qk_dim=8, mlp=32, **EXTRAS)
    model = _noisy(arch)
    tmp_path.mkdir(exist_ok=True)
    torch.save(litgpt_state_dict(model, layout), tmp_path / LITGPT_WEIGHTS_FILE)
    back = load_litgpt_as_latbench(tmp_path, arch, layout)
    x = inputs(arch)
    with torch.no_grad():
        assert torch.equal(back(*x), model(*x))


def test_load_extracted_reads_a_litgpt_export_without_litgpt(tmp_path) -> None:
    _litgpt()
    arch = Arch.uniform_arch("gpt", 16, 1, heads=2, qk_dim=8, mlp=32, **EXTRAS)
    model = _noisy(arch)
    export_model(model, tmp_path, "litgpt")
    x = inputs(arch)
    with torch.no_grad():
        assert torch.equal(load_extracted(tmp_path)(*x), model(*x))
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["qkv_layout"] = "diagonal"
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(LatbenchError, match="unknown qkv_layout 'diagonal'"):
        load_extracted(tmp_path)
    (tmp_path / LITGPT_WEIGHTS_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(LatbenchError, match="unreadable torch checkpoint"):
        load_litgpt_as_latbench(tmp_path, arch)


@pytest.mark.parametrize(
    ("arch", "fragment"),
    [
        (
            Arch(family="gpt", hidden=16, layers=(LayerSpec(2, 8, 8, 32), LayerSpec(1, 8, 8, 32)), **EXTRAS),
            "layer 1 (1x8/8, mlp 32) differs from layer 0 (2x8/8, mlp 32)",
        ),
        (Arch.uniform_arch("gpt", 16, 2, heads=2, qk_dim=8, v_dim=4, mlp=32, **EXTRAS), "qk_dim 8 != v_dim 4"),
        (Arch.uniform_arch("bert", 16, 2, heads=2, qk_dim=8, mlp=32), "for the gpt family"),
    ],
)
def test_architectures_litgpt_cannot_express_get_a_one_line_reason(arch, fragment, tmp_path) -> None:
    reason = litgpt_unfit_reason(arch)
    assert reason is not None and fragment in reason and "\n" not in reason
    with pytest.raises(LatbenchError, match="litgpt"):
        export_model(build_model(arch, 0), tmp_path, "litgpt")  # refused before litgpt is even imported
    assert not (tmp_path / LITGPT_WEIGHTS_FILE).exists()


def test_a_missing_litgpt_names_the_extra(monkeypatch, tmp_path) -> None:
    for name in [m for m in sys.modules if m == "litgpt" or m.startswith("litgpt.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "litgpt", None)  # import litgpt now raises ImportError
    arch = Arch.uniform_arch("gpt", 16, 1, heads=2, qk_dim=8, mlp=32, **EXTRAS)
    with pytest.raises(MissingDependencyError, match=r"latbench\[litgpt\]"):
        export_model(build_model(arch, 0), tmp_path, "litgpt")
