"""Model files and run checkpoints: written atomically, versioned, validated on read.

- A **model file** (``format: latbench-model``) holds a dense family model: its
  architecture (canonical :meth:`Arch.to_dict`) and its ``state_dict``.
- A **run checkpoint** (``format: latbench-run``) holds what a training or pruning
  run needs to continue exactly: the step, the model's and the optimiser's state,
  and the pruner's (masks, accumulated importance, counters).

Both are ``torch.save`` files of plain containers and tensors, read back with
``weights_only=True`` (no code is unpickled).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.errors import LatbenchError
from latbench.io import atomic_write
from latbench.space.arch import Arch

__all__ = ["MODEL_FORMAT", "RUN_FORMAT", "load_model", "load_run", "save_model", "save_run"]

SCHEMA_VERSION = 1
MODEL_FORMAT = "latbench-model"
RUN_FORMAT = "latbench-run"


def _save(path: str | os.PathLike[str], obj: dict[str, Any]) -> Path:
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _load(path: str | os.PathLike[str], fmt: str) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise LatbenchError(str(p), "no such file")
    if p.is_dir():
        raise LatbenchError(str(p), "is a directory, expected a file")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; one line is what the user needs
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LatbenchError(str(p), f"not a readable torch checkpoint ({msg[:120]})") from None
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        raise LatbenchError(str(p), f'not a {fmt} file (no "format": "{fmt}")')
    version = obj.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise LatbenchError(str(p), "missing or bad schema_version")
    if version > SCHEMA_VERSION:
        raise LatbenchError(str(p), f"schema_version {version} is newer than this latbench reads ({SCHEMA_VERSION})")
    return obj


def save_model(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any] | None = None) -> Path:
    """Write a dense family model (architecture + weights) atomically.

    Args:
        path: Destination.
        model: A latbench family model (has ``.arch``).
        meta: JSON-like facts to keep with it (accuracy, where it came from ...).
    """
    arch = getattr(model, "arch", None)
    if not isinstance(arch, Arch):
        raise LatbenchError("save_model", f"{type(model).__name__} is not a latbench family model")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return _save(
        path,
        {
            "format": MODEL_FORMAT,
            "schema_version": SCHEMA_VERSION,
            "arch": arch.to_dict(),
            "state_dict": state,
            "meta": dict(meta or {}),
        },
    )


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Read a model file: the dense model (CPU, fp32, eval) and its meta.

    Raises:
        LatbenchError: Not a model file, a bad architecture, or weights that do not fit it.
    """
    from latbench.models.build import build_model

    obj = _load(path, MODEL_FORMAT)
    arch = Arch.from_dict(obj.get("arch"), f"{path}: arch")
    model = build_model(arch)
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise LatbenchError(str(path), "state_dict: expected a mapping of tensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise LatbenchError(str(path), f"weights do not fit the architecture ({' '.join(first[:2])[:160]})") from None
    meta = obj.get("meta") if isinstance(obj.get("meta"), dict) else {}
    return model.eval(), meta


def save_run(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write a run checkpoint atomically (a run killed mid-write leaves the previous one intact)."""
    return _save(path, {"format": RUN_FORMAT, "schema_version": SCHEMA_VERSION, **state})


def load_run(path: str | os.PathLike[str], kind: str | None = None) -> dict[str, Any]:
    """Read a run checkpoint; with ``kind``, refuse one of another kind (``prune``, ``finetune``, ``train``)."""
    obj = _load(path, RUN_FORMAT)
    if kind is not None and obj.get("kind") != kind:
        raise LatbenchError(str(path), f"a {obj.get('kind')!r} checkpoint, expected {kind!r}")
    return obj
