"""LitGPT export of a dense ``gpt`` model: a checkpoint directory that ``litgpt`` loads, as whittle writes its
sub-networks (``lit_model.pth`` + ``model_config.yaml``).

latbench's ``gpt`` family is GPT-NeoX/Pythia (parallel residual, LayerNorm eps 1e-5, rotary on a quarter of
each head, exact GELU MLP with biases, untied LM head without bias), which is litgpt's ``GptNeoxMLP`` /
``LayerNorm`` / ``parallel_residual`` configuration. The weights map as litgpt's own
``convert_hf_checkpoint.copy_weights_gpt_neox`` maps Pythia:

=========================  ==============================
latbench                   litgpt
=========================  ==============================
``embeddings``             ``transformer.wte``
``blocks.i.norm1``         ``transformer.h.i.norm_1``
``blocks.i.norm2``         ``transformer.h.i.norm_2``
``blocks.i.attn.{q,k,v}``  ``transformer.h.i.attn.qkv`` (fused)
``blocks.i.attn.o``        ``transformer.h.i.attn.proj``
``blocks.i.mlp.fc1``       ``transformer.h.i.mlp.fc``
``blocks.i.mlp.fc2``       ``transformer.h.i.mlp.proj``
``head.norm``              ``transformer.ln_f``
``head.lm_head``           ``lm_head``
=========================  ==============================

The fused ``qkv`` rows are ``[all q heads, all k heads, all v heads]`` (litgpt since it dropped the
interleaved placement, Lightning-AI/litgpt#1013; ``convert_hf_checkpoint.qkv_reassemble`` exists from then
on); an older litgpt wants ``[q_h, k_h, v_h]`` per head, which is written when that function is missing. The
export records which layout it wrote, and is always checked by loading it with litgpt.

Where litgpt fits better than ``transformers``: its config has an explicit ``head_size``, so
``heads x qk_dim`` need not equal ``hidden``; and ``rotary_percentage`` is chosen so that litgpt rotates
exactly latbench's even count of dims (``int(qk_dim / 4)`` rounded down to even). What does not fit:

- layers that differ (litgpt's ``Config`` holds one ``n_head``/``head_size``/``intermediate_size``);
- ``v_dim != qk_dim`` (one ``head_size`` for Q, K and V);
- a family other than ``gpt``.

The vocabulary is not padded (``padded_vocab_size = vocab_size``), so the logits have the same shape. The
directory holds no tokenizer: the super-nets here read bytes (:class:`~latbench.supernet.data.ByteTokenizer`),
which litgpt's ``Tokenizer`` cannot express; load the model with ``litgpt.GPT`` / ``Config.from_file``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latbench.checkpoints._deps import require
from latbench.checkpoints.export import CONFIG_FILE, EXPORT_ATOL, ExportResult, _write_config, check_inputs
from latbench.errors import LatbenchError
from latbench.io import atomic_write, atomic_write_text
from latbench.models.blocks import GPT_LN_EPS, ROTARY_BASE, rotary_ndims
from latbench.models.families import TransformerModel
from latbench.space.arch import Arch

__all__ = [
    "LITGPT_CONFIG_FILE",
    "LITGPT_WEIGHTS_FILE",
    "QKV_LAYOUTS",
    "export_litgpt",
    "litgpt_config_dict",
    "litgpt_qkv_layout",
    "litgpt_state_dict",
    "litgpt_unfit_reason",
    "litgpt_version",
    "load_litgpt",
    "load_litgpt_as_latbench",
    "rotary_percentage",
]

LITGPT_WEIGHTS_FILE = "lit_model.pth"
LITGPT_CONFIG_FILE = "model_config.yaml"
#: ``grouped``: ``[q heads, k heads, v heads]`` (current litgpt); ``interleaved``: ``[q_h, k_h, v_h]`` per head.
QKV_LAYOUTS: tuple[str, ...] = ("grouped", "interleaved")


def litgpt_unfit_reason(arch: Arch) -> str | None:
    """Why litgpt's ``GPT`` cannot express ``arch`` (one line), or ``None`` when it can."""
    if arch.family != "gpt":
        return f"the LitGPT export is for the gpt family (GPT-NeoX-like causal LMs), not {arch.family}"
    if not arch.uniform:
        first = arch.layers[0]
        i, other = next((i, s) for i, s in enumerate(arch.layers) if s != first)
        return (
            f"litgpt's Config holds one n_head/head_size/intermediate_size for every layer; here layer {i} "
            f"({other.heads}x{other.qk_dim}/{other.v_dim}, mlp {other.mlp}) differs from layer 0 "
            f"({first.heads}x{first.qk_dim}/{first.v_dim}, mlp {first.mlp})"
        )
    spec = arch.layers[0]
    if spec.v_dim != spec.qk_dim:
        return f"litgpt has one head_size for Q, K and V; here qk_dim {spec.qk_dim} != v_dim {spec.v_dim}"
    return None


