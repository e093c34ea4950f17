"""Training runs: every family and strategy, seeded determinism, resume = uninterrupted, distillation,
further training from an export, evaluation and the quality objective."""

from __future__ import annotations

import json
import math

import pytest
import torch

from latbench.checkpoints.export import load_extracted
from latbench.errors import LatbenchError
from latbench.models.build import build_supernet
from latbench.models.supernet import SuperNet
from latbench.supernet.evaluate import evaluate_subnet, extract_sub_network, subnet_quality
from latbench.supernet.setup import make_train_config
from latbench.supernet.train import CHECKPOINT_FILE, RUN_FILE, SUMMARY_FILE, load_trained, task_data, train_supernet
from tests.supernet.helpers import FAMILIES, SPACE_DICTS, tiny_config


def weights(path) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in load_trained(path).model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=atol, rtol=0), k


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_with_sandwich_and_writes_a_run(family, corpus, tmp_path) -> None:
    config = tiny_config(family, corpus, steps=6, lr=3e-3)
    result = train_supernet(config, tmp_path)
    assert set(result.final_losses) == {"max", "random", "min"}
    assert all(math.isfinite(v) for v in result.final_losses.values())
    for name in (RUN_FILE, CHECKPOINT_FILE, SUMMARY_FILE):
        assert (tmp_path / name).is_file()
    trained = load_trained(tmp_path)
    assert trained.step == 6 and isinstance(trained.model, SuperNet)
    history = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)["history"]
    assert [h["step"] for h in history] == [1, 2, 3, 4, 5, 6]
    untrained = build_supernet(config.supernet, config.seed)
    assert any(not torch.equal(p, q) for p, q in zip(untrained.parameters(), trained.model.parameters()))


@pytest.mark.parametrize("family", ["bert", "gpt"])
def test_sandwich_training_lowers_the_validation_loss_of_largest_and_smallest(family, corpus, tmp_path) -> None:
    config = tiny_config(family, corpus, steps=30, batch_size=16, lr=1e-2, warmup_steps=3, checkpoint_every=30)
    train_supernet(config, tmp_path)
    untrained = build_supernet(config.supernet, config.seed)
    for arch in (config.space.max_arch(), config.space.min_arch()):
        before = evaluate_subnet(untrained, arch, data=config.data).loss
        assert subnet_quality(tmp_path, arch) < before - 0.3
    # Evaluation leaves the super-net running its whole network.
    model = load_trained(tmp_path).model
    assert model.active_arch == model.max_arch


@pytest.mark.parametrize("strategy", ["standard", "random"])
def test_other_strategies_train(strategy, corpus, tmp_path) -> None:
    result = train_supernet(tiny_config("gpt", corpus, strategy=strategy), tmp_path)
    assert set(result.final_losses) == ({"full"} if strategy == "standard" else {"random"})


