"""Fleet profiling on Ray: many devices, one result store.

Ray is the scheduler (``pip install 'latbench[ray]'``; imported lazily, only when a
run connects). Each target of a targets file names a Ray custom resource; every
task takes one unit of it, so no two tasks ever measure on one device, and the
identical devices behind one resource share the target's work. Rows and
fingerprints come back to the driver, which alone writes the resumable
:class:`~latbench.profiling.store.ResultStore`; each row is tagged with its
``target`` and its ``deploy_key`` starts with ``target=<label>,``.

Example::

    from latbench.fleet import fleet_profile, read_targets
    from latbench.profiling import ProtocolConfig
    from latbench.space import get_space

    report = fleet_profile(get_space("bert"), 200, read_targets("targets.yaml"), ProtocolConfig(),
                           "runs/fleet.parquet", address="ray://head:10001", seq_len=128)
"""

from __future__ import annotations

from latbench.fleet.engine import FleetReport, RaySession, TargetReport, connect, import_ray, run_plan
from latbench.fleet.envs import env_differences, env_signature
from latbench.fleet.lut import FleetLutReport, fleet_build_lut, target_table
from latbench.fleet.plan import FleetPlan, deal, item_key, lut_plan, plan_path, profile_plan, read_plan
from latbench.fleet.profile import fleet_profile
from latbench.fleet.status import EnvSummary, FleetStatus, TargetStatus, fleet_status
from latbench.fleet.targets import Target, parse_targets, read_targets, split_deploy_key, target_deploy_key
from latbench.fleet.worker import ChunkResult, ChunkTask, run_chunk

__all__ = [
    "ChunkResult",
    "ChunkTask",
    "EnvSummary",
    "FleetLutReport",
    "FleetPlan",
    "FleetReport",
    "FleetStatus",
    "RaySession",
    "Target",
    "TargetReport",
    "TargetStatus",
    "connect",
    "deal",
    "env_differences",
    "env_signature",
    "fleet_build_lut",
    "fleet_profile",
    "fleet_status",
    "import_ray",
    "item_key",
    "lut_plan",
    "parse_targets",
    "plan_path",
    "profile_plan",
    "read_plan",
    "read_targets",
    "run_chunk",
    "run_plan",
    "split_deploy_key",
    "target_deploy_key",
    "target_table",
]
