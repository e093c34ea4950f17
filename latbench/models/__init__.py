"""Reference models: elastic super-nets, dense models and single blocks of the three families; analytic cost.

Torch is imported on first use of a torch name (PEP 562 ``__getattr__``), so
``latbench.models.cost`` and ``import latbench.models`` stay torch-free.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latbench.models.blocks import (
        DENSE,
        ELASTIC,
        MLP,
        Attention,
        BertBlock,
        GPTBlock,
        LayerKit,
        ViTBlock,
        apply_rotary,
        rotary_ndims,
        rotary_tables,
    )
    from latbench.models.build import (
        block_inputs,
        build_block,
        build_model,
        build_supernet,
        distinct_blocks,
        example_inputs,
        init_weights,
    )
    from latbench.models.cost import Cost, ModelCost, block_cost, block_params, model_cost
    from latbench.models.elastic import (
        ElasticConv2d,
        ElasticEmbedding,
        ElasticLayer,
        ElasticLayerNorm,
        ElasticLinear,
        ElasticModuleList,
        ElasticTable,
        LearnedTable,
    )
    from latbench.models.families import (
        BertEmbeddings,
        BertMaskedLM,
        BertMLMHead,
        GPTCausalLM,
        GPTHead,
        TransformerModel,
        ViTClassifier,
        ViTEmbeddings,
        ViTHead,
    )
    from latbench.models.supernet import BertSuperNet, GPTSuperNet, SuperNet, ViTSuperNet

_EXPORTS: dict[str, tuple[str, ...]] = {
    "latbench.models.build": (
        "block_inputs",
        "build_block",
        "build_model",
        "build_supernet",
        "distinct_blocks",
        "example_inputs",
        "init_weights",
    ),
    "latbench.models.supernet": ("BertSuperNet", "GPTSuperNet", "SuperNet", "ViTSuperNet"),
    "latbench.models.families": (
        "BertEmbeddings",
        "BertMLMHead",
        "BertMaskedLM",
        "GPTCausalLM",
        "GPTHead",
        "TransformerModel",
        "ViTClassifier",
        "ViTEmbeddings",
        "ViTHead",
    ),
    "latbench.models.blocks": (
        "DENSE",
        "ELASTIC",
        "MLP",
        "Attention",
        "BertBlock",
        "GPTBlock",
        "LayerKit",
        "ViTBlock",
        "apply_rotary",
        "rotary_ndims",
        "rotary_tables",
    ),
    "latbench.models.elastic": (
        "ElasticConv2d",
        "ElasticEmbedding",
        "ElasticLayer",
        "ElasticLayerNorm",
        "ElasticLinear",
        "ElasticModuleList",
        "ElasticTable",
        "LearnedTable",
    ),
    "latbench.models.cost": ("Cost", "ModelCost", "block_cost", "block_params", "model_cost"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "DENSE",
    "ELASTIC",
    "MLP",
    "Attention",
    "BertBlock",
    "BertEmbeddings",
    "BertMLMHead",
    "BertMaskedLM",
    "BertSuperNet",
    "Cost",
    "ElasticConv2d",
    "ElasticEmbedding",
    "ElasticLayer",
    "ElasticLayerNorm",
    "ElasticLinear",
    "ElasticModuleList",
    "ElasticTable",
    "GPTBlock",
    "GPTCausalLM",
    "GPTHead",
    "GPTSuperNet",
    "LayerKit",
    "LearnedTable",
    "ModelCost",
    "SuperNet",
    "TransformerModel",
    "ViTBlock",
    "ViTClassifier",
    "ViTEmbeddings",
    "ViTHead",
    "ViTSuperNet",
    "apply_rotary",
    "block_cost",
    "block_inputs",
    "block_params",
    "build_block",
    "build_model",
    "build_supernet",
    "distinct_blocks",
    "example_inputs",
    "init_weights",
    "model_cost",
    "rotary_ndims",
    "rotary_tables",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'latbench.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
