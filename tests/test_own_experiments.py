"""Experiments from anywhere: a file outside the repository, a module, an
installed package's entry point, an Experiment defined in the caller's own
process; each runs, checks and plots like a built-in one, and its run stays
data: reading it never imports the definition again."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import harness
from harness.results import read_meta

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "my_experiment.py"
CHECKS = "checks: 5 passed, 0 failed"


def harness_cli(*args: str, cwd: Path, pythonpath: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *pythonpath])}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


def test_an_experiment_in_a_file_outside_the_repository_runs_checks_plots_and_stays_data(tmp_path: Path) -> None:
    mine = tmp_path / "elsewhere" / "my_experiment.py"
    mine.parent.mkdir()
    shutil.copy(EXAMPLE, mine)
    done = harness_cli("run", str(mine), "--param", "gc=off", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert CHECKS in done.stdout
    assert "PASS trial 0 strongref vs trial 1 weakref: numpy_bytes_final > 24,000 (measured 120,000)" in done.stdout
    run_dir = tmp_path / done.stdout.strip().splitlines()[-1]
    assert run_dir.parent.name == "two_ops" and (run_dir / "memory.png").is_file()
    meta = read_meta(run_dir)
    assert meta["experiment_source"] == {"kind": "file", "ref": f"file:{mine}", "path": str(mine)}
    assert [p["name"] for p in meta["experiment_definition"]["params"]] == ["iterations", "size", "gc"]
    assert (run_dir / "definition" / "experiment.py").read_text() == EXAMPLE.read_text()
    assert f"python -m harness run {mine}" in (run_dir / "definition" / "RERUN.md").read_text()

    # The file is gone, and a file that would shout if imported stands in its place: the run is still readable.
    mine.write_text("raise SystemExit('the run directory imported its experiment')\n")
    checked = harness_cli("check", str(run_dir), cwd=tmp_path)
    assert checked.returncode == 0 and CHECKS in checked.stdout, checked.stdout + checked.stderr
    assert "which reading a run does not import" in checked.stdout
    assert harness_cli("show", str(run_dir), cwd=tmp_path).returncode == 0
    run = harness.load(run_dir)
    assert sorted(run.figures()) >= ["memory", "summary"] and all(c.passed for c in run.checks())


@pytest.mark.parametrize("source, says", [
    ("X = 1\n", "defines no EXPERIMENT"),
    ("EXPERIMENT = 'exp17'\n", "EXPERIMENT is a str, not an harness.Experiment"),
    ("import harness\nEXPERIMENT = harness.Experiment(name='bad', title='', seed_step='', claim='', workload=3, "
     "variants=('weakref',), params=(), expected=len, expectations=len)\n", "workload must be a function"),
    ("import harness\nEXPERIMENT = harness.Experiment(name='bad', title='', seed_step='', claim='', "
     "workload=print, variants=('weakref',), params=(harness.Param('size', int, 0, 'n', minimum=1),), "
     "expected=len, expectations=len)\n", "the default of parameter 'size' is refused by its own spec"),
    ("import harness\n\nraise ValueError('my mistake')\n", "importing it failed: ValueError: my mistake (bad.py, line 3)"),
    ("def broken(:\n", "importing it failed: SyntaxError"),
])
def test_a_definition_error_is_one_line_naming_the_file(source: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "bad.py").write_text(source)
    done = harness_cli("run", "bad.py", cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    line, = done.stderr.splitlines()
    assert says in line and str(tmp_path / "bad.py") in line
    assert not (tmp_path / "results").exists()


def test_a_missing_experiment_file_is_one_line(tmp_path: Path) -> None:
    done = harness_cli("run", "nowhere.py", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr == f"harness: error: experiment file {tmp_path / 'nowhere.py'}: no such file\n"


def test_an_experiment_in_a_module(tmp_path: Path) -> None:
    package = tmp_path / "site" / "mylab"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, package / "two.py")
    done = harness_cli("run", "module:mylab.two", "--param", "gc=off", "--no-plots", "--out", "out", cwd=tmp_path,
                       pythonpath=(str(tmp_path / "site"),))
    assert done.returncode == 0 and CHECKS in done.stdout, done.stdout + done.stderr
    assert read_meta(tmp_path / done.stdout.strip().splitlines()[-1])["experiment_source"]["kind"] == "module"


def test_an_installed_package_registers_experiments_by_entry_point(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "memlab_extra").mkdir(parents=True)
    (site / "memlab_extra" / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, site / "memlab_extra" / "two_ops.py")
    # What `pip install` leaves for a package that declares the entry point (importlib.metadata reads it).
    dist = site / "memlab_extra-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: memlab-extra\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dezero_memlab.experiments]\ntwo_ops = memlab_extra.two_ops\n")
    listed = harness_cli("list", "--format", "json", cwd=tmp_path, pythonpath=(str(site),))
    names = [e["name"] for e in json.loads(listed.stdout)["experiments"]]
    assert "two_ops" in names and "exp17" in names, listed.stderr
    done = harness_cli("run", "two_ops", "--param", "gc=off", "--no-plots", "--out", "out", cwd=tmp_path,
                       pythonpath=(str(site),))
    assert done.returncode == 0 and CHECKS in done.stdout, done.stdout + done.stderr
    meta = read_meta(tmp_path / done.stdout.strip().splitlines()[-1])
    assert meta["experiment_source"]["kind"] == "entry point"


def _defined_here() -> harness.Experiment:
    """As a notebook cell would define one: functions that no module can import by name."""
    def workload(bench):
        for _ in bench.iterations(bench.params.iterations):
            x = bench.engine.variable(bench.random_array(500))
            y = bench.engine.exp(bench.engine.square(x))  # noqa: F841

    def expected(variant, p):
        return harness.Expected(3 * 4_000, 6_000 + 3 * 4_000) if variant == "weakref" else harness.Expected(None)

    def expectations(variant, p):
        model = expected(variant, p)
        return [harness.Expectation("one graph", "numpy_bytes_final", "==", model.numpy_bytes_final)] \
            if model.numpy_bytes_final else []

    return harness.Experiment(name="cell_exp", title="defined in a cell", seed_step="-", claim="-",
                              workload=workload, variants=("weakref",),
                              params=(harness.Param("iterations", int, 4, "graphs", minimum=1),),
                              expected=expected, expectations=expectations, ops=lambda p: frozenset({"square", "exp"}))


def test_an_experiment_defined_in_the_callers_process_is_shipped_to_its_trials(tmp_path: Path) -> None:
    run = harness.run(_defined_here(), out=tmp_path, progress=False, plots=False)
    assert run.meta["status"] == "ok", run.meta.get("failed_trials")
    assert int(run.summary.loc[0, "numpy_bytes_final"]) == 12_000
    assert [c.passed for c in run.checks()] == [True]
    assert run.meta["experiment_source"]["kind"] == "notebook"
    assert (run.path / "definition" / "experiment.pickle").is_file()
    assert "def workload(bench):" in (run.path / "definition" / "experiment_functions.py").read_text()


@pytest.mark.parametrize("variant", ["strongref", "no_grad"])
def test_an_op_the_engine_lacks_refuses_the_plan_before_any_trial(variant: str, tmp_path: Path) -> None:
    from dataclasses import replace

    from harness.errors import UsageError

    needs_conv = replace(_defined_here(), ops=lambda p: frozenset({"square", "conv2d"}))
    with pytest.raises(UsageError) as refused:
        harness.run(needs_conv, variants=[variant], out=tmp_path, progress=False, plots=False)
    assert str(refused.value).startswith(f"variant {variant!r} has no conv2d, which cell_exp needs; it offers ")
    assert "square" in str(refused.value) and "\n" not in str(refused.value)
    assert not any(tmp_path.iterdir())  # refused up front: no run directory, no trial
