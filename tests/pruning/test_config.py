"""PruneConfig/TrainConfig validation and NViT's pruning config on the real file."""

from __future__ import annotations

import json

import pytest

from latbench.errors import LatbenchError
from latbench.pruning.config import (
    KINDS,
    NVIT_GRANULARITY,
    PruneConfig,
    TrainConfig,
    parse_nvit_config,
    read_nvit_config,
)


@pytest.fixture
def nvit_config_path(fixtures_dir):
    p = fixtures_dir / "nvit" / "group8_m23_m09.json"
    if not p.is_file():
        pytest.skip(f"NViT config fixture not found at {p}")
    return p


def test_nvit_config_fixture_maps_onto_prune_config(nvit_config_path):
    nvit = read_nvit_config(nvit_config_path)
    cfg = nvit.to_prune_config(latency_target=0.5, latency_regularization=5e-4)
    assert cfg.importance == "taylor23"
    assert cfg.interval_prune == 100
    assert cfg.prune_per_iter == 50
    assert cfg.max_prune_iters == 192
    assert cfg.max_pruned_units == 6144
    assert cfg.momentum == pytest.approx(0.9)  # "m09": NViT derives use_momentum from it
    assert cfg.loss_threshold == pytest.approx(1e7)
    assert cfg.start_after == 0 and cfg.seed == 0
    assert cfg.l2_normalize_per_group is False
    assert cfg.granularity == NVIT_GRANULARITY  # group_size is overridden per kind in NViT's group_criteria
    assert nvit.raw["group_size"] == 2 and nvit.latency_look_up_table is None
    assert cfg.latency_target == 0.5 and cfg.latency_regularization == 5e-4


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"method": 11}, "method=11"),
        ({"fixed_layer": 3}, "fixed_layer=3"),
        ({"push_group_down": True}, "push_group_down"),
        ({"warp_speed": 9}, "unknown NViT config key 'warp_speed'"),
        ({"frequency": 0}, "frequency"),
        ({"pruning_momentum": 1.5}, "pruning_momentum"),
    ],
)
def test_nvit_config_refuses_what_it_cannot_honour(nvit_config_path, tmp_path, change, fragment):
    data = {**json.loads(nvit_config_path.read_text()), **change}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(LatbenchError) as exc:
        read_nvit_config(bad)
    assert str(bad) in str(exc.value) and fragment in str(exc.value)
    assert "\n" not in str(exc.value)


def test_nvit_config_accepts_the_job_envelope_and_minus_one_caps():
    nvit = parse_nvit_config({"jobConfiguration": {"method": 22, "prune_neurons_max": -1, "pruning_threshold": -1}})
    assert nvit.prune["importance"] == "22" and nvit.prune["max_pruned_units"] is None
    assert nvit.to_prune_config().importance == "taylor22"
    assert nvit.to_prune_config().loss_threshold is None


@pytest.mark.parametrize("target", [0.0, 1.0, 1.5, -0.1])
def test_latency_target_must_be_a_fraction(target):
    with pytest.raises(LatbenchError, match="latency_target"):
        PruneConfig(latency_target=target)


def test_prune_config_validates_and_round_trips():
    with pytest.raises(LatbenchError, match="set a latency target"):
        PruneConfig(latency_target=None)
    with pytest.raises(LatbenchError, match="unknown group kind 'attn'"):
        PruneConfig(floors={"attn": 2})
    with pytest.raises(LatbenchError, match="importance"):
        PruneConfig(importance="fisher")
    with pytest.raises(LatbenchError, match=r"floors\.heads"):
        PruneConfig(floors={"heads": 0})
    cfg = PruneConfig(importance="2", floors={"heads": 2}, round_to=8, kinds=("mlp", "heads"))
    assert cfg.importance == "magnitude"
    assert cfg.floors == {k: 2 if k == "heads" else 1 for k in KINDS}
    assert cfg.round_to == dict.fromkeys(KINDS, 8)
    assert cfg.kinds == ("heads", "mlp")  # canonical order
    assert PruneConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(LatbenchError, match="unknown field 'lambda'"):
        PruneConfig.from_dict({"lambda": 1.0})


def test_train_config_validates():
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    with pytest.raises(LatbenchError, match="distill_alpha"):
        TrainConfig(distill_alpha=1.5)
    with pytest.raises(LatbenchError, match="distill_tau"):
        TrainConfig(distill_tau=0)


def test_configs_load_without_torch_and_every_export_resolves():
    import subprocess
    import sys

    code = (
        "import sys, latbench.pruning, latbench.pruning.config; "
        "assert 'torch' not in sys.modules, 'torch was imported'; "
        "[getattr(latbench.pruning, n) for n in latbench.pruning.__all__]"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