def rotary_percentage(qk_dim: int) -> float:
    """litgpt's ``rotary_percentage`` for which ``int(p * head_size)`` is latbench's rotated dims.

    Pythia's 0.25 when ``int(qk_dim / 4)`` is even; otherwise the smallest float ``p`` with
    ``int(p * qk_dim) == rotary_ndims(qk_dim)`` (litgpt rotates halves, so the count must be even).
    """
    n = rotary_ndims(qk_dim)
    if int(0.25 * qk_dim) == n:
        return 0.25
    p = n / qk_dim
    while int(p * qk_dim) < n:  # n / qk_dim * qk_dim may round to just below n
        p = math.nextafter(p, 1.0)
    return p


def litgpt_config_dict(arch: Arch, name: str = "latbench-gpt") -> dict[str, Any]:
    """The ``model_config.yaml`` fields of ``arch`` (the rest keep litgpt's defaults).

    Raises:
        LatbenchError: The architecture does not fit (:func:`litgpt_unfit_reason`).
    """
    reason = litgpt_unfit_reason(arch)
    if reason is not None:
        raise LatbenchError("--format litgpt", reason)
    spec = arch.layers[0]
    return {
        "name": name,
        "block_size": int(arch.max_seq_len),  # type: ignore[arg-type]
        "vocab_size": int(arch.vocab_size),  # type: ignore[arg-type]
        "padded_vocab_size": int(arch.vocab_size),  # type: ignore[arg-type]
        "padding_multiple": 1,
        "n_layer": arch.n_layers,
        "n_embd": arch.hidden,
        "n_head": spec.heads,
        "head_size": spec.qk_dim,
        "n_query_groups": spec.heads,
        "rotary_percentage": rotary_percentage(spec.qk_dim),
        "rope_base": int(ROTARY_BASE),
        "parallel_residual": True,
        "shared_attention_norm": False,
        "bias": True,
        "lm_head_bias": False,
        "norm_class_name": "LayerNorm",
        "norm_eps": GPT_LN_EPS,
        "mlp_class_name": "GptNeoxMLP",
        "intermediate_size": spec.mlp,
        "gelu_approximate": "none",  # exact erf GELU, as latbench's MLP
    }


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        # YAML 1.1 (PyYAML) reads "1e-05" as a string: a float needs a dot before its exponent.
        if "." not in text and "e" in text:
            mantissa, exp = text.split("e")
            text = f"{mantissa}.0e{exp}"
        return text
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"  # single-quoted: no escapes, nothing read as null or bool
    raise LatbenchError("litgpt config", f"cannot write {value!r} as a YAML scalar")


def _config_yaml(config: dict[str, Any]) -> str:
    return "".join(f"{key}: {_yaml_scalar(value)}\n" for key, value in config.items())


def litgpt_qkv_layout() -> str:
    """The fused-qkv layout of the installed litgpt (``grouped`` or ``interleaved``)."""
    conv = require("litgpt.scripts.convert_hf_checkpoint", "a LitGPT export")
    return "grouped" if hasattr(conv, "qkv_reassemble") else "interleaved"


