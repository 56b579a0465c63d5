"""A user's engine is judged by the model its behaviour implies: explain
examines it at plan time; bytes follow from the model, object counts from the
engine's own containers per graph; the choice and its reason are recorded,
and `run` and `check` give the same verdict when an engine has no model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import harness
from harness.inference import INFERRED

ROOT = Path(__file__).resolve().parent.parent
ENGINES = Path(__file__).resolve().parent / "engines"
BOOK_16 = f"file:{ENGINES / 'book_step16.py'}"
BOOK_18 = f"file:{ENGINES / 'book_step18.py'}"
MICROGRAD = f"file:{ENGINES / 'micrograd_like.py'}"
NO_MODEL = f"file:{ENGINES / 'cyclic_frees_grads.py'}"
EXACT = ["tracemalloc", "gc", "census"]


def small(experiment: str, variants: list[str], tmp_path: Path, **params) -> harness.Run:
    return harness.run(experiment, variants=variants, params=params, out=tmp_path, probes=EXACT, plots=False,
                       progress=False)


def assert_judged_and_passed(run: harness.Run, model: str) -> None:
    summary = run.summary
    assert set(summary["model_source"]) == {INFERRED} and set(summary["model_variant"]) == {model}
    checks = run.checks()
    assert checks and all(c.passed for c in checks), [c.line() for c in checks if not c.passed]
    assert {c.variant for c in checks} == set(summary["variant"])  # every trial judged


def test_the_book_s_step_16_and_a_micrograd_engine_are_judged_as_strongref(tmp_path: Path) -> None:
    census = small("exp16", [BOOK_16, MICROGRAD], tmp_path, iterations=10)
    assert_judged_and_passed(census, "strongref")
    by_variant = census.summary.set_index("variant")
    # the engines' own containers: 4 per op + the leaf (the book), 7 per op + 3 (micrograd's closures)
    assert by_variant.loc[BOOK_16, "gc_collected_objects"] == 10 * (4 * 3 + 1)
    assert by_variant.loc[MICROGRAD, "gc_collected_objects"] == 10 * (7 * 3 + 3)
    assert (by_variant.loc[BOOK_16, "graph_containers_per_op"], by_variant.loc[BOOK_16, "graph_containers_fixed"]) == (4, 1)
    for gc_setting in ("off", "on"):
        assert_judged_and_passed(small("exp17", [BOOK_16, MICROGRAD], tmp_path / gc_setting, gc=gc_setting,
                                       iterations=30), "strongref")


def test_the_book_s_step_18_is_judged_as_retain_grad(tmp_path: Path) -> None:
    for retain in ("false", "true"):
        run = small("exp18_retain_grad", [BOOK_18], tmp_path / retain, retain_grad=retain)
        assert_judged_and_passed(run, "retain_grad")
        assert "retain_grad=True honoured" in run.summary.loc[0, "model_reason"]
    assert_judged_and_passed(small("exp17", [BOOK_18], tmp_path / "exp17"), "retain_grad")


def test_the_guard_estimates_an_inferred_engine(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "harness", "run", "exp17", "--variant", BOOK_16, "--probe",
                           "tracemalloc", "--no-plots", "--param", "iterations=3", "--out", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "makes no estimate" not in done.stderr
    assert "judged by strongref's model, inferred by explain: held by reference cycles" in done.stderr


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("variants", [[NO_MODEL], ["weakref", NO_MODEL]], ids=["no trial judged", "some judged"])
def test_run_and_check_agree_when_a_trial_has_no_model(tmp_path: Path, variants: list[str]) -> None:
    args = [a for v in variants for a in ("--variant", v)]
    ran = cli("run", "exp17", *args, "--probe", "tracemalloc", "--no-plots", "--out", str(tmp_path), cwd=tmp_path)
    (run_dir,) = (tmp_path / "exp17").iterdir()
    checked = cli("check", str(run_dir), cwd=tmp_path)
    assert ran.returncode == checked.returncode == 0, ran.stdout + ran.stderr + checked.stdout
    line = ("not judged: 1 trial(s) with no model (" + NO_MODEL + "): no built-in model behaves so "
            "(held by reference cycles until the cyclic GC runs; intermediate grads freed)")
    assert line in ran.stdout and line in checked.stdout
    summary = harness.load(run_dir).summary.set_index("variant")
    assert summary.loc[NO_MODEL, "model_reason"].startswith("no built-in model behaves so")
