"""Comparing the environments behind one target label.

Two nodes of one target always have different ``env_id`` when they hold GPUs (the
id hashes each GPU's UUID), so a differing id alone is no cause for concern. What
matters is whether the *kind* of environment differs: another CPU model, another
driver, another power limit, another library version. Those differences are
reported as a warning, and the rows stay apart because every row carries its
``env_id``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: GPU fields that make two devices of one kind measure differently (UUID, index and the
#: drifting state are left out: they differ between any two GPUs or any two moments).
_GPU_FIELDS: tuple[str, ...] = (
    "name",
    "driver_version",
    "cuda_driver_version",
    "compute_capability",
    "memory_gib",
    "max_sm_clock_mhz",
    "power_limit_w",
)


def env_signature(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a fingerprint that describe the kind of environment, flattened to dotted names."""
    cpu = fingerprint.get("cpu") or {}
    sig: dict[str, Any] = {
        "cpu.model": cpu.get("model"),
        "cpu.arch": cpu.get("arch"),
        "cpu.logical_cores": cpu.get("logical_cores"),
        "cpu.flags": " ".join(cpu.get("flags") or []),
        "threads": fingerprint.get("threads"),
        "python": fingerprint.get("python"),
        "platform": fingerprint.get("platform"),
    }
    for lib, version in sorted((fingerprint.get("libraries") or {}).items()):
        sig[f"libraries.{lib}"] = version
    for i, gpu in enumerate(fingerprint.get("gpus") or []):
        for name in _GPU_FIELDS:
            sig[f"gpus[{i}].{name}"] = gpu.get(name)
    return sig


def env_differences(fingerprints: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """How the environments differ, one ``field: a vs b`` per differing field (empty if alike).

    Args:
        fingerprints: ``env_id -> fingerprint`` of the environments under one label.
    """
    if len(fingerprints) < 2:
        return []
    sigs = {env_id: env_signature(fp) for env_id, fp in sorted(fingerprints.items())}
    names = sorted({n for s in sigs.values() for n in s})
    out = []
    for name in names:
        values = {str(s.get(name)) for s in sigs.values()}
        if len(values) > 1:
            out.append(f"{name}: {' vs '.join(sorted(values))}")
    return out


def label_warning(label: str, fingerprints: Mapping[str, Mapping[str, Any]], limit: int = 3) -> str | None:
    """A one-line warning when the environments under ``label`` differ in kind, else ``None``."""
    diffs = env_differences(fingerprints)
    if not diffs:
        return None
    shown = "; ".join(diffs[:limit]) + (f"; and {len(diffs) - limit} more" if len(diffs) > limit else "")
    ids = ", ".join(sorted(fingerprints))
    return (
        f"target {label!r} ran in {len(fingerprints)} different environments ({ids}): {shown}; "
        "their rows are kept apart by env_id"
    )
