"""Training loop: distillation loss, deterministic batches, resume == uninterrupted, 2 processes == 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from latbench.errors import LatbenchError
from latbench.pruning.checkpoint import load_run
from latbench.pruning.config import PruneConfig, TrainConfig
from latbench.pruning.latency import LatencyCost
from latbench.pruning.loop import BatchSource, distill_loss
from latbench.pruning.run import prune_model

from .ddp_worker import prune_once
from .helpers import linear_lut, perturbed_model, tiny_vit, vit_data, vit_inputs

REPO = Path(__file__).resolve().parents[2]


def test_distill_loss_is_deits_soft_distillation():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=gen), torch.randn(6, 10, generator=gen)
    y = torch.randint(0, 10, (6,), generator=gen)
    assert torch.allclose(distill_loss(s, t, y, 0.0, 2.0), F.cross_entropy(s, y))
    tau = 2.0
    p_t = F.softmax(t / tau, -1)
    kl = (p_t * (F.log_softmax(t / tau, -1) - F.log_softmax(s / tau, -1))).sum() * tau**2 / s.numel()
    assert torch.allclose(distill_loss(s, t, y, 1.0, tau), kl)
    assert torch.allclose(distill_loss(s, t, y, 0.25, tau), 0.75 * F.cross_entropy(s, y) + 0.25 * kl)


def test_masked_lm_distillation_covers_only_the_masked_positions():
    gen = torch.Generator().manual_seed(1)
    s, t = torch.randn(2, 5, 7, generator=gen), torch.randn(2, 5, 7, generator=gen)
    y = torch.full((2, 5), -100)
    y[0, 1], y[1, 3] = 4, 2
    keep = y != -100
    expect = distill_loss(s[keep], t[keep], y[keep], 1.0, 2.0)  # the same positions as a flat batch
    assert torch.allclose(distill_loss(s, t, y, 1.0, 2.0), expect)
    t_other = t.clone()
    t_other[0, 0] += 5.0  # an unmasked position: no loss asks for its logits
    assert torch.allclose(distill_loss(s, t_other, y, 1.0, 2.0), expect)


def test_batches_are_a_function_of_the_step_and_shards_tile_them():
    src = BatchSource(vit_data(50), batch_size=8, seed=3)
    again = BatchSource(vit_data(50), batch_size=8, seed=3)
    for step in (0, 5, 6, 13):  # 6 batches per epoch: 6 and 13 are in later epochs
        x, _ = src.batch(step)
        assert torch.equal(x, again.batch(step)[0])
        halves = [src.batch(step, r, 2)[0] for r in (0, 1)]
        assert torch.equal(torch.cat(halves), x)
    assert not torch.equal(src.indices(0), src.indices(6))
    with pytest.raises(LatbenchError, match="split evenly"):
        src.batch(0, 0, 3)


def _prune(tmp_path: Path, interrupt_at: int | None = None):
    arch = tiny_vit()
    model = perturbed_model(arch, seed=2)
    cost = LatencyCost(linear_lut(arch), arch)
    cfg = PruneConfig(
        latency_target=0.4, latency_regularization=0.5, normalize=True, prune_per_iter=4, interval_prune=3, momentum=0.5
    )
    train = TrainConfig(steps=80, batch_size=16, lr=1e-3, distill_alpha=0.5, checkpoint_every=4)

    def on_step(done: int) -> None:
        if done == interrupt_at:
            raise KeyboardInterrupt  # killed between two checkpoints (the last one was at step 12)

    return prune_model(
        model, vit_data(64), cfg, train, latency=cost, checkpoint=tmp_path / "prune.run", on_step=on_step
    )


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    whole = _prune(tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        _prune(tmp_path / "cut", interrupt_at=14)
    assert load_run(tmp_path / "cut" / "prune.run", "prune")["step"] == 12
    resumed = _prune(tmp_path / "cut")
    assert resumed.training.resumed_from == 12
    assert whole.reached and resumed.reached
    assert resumed.training.steps == whole.training.steps
    assert resumed.arch == whole.arch
    assert [g.keep.tolist() for g in resumed.pruner.groups] == [g.keep.tolist() for g in whole.pruner.groups]
    assert [r.to_dict() for r in resumed.pruner.history] == [r.to_dict() for r in whole.pruner.history]
    for (name, a), b in zip(whole.dense.state_dict().items(), resumed.dense.state_dict().values()):
        assert torch.equal(a, b), name
    x = vit_inputs(4)
    assert torch.equal(whole.dense(x), resumed.dense(x))


def test_a_checkpoint_of_another_kind_or_a_broken_one_is_refused(tmp_path):
    _prune(tmp_path)
    with pytest.raises(LatbenchError, match="expected 'finetune'"):
        load_run(tmp_path / "prune.run", "finetune")
    (tmp_path / "broken.run").write_bytes(b"not a checkpoint")
    with pytest.raises(LatbenchError) as exc:
        load_run(tmp_path / "broken.run")
    assert "not a readable torch checkpoint" in str(exc.value) and "\n" not in str(exc.value)


def test_two_processes_prune_exactly_like_one(tmp_path):
    single = prune_once()
    init = tmp_path / "init"
    out = tmp_path / "rank0.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.pruning.ddp_worker", str(out), str(rank), "2", str(init)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    for p in procs:
        output, _ = p.communicate(timeout=120)
        assert p.returncode == 0, output.decode()[-2000:]
    ddp = torch.load(out, weights_only=True)
    assert ddp["batches"] == single["batches"]
    assert {k: v.tolist() for k, v in ddp["masks"].items()} == {k: v.tolist() for k, v in single["masks"].items()}
    assert [h["removed"] for h in ddp["history"]] == [h["removed"] for h in single["history"]]
    for name, value in single["dense"].items():
        if name.endswith("attn.k.bias"):
            # A key bias shifts every score of a query equally: its true gradient is 0, so AdamW
            # steps on rounding noise, which an all-reduce sums in another order. It changes no output.
            continue
        assert torch.allclose(ddp["dense"][name], value, atol=1e-4), name
