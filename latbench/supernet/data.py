"""Small real data sets that need no download: scikit-learn's digits, and a text corpus from Python itself.

Images: :func:`digits_splits` gives the 1,797 8x8 handwritten digits shipped
with scikit-learn as ``[N, 1, 8, 8]`` float images, split train/val/test with a
seeded stratified split. :func:`digits_vit_extras` gives the ``Arch`` settings
of a ViT that reads them (2x2 patches: 16 patches + a class token).

Text: the default corpus is the docstrings of a fixed list of pure-Python
standard-library modules (:data:`DEFAULT_CORPUS_MODULES`), read from the
interpreter's own ``Lib`` directory with :mod:`ast` - English prose that every
Python installation carries. The selection is deterministic for a given Python
version; modules missing from an installation are skipped. ``--data`` replaces
it with ``.txt`` files or directories of them (searched recursively, sorted).

Tokens: :class:`ByteTokenizer` maps UTF-8 bytes to ids ``0..255`` and adds four
special tokens, so every text model here has ``vocab_size`` =
:data:`TEXT_VOCAB_SIZE` = 260 whatever the corpus (set ``Arch.vocab_size`` to it).
"""

from __future__ import annotations

import ast
import functools
import os
import sysconfig
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from latbench.errors import LatbenchError

__all__ = [
    "DEFAULT_CORPUS_MODULES",
    "TEXT_VOCAB_SIZE",
    "ByteTokenizer",
    "default_corpus",
    "digits_splits",
    "digits_vit_extras",
    "load_corpus",
    "text_splits",
]

#: Standard-library modules (pure Python, present since 3.8) whose docstrings make the default corpus, in order.
DEFAULT_CORPUS_MODULES: tuple[str, ...] = (
    "argparse",
    "ast",
    "bisect",
    "calendar",
    "collections/__init__",
    "configparser",
    "contextlib",
    "csv",
    "dataclasses",
    "datetime",
    "difflib",
    "doctest",
    "email/message",
    "enum",
    "fractions",
    "functools",
    "heapq",
    "inspect",
    "json/__init__",
    "logging/__init__",
    "os",
    "pathlib",
    "pickle",
    "pprint",
    "random",
    "shutil",
    "statistics",
    "string",
    "subprocess",
    "tarfile",
    "textwrap",
    "threading",
    "typing",
    "unittest/case",
    "urllib/parse",
    "zipfile",
)

#: ids 0..255 are bytes; then padding, mask (MLM), beginning and end of a document.
PAD_ID, MASK_ID, BOS_ID, EOS_ID = 256, 257, 258, 259
TEXT_VOCAB_SIZE = 260


# ------------------------------------------------------------------ digits
def digits_vit_extras() -> dict[str, int]:
    """``Arch`` settings of a ViT on the digits: 8x8 single-channel images, 2x2 patches, 10 classes."""
    return {"image_size": 8, "patch_size": 2, "in_channels": 1, "num_classes": 10}


def _check_fractions(val_fraction: float, test_fraction: float) -> None:
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < value < 1.0:
            raise LatbenchError(name, f"must lie strictly between 0 and 1, got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise LatbenchError("val_fraction", f"{val_fraction} + test_fraction {test_fraction} leave no training data")


def digits_splits(
    seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """scikit-learn's digits as ``(train, val, test)`` datasets of ``(image, label)``.

    Images are float32 ``[N, 1, 8, 8]``: pixel values ``0..16`` scaled to
    ``[0, 1]``, then standardised with the mean and standard deviation of the
    *training* pixels (one scalar each, so no test statistics leak in). Labels
    are int64 ``0..9``. The split is stratified by label and seeded.

    Args:
        seed: Seed of the split; same seed, same split.
        val_fraction: Share of the images for validation.
        test_fraction: Share of the images for testing.

    Returns:
        Train, validation and test :class:`~torch.utils.data.TensorDataset`.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    _check_fractions(val_fraction, test_fraction)
    digits = load_digits()
    images = digits.images.astype(np.float32) / 16.0
    labels = digits.target.astype(np.int64)
    index = np.arange(len(labels))
    rest, test = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    # val_fraction is of the whole set, so rescale it to the share of what is left.
    train, val = train_test_split(
        rest, test_size=val_fraction / (1.0 - test_fraction), random_state=seed, stratify=labels[rest]
    )
    mean, std = float(images[train].mean()), float(images[train].std())

    def make(idx: np.ndarray) -> TensorDataset:
        x = torch.from_numpy((images[np.sort(idx)] - mean) / std).unsqueeze(1)
        y = torch.from_numpy(labels[np.sort(idx)])
        return TensorDataset(x.contiguous(), y)

    return make(train), make(val), make(test)


# -------------------------------------------------------------------- text
class ByteTokenizer:
    """UTF-8 bytes as token ids, plus four special tokens; needs no training and no files.

    Ids ``0..255`` are bytes, ``256`` padding, ``257`` the MLM mask, ``258``
    beginning and ``259`` end of a document. ``vocab_size`` is always 260.
    """

    vocab_size = TEXT_VOCAB_SIZE
    pad_id, mask_id, bos_id, eos_id = PAD_ID, MASK_ID, BOS_ID, EOS_ID

    def encode(self, text: str, *, add_special: bool = False) -> list[int]:
        """Token ids of ``text`` (wrapped in BOS ... EOS when ``add_special``)."""
        ids = list(text.encode("utf-8"))
        return [BOS_ID, *ids, EOS_ID] if add_special else ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens are dropped and broken UTF-8 is replaced, not raised."""
        return bytes(i for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


def _docstrings(source: str) -> list[str]:
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a stdlib file written for another Python version
        return []
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))]
    out = []
    for node in nodes:
        doc = ast.get_docstring(node, clean=True)
        if doc and len(doc) >= 40:  # one-liners like "Return self." teach little
            out.append(doc)
    return out


