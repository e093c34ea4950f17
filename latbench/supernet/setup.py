"""Turn command-line choices into a :class:`TrainConfig` (the CLI's one library call before training)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from latbench.errors import LatbenchError
from latbench.space.arch import FAMILY_EXTRAS, Arch
from latbench.supernet.config import DataConfig, TrainConfig
from latbench.supernet.spaces import SpaceCaps, data_extras, training_space

__all__ = ["adopt_extras", "make_train_config"]


def adopt_extras(arch: Arch, like: Arch) -> Arch:
    """``arch`` with ``like``'s family settings when ``arch`` carries only the family defaults.

    Foreign formats (whittle, NViT, AutoTinyBERT) and short JSON leave the
    vocabulary or image size out, so they parse to the full-size defaults; a
    super-net trained on local data has its own.
    """
    if arch.family == like.family and arch.extras == FAMILY_EXTRAS[arch.family] and arch.extras != like.extras:
        return Arch(family=arch.family, hidden=arch.hidden, layers=arch.layers, **like.extras)
    return arch


def _check_dense_fits(arch: Arch, seq_len: int, where: str) -> None:
    need = data_extras(arch.family, seq_len)
    for key, value in need.items():
        have = getattr(arch, key)
        if key in ("vocab_size", "max_seq_len"):
            if have < value:
                raise LatbenchError(where, f"{key} {have} is below the data's {value}")
        elif have != value:
            raise LatbenchError(where, f"{key} {have} does not fit the data, which needs {value}")


def make_train_config(
    space: str | os.PathLike[str] | None = None,
    *,
    strategy: str | None = None,
    data: Sequence[str | os.PathLike[str]] = (),
    seq_len: int | None = None,
    caps: SpaceCaps | None = None,
    further_train: str | os.PathLike[str] | None = None,
    data_seed: int | None = None,
    max_windows: int | None = None,
    **options: object,
) -> TrainConfig:
    """A :class:`TrainConfig` from a space (preset name or JSON file) or an export to train further.

    Args:
        space: ``bert``, ``vit``, ``gpt`` or a space JSON file (not with ``further_train``).
        strategy: Default ``sandwich`` for a super-net, ``standard`` for further training (the only one).
        data: Text files/directories (text families); empty: the default corpus, or the export's data.
        seq_len: Tokens per window (default 16, or the export's).
        caps: Shrink the space (``--scale``, ``--max-*``).
        further_train: An export directory (safetensors, hf or litgpt) whose dense model trains further.
        data_seed: Seed of the data split (default: the run's ``seed``, or the export's split).
        max_windows: Keep at most this many text windows.
        **options: Further :class:`TrainConfig` fields (``steps``, ``batch_size``, ``lr``, ``seed`` ...).

    Raises:
        LatbenchError: Conflicting or invalid choices, naming the option.
    """
    seed = options.get("seed", 0)
    # Absolute paths: a run evaluated, resumed or used as a teacher from another directory still finds them.
    data = [str(Path(p).resolve()) for p in data]
    if options.get("teacher") is not None:
        options["teacher"] = str(Path(str(options["teacher"])).resolve())
    if further_train is not None:
        if space is not None:
            raise LatbenchError("--further-train", "trains the exported model; leave out --space")
        if strategy not in (None, "standard"):
            raise LatbenchError("--strategy", f"{strategy!r} samples sub-networks; --further-train trains one model")
        if caps is not None and caps.active:
            raise LatbenchError("--scale", "the exported model's shape is fixed; --scale/--max-* do not apply")
        from latbench.checkpoints.export import read_export_config

        exported = read_export_config(further_train)
        if exported["format"] == "onnx":
            raise LatbenchError(
                str(further_train), "an ONNX export cannot be trained; export safetensors, hf or litgpt"
            )
        arch: Arch = exported["arch"]
        source = exported.get("source", {}).get("data") if isinstance(exported.get("source"), dict) else None
        base = DataConfig.from_dict(source, f"{further_train}: source.data") if source else DataConfig(arch.family)
        if arch.family == "vit" and data:
            raise LatbenchError("--data", "vit trains on scikit-learn's digits; --data is for text")
        data_cfg = DataConfig(
            family=arch.family,
            paths=tuple(str(p) for p in data) or base.paths,
            seq_len=seq_len or base.seq_len,
            seed=base.seed if data_seed is None else data_seed,
            val_fraction=base.val_fraction,
            test_fraction=base.test_fraction,
            max_windows=max_windows if max_windows is not None else base.max_windows,
            mask_prob=base.mask_prob,
        )
        _check_dense_fits(arch, data_cfg.seq_len, str(further_train))
        return TrainConfig(
            supernet=arch,
            data=data_cfg,
            space=None,
            strategy="standard",
            init_from=str(Path(further_train).resolve()),
            **options,  # type: ignore[arg-type]
        )
    if space is None:
        raise LatbenchError("--space", "give a space (bert, vit, gpt or a JSON file) or --further-train EXPORT")
    from latbench.space import get_space

    base_space = get_space(space)
    if base_space.family == "vit" and data:
        raise LatbenchError("--data", "vit trains on scikit-learn's digits; --data is for text")
    for p in data:
        if not Path(p).exists():
            raise LatbenchError(str(p), "no such file or directory")
    length = 16 if seq_len is None else seq_len
    data_cfg = DataConfig(
        family=base_space.family,
        paths=tuple(str(p) for p in data),
        seq_len=length,
        seed=seed if data_seed is None else data_seed,  # type: ignore[arg-type]
        max_windows=max_windows,
    )
    fitted = training_space(base_space, length, caps)
    return TrainConfig(
        supernet=fitted.supernet_arch(),
        data=data_cfg,
        space=fitted,
        strategy=strategy or "sandwich",
        **options,  # type: ignore[arg-type]
    )
