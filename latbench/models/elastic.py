"""Elastic layers: torch layers that can run a leading slice of themselves.

Each class subclasses the torch layer it generalises (whittle style) and adds
``set_sub_network(...)`` / ``reset_super_network()``. A sub-network is always
the *first* channels of each dimension, so a sliced layer equals a fresh torch
layer holding the sliced weights (:meth:`ElasticLayer.sub_parameter` returns
them, which is how a super-net extracts a dense model).

:class:`ElasticLinear` also knows a per-head layout: with ``out_heads=A`` its
``out_features`` rows are ``A`` groups of ``out_features // A`` rows (row
``h * width + j`` is dimension ``j`` of head ``h``), and a sub-network keeps the
first heads and, inside each, the first dimensions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from latbench.errors import LatbenchError

__all__ = [
    "ElasticConv2d",
    "ElasticEmbedding",
    "ElasticLayer",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticModuleList",
    "ElasticTable",
    "LearnedTable",
]


def _check_width(where: str, value: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LatbenchError(where, f"expected a positive integer, got {value!r}")
    if value > maximum:
        raise LatbenchError(where, f"{value} exceeds the super-network's {maximum}")
    return value


def _check_split(in_features: int, out_features: int, in_heads: int, out_heads: int) -> None:
    if in_features % in_heads:
        raise LatbenchError("in_heads", f"{in_features} input features do not split into {in_heads} heads")
    if out_features % out_heads:
        raise LatbenchError("out_heads", f"{out_features} output features do not split into {out_heads} heads")


class ElasticLayer(ABC):
    """What every elastic layer adds to its torch layer (a mixin; no state of its own)."""

    @abstractmethod
    def reset_super_network(self) -> None:
        """Run the whole layer again."""

    @abstractmethod
    def sub_parameter(self, name: str) -> Tensor:
        """The active slice of the direct parameter ``name`` (a view or a fresh gather: copy it to keep it)."""


class ElasticLinear(nn.Linear, ElasticLayer):
    """``nn.Linear`` that runs its first input and output features, optionally head by head.

    Args:
        in_features: Super-network input width.
        out_features: Super-network output width.
        bias: Whether the layer has a bias.
        in_heads: Number of equal head groups the input features form (1: no head layout).
        out_heads: Number of equal head groups the output features form (1: no head layout).
        device: Where to allocate the weights.
        dtype: Their dtype.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        in_heads: int = 1,
        out_heads: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        _check_split(in_features, out_features, in_heads, out_heads)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self.in_heads = in_heads
        self.out_heads = out_heads
        self.reset_super_network()

    def set_sub_network(
        self, in_features: int, out_features: int, *, in_heads: int | None = None, out_heads: int | None = None
    ) -> None:
        """Run the first ``in_features`` inputs and ``out_features`` outputs.

        Args:
            in_features: Active input width (in total, over all active heads).
            out_features: Active output width (in total, over all active heads).
            in_heads: Active input heads (default: all of the layer's); each keeps its first
                ``in_features // in_heads`` features.
            out_heads: Active output heads (default: all of the layer's), likewise.

        Raises:
            LatbenchError: A width exceeds the layer's or does not split into the heads.
        """
        in_heads = self.in_heads if in_heads is None else _check_width("in_heads", in_heads, self.in_heads)
        out_heads = self.out_heads if out_heads is None else _check_width("out_heads", out_heads, self.out_heads)
        _check_width("in_features", in_features, self.in_features)
        _check_width("out_features", out_features, self.out_features)
        _check_split(in_features, out_features, in_heads, out_heads)
        _check_width("in_features per head", in_features // in_heads, self.in_features // self.in_heads)
        _check_width("out_features per head", out_features // out_heads, self.out_features // self.out_heads)
        self.sub_in_features, self.sub_out_features = in_features, out_features
        self.sub_in_heads, self.sub_out_heads = in_heads, out_heads

    def reset_super_network(self) -> None:
        self.set_sub_network(self.in_features, self.out_features)

    @property
    def is_full(self) -> bool:
        """Whether the whole layer is active."""
        return self.sub_in_features == self.in_features and self.sub_out_features == self.out_features

    def sub_weight(self) -> Tensor:
        """The active ``[out, in]`` weight."""
        if self.is_full:
            return self.weight
        if self.in_heads == 1 and self.out_heads == 1:
            return self.weight[: self.sub_out_features, : self.sub_in_features]
        grid = self.weight.view(
            self.out_heads, self.out_features // self.out_heads, self.in_heads, self.in_features // self.in_heads
        )
        ow, iw = self.sub_out_features // self.sub_out_heads, self.sub_in_features // self.sub_in_heads
        return grid[: self.sub_out_heads, :ow, : self.sub_in_heads, :iw].reshape(
            self.sub_out_features, self.sub_in_features
        )

    def sub_bias(self) -> Tensor | None:
        """The active ``[out]`` bias, or ``None``."""
        if self.bias is None or self.sub_out_features == self.out_features:
            return self.bias
        grid = self.bias.view(self.out_heads, self.out_features // self.out_heads)
        return grid[: self.sub_out_heads, : self.sub_out_features // self.sub_out_heads].reshape(-1)

    def sub_parameter(self, name: str) -> Tensor:
        value = {"weight": self.sub_weight, "bias": self.sub_bias}[name]()
        assert value is not None
        return value

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.sub_weight(), self.sub_bias())

    def extra_repr(self) -> str:
        heads = f", in_heads={self.in_heads}, out_heads={self.out_heads}" if self.in_heads * self.out_heads > 1 else ""
        return super().extra_repr() + heads


class ElasticLayerNorm(nn.LayerNorm, ElasticLayer):
    """``nn.LayerNorm`` over one dimension that normalises its first ``features`` channels."""

    def __init__(
        self,
        features: int,
        eps: float = 1e-5,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(features, eps=eps, device=device, dtype=dtype)
        self.features = features
        self.reset_super_network()

    def set_sub_network(self, features: int) -> None:
        """Normalise over the first ``features`` channels, with the matching slice of weight and bias."""
        self.sub_features = _check_width("features", features, self.features)

    def reset_super_network(self) -> None:
        self.set_sub_network(self.features)

    def sub_parameter(self, name: str) -> Tensor:
        return getattr(self, name)[: self.sub_features]

    def forward(self, x: Tensor) -> Tensor:
        f = self.sub_features
        return F.layer_norm(x, (f,), self.weight[:f], self.bias[:f], self.eps)


class ElasticEmbedding(nn.Embedding, ElasticLayer):
    """``nn.Embedding`` that returns the first ``embedding_dim`` channels of each row."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.reset_super_network()

    def set_sub_network(self, embedding_dim: int) -> None:
        """Return the first ``embedding_dim`` channels (all rows stay)."""
        self.sub_embedding_dim = _check_width("embedding_dim", embedding_dim, self.embedding_dim)

    def reset_super_network(self) -> None:
        self.set_sub_network(self.embedding_dim)

    def sub_parameter(self, name: str) -> Tensor:
        return getattr(self, name)[:, : self.sub_embedding_dim]

    def forward(self, input: Tensor) -> Tensor:
        weight = self.weight[:, : self.sub_embedding_dim]
        return F.embedding(
            input, weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse
        )


class ElasticConv2d(nn.Conv2d, ElasticLayer):
    """``nn.Conv2d`` (no groups) that produces its first ``out_channels`` channels."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, device=device, dtype=dtype)
        self.reset_super_network()

    def set_sub_network(self, out_channels: int) -> None:
        """Produce the first ``out_channels`` channels (every input channel stays)."""
        self.sub_out_channels = _check_width("out_channels", out_channels, self.out_channels)

    def reset_super_network(self) -> None:
        self.set_sub_network(self.out_channels)

    def sub_parameter(self, name: str) -> Tensor:
        return getattr(self, name)[: self.sub_out_channels]

    def forward(self, x: Tensor) -> Tensor:
        c = self.sub_out_channels
        return self._conv_forward(x, self.weight[:c], None if self.bias is None else self.bias[:c])


class LearnedTable(nn.Module):
    """A learned ``[rows, dim]`` tensor used as it is (ViT's class token and position embedding).

    Args:
        rows: Number of rows.
        dim: Width of each row.
        device: Where to allocate it.
        dtype: Its dtype.
    """

    def __init__(
        self, rows: int, dim: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, dim, device=device, dtype=dtype))

    def forward(self) -> Tensor:
        return self.weight

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, {self.weight.shape[1]}"


class ElasticTable(LearnedTable, ElasticLayer):
    """:class:`LearnedTable` that returns the first ``dim`` channels of each row."""

    def __init__(
        self, rows: int, dim: int, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> None:
        super().__init__(rows, dim, device=device, dtype=dtype)
        self.dim = dim
        self.reset_super_network()

    def set_sub_network(self, dim: int) -> None:
        """Return the first ``dim`` channels of each row."""
        self.sub_dim = _check_width("dim", dim, self.dim)

    def reset_super_network(self) -> None:
        self.set_sub_network(self.dim)

    def sub_parameter(self, name: str) -> Tensor:
        return getattr(self, name)[:, : self.sub_dim]

    def forward(self) -> Tensor:
        return self.weight[:, : self.sub_dim]


class ElasticModuleList(nn.ModuleList, ElasticLayer):
    """``nn.ModuleList`` whose iteration yields only its first ``depth`` modules.

    Every module stays registered (parameters, ``state_dict``, ``.to()`` and
    ``len()`` see them all); only ``for m in modules`` - how a model runs its
    blocks - stops early, so the model's forward needs no elastic code.
    """

    def __init__(self, modules: Iterable[nn.Module] | None = None) -> None:
        super().__init__(modules)
        self.reset_super_network()

    def set_sub_network(self, depth: int) -> None:
        """Iterate over the first ``depth`` modules."""
        self.depth = _check_width("depth", depth, len(self))

    def reset_super_network(self) -> None:
        self.depth = len(self)

    def sub_parameter(self, name: str) -> Tensor:
        raise LatbenchError("sub_parameter", f"a module list holds no parameter {name!r} of its own")

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(list(self._modules.values())[: self.depth])  # type: ignore[arg-type]
