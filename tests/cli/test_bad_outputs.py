"""An ``--out`` of the wrong kind (a directory where a file goes, a file where a directory goes)
is one line and exit code 2, from ``latbench.io`` or, as a safety net, from the CLI itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from latbench.cli import app
from latbench.cli._app import make_app
from latbench.errors import LatbenchError
from latbench.io import atomic_write_text, check_dir_path, ensure_dir
from latbench.pruning.digits import digits_arch
from tests.cli_assert import assert_one_line_error
from tests.pruning.helpers import linear_lut

runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    """An existing directory and an existing file, as mistaken --out values."""
    directory = tmp_path / "adir"
    directory.mkdir()
    file = tmp_path / "README.md"
    file.write_text("not a directory\n")
    return directory, file


# ------------------------------------------------------------------------- latbench.io


def test_atomic_write_refuses_a_directory_and_a_file_as_parent(places) -> None:
    directory, file = places
    with pytest.raises(LatbenchError, match=r"^.*adir: is a directory, expected a file$"):
        atomic_write_text(directory, "x")
    assert directory.is_dir() and not list(directory.iterdir())
    with pytest.raises(LatbenchError, match=r"README\.md/x\.json: .*README\.md is a file, not a directory$"):
        atomic_write_text(file / "x.json", "x")
    with pytest.raises(LatbenchError, match=r"README\.md/a/x\.json: .*README\.md is a file, not a directory$"):
        atomic_write_text(file / "a" / "x.json", "x")
    assert file.read_text() == "not a directory\n"
    assert sorted(p.name for p in file.parent.iterdir()) == ["README.md", "adir"]  # no temporaries left


def test_ensure_dir_and_check_dir_path(places, tmp_path: Path) -> None:
    directory, file = places
    assert ensure_dir(directory) == directory
    with pytest.raises(LatbenchError, match=r"README\.md: is a file, not a directory$"):
        ensure_dir(file)
    with pytest.raises(LatbenchError, match=r"^--out: .*README\.md is a file, not a directory$"):
        ensure_dir(file / "sub", where="--out")
    with pytest.raises(LatbenchError, match=r"README\.md: is a file, not a directory$"):
        check_dir_path(file)
    assert check_dir_path(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert not (tmp_path / "new").exists()  # checked, not created
    assert ensure_dir(tmp_path / "new" / "dir").is_dir()


def test_atomic_write_where_it_may_not_write_is_one_error(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(tmp_path / ".x.json.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)  # as in a read-only directory (root ignores modes)
    with pytest.raises(LatbenchError, match=r"/x\.json: cannot write here \(Permission denied\)$"):
        atomic_write_text(tmp_path / "x.json", "x")

    def refuse_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse_mkdir)
    with pytest.raises(LatbenchError, match=r"cannot create directory .*/sub \(Permission denied\)$"):
        ensure_dir(tmp_path / "sub")


# --------------------------------------------------------- commands writing one file


@pytest.fixture
def lut_file(tmp_path: Path) -> Path:
    path = tmp_path / "lut.json"
    linear_lut(digits_arch(), lo=4).save(path)  # covers vit-digits, the model prune trains
    return path


def test_lut_convert_out_a_directory_or_under_a_file(places, lut_file) -> None:
    directory, file = places
    assert_one_line_error(run("lut", "convert", lut_file, "--to", "nvit", "--out", directory), "adir", "is a directory")
    result = run("lut", "convert", lut_file, "--to", "nvit", "--out", file / "x.json")
    assert_one_line_error(result, "README.md/x.json", "README.md is a file, not a directory")


def test_compress_out_a_directory(places, tmp_path: Path) -> None:
    directory, _ = places
    checkpoint = tmp_path / "ck.pt"
    torch.save({"w": torch.randn(8, 8)}, checkpoint)
    assert_one_line_error(run("compress", checkpoint, "--out", directory), "adir", "is a directory, expected a file")


def test_import_hat_out_a_directory_or_under_a_file(places, fixtures_dir: Path) -> None:
    directory, file = places
    csv = fixtures_dir / "hat" / "wmt14ende_cpu_xeon_all.csv"
    if not csv.is_file():
        pytest.skip(f"HAT fixture not found at {csv}")
    assert_one_line_error(run("import", "hat", csv, "--out", directory), "adir", "is a directory")
    result = run("import", "hat", csv, "--out", file / "x.parquet")
    assert_one_line_error(result, "README.md/x.parquet", "README.md is a file, not a directory")


# --------------------------------------------------- commands writing a directory


def test_train_supernet_out_a_file_is_refused_before_training(places) -> None:
    _, file = places
    result = run("train-supernet", "--space", "bert", "--steps", "1", "--out", file)
    assert_one_line_error(result, "README.md", "is a file, not a directory")
    assert "training" not in result.stdout


def test_prune_out_a_file(places, lut_file) -> None:
    # prune creates its job directory itself: the CLI's safety net words the OSError.
    _, file = places
    result = run("prune", "--model", "vit-digits", "--lut", lut_file, "--latency-target", "0.6", "--out", file)
    assert_one_line_error(result, "README.md", "not a directory")


# ------------------------------------------------------------- the CLI's safety net


def _net_app():
    sub = make_app("test app")

    @sub.command("mkdir")
    def mkdir(out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)

    @sub.command("write")
    def write(out: Path) -> None:
        out.write_text("x")

    @sub.command("nameless")
    def nameless() -> None:
        raise OSError(5, "Input/output error")

    return sub


def test_an_os_error_naming_a_file_is_one_line(places, tmp_path: Path) -> None:
    directory, file = places
    net = _net_app()
    result = runner.invoke(net, ["mkdir", str(file)])
    assert_one_line_error(result, f"{file}: exists and is not a directory")
    result = runner.invoke(net, ["mkdir", str(file / "sub")])
    assert_one_line_error(result, "README.md/sub: Not a directory")
    result = runner.invoke(net, ["write", str(directory)])
    assert_one_line_error(result, f"{directory}: Is a directory")
    result = runner.invoke(net, ["write", str(tmp_path / "missing" / "x.txt")])
    assert_one_line_error(result, "missing/x.txt: No such file or directory")


def test_an_os_error_without_a_file_is_not_swallowed() -> None:
    result = runner.invoke(_net_app(), ["nameless"])
    assert result.exit_code == 1 and isinstance(result.exception, OSError)
    assert "latbench: error" not in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--predictor", "predictors/bert_cpu_b1_s128", "--latency-constraint", "7", "--out", "{file}"],
        ["train-predictor", "--data", "datasets/bert_cpu_b1_s128.parquet", "--out", "{file}/x"],
        ["prune", "--model", "vit-digits", "--params-target", "10", "--out", "{file}"],
    ],
)
def test_an_output_directory_that_cannot_be_is_refused_before_the_work(args, tmp_path) -> None:
    root = Path(__file__).resolve().parents[2]
    file = tmp_path / "a_file"
    file.write_text("x")
    shipped = ("predictors/", "datasets/")
    argv = [str(root / a) if a.startswith(shipped) else a.replace("{file}", str(file)) for a in args]
    r = CliRunner().invoke(app, argv)
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"latbench: error: --out: {file} is a file, not a directory"]
    assert r.stdout == ""  # nothing done first
