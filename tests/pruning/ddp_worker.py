"""One process of the data-parallel pruning test: ``python -m tests.pruning.ddp_worker OUT RANK WORLD INIT``."""

from __future__ import annotations

import sys
from typing import Any

import torch

from latbench.pruning.config import PruneConfig, TrainConfig
from latbench.pruning.latency import LatencyCost
from latbench.pruning.run import prune_model

from .helpers import linear_lut, perturbed_model, tiny_vit, vit_data


def prune_once(checkpoint: Any = None) -> dict[str, Any]:
    """The run both the single process and each data-parallel process do (global batch 16)."""
    torch.set_num_threads(1)
    arch = tiny_vit()
    model = perturbed_model(arch, seed=5)
    cost = LatencyCost(linear_lut(arch), arch)
    cfg = PruneConfig(
        latency_target=0.45, latency_regularization=0.5, normalize=True, prune_per_iter=6, interval_prune=3
    )
    train = TrainConfig(steps=60, batch_size=16, lr=1e-3, distill_alpha=0.5, checkpoint_every=0)
    outcome = prune_model(model, vit_data(64), cfg, train, latency=cost, checkpoint=checkpoint)
    return {
        "masks": {g.name: g.keep.clone() for g in outcome.pruner.groups},
        "dense": {k: v.clone() for k, v in outcome.dense.state_dict().items()},
        "history": [r.to_dict() for r in outcome.pruner.history],
        "batches": outcome.training.steps,
    }


def main(out: str, rank: int, world: int, init: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        result = prune_once()
        if rank == 0:
            torch.save(result, out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
