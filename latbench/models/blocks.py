"""Transformer blocks of the three families, built from plain or elastic torch layers.

A block is built from a :class:`LayerKit`: :data:`DENSE` gives plain torch
layers (what a deployed model and the profiler run), :data:`ELASTIC` gives the
layers of :mod:`latbench.models.elastic` (what a super-net runs). The forward
code is the same for both: :class:`Attention` reads its active shape
(``heads``, ``qk_dim``, ``v_dim``) from attributes at call time, so a super-net
can change them and an extracted dense block runs exactly the same code.

Every block has the parameters that :func:`latbench.models.cost.block_params`
counts: Q, K, V and output projections with biases, a two-layer MLP with
biases, and two LayerNorms. Q and K rows are laid out head by head (row
``h * qk_dim + j``), V rows likewise with ``v_dim``, and the output projection's
columns follow V's layout.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latbench.models.elastic import (
    ElasticConv2d,
    ElasticEmbedding,
    ElasticLayerNorm,
    ElasticLinear,
    ElasticModuleList,
    ElasticTable,
    LearnedTable,
)
from latbench.space.arch import LayerSpec

__all__ = [
    "DENSE",
    "ELASTIC",
    "MLP",
    "Attention",
    "BertBlock",
    "GPTBlock",
    "LayerKit",
    "ViTBlock",
    "apply_rotary",
    "rotary_ndims",
    "rotary_tables",
]

#: LayerNorm epsilons: BERT (Hugging Face ``layer_norm_eps``), DeiT, GPT-NeoX/Pythia.
BERT_LN_EPS = 1e-12
VIT_LN_EPS = 1e-6
GPT_LN_EPS = 1e-5
#: GPT-NeoX rotary settings as Pythia uses them.
ROTARY_PCT = 0.25
ROTARY_BASE = 10000.0


def _dense_linear(
    in_features: int, out_features: int, bias: bool = True, *, in_heads: int = 1, out_heads: int = 1
) -> nn.Linear:
    del in_heads, out_heads  # a dense layer's head layout is only the order of its rows
    return nn.Linear(in_features, out_features, bias)


@dataclass(frozen=True)
class LayerKit:
    """The leaf layer constructors a model is built from (plain torch layers, or elastic ones).

    Attributes:
        linear: ``(in, out, bias=True, *, in_heads=1, out_heads=1) -> nn.Linear``.
        layer_norm: ``(features, eps=...) -> nn.LayerNorm``.
        embedding: ``(num_embeddings, dim) -> nn.Embedding``.
        conv2d: ``(in_channels, out_channels, kernel_size, stride) -> nn.Conv2d``.
        table: ``(rows, dim) -> LearnedTable``.
        module_list: ``(modules) -> nn.ModuleList``.
    """

    linear: Callable[..., nn.Linear]
    layer_norm: Callable[..., nn.LayerNorm]
    embedding: Callable[..., nn.Embedding]
    conv2d: Callable[..., nn.Conv2d]
    table: Callable[..., LearnedTable]
    module_list: Callable[..., nn.ModuleList]


DENSE = LayerKit(
    linear=_dense_linear,
    layer_norm=nn.LayerNorm,
    embedding=nn.Embedding,
    conv2d=nn.Conv2d,
    table=LearnedTable,
    module_list=nn.ModuleList,
)
ELASTIC = LayerKit(
    linear=ElasticLinear,
    layer_norm=ElasticLayerNorm,
    embedding=ElasticEmbedding,
    conv2d=ElasticConv2d,
    table=ElasticTable,
    module_list=ElasticModuleList,
)


# ------------------------------------------------------------------ rotary
def rotary_ndims(qk_dim: int) -> int:
    """Rotated dims per head: GPT-NeoX's ``int(qk_dim * rotary_pct)``, rounded down to even."""
    n = int(qk_dim * ROTARY_PCT)
    return n - n % 2


