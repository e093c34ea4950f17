"""Dense conversion: a masked (pruned) model becomes a small dense model computing the same function.

Each group's kept units are moved to the front, in their original order, in every
tensor that holds them (a permutation of heads, per-head dims, MLP neurons and
embedding channels changes no output: LayerNorm and attention treat channels and
heads symmetrically). The reordered weights are loaded into an elastic super-net
of the unpruned architecture, and the super-net's own extraction
(:meth:`latbench.models.SuperNet.extract`) copies the leading slice of every
dimension into a plain dense model of the pruned architecture.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from latbench.models.build import build_supernet
from latbench.models.families import TransformerModel
from latbench.pruning.groups import Group, groups_arch, model_arch
from latbench.space.arch import Arch

__all__ = ["kept_first_parameters", "to_dense"]


@torch.no_grad()
def kept_first_parameters(model: nn.Module, groups: list[Group]) -> dict[str, Tensor]:
    """Copies of ``model``'s parameters with every group's kept units first (removed ones after them)."""
    params = {name: p.detach().clone() for name, p in model.named_parameters()}
    for g in groups:
        if bool(g.keep.all()):
            continue
        order = g.order()
        for slot in g.slots:
            params[slot.name] = slot.permute(params[slot.name], order)
    return params


@torch.no_grad()
def to_dense(model: nn.Module, groups: list[Group]) -> tuple[TransformerModel, Arch]:
    """The small dense model the masks of ``groups`` leave, and its architecture.

    Args:
        model: The masked model (its masking hooks play no part: only its weights are read).
        groups: Its groups with their masks (``Pruner.groups``).

    Returns:
        A plain family model of the pruned architecture (same device and dtype as ``model``,
        eval mode) whose outputs equal the masked model's, and that architecture.
    """
    base = model_arch(model)
    arch = groups_arch(base, groups)
    params = kept_first_parameters(model, groups)
    ref = next(model.parameters())
    supernet = build_supernet(base).to(device=ref.device, dtype=ref.dtype)
    for name, p in supernet.named_parameters():
        p.copy_(params[name])
    dense = supernet.extract(arch)
    return dense.eval(), arch
