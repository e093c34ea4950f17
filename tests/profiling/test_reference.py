"""The CPU reference workloads: named in the protocol, stored with every row, and never mixed
(anchors, ``show``, the predictors' drift correction keep the times of two references apart)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from latbench.cli import app
from latbench.errors import LatbenchError
from latbench.profiling import drift
from latbench.profiling.config import ProtocolConfig
from latbench.profiling.reference import LEGACY, REFERENCES, cpu_reference, row_reference
from latbench.profiling.store import read_store
from tests.cli.test_cli_profile import profile_args, space_file  # noqa: F401  (the fixture)
from tests.cli_assert import assert_one_line_error

runner = CliRunner()


@pytest.mark.parametrize("kind", sorted(REFERENCES))
def test_each_reference_times_positive_calls_on_one_thread_and_restores_threads(kind: str) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before == 1 else before)
    threads = torch.get_num_threads()
    try:
        times = cpu_reference(3, kind)
        assert len(times) == 3 and all(math.isfinite(t) and t > 0 for t in times)
        assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)


def test_the_bert_block_reference_is_the_default_and_a_bad_name_is_refused() -> None:
    assert ProtocolConfig().reference == "bert-block"
    with pytest.raises(LatbenchError, match=r"protocol reference.*bert-block, matmul"):
        ProtocolConfig(reference="fft")


def test_a_rows_reference_is_read_from_its_protocol_legacy_rows_are_matmul() -> None:
    assert row_reference({"protocol": json.dumps(ProtocolConfig().to_dict())}) == "bert-block"
    assert row_reference({"protocol": json.dumps(ProtocolConfig(reference="matmul").to_dict())}) == "matmul"
    old = ProtocolConfig().to_dict()
    del old["reference"]  # a row written before references had names
    assert row_reference({"protocol": json.dumps(old)}) == LEGACY == "matmul"
    assert row_reference({}) == row_reference({"protocol": None}) == "matmul"


def rows(ref: list[float], reference: str | None) -> list[dict]:
    proto = ProtocolConfig().to_dict()
    if reference is None:
        del proto["reference"]
    else:
        proto["reference"] = reference
    return [{"median_ms": 1.0, "ref_ms": r, "protocol": json.dumps(proto)} for r in ref]


def test_anchors_are_kept_per_reference_and_legacy_anchors_keep_their_file(tmp_path: Path) -> None:
    assert drift.set_anchor("env1", rows([7.0, 7.2], "bert-block"), tmp_path) == pytest.approx(7.1)
    assert (tmp_path / "env1.bert-block.json").exists()
    assert drift.read_anchor("env1", tmp_path, "matmul") is None  # a matmul run sets its own
    assert drift.read_anchor("env1", tmp_path, "bert-block") == pytest.approx(7.1)
    assert drift.set_anchor("env1", rows([5.0], None), tmp_path) == 5.0
    assert json.loads((tmp_path / "env1.json").read_text())["reference"] == "matmul"
    assert drift.read_anchor("env1", tmp_path) == 5.0  # where anchors were kept before references had names
    with pytest.raises(LatbenchError, match="several reference workloads"):
        drift.set_anchor("env2", rows([5.0], "matmul") + rows([7.0], "bert-block"), tmp_path)


def test_profile_times_the_reference_asked_and_records_it(space_file, tmp_path, monkeypatch):  # noqa: F811
    import latbench.profiling.protocol as protocol

    asked: list[str] = []

    def scripted(n: int, kind: str = "bert-block") -> list[float]:
        asked.append(kind)
        return [{"bert-block": 7.0, "matmul": 5.0}[kind]] * n

    monkeypatch.setattr(protocol, "cpu_reference", scripted)
    monkeypatch.setenv("LATBENCH_CACHE_DIR", str(tmp_path / "cache"))
    default, legacy = tmp_path / "d.parquet", tmp_path / "m.parquet"
    result = runner.invoke(app, profile_args(space_file, default, 1, "--no-blocks", "--normalise-drift"))
    assert result.exit_code == 0, result.output
    assert set(asked) == {"bert-block"}
    df = read_store(default)
    assert (df.ref_ms == 7.0).all() and {row_reference(r) for r in df.to_dict("records")} == {"bert-block"}
    assert (df.ref_anchor_ms == 7.0).all()
    asked.clear()
    result = runner.invoke(
        app, profile_args(space_file, legacy, 1, "--no-blocks", "--reference-workload", "matmul", "--normalise-drift")
    )
    assert result.exit_code == 0, result.output
    assert set(asked) == {"matmul"} and (read_store(legacy).ref_anchor_ms == 5.0).all()  # its own anchor
    shown = json.loads(runner.invoke(app, ["show", str(legacy), "--json"]).stdout)
    (env,) = shown["envs"].values()
    assert env["reference"] == "matmul" and env["ref_ms"] == 5.0
    bad = profile_args(space_file, tmp_path / "x.parquet", 1, "--reference-workload", "fft")
    assert_one_line_error(runner.invoke(app, bad), "--reference-workload")
    assert not (tmp_path / "x.parquet").exists()


def test_drift_correction_refuses_a_store_that_mixes_references(space_file, tmp_path, monkeypatch):  # noqa: F811
    import latbench.profiling.protocol as protocol
    from latbench.predictors.data import load_store_dataset as load_store

    monkeypatch.setattr(protocol, "cpu_reference", lambda n, kind="bert-block": [1.0 + (kind == "matmul")] * n)
    out = tmp_path / "mixed.parquet"
    result = runner.invoke(app, profile_args(space_file, out, 2, "--no-blocks"))
    assert result.exit_code == 0, result.output
    # Adding rows timed with the other reference is refused in one line, the store untouched ...
    before = read_store(out)
    result = runner.invoke(app, profile_args(space_file, out, 4, "--no-blocks", "--reference-workload", "matmul"))
    assert_one_line_error(result, str(out))
    assert "--reference-workload bert-block" in result.output
    assert read_store(out).equals(before)
    # ... and a store that mixes them anyway (two stores put together by hand) is refused by the correction.
    other = tmp_path / "other.parquet"
    result = runner.invoke(app, profile_args(space_file, other, 4, "--no-blocks", "--reference-workload", "matmul"))
    assert result.exit_code == 0, result.output
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    a, b = pq.read_table(out), pq.read_table(other)
    b = b.filter(pc.invert(pc.is_in(b.column("arch"), value_set=a.column("arch").combine_chunks())))
    pq.write_table(pa.concat_tables([a, b.cast(a.schema)]), out)
    n_matmul = b.num_rows
    assert n_matmul >= 1 and len(load_store(out, drift_correction=0.0).frame) == 2 + n_matmul  # as measured: fine
    with pytest.raises(LatbenchError, match="2 reference workloads"):
        load_store(out, drift_correction=1.0)
    shown = json.loads(runner.invoke(app, ["show", str(out), "--json"]).stdout)
    (env,) = shown["envs"].values()
    assert env["references"] == {"bert-block": 2, "matmul": n_matmul}


def test_measure_normalises_drift_like_profile_and_keeps_the_raw_median(tmp_path, monkeypatch):
    import latbench.profiling.protocol as protocol

    speeds = iter([6.0] * 1000 + [6.6] * 1000)  # the second measurement on a machine 10% slower

    monkeypatch.setattr(protocol, "cpu_reference", lambda n, kind="bert-block": [next(speeds)] * n)
    monkeypatch.setenv("LATBENCH_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "mymodel.py"
    src.write_text("import torch\ndef make():\n    return torch.nn.Linear(16, 4)\n")
    args = ["measure", f"{src}:make", "--input", "input:2x16", "--budget-s", "0.2", "--min-samples", "5"]
    first = json.loads(runner.invoke(app, [*args, "--threads", "1", "--normalise-drift", "--json"]).stdout)
    assert first["ref_anchor_ms"] == 6.0 and first["median_ms_normalised"] == pytest.approx(first["median_ms"])
    assert row_reference(first) == "bert-block"
    speeds = iter([6.6] * 1000)
    second = runner.invoke(app, [*args, "--threads", "1", "--normalise-drift"])
    assert second.exit_code == 0, second.output
    assert "at the reference speed 6.000 ms of this machine (now 6.600 ms)" in " ".join(second.stdout.split())
    plain = json.loads(runner.invoke(app, [*args, "--threads", "1", "--json"]).stdout)
    assert "median_ms_normalised" not in plain and math.isfinite(plain["median_ms"])
    assert_one_line_error(runner.invoke(app, [*args, "--device", "cuda:0", "--normalise-drift"]), "--normalise-drift")
