"""Export a dense latbench model: safetensors + config JSON (reloadable), ONNX, Hugging Face ``transformers``, LitGPT.

An export directory always holds ``latbench_model.json`` (schema version,
format, the architecture, where the weights came from) beside the format's own
files:

- ``safetensors``: ``model.safetensors``; :func:`load_extracted` rebuilds the
  dense model with bit-identical outputs.
- ``onnx``: ``model.onnx`` (TorchScript exporter, opset 17, dynamic batch and
  sequence axes), checked by ONNX Runtime against torch (max abs diff <= 1e-4).
- ``hf``: a ``transformers`` ``save_pretrained`` directory (``BertForMaskedLM``,
  ``GPTNeoXForCausalLM``, ``ViTForImageClassification``) where the architecture
  fits (see :func:`latbench.checkpoints.hf.hf_unfit_reason`), checked by
  reloading it with ``transformers`` (max abs diff <= 1e-4).
- ``litgpt`` (``gpt`` family): ``lit_model.pth`` + ``model_config.yaml``, the checkpoint directory litgpt
  loads (as whittle writes its sub-networks), where the architecture fits (see
  :func:`latbench.checkpoints.litgpt.litgpt_unfit_reason`), checked by loading it with litgpt's ``GPT``
  (max abs diff <= 1e-4).

Every file is written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from latbench.checkpoints._deps import require
from latbench.errors import LatbenchError
from latbench.io import SCHEMA_VERSION, atomic_write, atomic_write_json, read_json
from latbench.models.families import TransformerModel
from latbench.space.arch import Arch

__all__ = [
    "CONFIG_FILE",
    "FORMATS",
    "ExportResult",
    "export_model",
    "load_extracted",
    "read_export_config",
    "save_safetensors",
]

FORMATS: tuple[str, ...] = ("safetensors", "onnx", "hf", "litgpt")
CONFIG_FILE = "latbench_model.json"
WEIGHTS_FILE = "model.safetensors"
KIND = "latbench-model"
#: Largest output difference an export may show against torch (ONNX Runtime, transformers).
EXPORT_ATOL = 1e-4


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote and how well it reproduces the model.

    Attributes:
        format: ``safetensors``, ``onnx``, ``hf`` or ``litgpt``.
        out_dir: The export directory.
        files: Files written, relative to ``out_dir``.
        max_abs_diff: Largest output difference of the reloaded export against the model (``None``: not checked).
        arch: The exported architecture.
        notes: What a user of the export should know (one line each).
    """

    format: str
    out_dir: Path
    files: tuple[str, ...]
    arch: Arch
    max_abs_diff: float | None = None
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "out_dir": str(self.out_dir),
            "files": list(self.files),
            "arch": self.arch.to_dict(),
            "max_abs_diff": self.max_abs_diff,
            "notes": list(self.notes),
        }


def _tied_names(model: torch.nn.Module) -> dict[str, str]:
    """``{alias: first name}`` for parameters that share one tensor (BERT's decoder and word embeddings)."""
    first: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        key = id(tensor)
        if key in first:
            tied[name] = first[key]
        else:
            first[key] = name
    return tied


def _write_config(out_dir: Path, fmt: str, arch: Arch, extra: dict[str, Any] | None = None) -> None:
    config = {"schema_version": SCHEMA_VERSION, "kind": KIND, "format": fmt, "arch": arch.to_dict(), **(extra or {})}
    atomic_write_json(out_dir / CONFIG_FILE, config)


def save_safetensors(
    model: TransformerModel, out_dir: str | os.PathLike[str], source: dict[str, Any] | None = None
) -> ExportResult:
    """Write ``model``'s weights (fp32 as they are) to ``out_dir/model.safetensors`` and its config JSON.

    Tied parameters are stored once and re-tied on load.
    """
    st = require("safetensors.torch", "a safetensors export")
    out = Path(out_dir)
    tied = _tied_names(model)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in tied}
    atomic_write(out / WEIGHTS_FILE, lambda tmp: st.save_file(tensors, str(tmp), metadata={"format": "pt"}))
    extra = {"weights": WEIGHTS_FILE, "tied": tied, "dtype": str(next(model.parameters()).dtype).replace("torch.", "")}
    if source:
        extra["source"] = source
    _write_config(out, "safetensors", model.arch, extra)
    return ExportResult("safetensors", out, (WEIGHTS_FILE, CONFIG_FILE), model.arch)


