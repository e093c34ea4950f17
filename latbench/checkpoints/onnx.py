"""ONNX export of a dense latbench model, checked by ONNX Runtime."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from latbench.checkpoints._deps import require
from latbench.checkpoints.export import EXPORT_ATOL, ExportResult, _write_config, check_inputs
from latbench.errors import LatbenchError
from latbench.io import atomic_write
from latbench.models.families import TransformerModel

__all__ = ["ONNX_FILE", "export_onnx", "run_onnx"]

ONNX_FILE = "model.onnx"
OPSET = 17


def _input_name(model: TransformerModel) -> str:
    return "pixel_values" if model.arch.family == "vit" else "input_ids"


def export_onnx(
    model: TransformerModel,
    out_dir: str | os.PathLike[str],
    *,
    source: dict[str, Any] | None = None,
    verify: bool = True,
) -> ExportResult:
    """Write ``out_dir/model.onnx`` (dynamic batch, and sequence for text) and check it with ONNX Runtime.

    Raises:
        LatbenchError: ONNX Runtime's outputs differ from torch's by more than 1e-4.
        MissingDependencyError: onnx or onnxruntime is missing (extra ``onnx``).
    """
    require("onnx", "an ONNX export")
    if verify:  # before anything is written: a missing checker must not leave a model without its config
        require("onnxruntime", "checking an ONNX export")
    out = Path(out_dir)
    name = _input_name(model)
    dynamic = {0: "batch"} if model.arch.family == "vit" else {0: "batch", 1: "sequence"}
    inputs = check_inputs(model.arch)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation; the dynamo one needs onnxscript.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                inputs,
                str(tmp),
                dynamo=False,
                opset_version=OPSET,
                input_names=[name],
                output_names=["logits"],
                dynamic_axes={name: dynamic, "logits": {0: "batch"}},
            )

    atomic_write(out / ONNX_FILE, write)
    diff = None
    if verify:
        # Another batch (and length) than exported: the dynamic axes must really be dynamic.
        check = check_inputs(model.arch, batch=3, seq_len=None if model.arch.family == "vit" else 11, seed=7)
        try:
            (got,) = run_onnx(out / ONNX_FILE, check)
            with torch.no_grad():
                expected = model(*check)
            diff = float((torch.from_numpy(got) - expected).abs().max())
            if not diff <= EXPORT_ATOL:
                raise LatbenchError(str(out / ONNX_FILE), f"ONNX Runtime differs from torch by {diff:.3g} (> 1e-4)")
        except BaseException:
            (out / ONNX_FILE).unlink(missing_ok=True)  # no unchecked model left without its config
            raise
    extra: dict[str, Any] = {"onnx": ONNX_FILE, "input_name": name, "opset": OPSET, "max_abs_diff": diff}
    if source:
        extra["source"] = source
    from latbench.checkpoints.export import CONFIG_FILE

    _write_config(out, "onnx", model.arch, extra)
    return ExportResult("onnx", out, (ONNX_FILE, CONFIG_FILE), model.arch, diff)


def run_onnx(path: str | os.PathLike[str], inputs: tuple[torch.Tensor, ...]) -> list[Any]:
    """Run an exported model in ONNX Runtime on the CPU; returns its outputs as numpy arrays."""
    ort = require("onnxruntime", "checking an ONNX export")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: x.cpu().numpy() for n, x in zip(names, inputs)})