def test_same_seed_same_weights_other_seed_other_weights(corpus, tmp_path) -> None:
    train_supernet(tiny_config("bert", corpus), tmp_path / "a")
    train_supernet(tiny_config("bert", corpus), tmp_path / "b")
    train_supernet(tiny_config("bert", corpus, seed=1), tmp_path / "c")
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert_same(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_interrupted_run_resumes_to_the_uninterrupted_weights(corpus, tmp_path) -> None:
    config = tiny_config("gpt", corpus, steps=6, checkpoint_every=2, inplace_distill=True)
    train_supernet(config, tmp_path / "whole")

    def crash(step: int, losses: dict[str, float]) -> None:
        if step == 5:  # after the checkpoint of step 4, before that of step 6
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_supernet(config, tmp_path / "cut", on_step=crash)
    assert load_trained(tmp_path / "cut").step == 4
    lines: list[str] = []
    result = train_supernet(config, tmp_path / "cut", log=lines.append)
    assert result.start_step == 4 and any("resuming" in line for line in lines)
    assert_same(weights(tmp_path / "whole"), weights(tmp_path / "cut"))
    # A finished run restarted does nothing more.
    assert train_supernet(config, tmp_path / "cut").start_step == 6


def test_a_run_directory_refuses_another_configuration(corpus, tmp_path) -> None:
    train_supernet(tiny_config("gpt", corpus, steps=2), tmp_path)
    with pytest.raises(LatbenchError, match="another lr"):
        train_supernet(tiny_config("gpt", corpus, steps=2, lr=0.5), tmp_path)


def test_distillation_from_a_teacher_run(corpus, tmp_path) -> None:
    train_supernet(tiny_config("gpt", corpus, strategy="standard", steps=3), tmp_path / "teacher")
    plain = tiny_config("gpt", corpus, steps=3)
    taught = tiny_config("gpt", corpus, steps=3, teacher=str(tmp_path / "teacher"), kd_temperature=2.0)
    train_supernet(plain, tmp_path / "plain")
    train_supernet(taught, tmp_path / "taught")
    a, b = weights(tmp_path / "plain"), weights(tmp_path / "taught")
    assert any(not torch.equal(a[k], b[k]) for k in a)
    # Option B with an exported teacher: the same teacher weights, so the same student.
    extract_sub_network(tmp_path / "teacher", None, tmp_path / "teacher-export")
    exported = tiny_config("gpt", corpus, steps=3, teacher=str(tmp_path / "teacher-export"), kd_temperature=2.0)
    train_supernet(exported, tmp_path / "taught-by-export")
    assert_same(b, weights(tmp_path / "taught-by-export"))
    bert_teacher = tiny_config("bert", corpus, steps=2, teacher=str(tmp_path / "teacher"))
    with pytest.raises(LatbenchError, match="a gpt teacher cannot teach a bert model"):
        train_supernet(bert_teacher, tmp_path / "wrong")


def test_evaluation_of_a_sub_network_equals_its_extracted_dense_model(corpus, tmp_path) -> None:
    train_supernet(tiny_config("bert", corpus, steps=3), tmp_path / "run")
    trained = load_trained(tmp_path / "run")
    space = trained.config.space
    sub = space.sample(7)
    result = evaluate_subnet(trained, sub)
    dense = trained.extract(sub)
    assert evaluate_subnet(dense, sub, data=trained.config.data).loss == pytest.approx(result.loss, abs=1e-5)
    assert math.isclose(result.perplexity, math.exp(result.loss)) and 0 <= result.accuracy <= 1
    assert result.params > 0 and result.flops > 0 and result.latency_ms > 0
    assert subnet_quality(tmp_path / "run", sub) == pytest.approx(result.loss)
    assert evaluate_subnet(trained, sub, max_examples=10).count < result.count
    bigger = space.max_arch().with_hidden(64)
    with pytest.raises(LatbenchError, match="hidden 64 exceeds"):
        subnet_quality(tmp_path / "run", bigger)


def test_digits_evaluation_reports_accuracy_without_perplexity(tmp_path) -> None:
    train_supernet(tiny_config("vit", None, steps=3), tmp_path)
    result = evaluate_subnet(tmp_path, None, split="test")
    _, _, test = task_data(load_trained(tmp_path).config.data)
    assert result.perplexity is None and result.count == len(test) and result.objective == "classification"


def test_further_training_from_an_export(corpus, tmp_path) -> None:
    train_supernet(tiny_config("gpt", corpus, steps=2), tmp_path / "run")
    small = load_trained(tmp_path / "run").config.space.min_arch()
    extract_sub_network(tmp_path / "run", small, tmp_path / "export")
    config = make_train_config(further_train=tmp_path / "export", steps=3, batch_size=8, warmup_steps=1)
    assert config.space is None and config.strategy == "standard" and config.supernet == small
    assert config.data.paths == (str(corpus),)  # the export remembers the data it was trained on
    before = load_extracted(tmp_path / "export")
    train_supernet(config, tmp_path / "further")
    after = load_trained(tmp_path / "further")
    assert not isinstance(after.model, SuperNet) and after.model.arch == small
    assert any(not torch.equal(p, q) for p, q in zip(before.state_dict().values(), after.model.state_dict().values()))
    assert math.isfinite(subnet_quality(tmp_path / "further", small))
    with pytest.raises(LatbenchError, match="--further-train trains one model"):
        make_train_config(further_train=tmp_path / "export", strategy="sandwich")
    summary = json.loads((tmp_path / "further" / SUMMARY_FILE).read_text())
    assert summary["steps"] == 3


def test_make_train_config_from_a_space_file(corpus, tmp_path) -> None:
    path = tmp_path / "space.json"
    path.write_text(json.dumps(SPACE_DICTS["bert"]))
    config = make_train_config(str(path), data=[corpus], steps=2)
    assert config.strategy == "sandwich" and config.supernet.vocab_size == 260 and config.supernet.hidden == 32
    with pytest.raises(LatbenchError, match="--data is for text"):
        make_train_config("vit", data=[corpus])
    with pytest.raises(LatbenchError, match="give a space"):
        make_train_config(None)
