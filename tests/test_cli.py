"""Bad input, wherever a user can give it: one line saying what is wrong and
what is allowed, exit status 2, no traceback, and nothing written."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.cli import main
from harness.errors import UsageError


def one_error_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert captured.out == ""
    line, = captured.err.splitlines()
    assert line.startswith("harness: error: ")
    return line[len("harness: error: "):]


@pytest.mark.parametrize("args, says", [
    (["run", "exp99"], "unknown experiment 'exp99'; choose from: "),
    (["run", "exp17", "--variant", "strongrefs"], "unknown variant 'strongrefs'; choose from: strongref, weakref"),
    (["run", "exp17", "--variant", "weakref", "--variant", "weakref"], "a variant is named twice"),
    (["run", "exp17", "--probe", "heap"], "unknown probe 'heap'; choose from: tracemalloc, rss"),
    (["run", "exp17", "--param", "width=3"], "experiment 'exp17' has no parameter 'width'; parameters: iterations"),
    (["run", "exp17", "--param", "iterations"], "--param takes KEY=VALUE, got 'iterations'"),
    (["run", "exp17", "--param", "=3"], "--param takes KEY=VALUE, got '=3'"),
    (["run", "exp17", "--param", "iterations="], "parameter 'iterations' takes a whole number, got ''"),
    (["run", "exp17", "--param", "iterations=1,"], "parameter 'iterations' takes a whole number, got ''"),
    (["run", "exp17", "--param", "iterations=ten"], "parameter 'iterations' takes a whole number, got 'ten'"),
    (["run", "exp17", "--param", "iterations=0"], "parameter 'iterations' must be at least 1; got 0"),
    (["run", "exp17", "--param", "iterations=-5"], "parameter 'iterations' must be at least 1; got -5"),
    (["run", "exp17", "--param", "size=0"], "parameter 'size' must be at least 1; got 0"),
    (["run", "exp17", "--param", "size=2.5"], "parameter 'size' takes a whole number, got '2.5'"),
    (["run", "exp17", "--param", "size=1e400"], "parameter 'size' takes a whole number, got '1e400'"),
    (["run", "exp17", "--param", "depth=nan"], "parameter 'depth' takes a whole number, got 'nan'"),
    (["run", "exp17", "--param", "dtype=float128x"], "parameter 'dtype' must be one of: float64, float32; got 'float128x'"),
    (["run", "exp17", "--param", "gc=maybe"], "parameter 'gc' must be one of: on, off; got 'maybe'"),
    (["run", "exp17", "--param", "seed=-1"], "parameter 'seed' must be at least 0; got -1"),
    (["run", "exp17", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
    (["run", "exp17", "--jobs", "two"], "argument --jobs: takes a whole number, got 'two'"),
    (["run", "exp17", "--timeout", "-1"], "argument --timeout: must be a positive, finite number of seconds"),
    (["run", "exp17", "--timeout", "inf"], "argument --timeout: must be a positive, finite number of seconds"),
    (["run", "exp17", "--env", "NOEQUALS"], "--env takes KEY=VALUE, got 'NOEQUALS'"),
    (["run", "exp17", "--out", ""], "argument --out: takes a directory, got an empty name"),
    (["run", "exp17", "--out", "/proc/no-such-dir"], "output directory /proc/no-such-dir cannot be created"),
    (["run"], "the following arguments are required: experiment"),
    (["frobnicate"], "argument command: invalid choice: 'frobnicate'"),
    (["show"], "the following arguments are required: RUN"),
])
def test_bad_run_input_gets_one_line_and_exit_2(args: list[str], says: str, capsys, tmp_path: Path,
                                                monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert says in one_error_line(args, capsys)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_an_output_path_that_is_a_file_or_under_one(tmp_path: Path, capsys) -> None:
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a directory", encoding="utf-8")
    for out in (a_file, a_file / "sub"):
        line = one_error_line(["run", "exp17", "--out", str(out)], capsys)
        assert line == f"output directory {out} is not a directory (a file is in the way)"
    assert a_file.read_text(encoding="utf-8") == "not a directory"


@pytest.mark.parametrize("plugin, says", [
    ("missing.py", "no such file"),
    ("notes.txt", "is not a Python file (.py)"),
    ("broken.py", "importing broken.py failed"),
    ("no_square.py", "square"),
])
def test_a_bad_plugin_file_gets_one_line_and_exit_2(plugin: str, says: str, tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    (tmp_path / "broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    (tmp_path / "no_square.py").write_text("class Variable:\n    pass\n", encoding="utf-8")
    line = one_error_line(["run", "exp17", "--variant", f"file:{tmp_path / plugin}", "--out", str(tmp_path / "out")],
                          capsys)
    assert says in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["show", "check"])
def test_a_directory_that_is_not_a_run(command: str, tmp_path: Path, capsys) -> None:
    assert one_error_line([command, str(tmp_path / "nope")], capsys) == f"{tmp_path / 'nope'} is not a directory"
    assert one_error_line([command, str(tmp_path)], capsys) == f"{tmp_path} is not a run directory (no meta.json)"


def test_a_corrupt_meta_json_is_named(tmp_path: Path, capsys) -> None:
    (tmp_path / "meta.json").write_text('{"experiment": "exp17", "status": ', encoding="utf-8")
    assert one_error_line(["check", str(tmp_path)], capsys).startswith(f"{tmp_path / 'meta.json'} is corrupt: ")
    (tmp_path / "meta.json").write_text("[1, 2]", encoding="utf-8")
    assert one_error_line(["show", str(tmp_path)], capsys) == (
        f"{tmp_path / 'meta.json'} is corrupt: not a run's metadata (no 'experiment')")


@pytest.mark.parametrize("params, says", [
    ({"iterations": 0}, "parameter 'iterations' must be at least 1; got 0"),
    ({"size": -10}, "parameter 'size' must be at least 1; got -10"),
    ({"size": "big"}, "got 'big'"),  # "parameter 'size' takes a(n) int, got 'big'"
    ({"size": 2.5}, "got 2.5"),
    ({"iterations": True}, "got True"),
    ({"dtype": "float16"}, "parameter 'dtype' must be one of: float64, float32; got 'float16'"),
    ({"width": 3}, "experiment 'exp17' has no parameter 'width'"),
])
def test_the_python_api_raises_one_usage_error_and_writes_nothing(params: dict, says: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as raised:
        harness.run("exp17", params=params, out=tmp_path, progress=False)
    assert says in str(raised.value) and "\n" not in str(raised.value)
    assert str(raised.value).startswith("parameter '") or "has no parameter" in str(raised.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, says", [
    ({"variants": ["nope"]}, "unknown variant 'nope'"),
    ({"repeats": 0}, "--repeats must be a whole number of at least 1, got 0"),
    ({"jobs": 1.5}, "--jobs must be a whole number of at least 1, got 1.5"),
    ({"timeout_s": float("inf")}, "--timeout must be a number of seconds above 0 and at most 2,147,483 (24 days)"),
    ({"probes": ["heap"]}, "unknown probe 'heap'"),
])
def test_the_python_api_checks_its_options(options: dict, says: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        harness.run("exp17", out=tmp_path, progress=False, **options)
    assert list(tmp_path.iterdir()) == []


def test_no_traceback_unless_debug_is_given(tmp_path: Path) -> None:
    quiet = subprocess.run([sys.executable, "-m", "harness", "run", "exp99"], capture_output=True, text=True,
                           cwd=tmp_path, timeout=60)
    assert quiet.returncode == 2
    assert quiet.stderr.startswith("harness: error: unknown experiment 'exp99'; choose from: ")
    assert "exp17" in quiet.stderr and quiet.stderr.count("\n") == 1
    # --debug may come after the command too, where people type it
    loud = subprocess.run([sys.executable, "-m", "harness", "run", "exp99", "--debug"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert loud.returncode != 0
    assert "Traceback" in loud.stderr and "UsageError: unknown experiment 'exp99'" in loud.stderr


@pytest.mark.parametrize("args", [["--help"], ["list"], ["run", "--help"]])
def test_help_and_list_import_no_table_or_plot_library(args: list[str]) -> None:
    """pandas, scipy and matplotlib cost most of a second to import: a command that reads no table pays none."""
    script = ("import sys, contextlib, io\n"
              "from harness.cli import main\n"
              "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
              f"    main({args!r})\n"
              "print(sorted(m for m in ('pandas', 'scipy', 'matplotlib') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
