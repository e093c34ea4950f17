"""Foreign architecture formats, read and written exactly as their tools print them.

- AutoTinyBERT: the ``sample_*`` dict its scripts print with ``str(dict)``, e.g.
  ``{'sample_layer_num': 4, 'sample_num_attention_heads': [6, 6, 6, 6],
  'sample_qkv_sizes': [384, 384, 384, 384], 'sample_hidden_size': 384,
  'sample_intermediate_sizes': [1536, 1536, 1536, 1536]}``. ``qkv_size`` is the
  total Q/K/V width, split evenly over the heads.
- NViT: per-block dimensions in the vocabulary of its latency table
  (``EMB_e``, ``QK_h_d``, ``V_d``, ``MLP_m``): ``{"EMB": 768, "blocks": [{"heads": 12,
  "QK": 64, "V": 64, "MLP": 3072}, ...]}``.
- whittle: the keyword arguments of ``GPT.set_sub_network`` (``sub_network_n_embd``,
  ``sub_network_intermediate_size``, ``sub_network_num_heads``, ``sub_network_n_layers``,
  ``sub_network_head_size``, ``sub_network_query_groups``); per-layer values are
  lists, uniform ones scalars.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping
from typing import Any

from latbench.errors import LatbenchError
from latbench.space.arch import Arch, LayerSpec

FORMATS: tuple[str, ...] = ("latbench", "autotinybert", "nvit", "whittle")

_ATB_KEYS = (
    "sample_layer_num",
    "sample_num_attention_heads",
    "sample_qkv_sizes",
    "sample_hidden_size",
    "sample_intermediate_sizes",
)
_WHITTLE_KEYS = (
    "sub_network_n_embd",
    "sub_network_intermediate_size",
    "sub_network_num_heads",
    "sub_network_n_layers",
    "sub_network_head_size",
    "sub_network_query_groups",
)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LatbenchError(where, f"expected a positive integer, got {value!r}")
    return value


def _per_layer(value: Any, n: int, where: str) -> list[int]:
    if isinstance(value, list):
        if len(value) != n:
            raise LatbenchError(where, f"has {len(value)} entries for {n} layers")
        return [_int(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return [_int(value, where)] * n


# ------------------------------------------------------------- AutoTinyBERT
def to_autotinybert(arch: Arch) -> str:
    """AutoTinyBERT's arch dict string (``str`` of a dict, keys in its order)."""
    if arch.family != "bert":
        raise LatbenchError("--to autotinybert", f"AutoTinyBERT describes BERT models, not {arch.family!r}")
    for i, s in enumerate(arch.layers):
        if s.qk_dim != s.v_dim:
            raise LatbenchError(
                "--to autotinybert", f"layer {i}: qk_dim {s.qk_dim} != v_dim {s.v_dim}; AutoTinyBERT has one qkv size"
            )
    d = {
        "sample_layer_num": arch.n_layers,
        "sample_num_attention_heads": [s.heads for s in arch.layers],
        "sample_qkv_sizes": [s.qk_size for s in arch.layers],
        "sample_hidden_size": arch.hidden,
        "sample_intermediate_sizes": [s.mlp for s in arch.layers],
    }
    return str(d)


