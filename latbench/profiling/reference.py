"""The CPU reference workloads: a fixed computation timed in every round, the machine's speed meanwhile.

Two are defined, and a row says which one its ``ref_ms`` is a time of (the ``reference`` field of
the protocol JSON stored with it; rows without it were timed with ``matmul``):

- ``bert-block`` (the default since issue 17): one transformer encoder block, hidden 512, 8 heads
  of 64, MLP 2048, GELU, pre-computed random fp32 weights, batch 1, seq 128, one thread, about
  7 ms on this project's 2-core Xeon VM. Of the candidates a block of this shape followed the
  common drift of the bert models the most closely (correlation 0.95 over 10-round bins against
  0.86; divided out, two blocks of rounds 8 minutes apart repeat within 1.0% against 2.6% with
  ``matmul``: RESULTS, reference-choice-cpu, recorded with the bert space's own block of this
  shape, of which this is a copy in plain torch operations; a second trace timing this very
  workload: 0.95 against 0.92, and no clear difference in the rerun figures): it runs the same kernels as the
  models timed (GEMMs of transformer shapes, softmax, layer norms, GELU), so a change of the
  machine that slows one slows the other.
- ``matmul``: three products of a (128 x 1024) by a (1024 x 1024) fp32 matrix, one thread, about
  5 ms. The reference of every store written before the ``bert-block`` one; kept so that those
  stores' ``ref_ms`` keep their meaning and can be re-timed.

Neither depends on latbench's model code, so a change of the search spaces never changes what a
reference time means. The times of different references are different numbers: anchors and drift
corrections never mix them (:func:`row_reference`).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from latbench.errors import LatbenchError

#: The reference of rows whose protocol does not name one (written before references had names).
LEGACY = "matmul"
#: The protocol's default.
DEFAULT = "bert-block"

_built: dict[str, Callable[[], Any]] = {}


def _matmul() -> Callable[[], Any]:
    import torch

    gen = torch.Generator().manual_seed(0)
    x, w, out = torch.randn(128, 1024, generator=gen), torch.randn(1024, 1024, generator=gen), torch.empty(128, 1024)

    def call() -> None:
        for _ in range(3):
            torch.mm(x, w, out=out)

    return call


def _bert_block() -> Callable[[], Any]:
    import torch
    import torch.nn.functional as F

    hidden, heads, mlp, seq = 512, 8, 2048, 128
    gen = torch.Generator().manual_seed(0)

    def weight(rows: int, cols: int) -> Any:
        return torch.randn(rows, cols, generator=gen) / math.sqrt(cols)

    wqkv, bqkv = weight(3 * hidden, hidden), torch.zeros(3 * hidden)
    wo, bo = weight(hidden, hidden), torch.zeros(hidden)
    w1, b1 = weight(mlp, hidden), torch.zeros(mlp)
    w2, b2 = weight(hidden, mlp), torch.zeros(hidden)
    x = torch.randn(1, seq, hidden, generator=gen)

    def call() -> Any:
        with torch.inference_mode():
            q, k, v = F.linear(x, wqkv, bqkv).view(1, seq, 3, heads, hidden // heads).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, seq, hidden)
            h = F.layer_norm(x + F.linear(a, wo, bo), (hidden,))
            return F.layer_norm(h + F.linear(F.gelu(F.linear(h, w1, b1)), w2, b2), (hidden,))

    return call


#: name -> builder of the workload (a no-argument callable running it once).
REFERENCES: dict[str, Callable[[], Callable[[], Any]]] = {"bert-block": _bert_block, "matmul": _matmul}


def check(name: Any, where: str = "protocol reference") -> str:
    """``name`` if it is a reference's name, else a one-line error naming ``where``."""
    if name not in REFERENCES:
        raise LatbenchError(where, f"expected one of {', '.join(REFERENCES)}, got {name!r}")
    return str(name)


def cpu_reference(n: int, kind: str = DEFAULT) -> list[float]:
    """Time the reference workload ``kind`` ``n`` times, single-threaded (ms each): the machine's speed now.

    The workload and its thread count never change, so its time changes only with the machine:
    CPU frequency, another tenant's use of the shared caches, memory and host. One untimed call
    comes first: the model timed just before evicted the workload's weights from the caches, and
    the reference is to measure the machine's speed, not how much cache another workload took.
    The caller's torch thread count is restored.
    """
    import torch

    check(kind)
    if kind not in _built:
        _built[kind] = REFERENCES[kind]()
    call = _built[kind]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        call()
        times = []
        for _ in range(n):
            t0 = time.perf_counter_ns()
            call()
            times.append((time.perf_counter_ns() - t0) / 1e6)
        return times
    finally:
        torch.set_num_threads(threads)


def row_reference(row: Mapping[str, Any]) -> str:
    """The reference workload a store row's ``ref_ms`` is a time of: its protocol's ``reference`` as
    stored (a name this latbench does not know stays that name, never taken for another), ``matmul``
    for rows written before references had names (or with no protocol stored)."""
    raw = row.get("protocol")
    if not isinstance(raw, str) or not raw:
        return LEGACY
    try:
        data = json.loads(raw)
    except ValueError:
        return LEGACY
    name = data.get("reference") if isinstance(data, dict) else None
    return LEGACY if name is None else str(name)


def store_references(table: Any) -> dict[str, int]:
    """Rows with a reference time (``ref_ms``) per reference workload, in a store's table (pyarrow)."""
    if not table.num_rows or "ref_ms" not in table.column_names:
        return {}
    protocols = table.column("protocol").to_pylist() if "protocol" in table.column_names else [None] * table.num_rows
    out: dict[str, int] = {}
    for ref, proto in zip(table.column("ref_ms").to_pylist(), protocols):
        if ref is not None and ref == ref and ref > 0:
            name = row_reference({"protocol": proto})
            out[name] = out.get(name, 0) + 1
    return out


def refuse_mixing(table: Any, reference: str, where: str) -> None:
    """A one-line error when the store at ``where`` holds rows timed with another reference than
    ``reference``: adding to it would put two references' times, which are not one scale, in one store."""
    others = sorted(set(store_references(table)) - {reference})
    if others:
        raise LatbenchError(
            where,
            f"holds rows timed with --reference-workload {others[0]}, not {reference}: give --reference-workload "
            f"{others[0]} to add to it, or write to a new store",
        )
