"""Tiny spaces, a tiny text corpus and configs shared by the super-net and checkpoint tests (kept fast)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from latbench.space.spaces import SearchSpace
from latbench.supernet.config import DataConfig, TrainConfig
from latbench.supernet.spaces import training_space

FAMILIES = ("bert", "vit", "gpt")
SEQ_LEN = 16

#: Spaces small enough for a CPU test: width <= 32, 2 layers, 1-2 heads of 8 or 16.
SPACE_DICTS: dict[str, dict[str, Any]] = {
    "bert": {
        "name": "tiny-bert",
        "family": "bert",
        "n_layers": {"min": 1, "max": 2},
        "hidden": {"min": 16, "max": 32, "step": 16},
        "heads": {"min": 1, "max": 2},
        "qk_dim": {"choices": [8, 16]},
        "mlp": {"min": 32, "max": 64, "step": 32},
        "uniform_layers": True,
    },
    "vit": {
        "name": "tiny-vit",
        "family": "vit",
        "n_layers": {"min": 1, "max": 2},
        "hidden": {"min": 16, "max": 32, "step": 16},
        "heads": {"min": 1, "max": 2},
        "qk_dim": {"choices": [8, 16]},
        "v_dim": {"choices": [8, 16]},
        "mlp": {"min": 32, "max": 64, "step": 32},
        "uniform_layers": False,
    },
    "gpt": {
        "name": "tiny-gpt",
        "family": "gpt",
        "n_layers": {"min": 1, "max": 2},
        "hidden": {"min": 16, "max": 32, "step": 16},
        "heads": {"min": 1, "max": 2},
        "qk_dim": {"choices": [8, 16]},
        "mlp": {"min": 32, "max": 64, "step": 32},
        "uniform_layers": True,
    },
}

_WORDS = (
    "the model reads a short sentence and predicts the next word while the search keeps only fast networks "
    "latency accuracy transformer layer head width budget sandwich rule small large random python library"
).split()


def write_corpus(folder: Path, n_docs: int = 6, words_per_doc: int = 400, seed: int = 0) -> Path:
    """A deterministic English-like corpus of ``n_docs`` .txt files (about 16 KB)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_docs):
        words = [_WORDS[int(j)] for j in rng.integers(0, len(_WORDS), words_per_doc)]
        (folder / f"doc{i}.txt").write_text(" ".join(words) + ".\n", encoding="utf-8")
    return folder


def tiny_space(family: str) -> SearchSpace:
    return training_space(SearchSpace.from_dict(SPACE_DICTS[family]), SEQ_LEN)


def tiny_config(family: str, corpus: Path | None, **options: Any) -> TrainConfig:
    """A sandwich run on a tiny space: 4 steps, batch 8, a checkpoint every 2 steps."""
    space = tiny_space(family)
    paths = () if family == "vit" or corpus is None else (str(corpus),)
    data = DataConfig(family, paths=paths, seq_len=SEQ_LEN)
    defaults: dict[str, Any] = {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "warmup_steps": 1}
    defaults.update(options)
    return TrainConfig(supernet=space.supernet_arch(), data=data, space=space, **defaults)


def fit_predictor(
    path: Path, family: str = "gpt", extras: dict[str, int] | None = None, batch: tuple[int, int] = (1, 4)
) -> Any:
    """A roofline-linear predictor fitted on the analytic latency of the tiny space (a stand-in for a store)."""
    import numpy as np

    from latbench.models.cost import model_cost
    from latbench.predictors import create_predictor, save_predictor
    from latbench.predictors.data import Validity
    from latbench.predictors.features import FeatureSpec
    from latbench.space.arch import Arch

    space = tiny_space(family)
    extras = extras or space.supernet_arch().extras
    archs = [Arch(family=a.family, hidden=a.hidden, layers=a.layers, **extras) for a in space.sample(0, n=30)]
    batches = np.tile(np.arange(batch[0], batch[1] + 1), 30)[:30]
    seq = None if family == "vit" else SEQ_LEN
    y = [model_cost(a, int(b), seq).total.roofline_ms(1e9, 1e9) for a, b in zip(archs, batches)]
    spec = FeatureSpec.for_arch(family, extras=extras)
    pred = create_predictor("roofline-linear", features=spec)
    pred.fit(pred.featurize_archs(archs, batches, seq), np.asarray(y))
    pred.validity = Validity(
        source="latbench-store",
        device="test CPU",
        deploy={"backend": "torch", "device": "cpu", "mode": "eager", "precision": "fp32", "threads": 1},
        workload={"batch": list(batch), **({} if seq is None else {"seq_len": [seq, seq]})},
        family=family,
    )
    pred.statistic = "median"
    save_predictor(pred, path)
    return pred
