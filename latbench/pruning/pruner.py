"""The global, latency-aware structural pruner (NViT's algorithm, for any vit/bert model of latbench).

Every batch, :meth:`Pruner.accumulate` adds each unit's importance (read from
the gradients of that batch). Every ``interval_prune`` batches, :meth:`Pruner.step`

1. averages the importance over those batches, with optional momentum across steps
   (NViT ``prune_network_accomulate["averaged"]``);
2. subtracts the latency regulariser from every unit of a group,
   ``score -= λ·(LUT(dims) - LUT(dims with that group one smaller))`` (NViT's
   ``compute_saliency``), so that units whose removal saves more time rank lower;
3. ranks all units of all groups together (global ranking), in chunks of the
   kind's granularity, never taking a group below its floor;
4. removes the lowest-ranked units, ``prune_per_iter`` in all, and stops *as soon as*
   the LUT-predicted latency is at most ``latency_target`` × the original's (NViT's
   exit, checked here after every chunk rather than once per step), or the
   parameter target is met.

:meth:`Pruner.iter_step` does the same but yields each :class:`PruneAction`
before applying it, so a caller may inspect or :meth:`~PruneAction.veto` it
(Torch-Pruning's interactive mode). :meth:`Pruner.finalize` rounds the final
sizes down to multiples (``round_to``).

Differences from NViT, each for a reason: chunks are ranked by their mean score,
not their sum (NViT's sums make a 16-channel EMB chunk look 8x as important as a
2-head chunk); the exit is checked after every chunk (NViT overshoots by up to one
step); units, not a cumulative threshold index, are counted per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from latbench.errors import LatbenchError
from latbench.models.cost import model_cost
from latbench.pruning.config import PruneConfig
from latbench.pruning.groups import Group, Masker, build_groups, groups_arch, model_arch
from latbench.pruning.importance import Importance, MagnitudeImportance, get_importance
from latbench.pruning.latency import LatencyCost
from latbench.space.arch import Arch

__all__ = ["PruneAction", "Pruner", "StepReport", "count_params"]


def count_params(arch: Arch) -> int:
    """Parameters of the dense model of ``arch`` (analytic; equals ``sum(p.numel())`` of the built model)."""
    return model_cost(arch, 1, None if arch.family == "vit" else 1).total.params


@dataclass
class PruneAction:
    """One chunk of one group the pruner is about to remove.

    Attributes:
        group: The group.
        units: The units removed (indices in the unpruned group).
        score: The chunk's mean score after the latency term (what was ranked).
        importance: Its mean importance before the latency term.
        latency_gain: What removing one unit of the group saves, per the LUT (table unit).
        vetoed: Set by :meth:`veto`; a vetoed chunk is not removed, nor any later chunk of its group
            in this step.
    """

    group: Group
    units: tuple[int, ...]
    score: float
    importance: float
    latency_gain: float
    vetoed: bool = False

    def veto(self) -> None:
        """Keep these units (and stop removing from this group in this step)."""
        self.vetoed = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group.name,
            "units": list(self.units),
            "score": self.score,
            "importance": self.importance,
            "latency_gain": self.latency_gain,
            "vetoed": self.vetoed,
        }


@dataclass(frozen=True)
class StepReport:
    """What one pruning step did.

    Attributes:
        iteration: Pruning steps done, this one included.
        removed: Units removed per group name.
        arch: The architecture the masks now leave.
        params: Its parameter count.
        latency_ratio: LUT-predicted latency over the original's (None without a LUT).
        mean_loss: Mean training loss over the batches since the last step (None if not given).
        finished: Whether pruning is over.
        reason: Why it is over (``latency target reached``, ``params target reached``, ...) or why
            the step did nothing.
    """

    iteration: int
    removed: dict[str, int]
    arch: Arch
    params: int
    latency_ratio: float | None
    mean_loss: float | None
    finished: bool
    reason: str = ""

    @property
    def n_removed(self) -> int:
        return sum(self.removed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "removed": dict(self.removed),
            "arch": self.arch.to_dict(),
            "params": self.params,
            "latency_ratio": self.latency_ratio,
            "mean_loss": self.mean_loss,
            "finished": self.finished,
            "reason": self.reason,
        }


@dataclass
class _Chunk:
    group_index: int
    k: int
    units: Tensor
    score: float
    importance: float
    gain: float


class Pruner:
    """Global structural pruner with a latency regulariser.

    Args:
        model: A ``vit`` or ``bert`` family model (dense, or a super-net at its full network).
            Forward hooks mask it (see :class:`~latbench.pruning.groups.Masker`); :meth:`remove`
            takes them off.
        config: What to prune and when to stop.
        latency: Prices architectures; required for a latency target or a non-zero λ.
        importance: The criterion (default: ``config.importance`` from the registry).

    Raises:
        LatbenchError: A latency target or λ without a LUT, or a model that is not vit/bert.
    """

    def __init__(
        self,
        model: nn.Module,
        config: PruneConfig,
        latency: LatencyCost | None = None,
        importance: Importance | None = None,
    ) -> None:
        if latency is None and (config.latency_target is not None or config.latency_regularization > 0):
            raise LatbenchError("--lut", "a latency target or latency regularisation needs a latency table")
        self.model = model
        self.config = config
        self.latency = latency
        self.importance = importance or get_importance(config.importance)
        self.base_arch = model_arch(model)
        if latency is not None and latency.base != self.base_arch:
            raise LatbenchError("latency", "the latency table was set up for another architecture")
        self.groups: list[Group] = build_groups(model)
        self.masker = Masker(model, self.groups)
        self.floors = {k: max(config.floors[k], latency.floor(k) if latency is not None else 1) for k in config.floors}
        self.original_params = count_params(self.base_arch)
        # Accumulation state (all of it goes into state_dict, so a resumed run continues exactly).
        self._acc: list[Tensor | None] = [None] * len(self.groups)
        self._n_acc = 0
        self._avg: list[Tensor | None] = [None] * len(self.groups)
        self._last_scores: list[Tensor | None] = [None] * len(self.groups)
        self._loss_sum = 0.0
        self._loss_n = 0
        self.batches = 0
        self.since_step = 0
        self.iteration = 0
        self.finished = False
        self.reason = ""
        self.history: list[StepReport] = []
        self._check_done()

    # ----------------------------------------------------------------- views
    @property
    def arch(self) -> Arch:
        """The architecture the masks leave now."""
        return groups_arch(self.base_arch, self.groups)

    @property
    def params(self) -> int:
        return count_params(self.arch)

    def latency_ratio(self, arch: Arch | None = None) -> float | None:
        """LUT-predicted latency of ``arch`` (default: now) over the original's; None without a LUT."""
        if self.latency is None:
            return None
        return self.latency.ratio(self.arch if arch is None else arch)

    @property
    def due(self) -> bool:
        """Whether enough batches were accumulated for the next pruning step."""
        return not self.finished and self.since_step >= self.config.interval_prune

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise LatbenchError("group", f"no group {name!r}")

    def _prunable(self, g: Group) -> bool:
        return g.kind in self.config.kinds

    # --------------------------------------------------------- accumulation
    @torch.no_grad()
    def accumulate(self, loss: float | None = None) -> None:
        """Add the importance of the current gradients (call after ``backward``, before ``zero_grad``).

        Args:
            loss: The batch's training loss, for the ``loss_threshold`` check and the reports.
        """
        if self.finished:
            return
        self.batches += 1
        if self.batches <= self.config.start_after:
            return
        for i, g in enumerate(self.groups):
            if not self._prunable(g):
                continue
            s = self.importance(g)
            self._acc[i] = s if self._acc[i] is None else self._acc[i] + s
        self._n_acc += 1
        self.since_step += 1
        if loss is not None:
            self._loss_sum += float(loss)
            self._loss_n += 1

    def _sync_accumulators(self) -> None:
        """In a distributed run, make every rank rank the same numbers (rank 0's)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for t in self._acc:
            if t is not None:
                dist.broadcast(t, src=0)

    def _averaged(self) -> list[Tensor | None]:
        self._sync_accumulators()
        m = self.config.momentum
        out: list[Tensor | None] = []
        for i, acc in enumerate(self._acc):
            if acc is None:
                out.append(None)
                continue
            contribution = acc / max(self._n_acc, 1)
            prev = self._avg[i]
            avg = contribution if (m == 0.0 or prev is None) else m * prev + (1.0 - m) * contribution
            self._avg[i] = avg
            out.append(avg)
        self._acc = [None] * len(self.groups)
        self._n_acc = 0
        return out

    # ------------------------------------------------------------- stopping
    def _target_reason(self, arch: Arch) -> str:
        cfg = self.config
        if cfg.latency_target is not None and self.latency is not None:
            if self.latency.ratio(arch) <= cfg.latency_target + 1e-12:
                return "latency target reached"
        if cfg.params_target is not None and count_params(arch) <= cfg.params_target:
            return "params target reached"
        return ""

    def _check_done(self) -> None:
        reason = self._target_reason(self.arch)
        if reason:
            self.finished, self.reason = True, reason

    def _pruned_units(self) -> int:
        return sum(g.size - g.active for g in self.groups if self._prunable(g))

    # ---------------------------------------------------------------- steps
    def _chunks(self, scores: list[Tensor | None]) -> list[_Chunk]:
        cfg = self.config
        arch = self.arch
        candidates = [
            i
            for i, g in enumerate(self.groups)
            if self._prunable(g) and scores[i] is not None and g.active - cfg.granularity[g.kind] >= self.floors[g.kind]
        ]
        active_scores = [scores[i][self.groups[i].keep] for i in candidates]  # type: ignore[index]
        imp_scale = 1.0
        if cfg.normalize and active_scores:
            allv = torch.cat(active_scores)
            med = float(allv.median())
            imp_scale = med if med > 0 else (float(allv.abs().mean()) or 1.0)
        gains: dict[tuple[str, int | None], float] = {}
        if self.latency is not None and cfg.latency_regularization > 0 and candidates:
            keys = [(self.groups[i].kind, self.groups[i].block) for i in candidates]
            gains = self.latency.gains(arch, keys)
        gain_scale = 1.0
        if cfg.normalize and self.latency is not None:
            units = sum(g.active for g in self.groups if self._prunable(g))
            gain_scale = self.latency.latency(arch) / max(units, 1)
        chunks: list[_Chunk] = []
        for i in candidates:
            g = self.groups[i]
            s = scores[i] / imp_scale  # type: ignore[operator]
            if cfg.l2_normalize_per_group:
                s = s / (float(s[g.keep].norm()) + 1e-8)
            gain = gains.get((g.kind, g.block), 0.0)
            penalty = cfg.latency_regularization * gain / gain_scale
            idx = g.active_indices()
            # Stable sort: equal scores fall back to the unit index, so runs are reproducible.
            order = idx[torch.sort(s[idx], stable=True).indices]
            step = cfg.granularity[g.kind]
            # A step takes at most ceil(prune_per_iter / step) chunks of one group: rank only those.
            most = -(-cfg.prune_per_iter // step)
            k = 0
            while k < most and g.active - (k + 1) * step >= self.floors[g.kind]:
                units = order[k * step : (k + 1) * step]
                imp = float(s[units].mean())
                chunks.append(_Chunk(i, k, units, imp - penalty, imp, gain))
                k += 1
        chunks.sort(key=lambda c: (c.score, c.group_index, c.k))
        return chunks

    def iter_step(self) -> Iterator[PruneAction]:
        """One pruning step that yields each chunk before removing it (call :meth:`PruneAction.veto` to keep it).

        The step's :class:`StepReport` is appended to :attr:`history` when the generator is exhausted.
        """
        if self.finished:
            return
        cfg = self.config
        self.iteration += 1
        self.since_step = 0
        mean_loss = self._loss_sum / self._loss_n if self._loss_n else None
        self._loss_sum, self._loss_n = 0.0, 0
        scores = self._averaged()
        self._last_scores = scores
        removed: dict[str, int] = {}
        reason = ""
        if cfg.loss_threshold is not None and mean_loss is not None and mean_loss > cfg.loss_threshold:
            reason = f"skipped: mean loss {mean_loss:.4g} above loss_threshold {cfg.loss_threshold:.4g}"
        else:
            chunks = self._chunks(scores)
            if not chunks:
                self.finished, reason = True, "nothing left to prune (every group at its floor)"
            taken = [0] * len(self.groups)
            blocked: set[int] = set()
            n = 0
            for c in chunks:
                if c.group_index in blocked or c.k != taken[c.group_index]:
                    continue
                if cfg.max_pruned_units is not None and self._pruned_units() + len(c.units) > cfg.max_pruned_units:
                    self.finished, reason = True, "max_pruned_units reached"
                    break
                g = self.groups[c.group_index]
                action = PruneAction(g, tuple(int(u) for u in c.units), c.score, c.importance, c.gain)
                yield action
                if action.vetoed:
                    blocked.add(c.group_index)
                    continue
                g.keep[c.units] = False
                taken[c.group_index] += 1
                removed[g.name] = removed.get(g.name, 0) + len(c.units)
                n += len(c.units)
                reason = self._target_reason(self.arch)
                if reason:
                    self.finished = True
                    break
                if n >= cfg.prune_per_iter:
                    break
            self.masker.refresh()
            self.masker.zero_pruned()
        if not self.finished and cfg.max_prune_iters is not None and self.iteration >= cfg.max_prune_iters:
            self.finished, reason = True, "max_prune_iters reached"
        if self.finished:
            self.reason = reason
        arch = self.arch
        self.history.append(
            StepReport(
                iteration=self.iteration,
                removed=removed,
                arch=arch,
                params=count_params(arch),
                latency_ratio=self.latency_ratio(arch),
                mean_loss=mean_loss,
                finished=self.finished,
                reason=reason,
            )
        )

    def step(self) -> StepReport | None:
        """One pruning step, every chunk applied; its report (None if pruning had already finished)."""
        if self.finished:
            return None
        for _ in self.iter_step():
            pass
        return self.history[-1]

    def enforce(self) -> None:
        """Zero the removed weights again (after an optimiser step; NViT's ``enforce_pruning``)."""
        self.masker.zero_pruned()

    def finalize(self) -> list[PruneAction]:
        """Round every pruned group's size down to a multiple of its kind's ``round_to``.

        A group is rounded only when the multiple stays at or above both the multiple itself and
        the group's floor (3 heads with ``round_to`` 8 stay 3). The units removed are the
        lowest by the last step's scores (by weight magnitude if no step ran).

        Returns:
            What was removed.
        """
        done: list[PruneAction] = []
        fallback = MagnitudeImportance()
        for i, g in enumerate(self.groups):
            r = self.config.round_to[g.kind]
            if not self._prunable(g) or r == 1 or g.active % r == 0:
                continue
            target = (g.active // r) * r
            if target < max(r, self.floors[g.kind]):
                continue
            scores = self._last_scores[i]
            if scores is None:
                scores = fallback(g)
            idx = g.active_indices()
            order = idx[torch.sort(scores[idx], stable=True).indices]
            units = order[: g.active - target]
            done.append(PruneAction(g, tuple(int(u) for u in units), float(scores[units].mean()), 0.0, 0.0))
            g.keep[units] = False
        if done:
            self.masker.refresh()
            self.masker.zero_pruned()
        return done

    def remove(self) -> None:
        """Take the masking hooks off the model."""
        self.masker.remove()

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this pruner is (masks, accumulators, counters)."""

        def tensors(xs: list[Tensor | None]) -> dict[str, Tensor]:
            return {g.name: x.clone() for g, x in zip(self.groups, xs) if x is not None}

        return {
            "keep": {g.name: g.keep.clone() for g in self.groups},
            "acc": tensors(self._acc),
            "avg": tensors(self._avg),
            "last_scores": tensors(self._last_scores),
            "n_acc": self._n_acc,
            "loss_sum": self._loss_sum,
            "loss_n": self._loss_n,
            "batches": self.batches,
            "since_step": self.since_step,
            "iteration": self.iteration,
            "finished": self.finished,
            "reason": self.reason,
            "history": [r.to_dict() for r in self.history],
            "config": self.config.to_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the model's weights are restored separately)."""
        keep = state["keep"]
        for g in self.groups:
            if g.name not in keep or keep[g.name].shape != g.keep.shape:
                raise LatbenchError("checkpoint", f"pruner state does not match the model (group {g.name})")
            g.keep = keep[g.name].clone().bool()

        def tensors(d: dict[str, Tensor]) -> list[Tensor | None]:
            return [d[g.name].clone() if g.name in d else None for g in self.groups]

        self._acc = tensors(state["acc"])
        self._avg = tensors(state["avg"])
        self._last_scores = tensors(state["last_scores"])
        self._n_acc = int(state["n_acc"])
        self._loss_sum = float(state["loss_sum"])
        self._loss_n = int(state["loss_n"])
        self.batches = int(state["batches"])
        self.since_step = int(state["since_step"])
        self.iteration = int(state["iteration"])
        self.finished = bool(state["finished"])
        self.reason = str(state["reason"])
        self.history = [StepReport(**{**r, "arch": Arch.from_dict(r["arch"])}) for r in state["history"]]
        self.masker.refresh()

    def summary(self) -> dict[str, Any]:
        """Sizes now and at the start, parameters, predicted latency ratio, steps and the exit reason."""
        arch = self.arch
        return {
            "original_arch": self.base_arch.to_dict(),
            "arch": arch.to_dict(),
            "original_params": self.original_params,
            "params": count_params(arch),
            "latency_ratio": self.latency_ratio(arch),
            "iterations": self.iteration,
            "batches": self.batches,
            "finished": self.finished,
            "reason": self.reason,
            "groups": {g.name: [g.active, g.size] for g in self.groups},
        }
