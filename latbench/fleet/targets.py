"""Fleet targets: which device, reached through which Ray resource, deployed how.

A targets file (YAML, or JSON when it ends in ``.json``) lists the devices a fleet
run profiles::

    targets:
      - label: h100-graph-fp16        # names the target in the store, the tables and the output
        resource: h100                # Ray custom resource marking the node(s) holding this device
        device: cuda:0                # with num_gpus 1 (the default on CUDA): the GPU Ray assigned
        deploy: {backend: torch, mode: graph, precision: fp16}
      - label: xeon-1t
        resource: xeon_box
        device: cpu
        deploy: {backend: onnxruntime, mode: cpu, precision: fp32, threads: 1}

Every task of a target requires **one unit** of its resource, so two tasks can run
on the same device only if the node declares two units; a node holding eight
identical GPUs declares ``h100: 8`` and the eight GPUs share the target's work.
The workload (batch, sequence length) is the command's, not the target's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError, MissingDependencyError
from latbench.profiling.config import DeployConfig

#: Version of the targets file layout (optional ``version:`` key; absent means 1).
TARGETS_SCHEMA_VERSION = 1

#: A label is part of a store key (``target=<label>,...``) and of a table's file name.
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_RESOURCE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$")
#: Ray's own resources: a device must be claimed through a custom resource (plus num_gpus).
_RESERVED_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})

_TARGET_KEYS = frozenset({"label", "resource", "device", "deploy", "num_cpus", "num_gpus", "local_units"})
_DEPLOY_KEYS = frozenset({"backend", "mode", "precision", "threads", "cache", "options"})


@dataclass(frozen=True)
class Target:
    """One device of the fleet and how it is deployed.

    Attributes:
        label: Unique name of the target (letters, digits, ``_ . -``); rows are tagged with it.
        resource: The Ray custom resource that marks the node(s) holding the device; every
            task takes one unit of it, so no two tasks ever share a device.
        deploy: The deployment (device, backend, mode, precision, threads, cache, options)
            with the command's workload (batch, sequence length); see :meth:`with_workload`.
        num_cpus: CPU cores Ray reserves per task (default: ``threads`` on the CPU, 1 on a GPU).
        num_gpus: ``1`` (default on CUDA): Ray assigns the task one GPU and makes it the
            task's ``cuda:0``; ``0``: the device string is used as written (``cuda:N`` pinned
            by a resource of its own). Always 0 on the CPU.
        local_units: Units of ``resource`` that ``--address local`` gives the cluster it starts
            on this machine (e.g. 8 for eight GPUs of one kind).
    """

    label: str
    resource: str
    deploy: DeployConfig
    num_cpus: float | None = None
    num_gpus: int | None = None
    local_units: int = 1

    def __post_init__(self) -> None:
        where = f"target {self.label!r}"
        if not isinstance(self.label, str) or not _LABEL.match(self.label):
            raise LatbenchError(
                where, "label must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
            )
        if not isinstance(self.resource, str) or not _RESOURCE.match(self.resource):
            raise LatbenchError(where, f"resource {self.resource!r} is not a valid Ray resource name")
        if self.resource in _RESERVED_RESOURCES:
            raise LatbenchError(
                where,
                f"resource {self.resource!r} is Ray's own; name the device's custom resource "
                "(start the node with --resources '{\"h100\": 8}')",
            )
        if not isinstance(self.deploy, DeployConfig):
            raise LatbenchError(where, f"deploy must be a DeployConfig, got {type(self.deploy).__name__}")
        on_gpu = self.deploy.device_type == "cuda"
        num_gpus = (1 if on_gpu else 0) if self.num_gpus is None else self.num_gpus
        if isinstance(num_gpus, bool) or num_gpus not in (0, 1):
            # A fraction of a GPU would let two tasks measure on one device at once.
            raise LatbenchError(where, f"num_gpus must be 0 or 1, got {self.num_gpus!r}")
        if not on_gpu and num_gpus:
            raise LatbenchError(where, "num_gpus must be 0 for a cpu device")
        if on_gpu and num_gpus and self.deploy.device != "cuda:0":
            raise LatbenchError(
                where,
                f"device {self.deploy.device}: with num_gpus 1 Ray assigns the GPU and the task sees it as "
                "cuda:0; write device cuda:0, or set num_gpus 0 to pin cuda:N through a resource of its own",
            )
        object.__setattr__(self, "num_gpus", num_gpus)
        num_cpus = self.num_cpus
        if num_cpus is None:
            num_cpus = float(self.deploy.threads) if not on_gpu and self.deploy.threads else 1.0
        if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not 0 <= num_cpus <= 1024:
            raise LatbenchError(where, f"num_cpus must be a number >= 0, got {self.num_cpus!r}")
        object.__setattr__(self, "num_cpus", float(num_cpus))
        if isinstance(self.local_units, bool) or not isinstance(self.local_units, int) or self.local_units < 1:
            raise LatbenchError(where, f"local_units must be an integer >= 1, got {self.local_units!r}")

    @property
    def store_key(self) -> str:
        """The ``deploy_key`` of this target's rows: ``target=<label>,`` + the deployment's key.

        Two targets may share a deployment (``cpu``, torch, 1 thread on two machines), so the
        label is part of what makes a row unique; the store's key columns stay as they are.
        """
        return target_deploy_key(self.label, self.deploy)

    def with_workload(self, batch: int, seq_len: int | None) -> Target:
        """The same target measuring ``batch`` x ``seq_len`` (validated by :class:`DeployConfig`)."""
        try:
            deploy = replace(self.deploy, batch=batch, seq_len=seq_len)
        except LatbenchError as exc:
            flag = {"batch": "--batch", "seq_len": "--seq"}.get(exc.where, exc.where)
            raise LatbenchError(flag, exc.what) from None
        return replace(self, deploy=deploy)

    def describe(self) -> str:
        """One line: label, resource and deployment."""
        return f"{self.label} [{self.resource}] {self.deploy.label()}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the deployment with its workload)."""
        return {
            "label": self.label,
            "resource": self.resource,
            "deploy": self.deploy.to_dict(),
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus,
            "local_units": self.local_units,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Target:
        """Inverse of :meth:`to_dict`."""
        unknown = sorted(set(data) - {"label", "resource", "deploy", "num_cpus", "num_gpus", "local_units"})
        if unknown:
            raise LatbenchError("target", f"unknown field(s) {', '.join(unknown)}")
        return cls(
            label=data["label"],
            resource=data["resource"],
            deploy=DeployConfig.from_dict(data["deploy"]),
            num_cpus=data.get("num_cpus"),
            num_gpus=data.get("num_gpus"),
            local_units=data.get("local_units", 1),
        )


def target_deploy_key(label: str, deploy: DeployConfig) -> str:
    """``target=<label>,<deploy.key()>``: the store's ``deploy_key`` of a fleet row."""
    return f"target={label},{deploy.key()}"


def split_deploy_key(deploy_key: str) -> tuple[str | None, str]:
    """``(label, plain deploy key)`` of a store ``deploy_key``; label ``None`` for a non-fleet row.

    :meth:`DeployConfig.from_key` parses the plain part.
    """
    head, sep, rest = deploy_key.partition(",")
    if sep and head.startswith("target="):
        return head.removeprefix("target="), rest
    return None, deploy_key


# ------------------------------------------------------------------- reading
def _load_yaml(text: str, where: str) -> Any:
    try:
        import yaml  # PyYAML comes with the ray extra; imported only for a YAML targets file
    except ImportError:
        raise MissingDependencyError(
            where, "reading YAML needs PyYAML: pip install 'latbench[ray]' (or write the targets as .json)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        pos = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise LatbenchError(where, f"invalid YAML{pos}: {problem}") from None


def parse_targets(data: Any, where: str = "targets") -> tuple[Target, ...]:
    """Validate a parsed targets document (``{targets: [...]}`` or a bare list) into targets.

    Each entry: ``label``, ``resource``, ``device``, ``deploy`` (backend, mode, precision,
    threads, cache, options) and optionally ``num_cpus``, ``num_gpus``, ``local_units``.
    Errors name ``where`` and the entry.
    """
    if isinstance(data, Mapping):
        unknown = sorted(set(data) - {"version", "targets"})
        if unknown:
            raise LatbenchError(where, f"unknown key {unknown[0]!r} (expected 'targets' and optionally 'version')")
        version = data.get("version", TARGETS_SCHEMA_VERSION)
        if version != TARGETS_SCHEMA_VERSION:
            raise LatbenchError(where, f"targets file version {version!r}; this latbench reads version 1")
        entries = data.get("targets")
    else:
        entries = data
    if not isinstance(entries, Sequence) or isinstance(entries, (str, bytes)) or not entries:
        raise LatbenchError(where, "expected a non-empty list of targets (under 'targets:')")
    targets: list[Target] = []
    for i, entry in enumerate(entries):
        targets.append(_parse_entry(entry, where, i))
    labels = [t.label for t in targets]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup is not None:
        raise LatbenchError(where, f"label {dup!r} is used by two targets; labels must be unique")
    return tuple(targets)


def _parse_entry(entry: Any, base: str, index: int) -> Target:
    where = f"{base}: target {index + 1}"
    if not isinstance(entry, Mapping):
        raise LatbenchError(where, f"expected a mapping, got {type(entry).__name__}")
    if isinstance(entry.get("label"), str):
        where = f"{base}: target {entry['label']!r}"
    unknown = sorted(set(entry) - _TARGET_KEYS)
    if unknown:
        raise LatbenchError(where, f"unknown key {unknown[0]!r} (expected {', '.join(sorted(_TARGET_KEYS))})")
    for name in ("label", "resource", "device", "deploy"):
        if name not in entry:
            raise LatbenchError(where, f"missing {name!r}")
    if not isinstance(entry["label"], str):
        raise LatbenchError(where, "label must be a string")
    if not isinstance(entry["device"], str):
        raise LatbenchError(where, "device must be a string such as cpu or cuda:0")
    deploy = entry["deploy"]
    if not isinstance(deploy, Mapping):
        raise LatbenchError(where, "deploy must be a mapping (backend, mode, precision, threads, cache, options)")
    if "device" in deploy:
        raise LatbenchError(where, "give the device at the target level, not under deploy")
    if "batch" in deploy or "seq_len" in deploy:
        raise LatbenchError(where, "the workload (batch, seq_len) comes from the command's --batch/--seq")
    unknown = sorted(set(deploy) - _DEPLOY_KEYS)
    if unknown:
        raise LatbenchError(where, f"deploy: unknown key {unknown[0]!r} (expected {', '.join(sorted(_DEPLOY_KEYS))})")
    if "backend" not in deploy:
        raise LatbenchError(where, "deploy: missing 'backend' (torch, onnxruntime or tensorrt)")
    options = deploy.get("options") or {}
    if not isinstance(options, Mapping):
        raise LatbenchError(where, "deploy.options must be a mapping of backend option -> value")
    device = entry["device"]
    if device.partition(":")[0] == "cpu" and deploy.get("threads") is None:
        # DeployConfig would resolve it to *this* machine's cores; the node's may differ.
        raise LatbenchError(where, "a cpu target needs deploy.threads (the driver cannot see the node's cores)")
    try:
        config = DeployConfig(device=device, **{k: v for k, v in deploy.items() if k != "options"}, options=options)
        return Target(
            label=entry["label"],
            resource=entry["resource"],
            deploy=config,
            num_cpus=entry.get("num_cpus"),
            num_gpus=entry.get("num_gpus"),
            local_units=entry.get("local_units", 1),
        )
    except LatbenchError as exc:
        if exc.where.startswith("target "):
            raise LatbenchError(where, exc.what) from None
        raise LatbenchError(where, f"{exc.where}: {exc.what}") from None
    except TypeError as exc:
        raise LatbenchError(where, f"malformed deploy ({exc})") from None


def read_targets(path: str | Path) -> tuple[Target, ...]:
    """Read and validate a targets file (``.json``, else YAML); one-line errors name the file."""
    from latbench.io import parse_json, read_text

    where = str(path)
    text = read_text(path)
    data = parse_json(text, where) if str(path).endswith(".json") else _load_yaml(text, where)
    if data is None:
        raise LatbenchError(where, "is empty; expected a list of targets under 'targets:'")
    return parse_targets(data, where)


def targets_json(targets: Sequence[Target]) -> str:
    """A targets file's JSON text (for scripts and tests that write one)."""
    out = []
    for t in targets:
        d = t.deploy.to_dict()
        deploy = {k: d[k] for k in ("backend", "mode", "precision", "threads", "cache") if d[k] is not None}
        if d["options"]:
            deploy["options"] = d["options"]
        out.append(
            {
                "label": t.label,
                "resource": t.resource,
                "device": t.deploy.device,
                "deploy": deploy,
                "num_cpus": t.num_cpus,
                "num_gpus": t.num_gpus,
                "local_units": t.local_units,
            }
        )
    return json.dumps({"version": TARGETS_SCHEMA_VERSION, "targets": out}, indent=2)
