"""Prunable groups of a transformer, and masks that remove a group's units from every tensor at once.

A :class:`Group` is a set of coupled channels (Torch-Pruning's dependency group,
NViT's "layer"): removing unit ``u`` of a group removes it from *every* tensor in
the group's :class:`Slot` list. As in NViT, a model of the ``vit`` or ``bert``
family has

- ``emb``: the embedding width shared by the embeddings, every block's residual
  stream and LayerNorms, and the head (one group for the whole model);
- per block ``heads`` (whole heads), ``qk`` (dimension ``j`` of Q and K in every
  head, so that heads stay equal, as NViT's ``QK_h_d`` table assumes), ``v``
  (dimension ``j`` of V in every head, and the matching columns of the output
  projection) and ``mlp`` (hidden neurons of the MLP).

Weights follow latbench's layout (:mod:`latbench.models.blocks`): Q/K rows are
``h * qk_dim + j``, V rows ``h * v_dim + j``, the output projection's columns
follow V.

:class:`Masker` applies the masks to a model (a dense family model, or a super-net
running its full network) with forward hooks, so that the masked model computes
*exactly* what the small dense model would: every removed unit's output is
gated to zero, LayerNorms normalise over the kept embedding channels only, and
Q is rescaled by ``sqrt(qk_max / qk_kept)`` so the attention scale becomes the
small model's ``1/sqrt(qk_kept)``. :meth:`Masker.zero_pruned` also zeroes the
removed entries of every weight (NViT's ``set_to_zero``), which the hooks make
redundant for the outputs but keeps a masked checkpoint honest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor, nn

from latbench.errors import LatbenchError
from latbench.pruning.config import KINDS
from latbench.space.arch import Arch, LayerSpec

__all__ = ["Group", "Masker", "Slot", "build_groups", "model_arch"]

#: NViT's method-23 normalisation of Σ w·g per group kind (pruning_engine_general.py, add_criteria):
#: EMB / 12 (DeiT-B's block count: here the model's), heads / 6, QK / 2, V / 2, MLP / 1.
TAYLOR23_DIVISOR: dict[str, float | None] = {"emb": None, "heads": 6.0, "qk": 2.0, "v": 2.0, "mlp": 1.0}


@dataclass(frozen=True)
class Slot:
    """Where a group's units sit in one parameter.

    Attributes:
        name: The parameter's name in ``model.named_parameters()``.
        view: Shape to view the parameter as (``-1`` allowed once).
        axis: Axis of that view indexed by the group's unit.
        param: The parameter itself (set by :func:`build_groups`).
    """

    name: str
    view: tuple[int, ...]
    axis: int
    param: nn.Parameter | None = field(default=None, compare=False, repr=False)

    def per_unit(self, tensor: Tensor, n_units: int) -> Tensor:
        """Sum ``tensor`` (shaped like the parameter) over everything but the unit axis: ``[n_units]``."""
        t = tensor.reshape(self.view)
        if t.shape[self.axis] != n_units:
            raise LatbenchError(self.name, f"axis {self.axis} of {tuple(t.shape)} is not the group's {n_units} units")
        dims = [d for d in range(t.dim()) if d != self.axis]
        return t.sum(dim=dims) if dims else t

    def unit_mask(self, keep: Tensor, shape: torch.Size) -> Tensor:
        """A tensor shaped like the parameter holding ``keep[unit]`` at each entry."""
        full = _resolve(self.view, shape)
        view = [1] * len(full)
        view[self.axis] = keep.numel()
        return keep.reshape(view).expand(full).reshape(shape)

    def permute(self, tensor: Tensor, order: Tensor) -> Tensor:
        """``tensor`` (shaped like the parameter) with its units in ``order``."""
        t = tensor.reshape(self.view)
        return t.index_select(self.axis, order.to(t.device)).reshape(tensor.shape)


def _resolve(view: tuple[int, ...], shape: torch.Size) -> tuple[int, ...]:
    known = math.prod(v for v in view if v != -1)
    return tuple(math.prod(shape) // known if v == -1 else v for v in view)


@dataclass
class Group:
    """A set of coupled units pruned together, with its mask.

    Attributes:
        kind: ``emb``, ``heads``, ``qk``, ``v`` or ``mlp``.
        block: The block it belongs to (``None`` for ``emb``).
        size: Units in the unpruned model.
        slots: Every tensor entry the units own.
        taylor23_divisor: NViT's method-23 normaliser of this kind (:data:`TAYLOR23_DIVISOR`).
        keep: Bool mask ``[size]``: True for a unit still in the model.
    """

    kind: str
    block: int | None
    size: int
    slots: tuple[Slot, ...]
    taylor23_divisor: float = 1.0
    keep: Tensor = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LatbenchError("group", f"unknown kind {self.kind!r}")
        if self.keep is None:
            self.keep = torch.ones(self.size, dtype=torch.bool)

    @property
    def name(self) -> str:
        """``emb``, or ``blocks.3.heads`` and so on."""
        return self.kind if self.block is None else f"blocks.{self.block}.{self.kind}"

    @property
    def active(self) -> int:
        """Units still in the model."""
        return int(self.keep.sum())

    def active_indices(self) -> Tensor:
        return torch.nonzero(self.keep).flatten()

    def order(self) -> Tensor:
        """Kept units first, then removed ones, each in their original order (the dense layout)."""
        return torch.cat([torch.nonzero(self.keep).flatten(), torch.nonzero(~self.keep).flatten()])

    def __repr__(self) -> str:
        return f"Group({self.name}, {self.active}/{self.size})"


# ------------------------------------------------------------------ structure
def model_arch(model: nn.Module) -> Arch:
    """The architecture a family model (or a super-net at its full network) was built with."""
    arch = getattr(model, "arch", None)
    if not isinstance(arch, Arch):
        raise LatbenchError("model", f"{type(model).__name__} is not a latbench family model (no .arch)")
    if arch.family not in ("vit", "bert"):
        raise LatbenchError("model", f"pruning covers the vit and bert families, not {arch.family!r}")
    active = getattr(model, "active_arch", arch)
    if active != arch:
        raise LatbenchError("model", "a super-net must run its full network to be pruned (reset_super_network())")
    return arch


def _linear_in(name: str, out: int, inp: int) -> Slot:
    return Slot(f"{name}.weight", (out, inp), 1)


def _linear_out(name: str, out: int, inp: int) -> Slot:
    return Slot(f"{name}.weight", (out, inp), 0)


def _vector(name: str, n: int) -> Slot:
    return Slot(name, (n,), 0)


def build_groups(model: nn.Module) -> list[Group]:
    """The prunable groups of a ``vit`` or ``bert`` model: ``emb`` first, then per block heads, qk, v, mlp.

    Raises:
        LatbenchError: Not a vit/bert family model, or a parameter is missing or mis-shaped.
    """
    arch = model_arch(model)
    h = arch.hidden
    emb: list[Slot] = []
    if arch.family == "vit":
        t = arch.num_tokens()
        emb += [
            Slot("embeddings.patch.weight", (h, -1), 0),
            _vector("embeddings.patch.bias", h),
            Slot("embeddings.cls_token.weight", (1, h), 1),
            Slot("embeddings.position.weight", (t, h), 1),
        ]
    else:
        emb += [
            Slot("embeddings.word.weight", (arch.vocab_size, h), 1),  # also the tied MLM decoder's weight
            Slot("embeddings.position.weight", (arch.max_seq_len, h), 1),
            Slot("embeddings.token_type.weight", (arch.type_vocab_size, h), 1),
            _vector("embeddings.norm.weight", h),
            _vector("embeddings.norm.bias", h),
        ]
    blocks: list[Group] = []
    for i, s in enumerate(arch.layers):
        p = f"blocks.{i}"
        a, d, dv, m = s.heads, s.qk_dim, s.v_dim, s.mlp
        q, k, v, o = (f"{p}.attn.{x}" for x in "qkvo")
        fc1, fc2 = f"{p}.mlp.fc1", f"{p}.mlp.fc2"
        emb += [
            _vector(f"{p}.norm1.weight", h),
            _vector(f"{p}.norm1.bias", h),
            _linear_in(q, a * d, h),
            _linear_in(k, a * d, h),
            _linear_in(v, a * dv, h),
            _linear_out(o, h, a * dv),
            _vector(f"{o}.bias", h),
            _vector(f"{p}.norm2.weight", h),
            _vector(f"{p}.norm2.bias", h),
            _linear_in(fc1, m, h),
            _linear_out(fc2, h, m),
            _vector(f"{fc2}.bias", h),
        ]
        heads = (
            Slot(f"{q}.weight", (a, d, h), 0),
            Slot(f"{q}.bias", (a, d), 0),
            Slot(f"{k}.weight", (a, d, h), 0),
            Slot(f"{k}.bias", (a, d), 0),
            Slot(f"{v}.weight", (a, dv, h), 0),
            Slot(f"{v}.bias", (a, dv), 0),
            Slot(f"{o}.weight", (h, a, dv), 1),
        )
        qk = (
            Slot(f"{q}.weight", (a, d, h), 1),
            Slot(f"{q}.bias", (a, d), 1),
            Slot(f"{k}.weight", (a, d, h), 1),
            Slot(f"{k}.bias", (a, d), 1),
        )
        vd = (
            Slot(f"{v}.weight", (a, dv, h), 1),
            Slot(f"{v}.bias", (a, dv), 1),
            Slot(f"{o}.weight", (h, a, dv), 2),
        )
        mlp = (_linear_out(fc1, m, h), _vector(f"{fc1}.bias", m), _linear_in(fc2, h, m))
        blocks += [
            Group("heads", i, a, heads),
            Group("qk", i, d, qk),
            Group("v", i, dv, vd),
            Group("mlp", i, m, mlp),
        ]
    if arch.family == "vit":
        emb += [
            _vector("head.norm.weight", h),
            _vector("head.norm.bias", h),
            _linear_in("head.classifier", arch.num_classes, h),
        ]
    else:
        emb += [
            _linear_in("head.dense", h, h),
            _linear_out("head.dense", h, h),
            _vector("head.dense.bias", h),
            _vector("head.norm.weight", h),
            _vector("head.norm.bias", h),
        ]
    groups = [Group("emb", None, h, tuple(emb)), *blocks]
    params = dict(model.named_parameters())
    for g in groups:
        bound = []
        for slot in g.slots:
            if slot.name not in params:
                raise LatbenchError("model", f"parameter {slot.name!r} of group {g.name} is missing")
            n = params[slot.name].numel()
            if -1 not in slot.view and math.prod(slot.view) != n:
                raise LatbenchError("model", f"{slot.name} has {n} values, group {g.name} expects {slot.view}")
            bound.append(replace(slot, param=params[slot.name]))
        g.slots = tuple(bound)
        divisor = TAYLOR23_DIVISOR[g.kind]
        g.taylor23_divisor = float(arch.n_layers) if divisor is None else divisor
    return groups


def groups_arch(base: Arch, groups: list[Group]) -> Arch:
    """The architecture the masks leave: ``base`` with every group at its active size."""
    by = {(g.kind, g.block): g.active for g in groups}
    hidden = by.get(("emb", None), base.hidden)
    layers = []
    for i, s in enumerate(base.layers):
        layers.append(
            LayerSpec(
                heads=by.get(("heads", i), s.heads),
                qk_dim=by.get(("qk", i), s.qk_dim),
                v_dim=by.get(("v", i), s.v_dim),
                mlp=by.get(("mlp", i), s.mlp),
            )
        )
    return Arch(family=base.family, hidden=hidden, layers=tuple(layers), **base.extras)


# --------------------------------------------------------------------- masks
def _masked_layer_norm(module: nn.LayerNorm, x: Tensor, keep_idx: Tensor) -> Tensor:
    """LayerNorm over the kept channels only; removed channels come out zero (the small model's LayerNorm)."""
    xa = x.index_select(-1, keep_idx)
    w = module.weight.index_select(0, keep_idx) if module.weight is not None else None
    b = module.bias.index_select(0, keep_idx) if module.bias is not None else None
    ya = nn.functional.layer_norm(xa, (xa.shape[-1],), w, b, module.eps)
    return x.new_zeros(x.shape).index_copy(-1, keep_idx, ya)


class Masker:
    """Applies groups' masks to a model through forward hooks (see the module docstring).

    Args:
        model: The model the groups were built from.
        groups: Its groups (their ``keep`` masks are read on every :meth:`refresh`).

    Call :meth:`refresh` after changing a mask; :meth:`remove` takes the hooks off.
    """

    def __init__(self, model: nn.Module, groups: list[Group]) -> None:
        self.model = model
        self.groups = groups
        self.arch = model_arch(model)
        self._handles: list[Any] = []
        self._gates: dict[str, Tensor] = {}
        self._emb_idx: Tensor | None = None
        self.refresh()
        self._install()

    # ---------------------------------------------------------------- gates
    def _group(self, kind: str, block: int | None) -> Group | None:
        for g in self.groups:
            if g.kind == kind and g.block == block:
                return g
        return None

    def _keep(self, kind: str, block: int | None, size: int) -> Tensor:
        g = self._group(kind, block)
        return torch.ones(size, dtype=torch.bool) if g is None else g.keep

    def refresh(self) -> None:
        """Recompute the gates from the groups' masks (call after pruning)."""
        ref = next(self.model.parameters())
        dev, dt = ref.device, ref.dtype
        emb = self._keep("emb", None, self.arch.hidden)
        gates: dict[str, Tensor] = {"emb": emb.to(dev, dt)}
        self._emb_idx = None if bool(emb.all()) else torch.nonzero(emb).flatten().to(dev)
        for i, s in enumerate(self.arch.layers):
            heads = self._keep("heads", i, s.heads)
            qk = self._keep("qk", i, s.qk_dim)
            v = self._keep("v", i, s.v_dim)
            mlp = self._keep("mlp", i, s.mlp)
            # The small model scales scores by 1/sqrt(kept qk); the masked one by 1/sqrt(qk_max): rescale Q.
            scale = math.sqrt(s.qk_dim / max(int(qk.sum()), 1))
            qk_gate = (heads[:, None] & qk[None, :]).flatten().to(dev, dt)
            gates[f"{i}.q"] = qk_gate * scale
            gates[f"{i}.k"] = qk_gate
            gates[f"{i}.v"] = (heads[:, None] & v[None, :]).flatten().to(dev, dt)
            gates[f"{i}.mlp"] = mlp.to(dev, dt)
        self._gates = gates

    # ---------------------------------------------------------------- hooks
    def _gate_hook(self, key: str) -> Callable[..., Tensor]:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
            return output * self._gates[key]

        return hook

    def _emb_hook(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
        return None if self._emb_idx is None else output * self._gates["emb"]

    def _norm_hook(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor | None:
        if self._emb_idx is None:
            return None
        return _masked_layer_norm(module, inputs[0], self._emb_idx)  # type: ignore[arg-type]

    def _install(self) -> None:
        m = self.model
        hooks: list[tuple[nn.Module, Callable[..., Any]]] = []
        if self.arch.family == "vit":
            hooks.append((m.embeddings, self._emb_hook))
            hooks.append((m.head.norm, self._norm_hook))
        else:
            hooks.append((m.embeddings.norm, self._norm_hook))
            hooks.append((m.head.dense, self._emb_hook))
            hooks.append((m.head.norm, self._norm_hook))
        for i, block in enumerate(m.blocks):
            attn = block.attn
            hooks += [
                (block.norm1, self._norm_hook),
                (block.norm2, self._norm_hook),
                (attn.q, self._gate_hook(f"{i}.q")),
                (attn.k, self._gate_hook(f"{i}.k")),
                (attn.v, self._gate_hook(f"{i}.v")),
                (attn.o, self._emb_hook),
                (block.mlp.fc1, self._gate_hook(f"{i}.mlp")),
                (block.mlp.fc2, self._emb_hook),
            ]
        self._handles = [mod.register_forward_hook(fn) for mod, fn in hooks]

    def remove(self) -> None:
        """Take the hooks off the model (it computes the unmasked function again, unless weights were zeroed)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    # -------------------------------------------------------------- weights
    @torch.no_grad()
    def zero_pruned(self) -> None:
        """Zero every weight entry that belongs to a removed unit (NViT's ``set_to_zero`` / ``enforce_pruning``)."""
        for g in self.groups:
            if bool(g.keep.all()):
                continue
            for slot in g.slots:
                p = slot.param
                assert p is not None
                p.mul_(slot.unit_mask(g.keep.to(p.device, p.dtype), p.shape))

    def __enter__(self) -> Masker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()
