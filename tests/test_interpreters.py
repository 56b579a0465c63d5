"""Trials under other interpreters (`--python 3.11 --python 3.13`): each trial
runs in a fresh process of the interpreter it names, in an environment the
harness prepares once (uv); the tables carry each trial's interpreter, full
version and GC thresholds; the model and checks use the trial's own
thresholds; compare matches trials by Python minor version. Runs for real
under the interpreters this machine has (CI: 3.11 and 3.13)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness import interpreters
from harness.compare import compare
from harness.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
OWN = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHER = "3.13" if OWN != "3.13" else "3.11"  # the other interpreter CI has


def other_interpreter() -> str:
    try:
        interpreters.find(OTHER)
    except UsageError as error:
        if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
            pytest.fail(f"CI needs Python {OTHER} on this machine: {error}")
        pytest.skip(str(error))
    return OTHER


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)


@pytest.fixture(scope="module")
def gc_off_run(tmp_path_factory: pytest.TempPathFactory) -> harness.Run:
    other = other_interpreter()
    return harness.run("exp17", pythons=[OWN, other], params={"gc": "off", "iterations": 5, "size": 1000},
                       out=tmp_path_factory.mktemp("runs"), progress=False, plots=False)


def test_every_trial_runs_under_each_interpreter_with_identical_exact_figures(gc_off_run: harness.Run) -> None:
    summary = gc_off_run.summary
    assert gc_off_run.meta["status"] == "ok", gc_off_run.meta.get("failed_trials")
    assert sorted(summary["interpreter"].unique()) == sorted([OWN, OTHER])
    # each trial says which Python ran it and with which threshold
    for _, row in summary.iterrows():
        assert row["python"].startswith(row["interpreter"] + ".")
        assert row["gc_threshold_gen0"] == (2000 if row["interpreter"] == "3.13" else 700)
    exact = ["numpy_bytes_final", "numpy_bytes_peak", "gc_collections", "live_variables_final",
             "live_functions_final"]
    by = {minor: group.set_index("variant")[exact] for minor, group in summary.groupby("interpreter")}
    assert by[OWN].equals(by[OTHER])  # with the GC off, the interpreter changes no exact figure
    assert set(gc_off_run.samples["interpreter"]) == {OWN, OTHER}  # every table carries it
    assert gc_off_run.meta["interpreters"][OTHER]["version"].startswith(OTHER)
    # the checks pair trials of one interpreter only: each variant's checks per interpreter
    checks = gc_off_run.checks()
    assert checks and all(c.passed for c in checks)
    assert {c.params["interpreter"] for c in checks} == {OWN, OTHER}


def test_compare_matches_trials_by_python_minor_version(gc_off_run: harness.Run, tmp_path: Path) -> None:
    alone = harness.run("exp17", params={"gc": "off", "iterations": 5, "size": 1000}, out=tmp_path,
                        progress=False, plots=False)
    comparison = compare(alone.path, gc_off_run.path)
    assert comparison.exit_code == 0 and not comparison.regressions
    assert {row.trial for row in comparison.rows} == {f"{v} python={OWN}" for v in ("strongref", "weakref", "no_grad")}
    assert any(f"trials on Python {OTHER} ran in one run only" in w for w in comparison.warnings)


def test_the_collector_differs_and_each_trial_is_judged_by_its_own_threshold(tmp_path: Path) -> None:
    other = other_interpreter()
    run = harness.run("exp17", variants=["strongref"], pythons=[OWN, other], params={"iterations": 300},
                      probes=["tracemalloc", "gc"], out=tmp_path, progress=False, plots=False)
    assert run.meta["status"] == "ok", [c.line() for c in run.checks() if not c.passed]
    collections = run.summary.set_index("interpreter")["gc_collections"]
    # 700 vs 2000 containers per gen-0 collection: 3.13 collects about a third as often
    low, high = sorted([OWN, OTHER], key=lambda minor: minor == "3.13")
    assert collections[low] > 2 * collections[high] > 0


@pytest.mark.parametrize("args, says", [
    (["--python", "9.9"], "--python 9.9: no Python 9.9 on this machine"),
    (["--python", "/nonexistent/python3"], "--python /nonexistent/python3: no Python interpreter runs there"),
    (["--python", "three"], "--python takes a version such as 3.13 or a path to an interpreter, got 'three'"),
    (["--python", OWN, "--python", sys.executable], f"Python {OWN} is named twice"),
])
def test_a_bad_interpreter_is_one_line_before_any_trial(args: list[str], says: str, tmp_path: Path) -> None:
    done = cli("run", "exp17", *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert says in done.stderr
    assert not (tmp_path / "out").exists()


def test_torch_runs_only_on_the_harness_interpreter(tmp_path: Path) -> None:
    from engine.variants import get_variant

    if not get_variant("torch").available():  # elsewhere it is refused as not installed, first
        if os.environ.get("MEMLAB_REQUIRE_EXTRAS") == "1":
            pytest.fail("torch is not installed; CI requires every compared engine")
        pytest.skip("torch is not installed here")
    other = other_interpreter()
    done = cli("run", "exp17", "--variant", "torch", "--python", other, "--out", str(tmp_path / "out"),
               cwd=tmp_path)
    assert done.returncode == 2 and "runs only on the harness's own interpreter" in done.stderr
    assert done.stderr.count("\n") == 1


def test_a_failed_install_is_one_line_and_nothing_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = interpreters.find(other_interpreter())
    with pytest.raises(UsageError, match=f"--python {OTHER}: preparing its environment failed: ") as error:
        interpreters.environment(other, ["dezero-memlab-no-such-package==0.0.1"], root=tmp_path)
    assert "\n" not in str(error.value)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []  # no half-made environment
