"""Exported models and compact checkpoints.

- :mod:`latbench.checkpoints.export`: a dense model to safetensors + config JSON (and back with
  :func:`~latbench.checkpoints.export.load_extracted`), to ONNX (checked by ONNX Runtime), to Hugging Face
  ``transformers`` where the architecture fits.
- :mod:`latbench.checkpoints.compact`: per-channel int8 checkpoints with scales, full-precision patterns,
  optional delta against a reference.

Importing this package loads neither torch nor an optional library.
"""

from __future__ import annotations
