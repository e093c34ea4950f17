"""Whole models of the three families: embeddings, blocks, head.

Each model is split exactly as :func:`latbench.models.cost.model_cost` splits
its cost (``embeddings``, ``blocks``, ``head``), so the parameters of each part
equal the analytic count. Built with the default :data:`~latbench.models.blocks.DENSE`
kit they hold only plain torch layers; the super-nets of
:mod:`latbench.models.supernet` subclass them with the elastic kit and run the
same forward code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from latbench.errors import LatbenchError
from latbench.models.blocks import (
    BERT_LN_EPS,
    DENSE,
    GPT_LN_EPS,
    VIT_LN_EPS,
    BertBlock,
    GPTBlock,
    LayerKit,
    ViTBlock,
    rotary_tables,
)
from latbench.space.arch import Arch

__all__ = [
    "BertEmbeddings",
    "BertMLMHead",
    "BertMaskedLM",
    "GPTCausalLM",
    "GPTHead",
    "TransformerModel",
    "ViTClassifier",
    "ViTEmbeddings",
    "ViTHead",
    "extended_attention_mask",
]


class TransformerModel(nn.Module, ABC):
    """Base of the family models: ``embeddings``, ``blocks`` (one per layer), ``head``.

    Attributes:
        arch: The architecture the model was built for.
        kit: Leaf layers the model is built from (class attribute; dense here).
    """

    family: ClassVar[str]
    kit: ClassVar[LayerKit] = DENSE
    block_class: ClassVar[type[nn.Module]]

    def __init__(self, arch: Arch) -> None:
        super().__init__()
        if arch.family != self.family:
            raise LatbenchError("arch", f"a {type(self).__name__} needs family {self.family!r}, got {arch.family!r}")
        self.arch = arch
        self.embeddings = self._build_embeddings(arch)
        self.blocks = self.kit.module_list(self.block_class(arch.hidden, s, kit=self.kit) for s in arch.layers)
        self.head = self._build_head(arch)
        self.tie_weights()

    @abstractmethod
    def _build_embeddings(self, arch: Arch) -> nn.Module:
        """The family's embeddings for ``arch``."""

    @abstractmethod
    def _build_head(self, arch: Arch) -> nn.Module:
        """The family's head for ``arch``."""

    def tie_weights(self) -> None:
        """Make shared parameters the same tensor again (after ``to_empty`` or loading); no-op if none."""


