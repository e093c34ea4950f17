"""Compact int8 checkpoints: round trip, sizes, output error, kept patterns, bf16, delta, full training state."""

from __future__ import annotations

import pytest
import torch

from latbench.checkpoints.compact import (
    CompressConfig,
    compress_checkpoint,
    compress_file,
    dequantize_per_channel,
    load_compressed,
    quantize_per_channel,
)
from latbench.errors import LatbenchError
from latbench.models.build import build_model, example_inputs
from latbench.space.arch import Arch

pytest.importorskip("safetensors", reason="safetensors is not installed (extra: hf)")

#: Dequantised outputs of a *trained* model stay within 1% (relative L2) of the original's: the issue's target.
#: (Measured: ~0.2%. A freshly initialised model, all noise-like N(0, 0.02) weights, shows ~1.2-1.5%.)
OUTPUT_RTOL = 0.01


def model_and_inputs(hidden: int = 64, seed: int = 0):
    arch = Arch.uniform_arch("gpt", hidden=hidden, n_layers=2, heads=4, qk_dim=hidden // 4, mlp=2 * hidden)
    arch = Arch(family="gpt", hidden=arch.hidden, layers=arch.layers, vocab_size=260, max_seq_len=16)
    model = build_model(arch, seed)
    with torch.no_grad():  # like a trained model: non-trivial norms and biases
        gen = torch.Generator().manual_seed(seed)
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model, example_inputs(arch, 4, 16, seed=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """A GPT (width 64) trained for 30 steps on the tiny corpus, and inputs for it."""
    from latbench.supernet.config import DataConfig, TrainConfig
    from latbench.supernet.train import load_trained, train_supernet
    from tests.supernet.helpers import write_corpus

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        base = tmp_path_factory.mktemp("trained")
        arch = Arch.uniform_arch(
            "gpt", hidden=64, n_layers=2, heads=4, qk_dim=16, mlp=128, vocab_size=260, max_seq_len=16
        )
        data = DataConfig("gpt", paths=(str(write_corpus(base / "corpus")),))
        config = TrainConfig(
            supernet=arch, data=data, strategy="standard", steps=30, batch_size=16, lr=3e-3, warmup_steps=3
        )
        train_supernet(config, base / "run")
    finally:
        torch.set_num_threads(threads)
    return load_trained(base / "run").model, example_inputs(arch, 4, 16, seed=3)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_per_channel_quantisation_error_is_at_most_half_a_step() -> None:
    w = torch.randn(8, 32, generator=torch.Generator().manual_seed(0))
    w[3] = 0.0
    q, scale = quantize_per_channel(w)
    assert q.dtype == torch.int8 and scale.shape == (8,)
    err = (dequantize_per_channel(q, scale) - w).abs()
    assert bool((err <= scale[:, None] / 2 + 1e-7).all()) and float(err[3].max()) == 0.0


def test_model_round_trip_keeps_outputs_within_one_percent_at_under_thirty_percent_size(trained, tmp_path) -> None:
    model, x = trained
    report = compress_checkpoint(model.state_dict(), tmp_path / "c.safetensors")
    assert report.weight_ratio <= 0.30, report.weight_ratio
    kinds = {t.name: t.kind for t in report.tensors}
    assert kinds["blocks.0.attn.q.weight"] == "int8" and kinds["blocks.0.norm1.weight"] == "raw"
    assert kinds["blocks.0.attn.q.bias"] == "raw"
    restored = build_model(model.arch, seed=1)
    state = load_compressed(tmp_path / "c.safetensors")
    restored.load_state_dict(state)
    with torch.no_grad():
        assert rel(restored(*x), model(*x)) <= OUTPUT_RTOL
    for name, t in model.state_dict().items():  # kept tensors come back exactly
        if kinds[name] == "raw":
            assert torch.equal(state[name], t)
    assert report.max_rel_error < 0.01


def test_training_state_round_trips_model_optimizer_and_scheduler(trained, tmp_path) -> None:
    trained_model, x = trained
    model, _ = model_and_inputs()
    model.load_state_dict(trained_model.state_dict())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for _ in range(2):
        model(*x).logsumexp(-1).mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    ckpt = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": 2,
        "note": ("tuple", 1),
    }
    report = compress_checkpoint(ckpt, tmp_path / "c.safetensors")
    assert all(t.kind == "raw" for t in report.tensors if t.name.startswith(("optimizer/", "scheduler/")))
    back = load_compressed(tmp_path / "c.safetensors")
    assert back["step"] == 2 and back["note"] == ("tuple", 1)
    model2, _ = model_and_inputs(seed=5)
    optimizer2 = torch.optim.AdamW(model2.parameters(), lr=1e-3)
    scheduler2 = torch.optim.lr_scheduler.StepLR(optimizer2, step_size=1, gamma=0.5)
    model2.load_state_dict(back["model"])
    optimizer2.load_state_dict(back["optimizer"])  # int parameter keys survive the JSON skeleton
    scheduler2.load_state_dict(back["scheduler"])
    assert scheduler2.last_epoch == 2 and optimizer2.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    for k, state in optimizer.state_dict()["state"].items():
        assert torch.equal(optimizer2.state_dict()["state"][k]["exp_avg_sq"], state["exp_avg_sq"])
    with torch.no_grad():
        assert rel(model2(*x), model(*x)) <= OUTPUT_RTOL


def test_bf16_tensors_stay_bf16_and_small_tensors_go_16_bit(tmp_path) -> None:
    model, _ = model_and_inputs()
    sd = {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()}
    sd["tiny"] = torch.randn(4, 4)
    report = compress_checkpoint(sd, tmp_path / "b.safetensors", CompressConfig(keep=(), half_below=64))
    kinds = {t.name: t.kind for t in report.tensors}
    assert (
        kinds["tiny"] == "half" and kinds["blocks.0.norm1.weight"] == "half" and kinds["head.lm_head.weight"] == "int8"
    )
    back = load_compressed(tmp_path / "b.safetensors")
    assert back["blocks.0.attn.q.weight"].dtype == torch.bfloat16 and back["tiny"].dtype == torch.float32
    assert 0.45 < report.weight_ratio < 0.56  # int8 is half of bf16 (plus scales)
    assert rel(back["head.lm_head.weight"].float(), sd["head.lm_head.weight"].float()) < 0.01


def test_delta_against_a_reference_is_more_precise_and_needs_that_reference(tmp_path) -> None:
    model, _ = model_and_inputs()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    after = {k: v + 1e-3 * torch.randn_like(v) for k, v in before.items()}  # a few training steps later
    plain = compress_checkpoint(after, tmp_path / "plain.safetensors")
    delta = compress_checkpoint(after, tmp_path / "delta.safetensors", reference=before)
    assert any(t.delta for t in delta.tensors)
    assert delta.max_rel_error < plain.max_rel_error / 10
    back = load_compressed(tmp_path / "delta.safetensors", reference=before)
    assert rel(back["blocks.1.mlp.fc1.weight"], after["blocks.1.mlp.fc1.weight"]) < 1e-3
    with pytest.raises(LatbenchError, match="pass that reference"):
        load_compressed(tmp_path / "delta.safetensors")
    with pytest.raises(LatbenchError, match="not the one"):
        load_compressed(tmp_path / "delta.safetensors", reference=after)


def test_tied_tensors_are_stored_once(tmp_path) -> None:
    arch = Arch.uniform_arch("bert", 32, 1, heads=2, qk_dim=16, mlp=64, vocab_size=260, max_seq_len=16)
    model = build_model(arch)
    report = compress_checkpoint(model.state_dict(), tmp_path / "t.safetensors")
    assert {t.name: t.kind for t in report.tensors}["head.decoder.weight"] == "alias"
    back = load_compressed(tmp_path / "t.safetensors")
    assert back["head.decoder.weight"] is back["embeddings.word.weight"]


def test_files_and_bad_inputs(tmp_path) -> None:
    model, _ = model_and_inputs()
    torch.save({"model": model.state_dict(), "step": 3}, tmp_path / "ckpt.pt")
    report = compress_file(tmp_path / "ckpt.pt", tmp_path / "out.safetensors")
    assert report.file_bytes > 0 and load_compressed(tmp_path / "out.safetensors")["step"] == 3
    with pytest.raises(LatbenchError, match="no such file"):
        compress_file(tmp_path / "missing.pt", tmp_path / "x.safetensors")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(LatbenchError, match="unreadable torch checkpoint"):
        compress_file(tmp_path / "junk.pt", tmp_path / "x.safetensors")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(LatbenchError, match="not a latbench compact checkpoint"):
        load_compressed(tmp_path / "plain.safetensors")
    with pytest.raises(LatbenchError, match="cannot store a"):
        compress_checkpoint({"x": object()}, tmp_path / "y.safetensors")
