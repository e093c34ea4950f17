"""BERT pruning end to end: a bert export trained on a local text corpus through MLM, pruned from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from latbench.checkpoints.export import save_safetensors
from latbench.cli._app import make_app
from latbench.cli.prune import finetune, prune
from latbench.lut.table import Axis, LookupTable, TableMeta
from latbench.models.build import build_model
from latbench.pruning.checkpoint import load_model, save_model
from latbench.pruning.config import PruneConfig, TrainConfig
from latbench.pruning.groups import Masker, build_groups
from latbench.pruning.loop import MaskedLMSource, MaskedText, distill_loss
from latbench.pruning.run import prune_model
from latbench.space.arch import Arch, LayerSpec
from latbench.supernet.config import DataConfig
from latbench.supernet.data import TEXT_VOCAB_SIZE
from tests.cli_assert import assert_one_line_error

from .helpers import block_cost, linear_lut, tiny_bert

app = make_app("test app")
app.command("prune")(prune)
app.command("finetune")(finetune)
runner = CliRunner()

QUICK = ["--batch-size", "16", "--no-measure", "--threads", "1"]
SEQ = 8


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def text_bert(hidden: int = 16) -> Arch:
    spec = LayerSpec(heads=4, qk_dim=8, v_dim=8, mlp=32)
    return Arch(family="bert", hidden=hidden, layers=(spec, spec), vocab_size=TEXT_VOCAB_SIZE, max_seq_len=16)


def bert_lut(arch: Arch, lo: int = 2, seq_len: int = SEQ) -> LookupTable:
    """A LUT over BERT's block axes (hidden, heads, qk_dim, mlp), values multilinear in the dims."""
    s = arch.layers[0]
    axes = (Axis("hidden", (lo, arch.hidden)), Axis("heads", (1, s.heads)), Axis("qk_dim", (lo, s.qk_dim)))
    axes += (Axis("mlp", (lo, s.mlp)),)
    grid = np.meshgrid(*(np.array(a.values, dtype=float) for a in axes), indexing="ij")
    values = np.vectorize(lambda h, a, d, m: block_cost(h, a, d, d, m))(*grid)
    meta = TableMeta(family="bert", unit="ms", workload={"batch": 16, "seq_len": seq_len})
    return LookupTable(axes=axes, values=values, meta=meta, origin="bert lut")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A small local corpus: a few kB of varied English-like text."""
    rng = np.random.default_rng(0)
    words = "the model prunes heads of attention while a table of latency guides which block to shrink first".split()
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(words, size=12)) + "." for _ in range(300)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory, corpus) -> Path:
    """A bert export as ``latbench extract`` writes it, recording the data it was trained on."""
    out = tmp_path_factory.mktemp("export") / "bert"
    data = DataConfig("bert", paths=(str(corpus),), seq_len=SEQ, max_windows=400)
    save_safetensors(build_model(text_bert(), seed=1), out, source={"run": "test", "step": 0, "data": data.to_dict()})
    return out


@pytest.fixture(scope="module")
def lut_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lut") / "bert_lut.json"
    bert_lut(text_bert()).save(path)
    return path


PRUNE = [
    "--latency-target", "0.6", "--latency-regularization", "1", "--normalize", "--prune-per-iter", "24",
    "--interval-prune", "2", "--steps", "60", "--granularity", "heads=1,mlp=4", "--round-to", "mlp=4",
]  # fmt: skip


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory, export_dir, lut_file) -> Path:
    out = tmp_path_factory.mktemp("job") / "job"
    torch.set_num_threads(1)
    r = run("prune", "--model", export_dir, "--out", out, "--lut", lut_file, *PRUNE, *QUICK)
    assert r.exit_code == 0, r.output
    assert "MLM loss" in r.output
    return out


def test_a_bert_export_is_pruned_to_the_latency_target_on_its_recorded_text(pruned_dir, export_dir):
    report = json.loads((pruned_dir / "prune_report.json").read_text())
    assert report["task"] == "mlm" and report["reached"] and report["reason"] == "latency target reached"
    assert report["latency_ratio"] <= 0.6
    assert report["data"]["seq_len"] == SEQ and report["data"]["max_windows"] == 400  # the export's data
    for key in ("mlm_loss_before", "mlm_loss_pruned"):
        assert set(report[key]) == {"val", "test"} and all(np.isfinite(v) and v > 0 for v in report[key].values())
    assert report["params"] < report["original_params"]
    arch = Arch.from_json((pruned_dir / "arch.json").read_text())
    assert arch.family == "bert" and arch.to_dict() == report["arch"] and arch.vocab_size == TEXT_VOCAB_SIZE
    assert all(s.mlp % 4 == 0 for s in arch.layers)
    dense, meta = load_model(pruned_dir / "pruned.pt")
    assert dense.arch == arch and meta["task"] == "mlm"
    baseline, base_meta = load_model(pruned_dir / "baseline.pt")
    assert base_meta["data"] == report["data"] and baseline.arch == text_bert()
    assert report["bytes_dense"] < report["bytes_masked"]


def test_the_dense_bert_equals_the_masked_one(pruned_dir):
    masked, meta = load_model(pruned_dir / "masked.pt")
    dense, _ = load_model(pruned_dir / "pruned.pt")
    groups = build_groups(masked)
    for g in groups:
        g.keep = torch.tensor(meta["masks"][g.name], dtype=torch.bool)
    ids = torch.randint(0, TEXT_VOCAB_SIZE, (3, SEQ), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), Masker(masked, groups):
        expected = masked(ids)
    with torch.no_grad():
        got = dense(ids)
    assert got.shape == expected.shape == (3, SEQ, TEXT_VOCAB_SIZE)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_finetune_distils_the_pruned_bert_on_mlm(pruned_dir):
    r = run("finetune", pruned_dir, "--steps", "4", "--batch-size", "16")
    assert r.exit_code == 0, r.output
    assert "MLM loss" in r.output
    report = json.loads((pruned_dir / "finetune_report.json").read_text())
    assert report["task"] == "mlm" and report["steps"] == 4
    for key in ("mlm_loss_before", "mlm_loss_after", "teacher_mlm_loss"):
        assert all(np.isfinite(v) for v in report[key].values())
    model, meta = load_model(pruned_dir / "finetuned.pt")
    assert model.arch == Arch.from_json((pruned_dir / "arch.json").read_text()) and "val_mlm_loss" in meta


def test_a_finished_bert_job_resumes_to_the_same_result(pruned_dir, export_dir, lut_file):
    before = json.loads((pruned_dir / "prune_report.json").read_text())
    r = run("prune", "--model", export_dir, "--out", pruned_dir, "--lut", lut_file, *PRUNE, *QUICK)
    assert r.exit_code == 0, r.output
    after = json.loads((pruned_dir / "prune_report.json").read_text())
    assert after["arch"] == before["arch"] and after["history"] == before["history"]
    assert after["mlm_loss_pruned"] == before["mlm_loss_pruned"]
    args = ["prune", "--model", export_dir, "--out", pruned_dir, "--lut", lut_file, *PRUNE, *QUICK]
    r = run(*args, "--max-windows", "300")
    assert_one_line_error(r, "holds a job with other options", "max_windows")


def test_an_interrupted_mlm_pruning_run_resumes_exactly(tmp_path, corpus):
    from latbench.pruning.latency import LatencyCost
    from latbench.pruning.text import text_data

    arch = text_bert()
    train_set, _, _ = text_data(DataConfig("bert", paths=(str(corpus),), seq_len=SEQ, max_windows=200))
    cfg = PruneConfig(
        latency_target=0.3, latency_regularization=1.0, normalize=True, prune_per_iter=3, interval_prune=2
    )
    tcfg = TrainConfig(steps=12, batch_size=8, lr=1e-3, checkpoint_every=3)
    cost = LatencyCost(bert_lut(arch), arch)

    def go(ckpt: Path, stop_at: int | None = None):
        model = build_model(arch, seed=2).train()

        def on_step(done: int) -> None:
            if stop_at is not None and done == stop_at:
                raise KeyboardInterrupt

        return model, prune_model(model, train_set, cfg, tcfg, latency=cost, checkpoint=ckpt, on_step=on_step)

    ref_model, ref = go(tmp_path / "a.run")
    assert ref.training.steps == 12 and len(ref.pruner.history) == 6  # pruned throughout, not finished early
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "b.run", stop_at=7)
    model, again = go(tmp_path / "b.run")
    assert again.training.resumed_from == 6
    assert [h.removed for h in again.pruner.history] == [h.removed for h in ref.pruner.history]
    assert again.arch == ref.arch
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_mlm_shards_weigh_their_cross_entropy_to_the_global_batch(corpus):
    from latbench.pruning.text import text_data

    train_set, _, _ = text_data(DataConfig("bert", paths=(str(corpus),), seq_len=SEQ, max_windows=200))
    source = MaskedLMSource(MaskedText(train_set.windows, 0.3), batch_size=8, seed=0)
    x, y = source.batch(3)
    assert x.shape == y.shape == (8, SEQ) and (y != -100).any() and ((x == y) | (y == -100) | (x != y)).all()
    assert torch.equal(source.batch(3)[0], x)  # a step's masks are a function of (seed, step)
    logits = torch.randn(8, SEQ, TEXT_VOCAB_SIZE, generator=torch.Generator().manual_seed(0))
    whole = distill_loss(logits, None, y, 0.0, 1.0)
    parts = []
    for rank in range(2):
        xs, ys = source.batch(3, rank, 2)
        assert torch.equal(xs, x[rank * 4 : (rank + 1) * 4])
        w = source.ce_weight(3, rank, 2)
        parts.append(distill_loss(logits[rank * 4 : (rank + 1) * 4], None, ys, 0.0, 1.0, w))
    torch.testing.assert_close(sum(parts) / 2, whole)  # what the all-reduce (a mean) of the shards gives


def test_a_bert_lut_is_measured_on_this_cpu(tmp_path):
    from latbench.pruning.measure import measure_latency_ms, measure_lut

    arch = text_bert()
    axes = {"hidden": [8, 16], "heads": [4], "qk_dim": [8], "v_dim": [8], "mlp": [32]}
    table = measure_lut(arch, tmp_path / "lut.json", batch=2, seq_len=SEQ, axes=axes)
    assert table.axis_names == ("hidden", "heads", "qk_dim", "v_dim", "mlp")
    assert table.meta.family == "bert" and table.meta.workload == {"batch": 2, "seq_len": SEQ}
    assert np.isfinite(table.values).all() and (table.values > 0).all()
    assert LookupTable.load(tmp_path / "lut.json").axis_names == table.axis_names
    ms = measure_latency_ms([build_model(arch)], arch, batch=2, seq_len=SEQ, quick=True)
    assert len(ms) == 1 and ms[0] > 0


def test_bad_bert_inputs_give_one_line(tmp_path, export_dir, lut_file, corpus):
    base = ["prune", "--model", export_dir, "--out", tmp_path / "o", *QUICK]
    arch = text_bert()
    small = tmp_path / "small.json"
    bert_lut(text_bert(hidden=8)).save(small)
    assert_one_line_error(
        run(*base, "--lut", small, "--latency-target", "0.5"), "does not cover the model", "hidden=16"
    )
    three = tmp_path / "three.json"
    t = bert_lut(arch)
    LookupTable(axes=t.axes[:2] + t.axes[3:], values=t.values[:, :, 0, :], meta=t.meta).save(three)
    assert_one_line_error(run(*base, "--lut", three, "--latency-target", "0.5"), "no 'qk_dim' axis")
    vit_table = tmp_path / "vit.json"
    linear_lut(
        Arch.uniform_arch("vit", 16, 2, 4, 8, 32, image_size=8, patch_size=2, in_channels=1, num_classes=10)
    ).save(vit_table)
    assert_one_line_error(run(*base, "--lut", vit_table, "--latency-target", "0.5"), "vit blocks")
    other_seq = tmp_path / "seq.json"
    bert_lut(arch, seq_len=128).save(other_seq)
    assert_one_line_error(run(*base, "--lut", other_seq, "--latency-target", "0.5"), "seq_len 128", "--force")
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--seq-len", "64"), "--seq-len", "16"
    )
    assert_one_line_error(
        run(*base, "--lut", lut_file, "--latency-target", "0.5", "--data", tmp_path / "none.txt"), "none.txt", "no such"
    )
    assert_one_line_error(
        run(*base[:2], "vit-digits", *base[3:], "--lut", lut_file, "--latency-target", "0.5", "--data", corpus),
        "--data",
    )
    tiny = tmp_path / "tiny.pt"
    save_model(tiny, build_model(tiny_bert()))  # a vocabulary of 40: not the byte tokenizer's
    assert_one_line_error(run(*base[:2], tiny, *base[3:], "--lut", lut_file, "--latency-target", "0.5"), "vocab_size")
    gpt = tmp_path / "gpt.pt"
    gpt_arch = Arch.uniform_arch("gpt", 16, 1, 2, 8, 32, vocab_size=TEXT_VOCAB_SIZE, max_seq_len=16)
    save_model(gpt, build_model(gpt_arch))
    assert_one_line_error(
        run(*base[:2], gpt, *base[3:], "--lut", lut_file, "--latency-target", "0.5"), "built-in training data", "bert"
    )
    assert_one_line_error(
        run(*base[:2], tmp_path, *base[3:], "--lut", lut_file, "--latency-target", "0.5"), "neither a training run"
    )
    assert not (tmp_path / "o").exists()  # nothing was written for a refused job
