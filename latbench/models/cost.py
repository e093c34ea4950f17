"""Analytic cost of an architecture: parameters, FLOPs, minimum bytes moved, roofline time.

Formulas (``../shared/MEASUREMENT.md``), per block with batch ``B``, tokens ``S``,
width ``H``, ``A`` heads of ``d_qk``/``d_v`` and MLP width ``F``:

- matmul FLOPs ``2·B·S·(H·(2·A·d_qk + A·d_v) + A·d_v·H + 2·H·F)`` plus attention
  ``2·B·A·S²·(d_qk + d_v)`` (multiply-adds count as two FLOPs; elementwise work,
  softmax and normalisation are not counted);
- minimum bytes: every weight once, plus the block's input and output activations;
- roofline time: ``max(FLOPs / peak FLOP/s, bytes / peak bandwidth)``.

Model totals add the embeddings and the head (MLM head, classifier, LM head).
Nothing here imports torch: cost is a function of the architecture alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from latbench.errors import LatbenchError
from latbench.space.arch import Arch

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}


@dataclass(frozen=True)
class Cost:
    """Cost of one piece of a model for one workload."""

    params: int
    flops: int
    bytes: int

    def roofline_ms(self, peak_flops: float, peak_bytes_per_s: float) -> float:
        """Lower bound on latency in ms given attainable peaks (FLOP/s, bytes/s)."""
        if peak_flops <= 0 or peak_bytes_per_s <= 0:
            raise LatbenchError("roofline", "peaks must be positive")
        return 1e3 * max(self.flops / peak_flops, self.bytes / peak_bytes_per_s)

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.flops + other.flops, self.bytes + other.bytes)

    def to_dict(self) -> dict[str, int]:
        return {"params": self.params, "flops": self.flops, "bytes": self.bytes}


@dataclass(frozen=True)
class ModelCost:
    """Per-part cost of a whole model: embeddings, each block, the head, and the total."""

    embedding: Cost
    blocks: tuple[Cost, ...]
    head: Cost
    total: Cost = field(init=False)

    def __post_init__(self) -> None:
        total = self.embedding + self.head
        for b in self.blocks:
            total = total + b
        object.__setattr__(self, "total", total)


def _workload(arch: Arch, batch: int, seq_len: int | None) -> tuple[int, int]:
    if batch < 1:
        raise LatbenchError("--batch", f"must be >= 1, got {batch}")
    if arch.family != "vit" and (seq_len is None or seq_len < 1):
        raise LatbenchError("--seq", f"family {arch.family!r} needs a sequence length >= 1")
    if arch.family != "vit" and seq_len > arch.max_seq_len:  # type: ignore[operator]
        raise LatbenchError("--seq", f"{seq_len} exceeds the model's max_seq_len {arch.max_seq_len}")
    return batch, arch.num_tokens(seq_len)


def _bytes_per_value(dtype: str) -> int:
    if dtype not in DTYPE_BYTES:
        raise LatbenchError("--precision", f"unknown precision {dtype!r} (expected {', '.join(DTYPE_BYTES)})")
    return DTYPE_BYTES[dtype]


def block_params(arch: Arch, index: int) -> int:
    """Parameters of block ``index``: Q, K, V, output projections, MLP, two LayerNorms."""
    s, h = arch.layers[index], arch.hidden
    attn = 2 * (h * s.qk_size + s.qk_size) + (h * s.v_size + s.v_size) + (s.v_size * h + h)
    mlp = (h * s.mlp + s.mlp) + (s.mlp * h + h)
    return attn + mlp + 4 * h


def block_cost(arch: Arch, index: int, batch: int, seq_len: int | None, dtype: str = "fp32") -> Cost:
    """Cost of block ``index`` of ``arch`` for ``batch`` sequences of ``seq_len`` tokens."""
    b, t = _workload(arch, batch, seq_len)
    s, h = arch.layers[index], arch.hidden
    a, dqk, dv, f = s.heads, s.qk_dim, s.v_dim, s.mlp
    flops = 2 * b * t * (h * (2 * a * dqk + a * dv) + a * dv * h + 2 * h * f) + 2 * b * a * t * t * (dqk + dv)
    params = block_params(arch, index)
    nbytes = _bytes_per_value(dtype) * (params + 2 * b * t * h)
    return Cost(params=params, flops=flops, bytes=nbytes)


def model_cost(arch: Arch, batch: int, seq_len: int | None, dtype: str = "fp32") -> ModelCost:
    """Cost of the whole model, split into embeddings, blocks and head."""
    el = _bytes_per_value(dtype)
    b, t = _workload(arch, batch, seq_len)
    h = arch.hidden
    if arch.family == "bert":
        v = arch.vocab_size
        emb_params = (v + arch.max_seq_len + arch.type_vocab_size) * h + 2 * h  # type: ignore[operator]
        # Gathers, not matmuls: no FLOPs; bytes are the rows read and the output written.
        emb = Cost(emb_params, 0, el * (3 * b * t * h + 2 * h + 2 * b * t * h) + 8 * 2 * b * t)
        # MLM head: dense + LayerNorm, then the decoder tied to the word embeddings (its bias is own).
        head_params = h * h + h + 2 * h + v  # type: ignore[operator]
        head_flops = 2 * b * t * h * h + 2 * b * t * h * v  # type: ignore[operator]
        head = Cost(head_params, head_flops, el * (head_params + v * h + b * t * h + b * t * v))  # type: ignore[operator]
    elif arch.family == "vit":
        p, c, n_patch = arch.patch_size, arch.in_channels, (arch.image_size // arch.patch_size) ** 2  # type: ignore[operator]
        conv = c * p * p * h + h  # type: ignore[operator]
        emb_params = conv + h + t * h
        emb_flops = 2 * b * n_patch * c * p * p * h  # type: ignore[operator]
        emb = Cost(emb_params, emb_flops, el * (emb_params + b * c * arch.image_size**2 + b * t * h))  # type: ignore[operator]
        k = arch.num_classes
        head_params = 2 * h + h * k + k  # type: ignore[operator]
        head = Cost(head_params, 2 * b * h * k, el * (head_params + b * t * h + b * k))  # type: ignore[operator]
    else:
        v = arch.vocab_size
        emb_params = v * h  # type: ignore[operator]
        emb = Cost(emb_params, 0, el * 2 * b * t * h + 8 * b * t)
        head_params = 2 * h + h * v  # type: ignore[operator]
        head = Cost(head_params, 2 * b * t * h * v, el * (head_params + b * t * h + b * t * v))  # type: ignore[operator]
    blocks = tuple(block_cost(arch, i, batch, seq_len, dtype) for i in range(arch.n_layers))
    return ModelCost(embedding=emb, blocks=blocks, head=head)
