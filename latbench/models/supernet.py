"""Elastic super-nets: one set of weights, any sub-network that fits, dense extraction.

A super-net is a family model (:mod:`latbench.models.families`) built from
elastic layers. ``set_sub_network(arch)`` makes it run ``arch``: the first
``hidden`` channels of the embedding width (LayerNorms normalise over the
active width), the first ``n_layers`` blocks, and in each block the first
``heads`` heads, in each head the first ``qk_dim`` Q/K and ``v_dim`` V dims,
and the first ``mlp`` MLP neurons. ``extract(arch)`` copies those weights into
a plain dense model of exactly ``arch`` that gives the same outputs.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn

from latbench.errors import LatbenchError
from latbench.models.blocks import ELASTIC, LayerKit
from latbench.models.elastic import ElasticLayer
from latbench.models.families import BertMaskedLM, GPTCausalLM, TransformerModel, ViTClassifier
from latbench.space.arch import Arch, LayerSpec

__all__ = ["BertSuperNet", "GPTSuperNet", "SuperNet", "ViTSuperNet"]


class SuperNet(TransformerModel):
    """A family model of elastic layers that can run, and extract, any sub-network of its shape.

    Subclasses pair it with a family model (``class BertSuperNet(SuperNet, BertMaskedLM)``)
    and name the dense class :meth:`extract` returns.
    """

    kit: ClassVar[LayerKit] = ELASTIC
    dense_class: ClassVar[type[TransformerModel]]

    def __init__(self, arch: Arch) -> None:
        super().__init__(arch)
        self._active = arch

    # ------------------------------------------------------------- views
    @property
    def max_arch(self) -> Arch:
        """The largest sub-network: the shape the super-net was built with."""
        return self.arch

    @property
    def active_arch(self) -> Arch:
        """The sub-network that forward runs now."""
        return self._active

    def check_fits(self, arch: Arch, where: str = "arch") -> None:
        """Raise :class:`LatbenchError` naming the first dimension of ``arch`` that does not fit."""
        big = self.max_arch
        if arch.family != big.family:
            raise LatbenchError(where, f"family {arch.family!r} does not match the super-net's {big.family!r}")
        for key, value in arch.extras.items():
            if value != getattr(big, key):
                raise LatbenchError(where, f"{key} {value} differs from the super-net's {getattr(big, key)}")
        if arch.n_layers > big.n_layers:
            raise LatbenchError(where, f"{arch.n_layers} layers exceed the super-net's {big.n_layers}")
        if arch.hidden > big.hidden:
            raise LatbenchError(where, f"hidden {arch.hidden} exceeds the super-net's {big.hidden}")
        for i, (s, m) in enumerate(zip(arch.layers, big.layers)):
            for dim in ("heads", "qk_dim", "v_dim", "mlp"):
                if getattr(s, dim) > getattr(m, dim):
                    raise LatbenchError(
                        f"{where}: layer {i}", f"{dim} {getattr(s, dim)} exceeds the super-net's {getattr(m, dim)}"
                    )

    # --------------------------------------------------------- selection
    def set_sub_network(self, arch: Arch) -> None:
        """Run ``arch`` from now on (the leading slice of every dimension).

        Raises:
            LatbenchError: ``arch`` is of another family or does not fit, naming the dimension.
        """
        self.check_fits(arch)
        self._set_ends(arch.hidden)
        self.blocks.set_sub_network(arch.n_layers)  # type: ignore[operator]
        for block, spec in zip(self.blocks, arch.layers):
            _set_block(block, arch.hidden, spec)
        self._active = arch

    def reset_super_network(self) -> None:
        """Run the whole super-net again."""
        self.set_sub_network(self.max_arch)

    @abstractmethod
    def _set_ends(self, hidden: int) -> None:
        """Set the embeddings and the head to width ``hidden``."""

    # -------------------------------------------------------- extraction
    def sub_parameter(self, name: str) -> Tensor:
        """The active slice of parameter ``name`` (as ``named_parameters`` names it)."""
        module_name, _, attr = name.rpartition(".")
        module = self.get_submodule(module_name)
        if not isinstance(module, ElasticLayer):
            raise LatbenchError("sub_parameter", f"{module_name or 'the model'} is not an elastic layer")
        return module.sub_parameter(attr)

    def extract(self, arch: Arch | None = None) -> TransformerModel:
        """A plain dense model of ``arch`` (default: the active sub-network) holding copies of its weights.

        The super-net's own selection is left as it was. The dense model has the
        super-net's device, dtype and train/eval mode, and no elastic layers.

        Raises:
            LatbenchError: ``arch`` does not fit.
        """
        target = self._active if arch is None else arch
        previous = self._active
        self.set_sub_network(target)
        try:
            ref = next(self.parameters())
            # Built on the meta device: no throw-away initialisation, memory only for the copy.
            with torch.device("meta"):
                dense = self.dense_class(target)
            dense = dense.to_empty(device=ref.device).to(ref.dtype)
            dense.tie_weights()
            with torch.no_grad():
                for name, param in dense.named_parameters():
                    param.copy_(self.sub_parameter(name))
        finally:
            self.set_sub_network(previous)
        return dense.train(self.training)


def _set_block(block: nn.Module, hidden: int, spec: LayerSpec) -> None:
    """Give one block (any family: ``attn``, ``mlp``, ``norm1``, ``norm2``) width ``hidden`` and shape ``spec``."""
    attn = block.attn
    attn.q.set_sub_network(hidden, spec.qk_size, out_heads=spec.heads)
    attn.k.set_sub_network(hidden, spec.qk_size, out_heads=spec.heads)
    attn.v.set_sub_network(hidden, spec.v_size, out_heads=spec.heads)
    attn.o.set_sub_network(spec.v_size, hidden, in_heads=spec.heads)
    attn.heads, attn.qk_dim, attn.v_dim = spec.heads, spec.qk_dim, spec.v_dim
    block.mlp.fc1.set_sub_network(hidden, spec.mlp)
    block.mlp.fc2.set_sub_network(spec.mlp, hidden)
    block.norm1.set_sub_network(hidden)
    block.norm2.set_sub_network(hidden)


class BertSuperNet(SuperNet, BertMaskedLM):
    """Elastic :class:`BertMaskedLM`; the decoder stays tied to the (sliced) word embeddings."""

    dense_class = BertMaskedLM

    def _set_ends(self, hidden: int) -> None:
        emb, head = self.embeddings, self.head
        for table in (emb.word, emb.position, emb.token_type):
            table.set_sub_network(hidden)
        emb.norm.set_sub_network(hidden)
        head.dense.set_sub_network(hidden, hidden)
        head.norm.set_sub_network(hidden)
        head.decoder.set_sub_network(hidden, self.arch.vocab_size)


class ViTSuperNet(SuperNet, ViTClassifier):
    """Elastic :class:`ViTClassifier`."""

    dense_class = ViTClassifier

    def _set_ends(self, hidden: int) -> None:
        emb, head = self.embeddings, self.head
        emb.patch.set_sub_network(hidden)
        emb.cls_token.set_sub_network(hidden)
        emb.position.set_sub_network(hidden)
        head.norm.set_sub_network(hidden)
        head.classifier.set_sub_network(hidden, self.arch.num_classes)


class GPTSuperNet(SuperNet, GPTCausalLM):
    """Elastic :class:`GPTCausalLM` (rotary width follows each sub-network head's ``qk_dim``)."""

    dense_class = GPTCausalLM

    def _set_ends(self, hidden: int) -> None:
        self.embeddings.set_sub_network(hidden)
        self.head.norm.set_sub_network(hidden)
        self.head.lm_head.set_sub_network(hidden, self.arch.vocab_size)
