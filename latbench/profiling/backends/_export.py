"""ONNX export shared by the onnxruntime and tensorrt backends (imports torch only).

The pitfall MEASUREMENT.md names: the dynamo exporter fixes a dimension whose
example size is 1, so a dynamic batch axis is exported from inputs of batch >= 2
(the example inputs repeated along the batch axis), whichever exporter runs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from latbench.errors import LatbenchError
from latbench.profiling.base import NamedInputs, first_line, raise_missing


@dataclass(frozen=True)
class OnnxModel:
    """An ONNX file ready for a runtime.

    Attributes:
        path: The file.
        input_names: Graph input names, in the order of the example inputs.
        export_ms: Export wall time (0 for a file the user gave).
        exporter: ``"torchscript"``, ``"dynamo"`` or ``"file"``.
        dynamic_batch: Whether the batch axis of every input is dynamic.
    """

    path: Path
    input_names: tuple[str, ...]
    export_ms: float
    exporter: str
    dynamic_batch: bool

    def sha256(self) -> str:
        """Hash of the file's bytes (keys the TensorRT engine cache)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()


class _Positional(torch.nn.Module):
    """Calls a module that takes keyword arguments with positional ones (exporters trace positions)."""

    def __init__(self, module: torch.nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.names = names

    def forward(self, *tensors: torch.Tensor) -> Any:
        return self.module(**dict(zip(self.names, tensors)))


def export_inputs(tensors: tuple[torch.Tensor, ...], dynamic_batch: bool) -> tuple[torch.Tensor, ...]:
    """The tensors to export with: repeated to batch 2 when the batch axis is dynamic and the batch is 1."""
    if not dynamic_batch or tensors[0].shape[0] >= 2:
        return tensors
    return tuple(torch.cat([t, t], dim=0) for t in tensors)


def export_onnx(
    module: torch.nn.Module,
    inputs: NamedInputs,
    path: Path,
    *,
    backend: str,
    opset: int,
    dynamic_batch: bool,
    exporter: str = "torchscript",
) -> OnnxModel:
    """Export ``module`` called on ``inputs`` to ``path`` with ``torch.onnx.export``.

    Raises:
        MissingDependencyError: ``exporter='dynamo'`` without the onnxscript package.
        LatbenchError: the export failed (the exporter's message, on one line).
    """
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise_missing(backend, "the onnxscript package for the dynamo exporter (pip install onnxscript)")
    runner = _Positional(module, inputs.names) if inputs.as_kwargs else module
    args = export_inputs(inputs.tensors, dynamic_batch)
    dynamic_axes = {name: {0: "batch"} for name in inputs.names} if dynamic_batch else None
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            # The TorchScript exporter announces its deprecation on every call; the choice is recorded.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                runner,
                args,
                str(path),
                input_names=list(inputs.names),
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                dynamo=exporter == "dynamo",
                do_constant_folding=True,
            )
    except Exception as exc:
        what = f"torch.onnx.export ({exporter}) failed: {first_line(exc)}"
        raise LatbenchError(f"backend '{backend}'", what) from exc
    export_ms = (time.perf_counter() - t0) * 1e3
    return OnnxModel(Path(path), inputs.names, export_ms, exporter, dynamic_batch)


def onnx_file(path: Any, inputs: NamedInputs) -> OnnxModel:
    """A user's ONNX file as an :class:`OnnxModel` (inputs are matched to its graph by name, or by position)."""
    p = Path(path)
    if not p.is_file():
        raise LatbenchError(str(p), "no such file")
    return OnnxModel(p, inputs.names, 0.0, "file", dynamic_batch=False)
