"""The CLI end to end through CliRunner: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from latbench.cli import app
from latbench.space import Arch, get_space
from tests.cli_assert import assert_one_line_error

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for cmd in ("env", "space", "arch"):
        assert cmd in result.stdout


def test_env_works_without_gpu():
    result = run("env", "--json")
    assert result.exit_code == 0, result.output
    fp = json.loads(result.stdout)
    assert fp["cpu"]["logical_cores"] >= 1 and "torch" in fp["libraries"] and len(fp["env_id"]) == 12
    assert isinstance(fp["gpus"], list)
    result = run("env")
    assert result.exit_code == 0
    from latbench.profiling.placement import default_threads, plan

    assert f"CPU deployments default to {plan(default_threads()).summary()}" in result.stdout


def test_space_show_and_json_is_a_valid_space_file(tmp_path):
    result = run("space", "show", "bert")
    assert result.exit_code == 0 and "180..768 step 12" in result.stdout
    result = run("space", "show", "vit", "--json")
    p = tmp_path / "vit.json"
    p.write_text(result.stdout)
    assert get_space(str(p)) == get_space("vit")


def test_space_sample_is_seeded_canonical_json_lines():
    a = run("space", "sample", "--space", "bert", "--n", "5", "--seed", "0")
    b = run("space", "sample", "--space", "bert", "--n", "5", "--seed", "0")
    assert a.exit_code == 0 and a.stdout == b.stdout
    lines = a.stdout.strip().splitlines()
    assert len(lines) == 5
    archs = [Arch.from_json(line) for line in lines]
    assert [x.to_json() for x in archs] == lines
    assert archs == get_space("bert").sample(0, n=5)
    assert run("space", "sample", "--space", "bert", "--n", "5", "--seed", "1").stdout != a.stdout


def test_space_sample_to_file(tmp_path):
    out = tmp_path / "a.jsonl"
    result = run("space", "sample", "--space", "gpt", "--n", "3", "--seed", "2", "--out", str(out))
    assert result.exit_code == 0
    assert len(out.read_text().splitlines()) == 3


ATB = (
    "{'sample_layer_num': 4, 'sample_num_attention_heads': [6, 6, 6, 6], 'sample_qkv_sizes': [384, 384, 384, 384], "
    "'sample_hidden_size': 384, 'sample_intermediate_sizes': [1536, 1536, 1536, 1536]}"
)


def test_arch_convert_round_trip_through_the_cli(tmp_path):
    to_latbench = run("arch", "convert", "--to", "latbench", ATB)
    assert to_latbench.exit_code == 0
    p = tmp_path / "arch.json"
    p.write_text(to_latbench.stdout)
    back = run("arch", "convert", "--to", "autotinybert", str(p))
    assert back.stdout.strip() == ATB
    nvit = run("arch", "convert", "--to", "nvit", str(p))
    assert json.loads(nvit.stdout)["EMB"] == 384
    whittle = run("arch", "convert", "--to", "whittle", nvit.stdout.strip())
    assert json.loads(whittle.stdout)["sub_network_n_embd"] == 384


def test_arch_cost_matches_library_and_has_roofline():
    from latbench.models.cost import model_cost

    arch = get_space("bert").reference
    result = run(
        "arch",
        "cost",
        arch.to_json(),
        "--batch",
        "1",
        "--seq",
        "128",
        "--json",
        "--peak-tflops",
        "100",
        "--peak-gbps",
        "1000",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    total = data["parts"][-1]
    expected = model_cost(arch, 1, 128)
    assert total["part"] == "total" and total["params"] == expected.total.params == 109_514_298
    assert total["roofline_ms"] > 0
    assert len(data["parts"]) == 12 + 3
    table = run("arch", "cost", arch.to_json(), "--seq", "128")
    assert table.exit_code == 0 and "block 11" in table.stdout


def test_arch_check():
    assert run("arch", "check", ATB, "--space", "bert").exit_code == 0
    assert_one_line_error(run("arch", "check", get_space("bert").reference.to_json(), "--space", "bert"), "12 layers")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            (
                "arch",
                "convert",
                "--to",
                "latbench",
                '{"family": "bert", "hidden": 8, "layers": [{"heads": 3, "qk_dim": 0, "v_dim": 1, "mlp": 1}]}',
            ),
            ("qk_dim", ">= 1"),
        ),
        (
            (
                "arch",
                "convert",
                "--to",
                "latbench",
                "{'sample_layer_num': 1, 'sample_num_attention_heads': [5], "
                "'sample_qkv_sizes': [64], 'sample_hidden_size': 64, 'sample_intermediate_sizes': [64]}",
            ),
            ("not divisible",),
        ),
        (("arch", "convert", "--to", "latbench", '{"family": "bert", '), ("malformed JSON",)),
        (
            ("arch", "convert", "--to", "latbench", '{"family": "mamba", "hidden": 8, "layers": []}'),
            ("unknown family",),
        ),
        (("arch", "convert", "--to", "latbench", "nope.json"), ("nope.json",)),
        (("arch", "convert", "--to", "tflite", ATB), ("--to", "tflite")),
        (("arch", "cost", ATB), ("--seq",)),
        (("arch", "cost", ATB, "--seq", "128", "--peak-tflops", "5"), ("--peak-gbps",)),
        (("arch", "cost", ATB, "--seq", "9999"), ("max_seq_len",)),
        (("space", "show", "resnet"), ("unknown space 'resnet'",)),
        (("space", "sample", "--space", "bert", "--n", "0"), ("--n",)),
        (("space", "sample", "--space", "bert", "--n", "x"), ("--n",)),
        (("space", "sample", "--n", "3"), ("--space",)),
        (("arch", "explode"), ("explode",)),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    assert_one_line_error(run(*args), *fragments)


def test_bad_space_file_is_one_line(tmp_path):
    p = tmp_path / "space.json"
    p.write_text('{"family": "bert", "n_layers": 2}')
    assert_one_line_error(run("space", "sample", "--space", str(p)), str(p), "missing key")
