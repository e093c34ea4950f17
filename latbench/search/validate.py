"""Validate a search by measurement: the found architecture(s) and the reference, in one interleaved run.

A predicted speed-up is a claim; this measures it. The reference is measured again *with*
the found architectures (rounds alternate between them), so a drift of the machine moves
both and the measured speed-up stays honest. ``validate.json`` holds, per architecture,
the measured latency with its CI, the prediction error, the measured speed-up and whether
the constraint holds when judged by measurement.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latbench.errors import LatbenchError
from latbench.search.constraint import LatencyConstraint
from latbench.search.run import read_result
from latbench.space import Arch

VALIDATE_FORMAT = "latbench-search-validation"


def archs_to_validate(
    search_dir: str | Path, doc: dict[str, Any], top: int = 1, front: bool = True
) -> tuple[list[Arch], dict[str, dict[str, Any]]]:
    """The best architecture, the next ``top - 1`` by quality, and (nsga2) the Pareto front;
    with every predicted entry of the search by canonical JSON."""
    from latbench.io import read_json

    entries = [doc["best"], *doc.get("top", [])[: max(0, top)]]
    predicted = {e["arch_json"]: e for e in [doc["best"], *doc.get("top", [])]}
    pareto = Path(search_dir) / "pareto.json"
    if pareto.is_file():
        front_entries = read_json(pareto).get("front", [])
        predicted.update({e["arch_json"]: e for e in front_entries})
        if front:
            entries += front_entries
    archs = [Arch.from_json(e["arch_json"]) for e in entries]
    return list({a.to_json(): a for a in archs}.values()), predicted


def check_deploy(doc: dict[str, Any], deploy: Any) -> None:
    """The validation must run the workload the search predicted for."""
    workload = doc["workload"]
    if workload.get("batch") is not None and workload["batch"] != deploy.batch:
        raise LatbenchError("--batch", f"the search predicted batch {workload['batch']}, not {deploy.batch}")
    if workload.get("seq_len") != deploy.seq_len:
        raise LatbenchError("--seq", f"the search predicted seq_len {workload.get('seq_len')}, not {deploy.seq_len}")


def predictor_mismatches(doc: dict[str, Any], deploy: Any) -> list[str]:
    """Why the search's predictor does not speak for this target (empty when it does)."""
    from latbench.predictors.data import Validity
    from latbench.search.run import deploy_validity

    data = (doc.get("predictor") or {}).get("validity")
    if not data:
        return []
    return Validity.from_dict(data).mismatches(deploy_validity(deploy, doc.get("family") or "bert"))


def validate_search(
    search_dir: str | Path,
    deploy: Any,
    protocol: Any,
    *,
    top: int = 1,
    front: bool = True,
    seed: int = 0,
    on_progress: Callable[[int, int, dict[str, Any] | None], None] | None = None,
) -> dict[str, Any]:
    """Measure the search's result(s) and its reference interleaved; write and return ``validate.json``."""
    from latbench import __version__
    from latbench.io import atomic_write_json
    from latbench.search.measure import measure_models

    doc = read_result(search_dir)
    check_deploy(doc, deploy)
    mismatches = predictor_mismatches(doc, deploy)
    found, predicted = archs_to_validate(search_dir, doc, top, front)
    reference = Arch.from_json(doc["reference"]["arch"])
    constraint = LatencyConstraint.from_dict(doc["constraint"])
    rows = measure_models(
        [reference, *found],
        doc["space"],
        deploy,
        protocol,
        keep=Path(search_dir) / "validate.parquet",
        seed=seed,
        on_progress=on_progress,
    )
    ref_row, found_rows = rows[0], rows[1:]
    ref_ms = float(ref_row["median_ms"])
    if constraint.speedup is not None:
        target_ms = ref_ms / constraint.speedup
    else:
        target_ms = constraint.target_ms
    bound_ms, floor_ms = constraint.high * target_ms, constraint.low * target_ms
    results = []
    for a, row in zip(found, found_rows):
        ms = float(row["median_ms"])
        pred = predicted.get(a.to_json(), {})
        pred_ms = pred.get("predicted_ms")
        speedup = ref_ms / ms
        entry = {
            "arch_json": a.to_json(),
            "describe": a.describe(),
            "best": a.to_json() == doc["best"]["arch_json"],
            "measured_ms": ms,
            "measured_ci_ms": [float(row["ci_low_ms"]), float(row["ci_high_ms"])],
            "measured_p10_ms": float(row["p10_ms"]),
            "unstable": bool(row["unstable"]),
            "unstable_reasons": row.get("unstable_reasons") or "",
            "predicted_ms": pred_ms,
            "prediction_error_pct": (100.0 * (pred_ms - ms) / ms) if pred_ms else None,
            "measured_speedup": speedup,
            "constraint_holds": bool(floor_ms <= ms <= bound_ms),
        }
        if constraint.speedup is not None:
            entry["speedup_error_pct"] = 100.0 * (speedup / constraint.speedup - 1.0)
            entry["speedup_within_10pct"] = abs(speedup / constraint.speedup - 1.0) <= 0.10
        results.append(entry)
    best = next(r for r in results if r["best"])
    out = {
        "format": VALIDATE_FORMAT,
        "schema_version": 1,
        "search": str(search_dir),
        "deploy_key": deploy.key(),
        "env_id": ref_row.get("env_id"),
        "reference": {
            "arch_json": reference.to_json(),
            "measured_ms": ref_ms,
            "measured_ci_ms": [float(ref_row["ci_low_ms"]), float(ref_row["ci_high_ms"])],
            "unstable": bool(ref_row["unstable"]),
            "search_reference_ms": doc["reference"]["latency_ms"],
            "search_reference_source": doc["reference"]["source"],
        },
        "constraint": {
            "speedup": constraint.speedup,
            "latency_ms": None if constraint.speedup is not None else constraint.target_ms,
            "measured_target_ms": target_ms,
            "measured_bound_ms": bound_ms,
            "window": [constraint.low, constraint.high],
        },
        "best": best,
        "architectures": results,
        "predictor_mismatches": mismatches,
        "latbench_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(Path(search_dir) / "validate.json", out)
    return out