# -------------------------------------------------------------------- bert
def extended_attention_mask(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``[B, S]`` of 1 (attend) / 0 (padding) to an additive ``[B, 1, 1, S]`` mask (Hugging Face's)."""
    return (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm (eps 1e-12)."""

    def __init__(self, arch: Arch, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.word = kit.embedding(arch.vocab_size, arch.hidden)
        self.position = kit.embedding(arch.max_seq_len, arch.hidden)
        self.token_type = kit.embedding(arch.type_vocab_size, arch.hidden)
        self.norm = kit.layer_norm(arch.hidden, eps=BERT_LN_EPS)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        return self.norm(self.word(input_ids) + self.token_type(token_type_ids) + self.position(positions))


class BertMLMHead(nn.Module):
    """Masked-LM head: dense + GELU + LayerNorm, then a decoder tied to the word embeddings, with its own bias."""

    def __init__(self, arch: Arch, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.dense = kit.linear(arch.hidden, arch.hidden)
        self.act = nn.GELU()
        self.norm = kit.layer_norm(arch.hidden, eps=BERT_LN_EPS)
        # Its weight is replaced by the word embeddings' in BertMaskedLM.tie_weights.
        self.decoder = kit.linear(arch.hidden, arch.vocab_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.norm(self.act(self.dense(x))))


class BertMaskedLM(TransformerModel):
    """BERT encoder with its masked-LM head (Hugging Face ``BertForMaskedLM`` semantics, no dropout)."""

    family = "bert"
    block_class = BertBlock

    def _build_embeddings(self, arch: Arch) -> nn.Module:
        return BertEmbeddings(arch, kit=self.kit)

    def _build_head(self, arch: Arch) -> nn.Module:
        return BertMLMHead(arch, kit=self.kit)

    def tie_weights(self) -> None:
        self.head.decoder.weight = self.embeddings.word.weight

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor | None = None, token_type_ids: Tensor | None = None
    ) -> Tensor:
        """Token ids ``[B, S]`` (int64) to logits ``[B, S, vocab_size]``.

        Args:
            input_ids: Token ids.
            attention_mask: ``[B, S]``, 1 for tokens to attend to and 0 for padding; ``None`` attends to all.
            token_type_ids: Segment ids ``[B, S]``; ``None`` means all zeros.
        """
        x = self.embeddings(input_ids, token_type_ids)
        mask = None if attention_mask is None else extended_attention_mask(attention_mask, x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(x)


# --------------------------------------------------------------------- vit
class ViTEmbeddings(nn.Module):
    """Convolutional patch embedding, a class token in front, a learned position embedding added."""

    def __init__(self, arch: Arch, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        p = arch.patch_size
        self.patch = kit.conv2d(arch.in_channels, arch.hidden, p, p)
        self.cls_token = kit.table(1, arch.hidden)
        self.position = kit.table(arch.num_tokens(), arch.hidden)

    def forward(self, pixel_values: Tensor) -> Tensor:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        cls = self.cls_token().expand(x.shape[0], 1, -1)
        return torch.cat((cls, x), dim=1) + self.position()


class ViTHead(nn.Module):
    """Final LayerNorm (eps 1e-6) over every token, then a linear classifier on the class token."""

    def __init__(self, arch: Arch, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.norm = kit.layer_norm(arch.hidden, eps=VIT_LN_EPS)
        self.classifier = kit.linear(arch.hidden, arch.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.norm(x)[:, 0])


class ViTClassifier(TransformerModel):
    """ViT/DeiT image classifier (pre-LN blocks, class-token head, no distillation token)."""

    family = "vit"
    block_class = ViTBlock

    def _build_embeddings(self, arch: Arch) -> nn.Module:
        return ViTEmbeddings(arch, kit=self.kit)

    def _build_head(self, arch: Arch) -> nn.Module:
        return ViTHead(arch, kit=self.kit)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """Images ``[B, in_channels, image_size, image_size]`` to logits ``[B, num_classes]``."""
        x = self.embeddings(pixel_values)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


# --------------------------------------------------------------------- gpt
class GPTHead(nn.Module):
    """Final LayerNorm (eps 1e-5), then an untied LM head without bias."""

    def __init__(self, arch: Arch, *, kit: LayerKit = DENSE) -> None:
        super().__init__()
        self.norm = kit.layer_norm(arch.hidden, eps=GPT_LN_EPS)
        self.lm_head = kit.linear(arch.hidden, arch.vocab_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.lm_head(self.norm(x))


class GPTCausalLM(TransformerModel):
    """GPT-NeoX/Pythia-style causal LM: token embedding (no position table), parallel-residual rotary blocks."""

    family = "gpt"
    block_class = GPTBlock

    def _build_embeddings(self, arch: Arch) -> nn.Module:
        return self.kit.embedding(arch.vocab_size, arch.hidden)

    def _build_head(self, arch: Arch) -> nn.Module:
        return GPTHead(arch, kit=self.kit)

    def forward(self, input_ids: Tensor) -> Tensor:
        """Token ids ``[B, S]`` (int64) to logits ``[B, S, vocab_size]``."""
        x = self.embeddings(input_ids)
        # One cos/sin table per distinct rotary width, shared by the blocks that use it.
        tables: dict[int, tuple[Tensor, Tensor]] = {}
        for block in self.blocks:
            ndims = block.attn.rotary_ndims
            if ndims and ndims not in tables:
                tables[ndims] = rotary_tables(input_ids.shape[1], ndims, x.device, x.dtype)
            x = block(x, tables.get(ndims))
        return self.head(x)
