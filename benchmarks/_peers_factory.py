"""The model factory ``benchmarks/peers.py`` hands to ``latbench measure`` (``_peers_factory.py:bert``).

``latbench measure module:factory`` calls the factory with no arguments, so the saved model's
directory comes from the environment (``LATBENCH_PEERS_MODEL``), as a user's own factory would
read a path from a setting. The wrapper gives the encoder the inputs optimum-benchmark and the
timeit loop give it: the token ids, the token types and an attention mask of ones (built here,
since ``--input`` draws integers at random), and returns both outputs so that the pooler is
computed by every runtime (ONNX Runtime would prune an unused output).
"""

from __future__ import annotations

import os

import torch

ENV = "LATBENCH_PEERS_MODEL"


class BertEncoder(torch.nn.Module):
    """A ``transformers`` ``BertModel`` called with an all-ones attention mask; returns (hidden states, pooled)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), token_type_ids=token_type_ids)
        return out.last_hidden_state, out.pooler_output


def bert() -> torch.nn.Module:
    """The ``BertModel`` saved in the directory named by ``$LATBENCH_PEERS_MODEL``, wrapped."""
    from transformers import BertModel

    path = os.environ.get(ENV)
    if not path:
        raise RuntimeError(f"set {ENV} to a directory written by BertModel.save_pretrained")
    return BertEncoder(BertModel.from_pretrained(path, local_files_only=True)).eval()