def rotary_tables(
    seq_len: int, ndims: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """GPT-NeoX cos/sin tables ``[seq_len, ndims]`` for positions ``0..seq_len-1`` (computed in fp32)."""
    inv_freq = 1.0 / (ROTARY_BASE ** (torch.arange(0, ndims, 2, device=device, dtype=torch.float32) / ndims))
    positions = torch.arange(seq_len, device=device, dtype=torch.float32)
    # Broadcast product, not torch.outer: the TorchScript ONNX exporter has no symbolic for outer.
    freqs = positions[:, None] * inv_freq[None, :]
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of each head of ``x [B, heads, T, d]`` (GPT-NeoX ``rotate_half``).

    Dimension ``i`` pairs with ``i + ndims/2`` (halves, not interleaved pairs).
    """
    ndims = cos.shape[-1]
    x_rot, x_pass = x[..., :ndims], x[..., ndims:]
    x1, x2 = x_rot[..., : ndims // 2], x_rot[..., ndims // 2 :]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


# --------------------------------------------------------------- components
class Attention(nn.Module):
    """Multi-head attention with per-head Q/K width ``qk_dim`` and V width ``v_dim``.

    Scores are scaled by ``1/sqrt(qk_dim)`` and computed by
    ``torch.nn.functional.scaled_dot_product_attention``.

    Args:
        hidden: Model width.
        spec: Heads and per-head widths.
        causal: Mask future tokens (GPT).
        rotary: Apply GPT-NeoX rotary embedding to the first :func:`rotary_ndims` dims of each Q/K head.
        kit: Leaf layers to build from.
    """

    def __init__(
        self, hidden: int, spec: LayerSpec, *, causal: bool = False, rotary: bool = False, kit: LayerKit = DENSE
    ) -> None:
        super().__init__()
        self.q = kit.linear(hidden, spec.qk_size, out_heads=spec.heads)
        self.k = kit.linear(hidden, spec.qk_size, out_heads=spec.heads)
        self.v = kit.linear(hidden, spec.v_size, out_heads=spec.heads)
        self.o = kit.linear(spec.v_size, hidden, in_heads=spec.heads)
        self.heads, self.qk_dim, self.v_dim = spec.heads, spec.qk_dim, spec.v_dim
        self.causal, self.rotary = causal, rotary

    @property
    def rotary_ndims(self) -> int:
        """Rotated dims per Q/K head (0 without rotary)."""
        return rotary_ndims(self.qk_dim) if self.rotary else 0

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Attend.

        Args:
            x: ``[B, T, hidden]``.
            attn_mask: Additive float mask broadcastable to ``[B, heads, T, T]``, or ``None``.
            rope: Precomputed ``(cos, sin)`` from :func:`rotary_tables` for ``T`` tokens; computed here when
                ``None`` and the attention is rotary.

        Returns:
            ``[B, T, hidden]``.
        """
        q = self.q(x).unflatten(-1, (self.heads, self.qk_dim)).transpose(1, 2)
        k = self.k(x).unflatten(-1, (self.heads, self.qk_dim)).transpose(1, 2)
        v = self.v(x).unflatten(-1, (self.heads, self.v_dim)).transpose(1, 2)
        ndims = self.rotary_ndims
        if ndims:
            cos, sin = rope if rope is not None else rotary_tables(x.shape[1], ndims, x.device, x.dtype)
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=self.causal, scale=1.0 / math.sqrt(self.qk_dim)
        )
        return self.o(y.transpose(1, 2).flatten(2))

    def extra_repr(self) -> str:
        shape = f"heads={self.heads}, qk_dim={self.qk_dim}, v_dim={self.v_dim}"
        return f"{shape}, causal={self.causal}, rotary={self.rotary}"


class MLP(nn.Module):
    """Two linear layers with biases around an exact (erf) GELU."""

    def __init__(self, hidden: int, mlp: int, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.fc1 = kit.linear(hidden, mlp)
        self.act = nn.GELU()
        self.fc2 = kit.linear(mlp, hidden)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


# ------------------------------------------------------------------ blocks
class BertBlock(nn.Module):
    """BERT encoder layer: post-LayerNorm (eps 1e-12) after attention and after the MLP."""

    def __init__(self, hidden: int, spec: LayerSpec, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.attn = Attention(hidden, spec, kit=kit)
        self.norm1 = kit.layer_norm(hidden, eps=BERT_LN_EPS)
        self.mlp = MLP(hidden, spec.mlp, kit=kit)
        self.norm2 = kit.layer_norm(hidden, eps=BERT_LN_EPS)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x [B, T, hidden]`` (and an optional additive mask ``[B, 1, 1, T]``) to ``[B, T, hidden]``."""
        x = self.norm1(x + self.attn(x, attn_mask))
        return self.norm2(x + self.mlp(x))


class ViTBlock(nn.Module):
    """ViT/DeiT layer: pre-LayerNorm (eps 1e-6) before attention and before the MLP."""

    def __init__(self, hidden: int, spec: LayerSpec, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.norm1 = kit.layer_norm(hidden, eps=VIT_LN_EPS)
        self.attn = Attention(hidden, spec, kit=kit)
        self.norm2 = kit.layer_norm(hidden, eps=VIT_LN_EPS)
        self.mlp = MLP(hidden, spec.mlp, kit=kit)

    def forward(self, x: Tensor) -> Tensor:
        """``x [B, T, hidden]`` to ``[B, T, hidden]``."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GPTBlock(nn.Module):
    """GPT-NeoX/Pythia layer: parallel residual ``x + attn(ln1(x)) + mlp(ln2(x))``, causal rotary attention."""

    def __init__(self, hidden: int, spec: LayerSpec, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.norm1 = kit.layer_norm(hidden, eps=GPT_LN_EPS)
        self.attn = Attention(hidden, spec, causal=True, rotary=True, kit=kit)
        self.norm2 = kit.layer_norm(hidden, eps=GPT_LN_EPS)
        self.mlp = MLP(hidden, spec.mlp, kit=kit)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """``x [B, T, hidden]`` to ``[B, T, hidden]``; rotary tables for ``T`` are computed here unless given."""
        return x + self.attn(self.norm1(x), None, rope) + self.mlp(self.norm2(x))
