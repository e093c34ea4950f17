"""Local data sets: digits splits, the default text corpus, the byte tokenizer, text windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from latbench.errors import LatbenchError
from latbench.space.arch import Arch
from latbench.supernet.data import (
    DEFAULT_CORPUS_MODULES,
    TEXT_VOCAB_SIZE,
    ByteTokenizer,
    default_corpus,
    digits_splits,
    digits_vit_extras,
    load_corpus,
    text_splits,
)


def test_digits_splits_are_stratified_seeded_and_standardised_with_train_statistics() -> None:
    train, val, test = digits_splits(seed=0)
    assert len(train) + len(val) + len(test) == 1797
    assert abs(len(val) - 0.15 * 1797) <= 2 and abs(len(test) - 0.15 * 1797) <= 2
    x, y = train.tensors
    assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1.0) < 1e-3
    for split in (train, val, test):
        counts = torch.bincount(split.tensors[1], minlength=10).double()
        share = counts / counts.sum()
        assert float(share.min()) > 0.08 and float(share.max()) < 0.12  # each class ~10% in every split
    again = digits_splits(seed=0)
    assert all(torch.equal(a.tensors[0], b.tensors[0]) for a, b in zip((train, val, test), again))
    other = digits_splits(seed=1)[1]
    assert not torch.equal(other.tensors[0], val.tensors[0])
    # Disjoint: no image of the test split appears in training.
    train_rows = {tuple(r.tolist()) for r in x.flatten(1)}
    assert not any(tuple(r.tolist()) in train_rows for r in test.tensors[0].flatten(1)[:50])


def test_digits_fractions_are_validated() -> None:
    with pytest.raises(LatbenchError, match="val_fraction"):
        digits_splits(val_fraction=0.0)
    with pytest.raises(LatbenchError, match="leave no training data"):
        digits_splits(val_fraction=0.6, test_fraction=0.5)


def test_digits_vit_extras_make_a_valid_vit() -> None:
    arch = Arch.uniform_arch("vit", hidden=16, n_layers=1, heads=1, qk_dim=16, mlp=32, **digits_vit_extras())
    assert arch.num_tokens() == 17


def test_byte_tokenizer_round_trips_and_has_260_ids() -> None:
    tok = ByteTokenizer()
    text = "Grüße, world! ∑"
    ids = tok.encode(text, add_special=True)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id and max(ids) < TEXT_VOCAB_SIZE == tok.vocab_size == 260
    assert tok.decode(ids) == text


def test_default_corpus_is_stdlib_docstrings_and_deterministic() -> None:
    docs = default_corpus()
    assert len(docs) > 100 and all(len(d) >= 40 for d in docs)
    assert docs == default_corpus()
    assert "argparse" in DEFAULT_CORPUS_MODULES


def test_load_corpus_reads_files_and_directories_sorted(corpus, tmp_path) -> None:
    docs = load_corpus(corpus)
    assert len(docs) == 6
    assert load_corpus([corpus / "doc0.txt"]) == docs[:1]
    with pytest.raises(LatbenchError, match="no such file"):
        load_corpus(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(LatbenchError, match=r"no \.txt files"):
        load_corpus(tmp_path / "empty")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(LatbenchError, match="not a UTF-8"):
        load_corpus(bad)


def test_text_splits_cut_windows_and_split_them_deterministically(corpus) -> None:
    docs = load_corpus(corpus)
    train, val, test = text_splits(docs, seq_len=16, seed=0)
    n = len(train) + len(val) + len(test)
    total = sum(len(d.encode()) + 2 for d in docs)
    assert n == total // 16
    assert train.tensors[0].shape[1] == 16 and train.tensors[0].dtype == torch.int64
    assert int(train.tensors[0].max()) < TEXT_VOCAB_SIZE
    again = text_splits(docs, seq_len=16, seed=0)
    assert torch.equal(again[1].tensors[0], val.tensors[0])
    assert not torch.equal(text_splits(docs, seq_len=16, seed=1)[1].tensors[0], val.tensors[0])
    small = text_splits(docs, seq_len=16, seed=0, max_windows=50)
    assert sum(len(s) for s in small) == 50
    with pytest.raises(LatbenchError, match="windows"):
        text_splits(["tiny"], seq_len=16)
    assert np.isfinite(float(val.tensors[0].float().mean()))
