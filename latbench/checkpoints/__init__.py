"""Exported models and compact checkpoints.

- :mod:`latbench.checkpoints.export`: a dense model to safetensors + config JSON (and back with
  :func:`load_extracted`), to ONNX (checked by ONNX Runtime), to Hugging Face ``transformers`` where the
  architecture fits (:mod:`latbench.checkpoints.hf`), to a LitGPT checkpoint directory for the ``gpt`` family
  (:mod:`latbench.checkpoints.litgpt`).
- :mod:`latbench.checkpoints.compact`: per-channel int8 checkpoints with scales, full-precision patterns,
  16-bit small tensors, optional delta against a reference.

Names are imported on first use (PEP 562): importing this package loads neither torch nor an optional library.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "latbench.checkpoints.export": (
        "FORMATS",
        "ExportResult",
        "export_model",
        "load_extracted",
        "read_export_config",
        "save_safetensors",
    ),
    "latbench.checkpoints.onnx": ("export_onnx", "run_onnx"),
    "latbench.checkpoints.hf": ("export_hf", "hf_unfit_reason", "load_hf_as_latbench", "to_hf"),
    "latbench.checkpoints.litgpt": ("export_litgpt", "litgpt_unfit_reason", "load_litgpt", "load_litgpt_as_latbench"),
    "latbench.checkpoints.compact": (
        "CompressConfig",
        "CompressReport",
        "compress_checkpoint",
        "compress_file",
        "load_compressed",
    ),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'latbench.checkpoints' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