@functools.lru_cache(maxsize=2)
def _default_corpus(stdlib: str) -> tuple[str, ...]:
    texts: list[str] = []
    for module in DEFAULT_CORPUS_MODULES:
        path = Path(stdlib) / f"{module}.py"
        if path.is_file():
            texts.extend(_docstrings(path.read_text(encoding="utf-8", errors="replace")))
    return tuple(texts)


def default_corpus() -> list[str]:
    """The documented default corpus: docstrings of :data:`DEFAULT_CORPUS_MODULES` in order.

    Raises:
        LatbenchError: The standard library's sources are not installed (some slim images strip them).
    """
    stdlib = sysconfig.get_paths()["stdlib"]
    texts = _default_corpus(stdlib)
    if not texts:
        raise LatbenchError("--data", f"no standard-library sources under {stdlib} for the default corpus; pass --data")
    return list(texts)


def load_corpus(data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None) -> list[str]:
    """Documents of a text corpus: the default one, or ``.txt`` files and directories of them.

    Args:
        data: ``None`` for :func:`default_corpus`; else a path or a list of paths. A directory
            contributes its ``*.txt`` files, recursively, in sorted order; each file is one document.

    Raises:
        LatbenchError: A path does not exist, is not a ``.txt`` file, is not UTF-8, or nothing is found.
    """
    if data is None:
        return default_corpus()
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not paths:
        return default_corpus()
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*.txt") if q.is_file())
            if not found:
                raise LatbenchError(str(p), "directory holds no .txt files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise LatbenchError(str(p), "no such file or directory")
    texts = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise LatbenchError(str(f), "not a UTF-8 text file") from None
        if text.strip():
            texts.append(text)
    if not texts:
        raise LatbenchError("--data", "the corpus is empty")
    return texts


def text_splits(
    texts: Sequence[str] | None = None,
    seq_len: int = 16,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    max_windows: int | None = None,
) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """A corpus cut into token windows, split ``(train, val, test)``; each dataset holds ``(input_ids,)``.

    Documents are byte-tokenised, each wrapped in BOS ... EOS, concatenated, and
    cut into non-overlapping windows of ``seq_len`` ids (the tail is dropped).
    A seeded permutation assigns windows to the splits. The objectives build
    their own targets: MLM masks ids, causal LM shifts them.

    Args:
        texts: Documents (default: :func:`default_corpus`).
        seq_len: Window length in tokens.
        seed: Seed of the split (and of the subsample with ``max_windows``).
        val_fraction: Share of the windows for validation.
        test_fraction: Share of the windows for testing.
        max_windows: Keep at most this many windows (a seeded subsample) - for quick runs.

    Raises:
        LatbenchError: ``seq_len`` is not positive, or the corpus is too small to fill every split.
    """
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise LatbenchError("seq_len", f"must be an integer >= 2, got {seq_len!r}")
    _check_fractions(val_fraction, test_fraction)
    docs = default_corpus() if texts is None else list(texts)
    tok = ByteTokenizer()
    ids = np.fromiter((i for d in docs for i in tok.encode(d, add_special=True)), dtype=np.int64)
    n = len(ids) // seq_len
    if n < 3:
        raise LatbenchError("--data", f"the corpus gives {n} windows of {seq_len} tokens; at least 3 are needed")
    windows = ids[: n * seq_len].reshape(n, seq_len)
    order = np.random.default_rng(seed).permutation(n)
    if max_windows is not None:
        order = order[: max(3, max_windows)]
        n = len(order)
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n - n_val - n_test < 1:
        raise LatbenchError("--data", f"{n} windows are too few to split")
    val, test, train = order[:n_val], order[n_val : n_val + n_test], order[n_val + n_test :]

    def make(idx: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(windows[np.sort(idx)].copy()))

    return make(train), make(val), make(test)