def _fuse(q: Tensor, k: Tensor, v: Tensor, heads: int, layout: str) -> Tensor:
    if layout == "grouped":
        return torch.cat((q, k, v), dim=0)
    parts = [t.reshape(heads, t.shape[0] // heads, *t.shape[1:]) for t in (q, k, v)]
    return torch.stack(parts, dim=1).reshape(-1, *q.shape[1:])


def _split(fused: Tensor, heads: int, layout: str) -> tuple[Tensor, Tensor, Tensor]:
    if layout == "grouped":
        return tuple(fused.chunk(3, dim=0))  # type: ignore[return-value]
    grid = fused.reshape(heads, 3, fused.shape[0] // (3 * heads), *fused.shape[1:])
    return tuple(grid[:, j].reshape(-1, *fused.shape[1:]) for j in range(3))  # type: ignore[return-value]


def _pairs(arch: Arch) -> list[tuple[str, str]]:
    """``(latbench name, litgpt name)`` of every tensor but the fused qkv."""
    out = [("embeddings.weight", "transformer.wte.weight")]
    for i in range(arch.n_layers):
        b, h = f"blocks.{i}", f"transformer.h.{i}"
        for lb, lit in (
            ("norm1", "norm_1"),
            ("norm2", "norm_2"),
            ("attn.o", "attn.proj"),
            ("mlp.fc1", "mlp.fc"),
            ("mlp.fc2", "mlp.proj"),
        ):
            out += [(f"{b}.{lb}.weight", f"{h}.{lit}.weight"), (f"{b}.{lb}.bias", f"{h}.{lit}.bias")]
    out += [
        ("head.norm.weight", "transformer.ln_f.weight"),
        ("head.norm.bias", "transformer.ln_f.bias"),
        ("head.lm_head.weight", "lm_head.weight"),
    ]
    return out


def litgpt_state_dict(model: TransformerModel, layout: str = "grouped") -> dict[str, Tensor]:
    """``model``'s weights under litgpt's names (fp32 copies, CPU), qkv fused in ``layout``.

    Raises:
        LatbenchError: The architecture does not fit, or an unknown layout.
    """
    arch = model.arch
    reason = litgpt_unfit_reason(arch)
    if reason is not None:
        raise LatbenchError("--format litgpt", reason)
    if layout not in QKV_LAYOUTS:
        raise LatbenchError("layout", f"expected one of {', '.join(QKV_LAYOUTS)}, got {layout!r}")
    lb = {k: v.detach().cpu().float().clone() for k, v in model.state_dict().items()}
    out = {lit: lb[name] for name, lit in _pairs(arch)}
    heads = arch.layers[0].heads
    for i in range(arch.n_layers):
        a = f"blocks.{i}.attn"
        for suffix in ("weight", "bias"):
            q, k, v = (lb[f"{a}.{x}.{suffix}"] for x in "qkv")
            out[f"transformer.h.{i}.attn.qkv.{suffix}"] = _fuse(q, k, v, heads, layout)
    return out


def load_litgpt(path: str | os.PathLike[str]) -> Any:
    """The litgpt ``GPT`` of a LitGPT checkpoint directory (``Config.from_file`` + ``lit_model.pth``), eval, CPU.

    Raises:
        MissingDependencyError: litgpt is not installed (extra ``litgpt``).
    """
    require("litgpt", "loading a LitGPT checkpoint")
    from litgpt.config import Config
    from litgpt.model import GPT

    p = Path(path)
    config = Config.from_file(p / LITGPT_CONFIG_FILE)
    model = GPT(config)
    state = torch.load(p / LITGPT_WEIGHTS_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state.get("model", state))  # litgpt's load_checkpoint accepts both
    return model.eval()


def export_litgpt(
    model: TransformerModel,
    out_dir: str | os.PathLike[str],
    *,
    source: dict[str, Any] | None = None,
    verify: bool = True,
) -> ExportResult:
    """Write a LitGPT checkpoint directory for the dense ``gpt`` model and check litgpt reloads it (1e-4).

    Writes ``lit_model.pth`` (the state dict, as whittle and ``litgpt convert_to_litgpt`` do),
    ``model_config.yaml`` and ``latbench_model.json``.

    Raises:
        LatbenchError: The architecture does not fit (one line saying why); litgpt's outputs differ.
        MissingDependencyError: litgpt is not installed (extra ``litgpt``).
    """
    config = litgpt_config_dict(model.arch)
    layout = litgpt_qkv_layout()
    lit = litgpt_version()
    state = litgpt_state_dict(model, layout)
    out = Path(out_dir)
    atomic_write(out / LITGPT_WEIGHTS_FILE, lambda tmp: torch.save(state, tmp))
    atomic_write_text(out / LITGPT_CONFIG_FILE, _config_yaml(config))
    diff = None
    if verify:
        reloaded = load_litgpt(out)
        inputs = check_inputs(model.arch)
        with torch.no_grad():
            diff = float((reloaded(*inputs) - model.eval()(*inputs)).abs().max())
        if not diff <= EXPORT_ATOL:
            raise LatbenchError(str(out), f"litgpt's reloaded model differs by {diff:.3g} (> 1e-4)")
    extra: dict[str, Any] = {
        "litgpt_version": lit,
        "weights": LITGPT_WEIGHTS_FILE,
        "litgpt_config": LITGPT_CONFIG_FILE,
        "qkv_layout": layout,
        "max_abs_diff": diff,
    }
    if source:
        extra["source"] = source
    _write_config(out, "litgpt", model.arch, extra)
    notes = ("no tokenizer: the model reads byte tokens; load it with litgpt.GPT and Config.from_file",)
    return ExportResult("litgpt", out, (LITGPT_WEIGHTS_FILE, LITGPT_CONFIG_FILE, CONFIG_FILE), model.arch, diff, notes)


def litgpt_version() -> str:
    """The installed litgpt's version (importing it, or the one-line missing-extra error)."""
    from importlib.metadata import PackageNotFoundError, version

    require("litgpt.model", "a LitGPT export")
    try:
        return version("litgpt")
    except PackageNotFoundError:  # importable from a checkout without metadata
        return "unknown"


def load_litgpt_as_latbench(path: str | os.PathLike[str], arch: Arch, layout: str = "grouped") -> TransformerModel:
    """A latbench dense model of ``arch`` holding the weights of the LitGPT export in ``path`` (no litgpt needed).

    Raises:
        LatbenchError: A missing or unreadable ``lit_model.pth``, or tensors that do not fit ``arch``.
    """
    from latbench.models.build import MODEL_CLASSES

    reason = litgpt_unfit_reason(arch)
    if reason is not None:
        raise LatbenchError(str(path), reason)
    file = Path(path) / LITGPT_WEIGHTS_FILE
    if not file.is_file():
        raise LatbenchError(str(file), "no such file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip errors of a foreign or truncated file
        raise LatbenchError(str(file), f"unreadable torch checkpoint ({type(exc).__name__})") from None
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise LatbenchError(str(file), "not a state dict")
    with torch.device("meta"):
        model = MODEL_CLASSES["gpt"](arch)
    model = model.to_empty(device="cpu")
    expected = model.state_dict()
    heads = arch.layers[0].heads
    mapped: dict[str, Tensor] = {}
    try:
        for name, lit in _pairs(arch):
            mapped[name] = state[lit]
        for i in range(arch.n_layers):
            for suffix in ("weight", "bias"):
                fused = state[f"transformer.h.{i}.attn.qkv.{suffix}"]
                q, k, v = _split(fused, heads, layout)
                for x, t in zip("qkv", (q, k, v)):
                    mapped[f"blocks.{i}.attn.{x}.{suffix}"] = t
    except KeyError as exc:
        raise LatbenchError(str(file), f"missing tensor {exc.args[0]!r}") from None
    for name, ref in expected.items():
        if tuple(mapped[name].shape) != tuple(ref.shape):
            raise LatbenchError(
                str(file), f"{name} has shape {tuple(mapped[name].shape)}, the arch needs {tuple(ref.shape)}"
            )
    model.load_state_dict(mapped)
    return model.eval()
