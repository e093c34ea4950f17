"""The BERT task: a bert model's training data (a local text corpus through masked LM) and its quality.

The data and objective are the super-net trainer's (:mod:`latbench.supernet.data`,
:mod:`latbench.supernet.objectives`): the byte tokenizer, token windows of
``seq_len``, BERT's 80/10/10 masking. A model exported from a super-net run
(``latbench extract``), the run directory itself, or a model file written here
records the :class:`~latbench.supernet.config.DataConfig` it was trained on; the
pruning job starts from that, and ``--data``/``--seq-len``/``--max-windows``
replace its parts. Quality is the MLM loss (mean cross-entropy over the masked
tokens, nats) on the validation and test windows, with masks fixed per split
(:func:`latbench.supernet.evaluate.evaluate_subnet`), so every model of a job is
scored on the same tokens.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from latbench.errors import LatbenchError
from latbench.pruning.loop import MaskedText
from latbench.space.arch import Arch
from latbench.supernet.config import DataConfig

__all__ = ["check_text_arch", "mlm_loss", "source_data", "text_data", "text_data_config"]

#: Tokens per window when neither the model nor the user says (the super-net trainer's default).
DEFAULT_SEQ_LEN = 16


def source_data(path: str | os.PathLike[str], meta: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The data configuration a model records, if any: a run's, an export's ``source.data``, a model file's meta."""
    p = Path(path)
    if p.is_dir():
        from latbench.supernet.train import RUN_FILE, load_trained

        if (p / RUN_FILE).is_file():
            return load_trained(p).config.data.to_dict()
        from latbench.checkpoints.export import read_export_config

        source = read_export_config(p).get("source")
        data = source.get("data") if isinstance(source, Mapping) else None
        return dict(data) if isinstance(data, Mapping) else None
    data = (meta or {}).get("data")
    return dict(data) if isinstance(data, Mapping) else None


def check_text_arch(arch: Arch, seq_len: int, where: str) -> None:
    """Refuse a bert whose vocabulary is not the byte tokenizer's, or whose positions are fewer than ``seq_len``."""
    from latbench.supernet.data import TEXT_VOCAB_SIZE

    if arch.vocab_size < TEXT_VOCAB_SIZE:  # type: ignore[operator]
        raise LatbenchError(
            where,
            f"vocab_size {arch.vocab_size} is smaller than the byte tokenizer's {TEXT_VOCAB_SIZE} "
            "(the built-in text data is byte-tokenised)",
        )
    if seq_len > arch.max_seq_len:  # type: ignore[operator]
        raise LatbenchError("--seq-len", f"{seq_len} exceeds the model's max_seq_len {arch.max_seq_len}")


def text_data_config(
    arch: Arch,
    recorded: Mapping[str, Any] | None,
    *,
    paths: Sequence[str] = (),
    seq_len: int | None = None,
    max_windows: int | None = None,
    where: str = "model",
) -> DataConfig:
    """The data a bert is pruned on: what it records (else the default corpus), with the given parts replaced.

    Raises:
        LatbenchError: A bad recorded configuration, a bad option, or a model the data does not fit.
    """
    if recorded is not None and recorded.get("family") == "bert":
        base = DataConfig.from_dict(recorded, f"{where}: data")
    else:
        base = DataConfig("bert", seq_len=min(DEFAULT_SEQ_LEN, arch.max_seq_len))  # type: ignore[type-var]
    changes: dict[str, Any] = {}
    if paths:
        changes["paths"] = tuple(str(p) for p in paths)
    if seq_len is not None:
        changes["seq_len"] = seq_len
    if max_windows is not None:
        changes["max_windows"] = max_windows
    data = replace(base, **changes) if changes else base
    check_text_arch(arch, data.seq_len, where)
    return data


def text_data(data: DataConfig) -> tuple[MaskedText, Any, Any]:
    """Training windows (masked per step while training), and the validation and test windows."""
    from latbench.supernet.train import task_data

    train, val, test = task_data(data)
    return MaskedText(train, data.mask_prob), val, test


def mlm_loss(model: nn.Module, data: DataConfig, max_examples: int | None = None) -> dict[str, float]:
    """MLM loss (nats per masked token) of ``model`` on the validation and test windows of ``data``.

    ``model`` may carry the pruner's masking hooks: it is scored as the function it computes.
    """
    from latbench.supernet.evaluate import evaluate_subnet

    return {
        split: evaluate_subnet(model, split=split, data=data, max_examples=max_examples).loss  # type: ignore[arg-type]
        for split in ("val", "test")
    }