def from_autotinybert(data: str | Mapping[str, Any], where: str = "arch", **extras: int) -> Arch:
    """Parse AutoTinyBERT's arch dict (a dict, or its ``str``/JSON form)."""
    if isinstance(data, str):
        try:
            data = ast.literal_eval(data.strip())
        except (ValueError, SyntaxError):
            raise LatbenchError(where, "not an AutoTinyBERT arch dict (a Python dict literal)") from None
    if not isinstance(data, Mapping):
        raise LatbenchError(where, "expected an AutoTinyBERT arch dict")
    missing = [k for k in _ATB_KEYS if k not in data]
    if missing:
        raise LatbenchError(where, f"missing key {missing[0]!r}")
    unknown = sorted(set(data) - set(_ATB_KEYS))
    if unknown:
        raise LatbenchError(where, f"unknown key {unknown[0]!r}")
    n = _int(data["sample_layer_num"], f"{where}.sample_layer_num")
    heads = _per_layer(data["sample_num_attention_heads"], n, f"{where}.sample_num_attention_heads")
    qkv = _per_layer(data["sample_qkv_sizes"], n, f"{where}.sample_qkv_sizes")
    mlp = _per_layer(data["sample_intermediate_sizes"], n, f"{where}.sample_intermediate_sizes")
    layers = []
    for i, (h, q, m) in enumerate(zip(heads, qkv, mlp)):
        if q % h:
            raise LatbenchError(f"{where}: layer {i}", f"qkv size {q} is not divisible by {h} heads")
        layers.append(LayerSpec(heads=h, qk_dim=q // h, v_dim=q // h, mlp=m))
    hidden = _int(data["sample_hidden_size"], f"{where}.sample_hidden_size")
    return Arch(family="bert", hidden=hidden, layers=tuple(layers), **extras)


# --------------------------------------------------------------------- NViT
def to_nvit(arch: Arch) -> dict[str, Any]:
    """NViT's per-block dimensions: ``{"EMB": e, "blocks": [{"heads", "QK", "V", "MLP"}]}``."""
    return {
        "EMB": arch.hidden,
        "blocks": [{"heads": s.heads, "QK": s.qk_dim, "V": s.v_dim, "MLP": s.mlp} for s in arch.layers],
    }


def nvit_block_key(arch: Arch, index: int) -> tuple[str, str, str, str]:
    """The keys of block ``index`` in NViT's ``latency_head.json`` (EMB_e, QK_h_d, V_d, MLP_m)."""
    s = arch.layers[index]
    return (f"EMB_{arch.hidden}", f"QK_{s.heads}_{s.qk_dim}", f"V_{s.v_dim}", f"MLP_{s.mlp}")


def from_nvit(data: Any, where: str = "arch", family: str = "vit", **extras: int) -> Arch:
    """Parse NViT per-block dimensions (see :func:`to_nvit`)."""
    if not isinstance(data, Mapping) or set(data) != {"EMB", "blocks"}:
        raise LatbenchError(where, 'expected NViT dims {"EMB": e, "blocks": [{"heads", "QK", "V", "MLP"}, ...]}')
    blocks = data["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise LatbenchError(f"{where}.blocks", "expected a non-empty list")
    layers = []
    for i, b in enumerate(blocks):
        w = f"{where}.blocks[{i}]"
        if not isinstance(b, Mapping) or set(b) != {"heads", "QK", "V", "MLP"}:
            raise LatbenchError(w, "expected keys heads, QK, V, MLP")
        layers.append(
            LayerSpec(
                heads=_int(b["heads"], f"{w}.heads"),
                qk_dim=_int(b["QK"], f"{w}.QK"),
                v_dim=_int(b["V"], f"{w}.V"),
                mlp=_int(b["MLP"], f"{w}.MLP"),
            )
        )
    return Arch(family=family, hidden=_int(data["EMB"], f"{where}.EMB"), layers=tuple(layers), **extras)


# ------------------------------------------------------------------ whittle
def to_whittle(arch: Arch) -> dict[str, Any]:
    """whittle's ``set_sub_network`` keyword arguments (scalars when layers agree)."""
    for i, s in enumerate(arch.layers):
        if s.qk_dim != s.v_dim:
            raise LatbenchError(
                "--to whittle", f"layer {i}: qk_dim {s.qk_dim} != v_dim {s.v_dim}; whittle has one head size"
            )

    def col(values: list[int]) -> int | list[int]:
        return values[0] if len(set(values)) == 1 else values

    heads = col([s.heads for s in arch.layers])
    return {
        "sub_network_n_embd": arch.hidden,
        "sub_network_intermediate_size": col([s.mlp for s in arch.layers]),
        "sub_network_num_heads": heads,
        "sub_network_n_layers": arch.n_layers,
        "sub_network_head_size": col([s.qk_dim for s in arch.layers]),
        # Multi-head attention: one query group per head.
        "sub_network_query_groups": heads,
    }


def from_whittle(data: Any, where: str = "arch", family: str = "gpt", **extras: int) -> Arch:
    """Parse whittle's sub-network config (see :func:`to_whittle`)."""
    if not isinstance(data, Mapping):
        raise LatbenchError(where, "expected a whittle sub-network config object")
    required = ("sub_network_n_embd", "sub_network_intermediate_size", "sub_network_num_heads", "sub_network_n_layers")
    missing = [k for k in required if k not in data]
    if missing:
        raise LatbenchError(where, f"missing key {missing[0]!r}")
    unknown = sorted(set(data) - set(_WHITTLE_KEYS))
    if unknown:
        raise LatbenchError(where, f"unknown key {unknown[0]!r}")
    n = _int(data["sub_network_n_layers"], f"{where}.sub_network_n_layers")
    hidden = _int(data["sub_network_n_embd"], f"{where}.sub_network_n_embd")
    heads = _per_layer(data["sub_network_num_heads"], n, f"{where}.sub_network_num_heads")
    mlp = _per_layer(data["sub_network_intermediate_size"], n, f"{where}.sub_network_intermediate_size")
    if data.get("sub_network_head_size") is not None:
        head_size = _per_layer(data["sub_network_head_size"], n, f"{where}.sub_network_head_size")
    else:
        # whittle's default head size is n_embd // n_head.
        head_size = []
        for i, h in enumerate(heads):
            if hidden % h:
                raise LatbenchError(f"{where}: layer {i}", f"n_embd {hidden} is not divisible by {h} heads")
            head_size.append(hidden // h)
    groups = data.get("sub_network_query_groups")
    if groups is not None and _per_layer(groups, n, f"{where}.sub_network_query_groups") != heads:
        raise LatbenchError(f"{where}.sub_network_query_groups", "grouped-query attention is not supported")
    layers = tuple(LayerSpec(heads=h, qk_dim=d, v_dim=d, mlp=m) for h, d, m in zip(heads, head_size, mlp))
    return Arch(family=family, hidden=hidden, layers=layers, **extras)


# ----------------------------------------------------------------- dispatch
def detect_format(data: Any) -> str:
    """Which format a parsed object is in."""
    if isinstance(data, Mapping):
        if "family" in data and "layers" in data:
            return "latbench"
        if "sample_layer_num" in data:
            return "autotinybert"
        if "EMB" in data and "blocks" in data:
            return "nvit"
        if "sub_network_n_embd" in data:
            return "whittle"
    raise LatbenchError("arch", "not a known architecture format (latbench, autotinybert, nvit, whittle)")


def parse_arch_text(text: str, where: str = "arch") -> Arch:
    """Parse an architecture in any supported format from JSON or a Python dict literal."""
    stripped = text.strip()
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        if stripped.startswith("{") and "'" in stripped:
            try:
                data = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):
                raise LatbenchError(
                    where, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
                ) from None
        else:
            raise LatbenchError(where, f"malformed JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return arch_from_obj(data, where)


def arch_from_obj(data: Any, where: str = "arch") -> Arch:
    """An :class:`Arch` from a parsed object in any supported format."""
    if not isinstance(data, Mapping):
        raise LatbenchError(where, f"expected a JSON object, got {type(data).__name__}")
    try:
        fmt = detect_format(data)
    except LatbenchError:
        raise LatbenchError(where, "not a known architecture format (latbench, autotinybert, nvit, whittle)") from None
    if fmt == "latbench":
        return Arch.from_dict(data, where)
    if fmt == "autotinybert":
        return from_autotinybert(data, where)
    if fmt == "nvit":
        return from_nvit(data, where)
    return from_whittle(data, where)


def convert(arch: Arch, to: str) -> str:
    """Render ``arch`` in format ``to`` as the text its tool prints."""
    if to == "latbench":
        return arch.to_json()
    if to == "autotinybert":
        return to_autotinybert(arch)
    if to == "nvit":
        return json.dumps(to_nvit(arch))
    if to == "whittle":
        return json.dumps(to_whittle(arch))
    raise LatbenchError("--to", f"unknown format {to!r} (expected one of {', '.join(FORMATS)})")


def load_arch(value: str, what: str = "ARCH") -> Arch:
    """An architecture from a CLI value: inline JSON / arch dict, or the path of a file holding one."""
    from pathlib import Path

    from latbench.io import read_text

    stripped = value.strip()
    if stripped.startswith("{"):
        return parse_arch_text(stripped, what)
    if not Path(value).exists():
        raise LatbenchError(what, f"{value!r} is neither an architecture (JSON) nor an existing file")
    return parse_arch_text(read_text(value), value)
