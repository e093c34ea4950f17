"""Quality objectives of a search: lower is better, one number per architecture.

- ``proxy`` (default): a prior on capacity, not a measurement. The loss a language model of
  ``N`` non-embedding parameters reaches by Kaplan et al.'s scaling law (2020, eq. 1.1:
  ``L(N) = (N_c / N) ** 0.076`` nats, ``N_c = 8.8e13``). Monotone in the parameters, so it
  makes a search pick the largest model that meets the latency bound, and differentiable
  in the (relaxed) dimensions, so the gradient searcher can follow it.
- ``supernet:RUN_DIR``: the validation loss of the sub-network in a super-net trained by
  ``latbench train-supernet`` (weights shared, no training per candidate).
- ``module:function`` (or ``path/file.py:function``): a user's ``f(arch: Arch) -> float``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from latbench.errors import LatbenchError
from latbench.space import Arch

# Kaplan et al. 2020, "Scaling Laws for Neural Language Models", eq. (1.1).
KAPLAN_N_C = 8.8e13
KAPLAN_ALPHA_N = 0.076


class QualityObjective(ABC):
    """Lower is better. ``differentiable`` objectives also give a torch function of relaxed dims."""

    name: ClassVar[str] = ""
    differentiable: ClassVar[bool] = False

    @abstractmethod
    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        """One value per architecture (finite; lower is better)."""

    def describe(self) -> str:
        return self.name

    def spec(self) -> str:
        """The string that recreates it (``--quality``)."""
        return self.name


def non_embedding_params(hidden: Any, n_layers: Any, heads: Any, qk_dim: Any, v_dim: Any, mlp: Any) -> Any:
    """Weights of the blocks (Q, K, V, O projections and the two MLP matrices), numpy or torch.

    Per-layer dims are ``(N,)`` (one spec in every layer, times ``n_layers``) or ``(N, L)``
    (summed over layers; zero beyond a model's depth).
    """
    if getattr(heads, "ndim", 0) == 2 and getattr(hidden, "ndim", 0) == 1:
        hidden = hidden[:, None]  # one width per model, one column per layer
    per_layer = hidden * heads * (2 * qk_dim + 2 * v_dim) + 2 * hidden * mlp
    if getattr(per_layer, "ndim", 0) == 2:
        return per_layer.sum(-1)
    return per_layer * n_layers


class ScalingLawProxy(QualityObjective):
    """``(N_c / N) ** 0.076`` with ``N`` the non-embedding parameters (Kaplan et al. 2020)."""

    name = "proxy"
    differentiable = True

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        n = np.array(
            [
                sum(a.hidden * s.heads * (2 * s.qk_dim + 2 * s.v_dim) + 2 * a.hidden * s.mlp for s in a.layers)
                for a in archs
            ],
            dtype=np.float64,
        )
        return (KAPLAN_N_C / n) ** KAPLAN_ALPHA_N

    def torch_value(self, hidden: Any, n_layers: Any, heads: Any, qk_dim: Any, v_dim: Any, mlp: Any) -> Any:
        n = non_embedding_params(hidden, n_layers, heads, qk_dim, v_dim, mlp)
        return (KAPLAN_N_C / n.clamp_min(1.0)) ** KAPLAN_ALPHA_N

    def describe(self) -> str:
        return "proxy: Kaplan scaling-law loss of the non-embedding parameters (a capacity prior, not a measurement)"


class SupernetQuality(QualityObjective):
    """Validation loss of the sub-network in a trained super-net (``latbench train-supernet``).

    The search space keeps the family settings its predictor was trained with (a BERT vocabulary
    of 30522, say) because latency depends on them; the super-net, trained on local data, has its
    own (a byte vocabulary). Each architecture is judged with the super-net's settings.
    """

    name = "supernet"

    def __init__(self, run_dir: str, split: str = "val", max_examples: int | None = None) -> None:
        from pathlib import Path

        if not Path(run_dir).is_dir():
            raise LatbenchError("--quality", f"supernet:{run_dir}: no such run directory")
        self.run_dir = run_dir
        self.split = split
        self.max_examples = max_examples

    def _trained(self) -> Any:
        from latbench.supernet.train import load_trained

        return load_trained(self.run_dir)

    def adopt(self, arch: Arch) -> Arch:
        """``arch`` with the super-net's family settings (vocabulary, sequence length ...)."""
        like = self._trained().config.supernet
        if arch.family != like.family:
            raise LatbenchError(
                "--quality", f"the super-net in {self.run_dir} is a {like.family} model, not {arch.family}"
            )
        return Arch(family=arch.family, hidden=arch.hidden, layers=arch.layers, **like.extras)

    def check_space(self, space: Any) -> None:
        """Refuse a space whose largest member the super-net does not hold."""
        model = self._trained().model
        big = self.adopt(space.max_arch())
        try:
            model.check_fits(big, "--space")
        except LatbenchError as exc:
            raise LatbenchError(
                "--quality",
                f"the super-net in {self.run_dir} does not hold space {space.name!r}'s largest member ({exc.what}); "
                f"search the space it was trained on: --space supernet:{self.run_dir}",
            ) from None

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        from latbench.supernet.evaluate import subnet_quality

        return np.array(
            [
                subnet_quality(self.run_dir, self.adopt(a), split=self.split, max_examples=self.max_examples)
                for a in archs
            ],
            dtype=np.float64,
        )

    def describe(self) -> str:
        return f"supernet: {self.split} loss (nats) of the sub-network in {self.run_dir}"

    def spec(self) -> str:
        return f"supernet:{self.run_dir}"


def supernet_space(run_dir: str) -> Any:
    """The space a super-net was trained on, with the family's default settings (``--space supernet:RUN``).

    The dimensions are the run's; the vocabulary/image settings go back to the family defaults,
    those of the models a latency predictor is trained on.
    """
    from dataclasses import replace

    from latbench.supernet.train import load_trained

    space = load_trained(run_dir).config.space
    if space is None:
        raise LatbenchError("--space", f"supernet:{run_dir} trained a dense model, not a super-net over a space")
    ref = space.reference
    assert ref is not None
    ref = Arch(family=ref.family, hidden=ref.hidden, layers=ref.layers)
    return replace(space, name=f"supernet:{run_dir}", extras=(), reference=ref)


class CallableQuality(QualityObjective):
    """A user's ``f(arch) -> float`` (lower is better)."""

    name = "callable"

    def __init__(self, target: str) -> None:
        from latbench.io import import_object

        fn = import_object(target, "--quality")
        if not callable(fn):
            raise LatbenchError("--quality", f"{target!r} is not callable")
        self.target = target
        self.fn = fn

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        out = []
        for a in archs:
            try:
                value = float(self.fn(a))
            except LatbenchError:
                raise
            except Exception as exc:
                raise LatbenchError(
                    "--quality", f"{self.target}({a.describe()}) failed: {type(exc).__name__}: {exc}"
                ) from None
            if not math.isfinite(value):
                raise LatbenchError(
                    "--quality", f"{self.target}({a.describe()}) returned {value}, expected a finite number"
                )
            out.append(value)
        return np.array(out, dtype=np.float64)

    def describe(self) -> str:
        return f"callable: {self.target} (lower is better)"

    def spec(self) -> str:
        return self.target

    def __getstate__(self) -> dict[str, Any]:
        return {"target": self.target}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["target"])  # type: ignore[misc]


def get_quality(spec: str | QualityObjective | None) -> QualityObjective:
    """``proxy`` (default), ``supernet:RUN_DIR`` or ``module:function``."""
    if isinstance(spec, QualityObjective):
        return spec
    if spec is None or spec == "proxy":
        return ScalingLawProxy()
    if spec.startswith("supernet:"):
        return SupernetQuality(spec.partition(":")[2])
    if ":" in spec:
        return CallableQuality(spec)
    raise LatbenchError(
        "--quality", f"unknown objective {spec!r} (expected proxy, supernet:RUN_DIR or module:function)"
    )
