"""Lazy imports of optional libraries with a one-line message naming the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from latbench.errors import MissingDependencyError

#: The extra of pyproject.toml that installs each optional module.
EXTRAS: dict[str, str] = {
    "safetensors": "hf",
    "safetensors.torch": "hf",
    "transformers": "hf",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "litgpt": "litgpt",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        extra = EXTRAS.get(module, EXTRAS.get(top, top))
        raise MissingDependencyError(
            "", f"{purpose} needs the {top} package (pip install 'latbench[{extra}]')"
        ) from None
