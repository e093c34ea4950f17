"""Build models, super-nets and single blocks with seeded weights, and their example inputs.

Weights come from :func:`init_weights`: each parameter is drawn from its own
generator, seeded by the seed *and the parameter's name*. So the same seed
gives the same weights on any device, block ``i`` built alone equals block
``i`` of the whole model, and a dense model equals the same-shaped super-net's
extraction of its full network.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import torch
from torch import Tensor, nn

from latbench.errors import LatbenchError
from latbench.models.blocks import BertBlock, GPTBlock, ViTBlock
from latbench.models.families import BertMaskedLM, GPTCausalLM, TransformerModel, ViTClassifier
from latbench.models.supernet import BertSuperNet, GPTSuperNet, SuperNet, ViTSuperNet
from latbench.space.arch import Arch

__all__ = [
    "block_inputs",
    "build_block",
    "build_model",
    "build_supernet",
    "distinct_blocks",
    "example_inputs",
    "init_weights",
]

MODEL_CLASSES: dict[str, type[TransformerModel]] = {"bert": BertMaskedLM, "vit": ViTClassifier, "gpt": GPTCausalLM}
SUPERNET_CLASSES: dict[str, type[SuperNet]] = {"bert": BertSuperNet, "vit": ViTSuperNet, "gpt": GPTSuperNet}
BLOCK_CLASSES: dict[str, type[nn.Module]] = {"bert": BertBlock, "vit": ViTBlock, "gpt": GPTBlock}

#: Standard deviation of the normal initialisation (BERT's and GPT-NeoX's ``initializer_range``, DeiT's trunc-normal).
INIT_STD = 0.02

M = TypeVar("M", bound=nn.Module)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise LatbenchError("seed", f"expected an integer seed, got {seed!r}")
    return seed


def _param_generator(seed: int, name: str) -> torch.Generator:
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


@torch.no_grad()
def init_weights(module: nn.Module, seed: int, prefix: str = "") -> None:
    """Initialise ``module`` in place, deterministically from ``seed`` and each parameter's name.

    LayerNorms get weight 1 and bias 0, other biases 0, every other parameter
    ``N(0, 0.02)``. Values are drawn on the CPU in fp32 and copied, so they do
    not depend on the module's device or dtype.

    Args:
        module: The module to initialise.
        seed: The seed.
        prefix: Prepended to parameter names (``"blocks.3."`` makes a lone block
            draw the weights of block 3 of a whole model).
    """
    seen: set[int] = set()
    for module_name, sub in module.named_modules():
        for pname, param in sub.named_parameters(recurse=False):
            if id(param) in seen:  # a tied parameter is drawn once, under its first name
                continue
            seen.add(id(param))
            if isinstance(sub, nn.LayerNorm):
                param.fill_(1.0 if pname == "weight" else 0.0)
            elif pname == "bias":
                param.zero_()
            else:
                name = f"{prefix}{module_name}.{pname}" if module_name else f"{prefix}{pname}"
                values = torch.empty(param.shape, dtype=torch.float32)
                values.normal_(0.0, INIT_STD, generator=_param_generator(seed, name))
                param.copy_(values)


def _materialise(factory: Callable[[], M], seed: int, prefix: str = "") -> M:
    # Built on the meta device, then allocated once and filled by init_weights:
    # torch's default initialisation would be thrown away anyway.
    _check_seed(seed)
    with torch.device("meta"):
        module = factory()
    module = module.to_empty(device="cpu")
    if isinstance(module, TransformerModel):
        module.tie_weights()
    init_weights(module, seed, prefix)
    return module


def build_supernet(arch_or_space_max: Arch, seed: int = 0) -> SuperNet:
    """An elastic super-net of shape ``arch_or_space_max`` (e.g. ``space.max_arch()``), weights from ``seed``.

    Layers may differ: each block's maximum is that layer's spec. On the CPU, fp32, train mode.
    """
    arch = arch_or_space_max
    return _materialise(lambda: SUPERNET_CLASSES[arch.family](arch), seed)


def build_model(arch: Arch, seed: int = 0) -> TransformerModel:
    """A dense model of exactly ``arch`` with weights from ``seed`` (CPU, fp32, eval mode).

    Equal to ``build_supernet(arch, seed).extract()`` without allocating the super-net.
    """
    return _materialise(lambda: MODEL_CLASSES[arch.family](arch), seed).eval()


def build_block(arch: Arch, index: int, seed: int = 0) -> nn.Module:
    """Block ``index`` of ``arch`` alone, equal to ``build_model(arch, seed).blocks[index]`` (CPU, fp32, eval).

    Its forward maps ``[B, T, hidden]`` to ``[B, T, hidden]`` (a GPT block computes its rotary tables for ``T``).
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < arch.n_layers:
        raise LatbenchError("index", f"block {index!r} outside 0..{arch.n_layers - 1}")
    spec, block_class = arch.layers[index], BLOCK_CLASSES[arch.family]
    return _materialise(lambda: block_class(arch.hidden, spec), seed, prefix=f"blocks.{index}.").eval()


def _check_workload(arch: Arch, batch: int, seq_len: int | None) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise LatbenchError("batch", f"must be a positive integer, got {batch!r}")
    if arch.family == "vit":
        return
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise LatbenchError("seq_len", f"family {arch.family!r} needs a positive sequence length, got {seq_len!r}")
    if seq_len > arch.max_seq_len:  # type: ignore[operator]
        raise LatbenchError("seq_len", f"{seq_len} exceeds the model's max_seq_len {arch.max_seq_len}")


def example_inputs(
    arch: Arch, batch: int, seq_len: int | None = None, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[Tensor, ...]:
    """Positional inputs for the model of ``arch``: ``model(*example_inputs(...))``.

    Text families: ``(input_ids,)``, int64 ``[batch, seq_len]`` uniform in ``[0, vocab_size)``.
    ``vit``: ``(pixel_values,)``, fp32 ``[batch, in_channels, image_size, image_size]`` standard normal
    (``seq_len`` is ignored).
    """
    _check_workload(arch, batch, seq_len)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    if arch.family == "vit":
        size = arch.image_size
        pixels = torch.randn(batch, arch.in_channels, size, size, generator=gen)  # type: ignore[arg-type]
        return (pixels.to(device),)
    ids = torch.randint(0, arch.vocab_size, (batch, seq_len), generator=gen, dtype=torch.int64)  # type: ignore[arg-type]
    return (ids.to(device),)


def block_inputs(
    arch: Arch, batch: int, seq_len: int | None = None, seed: int = 0, device: torch.device | str = "cpu"
) -> tuple[Tensor]:
    """``(x,)``, ``x`` fp32 ``[batch, arch.num_tokens(seq_len), hidden]`` standard normal, for :func:`build_block`."""
    _check_workload(arch, batch, seq_len)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    x = torch.randn(batch, arch.num_tokens(seq_len), arch.hidden, generator=gen)
    return (x.to(device),)


def distinct_blocks(arch: Arch) -> list[int]:
    """Index of the first block of each distinct layer spec, in order (profile each distinct block once)."""
    first: dict[object, int] = {}
    for i, spec in enumerate(arch.layers):
        first.setdefault(spec, i)
    return list(first.values())