def read_export_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``latbench_model.json`` of an export directory (``arch`` parsed to an :class:`Arch`)."""
    p = Path(path)
    file = p / CONFIG_FILE if p.is_dir() else p
    if p.is_dir() and not file.exists():
        raise LatbenchError(str(p), f"not a latbench export (no {CONFIG_FILE})")
    data = read_json(file)
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise LatbenchError(str(file), f"not a latbench model config (expected kind {KIND!r})")
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise LatbenchError(str(file), f"schema_version {version!r} is not supported (expected {SCHEMA_VERSION})")
    if data.get("format") not in FORMATS:
        raise LatbenchError(str(file), f"unknown format {data.get('format')!r}")
    out = dict(data)
    out["arch"] = Arch.from_dict(data.get("arch"), f"{file}: arch")
    return out


def load_extracted(path: str | os.PathLike[str]) -> TransformerModel:
    """The dense model of a ``safetensors``, ``hf`` or ``litgpt`` export directory, in eval mode on the CPU.

    A ``safetensors`` export gives bit-identical outputs to the exported model; an ``hf`` export is
    mapped back from its ``transformers`` weights, a ``litgpt`` one from its ``lit_model.pth`` (without
    litgpt).

    Raises:
        LatbenchError: Not an export, an ONNX export (not reloadable as torch), or weights that do not
            match the architecture (naming the first mismatch).
    """
    from latbench.models.build import MODEL_CLASSES

    p = Path(path)
    config = read_export_config(p)
    arch: Arch = config["arch"]
    if config["format"] == "hf":
        from latbench.checkpoints.hf import load_hf_as_latbench

        return load_hf_as_latbench(p, arch)
    if config["format"] == "litgpt":
        from latbench.checkpoints.litgpt import QKV_LAYOUTS, load_litgpt_as_latbench

        layout = config.get("qkv_layout", "grouped")
        if layout not in QKV_LAYOUTS:
            raise LatbenchError(str(p / CONFIG_FILE), f"unknown qkv_layout {layout!r}")
        return load_litgpt_as_latbench(p, arch, layout)
    if config["format"] != "safetensors":
        raise LatbenchError(str(p), f"a {config['format']} export cannot be loaded as a torch model")
    st = require("safetensors.torch", "loading a safetensors export")
    weights = p / str(config.get("weights", WEIGHTS_FILE))
    if not weights.is_file():
        raise LatbenchError(str(weights), "no such file")
    try:
        tensors = st.load_file(str(weights))
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise LatbenchError(str(weights), f"unreadable safetensors file ({exc})") from None
    tied = config.get("tied", {})
    if not isinstance(tied, dict):
        raise LatbenchError(str(p / CONFIG_FILE), "'tied' must be an object")
    with torch.device("meta"):
        model = MODEL_CLASSES[arch.family](arch)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    expected = model.state_dict()
    for alias, name in tied.items():
        if name in tensors:
            tensors[alias] = tensors[name]
    for name, ref in expected.items():
        if name not in tensors:
            raise LatbenchError(str(weights), f"missing tensor {name!r}")
        if tuple(tensors[name].shape) != tuple(ref.shape):
            raise LatbenchError(
                str(weights), f"{name} has shape {tuple(tensors[name].shape)}, the arch needs {tuple(ref.shape)}"
            )
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise LatbenchError(str(weights), f"unexpected tensor {unknown[0]!r}")
    model.load_state_dict(tensors)
    model.tie_weights()
    return model.eval()


def export_model(
    model: TransformerModel,
    out_dir: str | os.PathLike[str],
    fmt: str = "safetensors",
    *,
    source: dict[str, Any] | None = None,
    verify: bool = True,
) -> ExportResult:
    """Export the dense ``model`` to ``out_dir`` in ``fmt`` and (``verify``) check the reloaded export.

    Raises:
        LatbenchError: Unknown format; for ``hf`` or ``litgpt`` an architecture that ``transformers`` or
            litgpt cannot express (the one-line reason); an export whose outputs differ by more than 1e-4.
        MissingDependencyError: The format's library is not installed (naming the extra).
    """
    if fmt not in FORMATS:
        raise LatbenchError("--format", f"unknown format {fmt!r} (expected {', '.join(FORMATS)})")
    _check_out_dir(Path(out_dir), fmt)
    model = model.eval()
    if fmt == "safetensors":
        result = save_safetensors(model, out_dir, source)
        if verify:
            diff = _max_diff(model, load_extracted(out_dir))
            if diff != 0.0:
                raise LatbenchError(str(out_dir), f"the reloaded export differs from the model by {diff:.3g}")
            result = ExportResult(result.format, result.out_dir, result.files, result.arch, diff)
        return result
    if fmt == "onnx":
        from latbench.checkpoints.onnx import export_onnx

        return export_onnx(model, out_dir, source=source, verify=verify)
    if fmt == "litgpt":
        from latbench.checkpoints.litgpt import export_litgpt

        return export_litgpt(model, out_dir, source=source, verify=verify)
    from latbench.checkpoints.hf import export_hf

    return export_hf(model, out_dir, source=source, verify=verify)


def _check_out_dir(out: Path, fmt: str) -> None:
    """Refuse a directory that already holds an export of another format.

    Writing there would leave the other export's files beside the new ones (an ``hf`` directory keeping a
    stale ``model.onnx``), and a reader could not tell which files are current. The same format is
    overwritten in place: every file it writes is replaced atomically.
    """
    config = out / CONFIG_FILE
    if not config.is_file():
        return
    try:
        held = read_json(config).get("format")
    except (LatbenchError, AttributeError):
        held = None
    if held != fmt:
        what = f"a {held} export" if isinstance(held, str) else f"a {CONFIG_FILE} this export did not write"
        raise LatbenchError(str(out), f"already holds {what}; remove it or choose another --out for the {fmt} export")


def check_inputs(arch: Arch, batch: int = 2, seq_len: int | None = None, seed: int = 123) -> tuple[torch.Tensor, ...]:
    """Inputs an export is checked with: a small batch, at most 16 tokens for text."""
    from latbench.models.build import example_inputs

    length = None if arch.family == "vit" else min(16, arch.max_seq_len if seq_len is None else seq_len)  # type: ignore[type-var]
    return example_inputs(arch, batch, length, seed=seed)


@torch.no_grad()
def _max_diff(a: torch.nn.Module, b: torch.nn.Module) -> float:
    inputs = check_inputs(a.arch)  # type: ignore[arg-type]
    return float((a(*inputs) - b(*inputs)).abs().max())
