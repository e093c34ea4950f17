"""Hugging Face ``transformers`` export: BERT, GPT-NeoX and ViT classes where the architecture fits.

latbench's dense models are built to Hugging Face semantics (BERT's post-LN
encoder and tied MLM decoder; GPT-NeoX/Pythia's parallel residual with rotary
on a quarter of each head and an untied LM head without bias; ViT's pre-LN
blocks with LayerNorm eps 1e-6), so a model whose layers ``transformers`` can
express maps weight for weight. What does not fit, and why:

- layers that differ (``transformers`` configs hold one spec for every layer);
- ``v_dim != qk_dim`` (one ``head_dim`` for Q, K and V);
- ``heads * qk_dim != hidden`` (BERT and GPT-NeoX derive the head width from ``hidden``);
- GPT only: an odd ``int(qk_dim / 4)`` (GPT-NeoX rotates that many dims, latbench one fewer to keep pairs).

Both weight-name generations are known: transformers 5 (``vit.layers.N.attention.q_proj``,
``lm_head``) and 4 (``vit.encoder.layer.N.attention.attention.query``, ``embed_out``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from latbench.checkpoints._deps import require
from latbench.checkpoints.export import CONFIG_FILE, EXPORT_ATOL, ExportResult, _write_config, check_inputs
from latbench.errors import LatbenchError
from latbench.models.blocks import BERT_LN_EPS, GPT_LN_EPS, ROTARY_BASE, ROTARY_PCT, VIT_LN_EPS
from latbench.models.families import TransformerModel
from latbench.space.arch import Arch

__all__ = ["HF_CLASSES", "export_hf", "hf_config", "hf_unfit_reason", "load_hf_as_latbench", "to_hf"]

#: The ``transformers`` class each family exports to.
HF_CLASSES: dict[str, str] = {
    "bert": "BertForMaskedLM",
    "gpt": "GPTNeoXForCausalLM",
    "vit": "ViTForImageClassification",
}


def hf_unfit_reason(arch: Arch) -> str | None:
    """Why ``transformers`` cannot express ``arch`` (one line), or ``None`` when it can."""
    cls = HF_CLASSES[arch.family]
    if not arch.uniform:
        return f"{cls} needs the same spec in every layer; this architecture's layers differ"
    spec = arch.layers[0]
    if spec.v_dim != spec.qk_dim:
        return f"{cls} has one head width for Q, K and V; here qk_dim {spec.qk_dim} != v_dim {spec.v_dim}"
    if spec.qk_size != arch.hidden:
        return (
            f"{cls} derives the head width from hidden; here heads x qk_dim = {spec.heads} x {spec.qk_dim} = "
            f"{spec.qk_size} != hidden {arch.hidden}"
        )
    if arch.family == "gpt" and int(spec.qk_dim * ROTARY_PCT) % 2:
        n = int(spec.qk_dim * ROTARY_PCT)
        return f"GPT-NeoX rotates {n} dims of a {spec.qk_dim}-wide head, latbench rotates {n - 1} (an even count)"
    return None


def hf_config(arch: Arch) -> Any:
    """The ``transformers`` config of ``arch`` (no dropout).

    Raises:
        LatbenchError: The architecture does not fit (:func:`hf_unfit_reason`).
    """
    reason = hf_unfit_reason(arch)
    if reason is not None:
        raise LatbenchError("--format hf", reason)
    tf = require("transformers", "a Hugging Face export")
    spec = arch.layers[0]
    common = {
        "hidden_size": arch.hidden,
        "num_hidden_layers": arch.n_layers,
        "num_attention_heads": spec.heads,
        "intermediate_size": spec.mlp,
        "hidden_act": "gelu",  # exact erf GELU, as latbench's MLP
    }
    if arch.family == "bert":
        return tf.BertConfig(
            vocab_size=arch.vocab_size,
            max_position_embeddings=arch.max_seq_len,
            type_vocab_size=arch.type_vocab_size,
            layer_norm_eps=BERT_LN_EPS,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            tie_word_embeddings=True,
            **common,
        )
    if arch.family == "gpt":
        return tf.GPTNeoXConfig(
            vocab_size=arch.vocab_size,
            max_position_embeddings=arch.max_seq_len,
            rotary_pct=ROTARY_PCT,
            rotary_emb_base=ROTARY_BASE,
            use_parallel_residual=True,
            layer_norm_eps=GPT_LN_EPS,
            attention_dropout=0.0,
            hidden_dropout=0.0,
            attention_bias=True,
            tie_word_embeddings=False,
            **common,
        )
    return tf.ViTConfig(
        image_size=arch.image_size,
        patch_size=arch.patch_size,
        num_channels=arch.in_channels,
        num_labels=arch.num_classes,
        layer_norm_eps=VIT_LN_EPS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        qkv_bias=True,
        **common,
    )


# ----------------------------------------------------------------- names
def _names(arch: Arch) -> list[tuple[str, tuple[str, ...]]]:
    """``(latbench name, candidate HF names)``: transformers 5's name first, then 4's."""
    out: list[tuple[str, tuple[str, ...]]] = []

    def add(lb: str, *hf: str) -> None:
        for suffix in ("weight", "bias"):
            out.append((f"{lb}.{suffix}", tuple(f"{h}.{suffix}" for h in hf)))

    if arch.family == "bert":
        out.append(("embeddings.word.weight", ("bert.embeddings.word_embeddings.weight",)))
        out.append(("embeddings.position.weight", ("bert.embeddings.position_embeddings.weight",)))
        out.append(("embeddings.token_type.weight", ("bert.embeddings.token_type_embeddings.weight",)))
        add("embeddings.norm", "bert.embeddings.LayerNorm")
        for i in range(arch.n_layers):
            b, h = f"blocks.{i}", f"bert.encoder.layer.{i}"
            add(f"{b}.attn.q", f"{h}.attention.self.query")
            add(f"{b}.attn.k", f"{h}.attention.self.key")
            add(f"{b}.attn.v", f"{h}.attention.self.value")
            add(f"{b}.attn.o", f"{h}.attention.output.dense")
            add(f"{b}.norm1", f"{h}.attention.output.LayerNorm")
            add(f"{b}.mlp.fc1", f"{h}.intermediate.dense")
            add(f"{b}.mlp.fc2", f"{h}.output.dense")
            add(f"{b}.norm2", f"{h}.output.LayerNorm")
        add("head.dense", "cls.predictions.transform.dense")
        add("head.norm", "cls.predictions.transform.LayerNorm")
        # The decoder weight is tied to the word embeddings on both sides; its bias is HF's cls.predictions.bias.
        out.append(("head.decoder.bias", ("cls.predictions.bias", "cls.predictions.decoder.bias")))
    elif arch.family == "gpt":
        out.append(("embeddings.weight", ("gpt_neox.embed_in.weight",)))
        for i in range(arch.n_layers):
            b, h = f"blocks.{i}", f"gpt_neox.layers.{i}"
            add(f"{b}.norm1", f"{h}.input_layernorm")
            add(f"{b}.norm2", f"{h}.post_attention_layernorm")
            add(f"{b}.attn.o", f"{h}.attention.dense")
            add(f"{b}.mlp.fc1", f"{h}.mlp.dense_h_to_4h")
            add(f"{b}.mlp.fc2", f"{h}.mlp.dense_4h_to_h")
        add("head.norm", "gpt_neox.final_layer_norm")
        out.append(("head.lm_head.weight", ("lm_head.weight", "embed_out.weight")))
    else:
        add("embeddings.patch", "vit.embeddings.patch_embeddings.projection")
        out.append(("embeddings.cls_token.weight", ("vit.embeddings.cls_token",)))
        out.append(("embeddings.position.weight", ("vit.embeddings.position_embeddings",)))
        for i in range(arch.n_layers):
            b, h5, h4 = f"blocks.{i}", f"vit.layers.{i}", f"vit.encoder.layer.{i}"
            add(f"{b}.norm1", f"{h5}.layernorm_before", f"{h4}.layernorm_before")
            add(f"{b}.norm2", f"{h5}.layernorm_after", f"{h4}.layernorm_after")
            add(f"{b}.attn.q", f"{h5}.attention.q_proj", f"{h4}.attention.attention.query")
            add(f"{b}.attn.k", f"{h5}.attention.k_proj", f"{h4}.attention.attention.key")
            add(f"{b}.attn.v", f"{h5}.attention.v_proj", f"{h4}.attention.attention.value")
            add(f"{b}.attn.o", f"{h5}.attention.o_proj", f"{h4}.attention.output.dense")
            add(f"{b}.mlp.fc1", f"{h5}.mlp.fc1", f"{h4}.intermediate.dense")
            add(f"{b}.mlp.fc2", f"{h5}.mlp.fc2", f"{h4}.output.dense")
        add("head.norm", "vit.layernorm")
        add("head.classifier", "classifier")
    return out


def _pick(candidates: tuple[str, ...], present: dict[str, Tensor], where: str) -> str:
    for name in candidates:
        if name in present:
            return name
    raise LatbenchError(where, f"transformers' model has none of {', '.join(candidates)} (an unknown version?)")


def _qkv_names(i: int) -> tuple[str, str]:
    h = f"gpt_neox.layers.{i}.attention.query_key_value"
    return f"{h}.weight", f"{h}.bias"


def _fuse_qkv(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    # GPT-NeoX's fused rows are head-major: [q_h, k_h, v_h] for each head h.
    parts = [t.reshape(heads, t.shape[0] // heads, *t.shape[1:]) for t in (q, k, v)]
    fused = torch.stack(parts, dim=1)
    return fused.reshape(-1, *q.shape[1:])


def _split_qkv(fused: Tensor, heads: int) -> tuple[Tensor, Tensor, Tensor]:
    grid = fused.reshape(heads, 3, fused.shape[0] // (3 * heads), *fused.shape[1:])
    return tuple(grid[:, j].reshape(-1, *fused.shape[1:]) for j in range(3))  # type: ignore[return-value]


def _latbench_to_hf(arch: Arch, lb: dict[str, Tensor], hf: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for lb_name, candidates in _names(arch):
        name = _pick(candidates, hf, lb_name)
        value = lb[lb_name]
        out[name] = value.reshape(hf[name].shape)  # ViT's [1, H] / [T, H] tables gain a leading 1
    if arch.family == "gpt":
        heads = arch.layers[0].heads
        for i in range(arch.n_layers):
            w, b = _qkv_names(i)
            a = f"blocks.{i}.attn"
            out[w] = _fuse_qkv(lb[f"{a}.q.weight"], lb[f"{a}.k.weight"], lb[f"{a}.v.weight"], heads)
            out[b] = _fuse_qkv(lb[f"{a}.q.bias"], lb[f"{a}.k.bias"], lb[f"{a}.v.bias"], heads)
    return out


def _hf_to_latbench(arch: Arch, hf: dict[str, Tensor], lb: dict[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for lb_name, candidates in _names(arch):
        out[lb_name] = hf[_pick(candidates, hf, lb_name)].reshape(lb[lb_name].shape)
    if arch.family == "bert":
        out["head.decoder.weight"] = out["embeddings.word.weight"]
    if arch.family == "gpt":
        heads = arch.layers[0].heads
        for i in range(arch.n_layers):
            w, b = _qkv_names(i)
            a = f"blocks.{i}.attn"
            for suffix, fused in (("weight", hf[w]), ("bias", hf[b])):
                q, k, v = _split_qkv(fused, heads)
                out[f"{a}.q.{suffix}"], out[f"{a}.k.{suffix}"], out[f"{a}.v.{suffix}"] = q, k, v
    return out


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[Any]:
    tf = require("transformers", "a Hugging Face export")
    level, bars = tf.logging.get_verbosity(), tf.logging.is_progress_bar_enabled()
    # Loading reports, tie notices and progress bars are noise for an exact weight-for-weight mapping.
    tf.logging.set_verbosity_error()
    tf.logging.disable_progress_bar()
    try:
        yield tf
    finally:
        tf.logging.set_verbosity(level)
        if bars:
            tf.logging.enable_progress_bar()


def to_hf(model: TransformerModel) -> Any:
    """A ``transformers`` model (eval mode, CPU, fp32) holding ``model``'s weights.

    Raises:
        LatbenchError: The architecture does not fit (the reason in one line).
        MissingDependencyError: transformers is not installed (extra ``hf``).
    """
    config = hf_config(model.arch)
    with _quiet_transformers() as tf:
        hf_model = getattr(tf, HF_CLASSES[model.arch.family])(config)
    hf_model = hf_model.float().eval()
    hf_state = hf_model.state_dict()
    mapped = _latbench_to_hf(model.arch, {k: v.detach().cpu().float() for k, v in model.state_dict().items()}, hf_state)
    with torch.no_grad():
        for name, value in mapped.items():
            hf_state[name].copy_(value)
    hf_model.tie_weights()
    return hf_model


def export_hf(
    model: TransformerModel,
    out_dir: str | os.PathLike[str],
    *,
    source: dict[str, Any] | None = None,
    verify: bool = True,
) -> ExportResult:
    """Write a ``transformers`` ``save_pretrained`` directory and check it reloads to the same outputs (1e-4).

    The directory is written to a temporary sibling first and each file moved into place.
    """
    hf_model = to_hf(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".hf-export.", dir=out))
    try:
        with _quiet_transformers():
            hf_model.save_pretrained(str(tmp))
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        mode = 0o666 & ~_umask()  # as a plain open() would create them (safetensors writes 0600)
        for name in files:
            os.chmod(tmp / name, mode)
            os.replace(tmp / name, out / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    diff = None
    if verify:
        reloaded = load_hf(out, model.arch)
        inputs = check_inputs(model.arch)
        with torch.no_grad():
            expected = model.eval()(*inputs)
            got = reloaded(*inputs).logits
        diff = float((got - expected).abs().max())
        if not diff <= EXPORT_ATOL:
            raise LatbenchError(str(out), f"transformers' reloaded model differs by {diff:.3g} (> 1e-4)")
    extra: dict[str, Any] = {"hf_class": HF_CLASSES[model.arch.family], "max_abs_diff": diff}
    if source:
        extra["source"] = source
    _write_config(out, "hf", model.arch, extra)
    return ExportResult("hf", out, (*files, CONFIG_FILE), model.arch, diff)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load_hf(path: str | os.PathLike[str], arch: Arch) -> Any:
    """The ``transformers`` model saved in ``path`` (eval mode)."""
    with _quiet_transformers() as tf:
        return getattr(tf, HF_CLASSES[arch.family]).from_pretrained(str(path)).float().eval()


def load_hf_as_latbench(path: str | os.PathLike[str], arch: Arch) -> TransformerModel:
    """A latbench dense model of ``arch`` holding the weights of the ``transformers`` export in ``path``."""
    from latbench.models.build import MODEL_CLASSES

    hf_state = {k: v.detach().float() for k, v in load_hf(path, arch).state_dict().items()}
    with torch.device("meta"):
        model = MODEL_CLASSES[arch.family](arch)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    model.load_state_dict(_hf_to_latbench(arch, hf_state, model.state_dict()))
    model.tie_weights()
    return model.eval()
