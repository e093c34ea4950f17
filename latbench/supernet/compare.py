"""Compare training strategies at an equal budget: quality of sub-networks across sizes (for benchmarks).

Budget: ``steps`` gives every strategy the same optimiser steps; ``passes``
gives them the same number of sub-network forward/backward passes (standard
runs one per step, random ``k``, sandwich ``k + 2``), which is the fairer
compute budget.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.space.arch import Arch
from latbench.supernet.config import STRATEGIES, TrainConfig
from latbench.supernet.evaluate import evaluate_subnet
from latbench.supernet.train import load_trained, train_supernet

__all__ = ["compare_strategies", "passes_per_step", "probe_archs"]


def passes_per_step(config: TrainConfig) -> int:
    """Sub-network forward/backward passes of one step."""
    return {"standard": 1, "random": config.num_random, "sandwich": config.num_random + 2}[config.strategy]


def probe_archs(config: TrainConfig, n_random: int = 4, seed: int = 1234) -> list[Arch]:
    """The smallest and largest members and ``n_random`` samples, ordered by parameters (the probes of a comparison)."""
    from latbench.models.cost import model_cost

    space = config.space
    if space is None:
        raise LatbenchError("space", "a comparison of strategies needs a super-net's space")
    archs = {a.to_json(): a for a in [space.min_arch(), space.max_arch(), *space.sample(seed, n=n_random)]}  # type: ignore[misc]
    seq = None if config.supernet.family == "vit" else config.data.seq_len
    return sorted(archs.values(), key=lambda a: model_cost(a, 1, seq).total.params)


def compare_strategies(
    config: TrainConfig,
    out_root: str | os.PathLike[str],
    *,
    strategies: tuple[str, ...] = STRATEGIES,
    budget: str = "passes",
    archs: list[Arch] | None = None,
    split: str = "val",
) -> list[dict[str, Any]]:
    """Train ``config`` once per strategy into ``out_root/<strategy>`` and evaluate the same sub-networks.

    With ``budget="passes"`` each strategy gets ``config.steps x passes_per_step(config)`` passes, rounded
    to whole steps; with ``budget="steps"`` each gets ``config.steps`` steps. Runs resume like any run.

    Returns:
        One row per (strategy, arch): strategy, steps, passes, arch (describe), params, loss, accuracy,
        perplexity, latency_ms.
    """
    if budget not in ("passes", "steps"):
        raise LatbenchError("budget", f"expected passes or steps, got {budget!r}")
    probes = archs or probe_archs(config)
    total_passes = config.steps * passes_per_step(config)
    rows: list[dict[str, Any]] = []
    for strategy in strategies:
        run_cfg = replace(config, strategy=strategy, inplace_distill=config.inplace_distill and strategy == "sandwich")
        if budget == "passes":
            run_cfg = replace(run_cfg, steps=max(1, round(total_passes / passes_per_step(run_cfg))))
        out = Path(out_root) / strategy
        train_supernet(run_cfg, out)
        trained = load_trained(out)
        for arch in probes:
            ev = evaluate_subnet(trained, arch, split=split)
            rows.append(
                {
                    "strategy": strategy,
                    "steps": run_cfg.steps,
                    "passes": run_cfg.steps * passes_per_step(run_cfg),
                    "arch": arch.describe(),
                    "params": ev.params,
                    "loss": ev.loss,
                    "accuracy": ev.accuracy,
                    "perplexity": ev.perplexity,
                    "latency_ms": ev.latency_ms,
                }
            )
    return rows
