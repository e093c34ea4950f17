"""Super-net training (standard, random, sandwich), objectives, small real data sets, sub-network evaluation.

Names are imported on first use (PEP 562), so ``import latbench.supernet`` loads no torch.

Typical use::

    from latbench.supernet import make_train_config, train_supernet, subnet_quality
    config = make_train_config("gpt", scale=..., steps=200)            # or TrainConfig(...)
    train_supernet(config, "runs/gpt")
    loss = subnet_quality("runs/gpt", arch)                             # a search's quality objective
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, tuple[str, ...]] = {
    "latbench.supernet.data": (
        "TEXT_VOCAB_SIZE",
        "ByteTokenizer",
        "default_corpus",
        "digits_splits",
        "digits_vit_extras",
        "load_corpus",
        "text_splits",
    ),
    "latbench.supernet.config": ("OBJECTIVES", "STRATEGIES", "DataConfig", "TrainConfig"),
    "latbench.supernet.spaces": ("SpaceCaps", "shrink_space", "training_space"),
    "latbench.supernet.setup": ("adopt_extras", "make_train_config"),
    "latbench.supernet.train": (
        "TrainResult",
        "TrainedModel",
        "load_model_dir",
        "load_trained",
        "plan_sub_networks",
        "task_data",
        "train_supernet",
    ),
    "latbench.supernet.evaluate": ("SubnetEvaluation", "evaluate_subnet", "extract_sub_network", "subnet_quality"),
    "latbench.supernet.compare": ("compare_strategies", "probe_archs"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'latbench.supernet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
